"""The one way out to URLs a tenant typed: benchmark targets, model discovery, webhooks, and the
gateway's upstreams.

A hosted Pulse must not become a proxy into its own network: a tenant who types
`http://169.254.169.254/…`, `http://localhost:6379/`, `http://[::ffff:10.0.0.1]/` or a name that
resolves there, and reads the answer back (in a benchmark result's error message, a webhook's
delivery log), reads the cloud credentials or the cluster's internal services.

Checking the URL before the request is not enough: DNS can answer a public address to the check
and 127.0.0.1 to the connection a moment later (rebinding), and a public server can redirect to
a private one. So, like healthchecks' `hc/lib/curl.py`, the check sits where the socket is
opened: every client built here resolves the host itself, checks *every* address of the answer,
and connects only to the checked addresses; a redirect is a new connection and is checked the
same way.

- httpx, sync and async (`guarded_client` for webhooks and model discovery,
  `guarded_async_client` kept for the gateway's upstreams): an httpcore network backend
  whose `connect_tcp` resolves, checks and connects to the IP. httpcore's TLS layer takes the
  server name from the request's origin, not from the backend, so SNI and certificate checks
  still use the host name (httpcore `_sync/connection.py`: `server_hostname=sni_hostname or
  self._origin.host`).
- aiohttp (benchmark runs, `guarded_connector`): a resolver that checks every answer, plus a
  socket factory that checks the address of each socket aiohttp opens, which also covers IP
  literals (aiohttp does not ask the resolver about those).

The policy (`address_refusal`): only globally routable unicast addresses, after unwrapping IPv4
embedded in IPv6 (mapped, compatible, 6to4, NAT64), and never a cloud metadata address.
`allow_private=True` (operators' own providers; `TENANT_EGRESS_ALLOW_PRIVATE`; an organization
switched in the admin for its self-hosted vLLM or Ollama) allows private and local addresses,
but still not the metadata services nor anything link-local (169.254.0.0/16, fe80::/10: where
metadata services, AWS's time sync and the VPC's DNS resolver live): no benchmark or webhook
has a reason to call them, and a self-hosted model is on a routed network.

A refusal raises `EgressRefused`, an `httpx.ConnectError`, so code that handles connection
failures keeps working; callers that want to say more (an error kind of its own, a permanent
webhook failure) catch it first. Its message is shown to the tenant (a field error, a result's
or a delivery's error): it names the host they typed and the class of address, never the
address a name resolved to (that would let a tenant map the internal DNS: "redis.default.svc…
is 10.0.3.7") and never a response. The address is logged (a warning) for operators.

Resolving takes as long as the tenant's DNS server wants, so it runs in a small shared thread
pool with a deadline: at save time (`refusal`) a name that does not resolve within
SAVE_RESOLVE_TIMEOUT_S passes like one that does not resolve (the connection is checked
anyway), and on the sync httpx client resolving counts against the connect timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services answer with the machine's cloud credentials. Most sit in ranges refused
# anyway; two are globally routable (Azure's wireserver, Oracle's), and all stay refused when
# private addresses are allowed.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack…
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure wireserver
    )
)

# IPv6 ranges that carry an IPv4 address in their last 32 bits; the IPv4 one is what is reached.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated, but still routed by some stacks

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# How long a save (a web request) waits for the tenant's DNS before letting the URL through.
SAVE_RESOLVE_TIMEOUT_S = 2.0


def _new_resolver_pool() -> None:
    """Threads that run blocking getaddrinfo() calls under a deadline. A lookup past its
    deadline keeps its thread until the resolver gives up (getaddrinfo cannot be interrupted),
    so the pool is bounded: a flood of slow names queues here, each caller still waits no longer
    than its deadline, and web workers stay free. A forked process (Celery's prefork workers,
    gunicorn's) gets a pool of its own: the parent's threads do not exist there, and its pool
    would count them as idle and never run a lookup."""
    global _RESOLVER_POOL
    _RESOLVER_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="egress-resolve")


_RESOLVER_POOL: ThreadPoolExecutor
_new_resolver_pool()
os.register_at_fork(after_in_child=_new_resolver_pool)


class EgressRefused(httpx.ConnectError):
    """Pulse will not connect to this host: it is (or resolves to) a refused address."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        # `address` is for operators (logs, the attribute), never for the message: see above.
        self.host, self.address, self.reason = host, address, reason
        verb = "is" if _is_ip_literal(host) else "resolves to"
        super().__init__(f"{host} {verb} {reason}; Pulse does not send requests there.")

    def __reduce__(self) -> tuple:  # picklable (e.g. by a task queue) despite its own arguments
        return (type(self), (self.host, self.address, self.reason))


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# -- the policy -------------------------------------------------------------------------------


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really reaches, if it embeds one."""
    if ip.version == 4:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return None


def address_refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why Pulse will not connect to `ip` ("a private, …" for a message), or None if it may."""
    reached = embedded_ipv4(ip) or ip
    if ip in METADATA_ADDRESSES or reached in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private:
        # Private networks are allowed for a self-hosted model; link-local is not a network
        # anyone hosts one on, and holds metadata services beyond the listed ones.
        return "a link-local address" if reached.is_link_local else None
    # is_global alone lets multicast, site-local and some reserved IPv6 ranges through.
    site_local = isinstance(reached, ipaddress.IPv6Address) and reached.is_site_local
    if not reached.is_global or reached.is_multicast or reached.is_reserved or site_local:
        return "a private, local or reserved address"
    return None


def check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> None:
    """Raise EgressRefused if any address `host` resolved to is refused. All of them, not just
    the first: which one a client picks is not ours to predict."""
    for address in addresses:
        try:
            reason = address_refusal(ipaddress.ip_address(address), allow_private=allow_private)
        except ValueError:
            reason = "an unrecognized address"
        if reason:
            logger.warning("Egress refused: %s -> %s is %s (allow_private=%s)", host, address, reason, allow_private)
            raise EgressRefused(host, address, reason)


def _unique(addresses: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


def resolve(host: str, port: int | None, timeout: float | None) -> list[str]:
    """The addresses `host` resolves to (blocking getaddrinfo, in the resolver pool), each once.
    Raises TimeoutError after `timeout` seconds (None: wait), OSError/UnicodeError as
    getaddrinfo does."""
    future = _RESOLVER_POOL.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()  # still queued behind other slow lookups: never run it
        raise TimeoutError(f"Resolving {host} took longer than {timeout:g} s") from None
    return _unique(str(info[4][0]) for info in infos)


def refusal(url: str, *, allow_private: bool) -> str | None:
    """Why Pulse would refuse to send to `url`, checked when a tenant saves it (a field error),
    or None. Resolves the host now; a name that does not resolve passes (it fails at connect
    time like any unreachable host). Not a guard on its own: the connection is checked again."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None  # not a URL at all ("http://[::1/"): the field's own validator says so
    if not host:
        return "The URL has no host."
    try:
        addresses = resolve(host, None, SAVE_RESOLVE_TIMEOUT_S)
    except (OSError, UnicodeError, ValueError):  # TimeoutError is an OSError: slow is let through too
        return None
    try:
        check_addresses(host, addresses, allow_private=allow_private)
    except EgressRefused as refused:
        return str(refused)
    return None


# -- httpx: a network backend that resolves, checks and connects ----------------------------


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to checked addresses of the host."""

    def __init__(self, *, allow_private: bool, inner: httpcore.NetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port, timeout)  # part of connecting, and of its timeout
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(str(error)) from error
        except (OSError, UnicodeError) as error:
            raise httpcore.ConnectError(f"Cannot resolve {host}: {error}") from error
        check_addresses(host, addresses, allow_private=self.allow_private)
        last_error: Exception | None = None
        for address in addresses:  # the checked address is the one connected to
            try:
                return self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None  # getaddrinfo never answers an empty list
        raise last_error

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    """The async twin of GuardedBackend (asyncio or trio, through anyio)."""

    def __init__(self, *, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):  # resolving is part of connecting, and of its timeout
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"Resolving {host} took longer than {timeout} s") from error
        except (OSError, UnicodeError) as error:
            raise httpcore.ConnectError(f"Cannot resolve {host}: {error}") from error
        addresses = _unique(str(info[4][0]) for info in infos)
        check_addresses(host, addresses, allow_private=self.allow_private)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None
        raise last_error

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _pool_options(verify: Any, cert: Any, http2: bool, limits: httpx.Limits, retries: int) -> dict[str, Any]:
    return {
        "ssl_context": httpx.create_ssl_context(verify=verify, cert=cert, trust_env=False),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": True,
        "http2": http2,
        "retries": retries,
    }


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on a guarded connection pool. No proxy and no Unix socket, on purpose:
    through a proxy the check would see the proxy's address, not the tenant's host."""

    def __init__(
        self, *, allow_private: bool, verify: Any = True, cert: Any = None, http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS, retries: int = 0,
    ) -> None:
        # Not super().__init__(): it would build an unguarded pool only to be replaced; the
        # base class's methods use nothing but self._pool.
        self._pool = httpcore.ConnectionPool(
            **_pool_options(verify, cert, http2, limits, retries),
            network_backend=GuardedBackend(allow_private=allow_private),
        )


class GuardedAsyncTransport(httpx.AsyncHTTPTransport):
    """The async twin of GuardedTransport. Reserved for the gateway (issue 11), whose upstream
    calls are async httpx: nothing in Pulse uses it yet except its tests, which hold it to the
    same policy as the clients in use, so the gateway starts from a guarded transport."""

    def __init__(
        self, *, allow_private: bool, verify: Any = True, cert: Any = None, http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS, retries: int = 0,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            **_pool_options(verify, cert, http2, limits, retries),
            network_backend=GuardedAsyncBackend(allow_private=allow_private),
        )


_TRANSPORT_OWNED = ("transport", "mounts", "proxy", "verify", "cert", "http2", "limits")


def _client_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the caller's httpx kwargs into the transport's and the client's own."""
    if any(name in kwargs for name in ("transport", "mounts", "proxy")):
        raise TypeError("A guarded client makes its own transport; it takes no transport, mounts or proxy.")
    transport = {name: kwargs.pop(name) for name in _TRANSPORT_OWNED if name in kwargs}
    # trust_env off: no proxy, netrc or certificate settings from the environment apply to
    # requests whose destination a tenant chose.
    kwargs.setdefault("trust_env", False)
    return transport, kwargs


def guarded_client(*, allow_private: bool, **httpx_kwargs: Any) -> httpx.Client:
    """An httpx.Client that connects only to allowed addresses (see the module docstring).
    Takes httpx.Client's arguments (timeout, headers, follow_redirects, verify, limits…)."""
    transport, client = _client_kwargs(dict(httpx_kwargs))
    return httpx.Client(transport=GuardedTransport(allow_private=allow_private, **transport), **client)


def guarded_async_client(*, allow_private: bool, **httpx_kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient that connects only to allowed addresses. Reserved for the gateway's
    upstream calls (issue 11); tested like the clients in use, unused by the apps until then."""
    transport, client = _client_kwargs(dict(httpx_kwargs))
    return httpx.AsyncClient(transport=GuardedAsyncTransport(allow_private=allow_private, **transport), **client)


# -- aiohttp: a checking resolver, and a socket factory for everything else ---------------------


class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's resolver: an answer with any refused address is refused, naming the host.
    aiohttp connects only to addresses its resolver returned (or cached from it)."""

    def __init__(self, *, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner or aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        check_addresses(host, _unique(answer["host"] for answer in answers), allow_private=self.allow_private)
        return answers

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(*, allow_private: bool) -> Callable[[tuple], socket.socket]:
    """aiohttp's `socket_factory`: called with the address of each socket it is about to connect,
    so the check also covers IP-literal hosts, which aiohttp never hands to its resolver."""

    def open_socket(addr_info: tuple) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        check_addresses(str(sockaddr[0]), [str(sockaddr[0])], allow_private=allow_private)
        return socket.socket(family=family, type=type_, proto=proto)

    return open_socket


def guarded_connector(*, allow_private: bool, **connector_kwargs: Any) -> aiohttp.TCPConnector:
    """An aiohttp.TCPConnector that connects only to allowed addresses. Must be created inside
    the event loop that uses it; use it in a ClientSession without a proxy (the default)."""
    if "resolver" in connector_kwargs or "socket_factory" in connector_kwargs:
        raise TypeError("A guarded connector brings its own resolver and socket factory.")
    return aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private=allow_private),
        socket_factory=guarded_socket_factory(allow_private=allow_private),
        **connector_kwargs,
    )
