"""lib/egress.py: which addresses Pulse refuses, and that every client it builds refuses them at
connect time, on every connection: IP literals, names, names that rebind, and redirects."""

from __future__ import annotations

import asyncio
import ipaddress
import multiprocessing
import pickle
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lib import egress
from tests.config.test_deployment import production_env, run_python
from tests.local_server import INTERNAL_SECRET, PUBLIC_STAND_IN, InternalService, rebinding_dns

REFUSED = {
    # loopback
    "loopback v4": "127.0.0.1",
    "loopback v4, elsewhere in 127/8": "127.255.255.254",
    "loopback v6": "::1",
    # RFC 1918
    "private 10/8": "10.0.0.1",
    "private 172.16/12": "172.16.0.1",
    "private 192.168/16": "192.168.1.1",
    # link-local
    "link-local v4": "169.254.1.1",
    "link-local v6": "fe80::1",
    # shared address space
    "CGNAT 100.64/10": "100.64.0.1",
    "CGNAT, top of the range": "100.127.255.254",
    # unique-local and the old site-local
    "unique-local fc00::/7": "fc00::1",
    "unique-local fd00::/8": "fd00::1",
    "site-local fec0::/10": "fec0::1",
    # IPv4 inside IPv6: the IPv4 address is what is reached
    "IPv4-mapped loopback": "::ffff:127.0.0.1",
    "IPv4-mapped private": "::ffff:10.0.0.1",
    "IPv4-compatible loopback": "::127.0.0.1",
    "6to4 of loopback": "2002:7f00:1::1",
    "6to4 of private": "2002:a00:1::",
    "NAT64 of loopback": "64:ff9b::127.0.0.1",
    "NAT64 of private": "64:ff9b::10.0.0.1",
    "local-use NAT64": "64:ff9b:1::a00:1",
    "Teredo": "2001::1",
    # unspecified: 0.0.0.0 reaches the host itself on Linux
    "unspecified v4": "0.0.0.0",  # noqa: S104 (an address under test, not a bind)
    "this network 0/8": "0.1.2.3",
    "unspecified v6": "::",
    # multicast, reserved, broadcast
    "multicast v4": "224.0.0.1",
    "multicast v4, SSDP": "239.255.255.250",
    "multicast v6": "ff02::1",
    "multicast v6, global scope": "ff0e::1",
    "reserved 240/4": "240.0.0.1",
    "broadcast": "255.255.255.255",
    # documentation and benchmarking ranges
    "TEST-NET-1": "192.0.2.1",
    "TEST-NET-2": "198.51.100.1",
    "TEST-NET-3": "203.0.113.1",
    "documentation v6": "2001:db8::1",
    "benchmarking 198.18/15": "198.18.0.1",
    "reserved v6 (not 2000::/3)": "4000::1",
}

METADATA = {
    "AWS/GCP/Azure IMDS": "169.254.169.254",
    "AWS ECS credentials": "169.254.170.2",
    "AWS IMDS over IPv6": "fd00:ec2::254",
    "Alibaba": "100.100.100.200",
    "Oracle": "192.0.0.192",
    "Azure wireserver (globally routable)": "168.63.129.16",
    "IMDS mapped into IPv6": "::ffff:169.254.169.254",
}

ALLOWED = {
    "public v4": PUBLIC_STAND_IN,
    "public v4, DNS": "8.8.8.8",
    "public v6": "2606:4700:4700::1111",
    "IPv4-mapped public": f"::ffff:{PUBLIC_STAND_IN}",
    "6to4 of public": "2002:5db8:d822::1",
    "NAT64 of public": f"64:ff9b::{PUBLIC_STAND_IN}",
}


def refusal_of(address: str, *, allow_private: bool = False) -> str | None:
    return egress.address_refusal(ipaddress.ip_address(address), allow_private=allow_private)


# ---------------------------------------------------------------------------------------------
# The policy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", REFUSED.values(), ids=REFUSED.keys())
def test_every_private_local_and_reserved_class_is_refused(address):
    assert refusal_of(address) == "a private, local or reserved address"


@pytest.mark.parametrize("address", METADATA.values(), ids=METADATA.keys())
def test_cloud_metadata_addresses_are_refused_even_where_private_ones_are_allowed(address):
    assert refusal_of(address) == "a cloud metadata address"
    assert refusal_of(address, allow_private=True) == "a cloud metadata address"


@pytest.mark.parametrize("address", ALLOWED.values(), ids=ALLOWED.keys())
def test_public_addresses_pass(address):
    assert refusal_of(address) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "::1", "fd00::1", "::ffff:192.168.1.1"])
def test_allowing_private_addresses_allows_them(address):
    assert refusal_of(address, allow_private=True) is None


LINK_LOCAL = {
    "link-local v4, not a listed metadata address": "169.254.1.1",
    "AWS time sync": "169.254.169.123",
    "AWS VPC DNS resolver": "169.254.169.253",
    "link-local v4, top of the range": "169.254.255.254",
    "link-local v6": "fe80::1",
    "link-local v6, top of fe80::/10": "febf::1",
    "IPv4-mapped link-local": "::ffff:169.254.10.10",
    "NAT64 of link-local": "64:ff9b::169.254.0.1",
}


@pytest.mark.parametrize("address", LINK_LOCAL.values(), ids=LINK_LOCAL.keys())
def test_link_local_is_refused_even_where_private_addresses_are_allowed(address):
    assert refusal_of(address) == "a private, local or reserved address"
    assert refusal_of(address, allow_private=True) == "a link-local address"


def test_one_refused_address_in_an_answer_refuses_the_host():
    with pytest.raises(egress.EgressRefused) as refused:
        egress.check_addresses("mixed.example", [PUBLIC_STAND_IN, "127.0.0.1"], allow_private=False)

    assert str(refused.value) == (
        "mixed.example resolves to a private, local or reserved address; Pulse does not send requests there."
    )
    assert isinstance(refused.value, httpx.ConnectError)  # handled wherever connection errors are


def test_a_refusal_never_tells_the_tenant_what_a_name_resolved_to_but_logs_it(caplog):
    """The message reaches the tenant (field errors, result and delivery errors): naming the
    resolved address would let them map the internal DNS one name at a time."""
    with caplog.at_level("WARNING", logger="lib.egress"), pytest.raises(egress.EgressRefused) as refused:
        egress.check_addresses("redis.default.svc.cluster.local", ["10.0.3.7"], allow_private=False)

    assert "10.0.3.7" not in str(refused.value)
    assert str(refused.value).startswith("redis.default.svc.cluster.local resolves to a private, local or reserved")
    assert refused.value.address == "10.0.3.7"  # for operators
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "redis.default.svc.cluster.local" in caplog.text and "10.0.3.7" in caplog.text


def test_an_ip_the_tenant_typed_is_named_as_typed():
    with pytest.raises(egress.EgressRefused) as refused:
        egress.check_addresses("169.254.169.254", ["169.254.169.254"], allow_private=True)

    assert str(refused.value) == "169.254.169.254 is a cloud metadata address; Pulse does not send requests there."


# ---------------------------------------------------------------------------------------------
# The check when a URL is saved
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1", "http://localhost/", "http://LocalHost/", "http://[::1]/",
        "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://10.0.0.1/", "http://[fd00::1]/",
        "http://169.254.169.254/latest/meta-data/", "http://100.100.100.200/",
        "http://2130706433/", "http://0x7f000001/", "http://127.1/",  # legacy IPv4 spellings
    ],
)
def test_saving_a_url_to_a_refused_address_is_refused_with_the_host_named(url):
    message = egress.refusal(url, allow_private=False)

    assert message is not None and "Pulse does not send requests there" in message
    assert ("private, local or reserved" in message) or ("cloud metadata" in message)


def test_public_and_unresolvable_urls_pass_at_save_and_a_url_needs_a_host():
    assert egress.refusal(f"https://{PUBLIC_STAND_IN}/hook", allow_private=False) is None
    assert egress.refusal("https://no-such-host.invalid/v1", allow_private=False) is None  # fails at connect
    assert egress.refusal("http:///v1", allow_private=False) == "The URL has no host."
    assert egress.refusal("http://[::1/v1", allow_private=False) is None  # URL validators report it, not a 500


def test_the_save_time_check_also_hides_the_resolved_address(monkeypatch):
    with rebinding_dns(monkeypatch, "redis.default.svc.cluster.local", ["10.0.3.7"]):
        message = egress.refusal("http://redis.default.svc.cluster.local:6379/", allow_private=False)

    assert message == (
        "redis.default.svc.cluster.local resolves to a private, local or reserved address; "
        "Pulse does not send requests there."
    )


@pytest.fixture
def slow_dns(monkeypatch):
    """A name whose DNS server answers (127.0.0.1) only when the test releases it, or after
    5 s: a tenant's own slow resolver."""
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if (host.decode() if isinstance(host, bytes) else host) != "slow.attacker.example":
            return real(host, port, *args, **kwargs)
        release.wait(5)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    release.set()


def test_a_slow_dns_answer_does_not_hold_a_save_and_passes_like_an_unresolvable_name(slow_dns, monkeypatch):
    monkeypatch.setattr(egress, "SAVE_RESOLVE_TIMEOUT_S", 0.2)
    started = time.monotonic()

    assert egress.refusal("http://slow.attacker.example/v1", allow_private=False) is None  # checked at connect
    assert time.monotonic() - started < 2


def test_a_slow_dns_answer_counts_against_the_sync_clients_connect_timeout(slow_dns):
    started = time.monotonic()
    with pytest.raises(httpx.ConnectTimeout, match="slow.attacker.example"):
        with egress.guarded_client(allow_private=False, timeout=0.2) as client:
            client.get("http://slow.attacker.example/")

    assert time.monotonic() - started < 2


def test_lookups_queued_behind_slow_ones_keep_their_deadline(slow_dns, monkeypatch):
    """More slow names than resolver threads: every caller still gets its answer (None) in time."""
    monkeypatch.setattr(egress, "SAVE_RESOLVE_TIMEOUT_S", 0.2)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as callers:
        answers = list(callers.map(
            lambda _: egress.refusal("http://slow.attacker.example/", allow_private=False), range(12)
        ))

    assert answers == [None] * 12
    assert time.monotonic() - started < 2


# ---------------------------------------------------------------------------------------------
# At connect time, in every client
# ---------------------------------------------------------------------------------------------
def get_sync(url: str, *, allow_private: bool, **options: object) -> httpx.Response:
    with egress.guarded_client(allow_private=allow_private, timeout=5, **options) as client:
        return client.get(url)


def get_async(url: str, *, allow_private: bool, **options: object) -> httpx.Response:
    async def run() -> httpx.Response:
        async with egress.guarded_async_client(allow_private=allow_private, timeout=5, **options) as client:
            return await client.get(url)

    return asyncio.run(run())


def get_aiohttp(url: str, *, allow_private: bool, follow_redirects: bool = False) -> httpx.Response:
    async def run() -> httpx.Response:
        connector = egress.guarded_connector(allow_private=allow_private)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(url, allow_redirects=follow_redirects) as response:
                return httpx.Response(response.status, content=await response.read())

    return asyncio.run(run())


CLIENTS = {"httpx sync": get_sync, "httpx async": get_async, "aiohttp": get_aiohttp}


@pytest.fixture
def internal():
    with InternalService() as service:
        yield service


@pytest.mark.parametrize("get", CLIENTS.values(), ids=CLIENTS.keys())
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_every_client_refuses_a_local_service_and_sends_it_nothing(internal, get, host):
    with pytest.raises(egress.EgressRefused, match="private, local or reserved"):
        get(internal.url("/latest/meta-data/", host=host), allow_private=False)

    assert internal.hits == []


@pytest.mark.parametrize("get", CLIENTS.values(), ids=CLIENTS.keys())
def test_every_client_reaches_it_when_private_addresses_are_allowed(internal, get):
    response = get(internal.url("/ok", host="localhost"), allow_private=True)

    assert response.status_code == 200 and INTERNAL_SECRET in response.text
    assert internal.hits == ["GET /ok"]


@pytest.mark.parametrize("get", CLIENTS.values(), ids=CLIENTS.keys())
def test_dns_rebinding_is_refused_at_connect_time(internal, get, monkeypatch):
    """The name answers a public address to the check at save time, then 127.0.0.1 to the
    connection: the connection is refused, and the local service never sees a request."""
    with rebinding_dns(monkeypatch, "rebind.attacker.example", [PUBLIC_STAND_IN, "127.0.0.1"]) as lookups:
        url = internal.url("/secret", host="rebind.attacker.example")
        assert egress.refusal(url, allow_private=False) is None  # the check before the request is fooled

        with pytest.raises(egress.EgressRefused) as refused:
            get(url, allow_private=False)

    assert lookups == [PUBLIC_STAND_IN, "127.0.0.1"]  # the connection made its own lookup
    assert str(refused.value).startswith("rebind.attacker.example resolves to a private, local or reserved")
    assert "127.0.0.1" not in str(refused.value)
    assert internal.hits == []


@pytest.mark.parametrize("get", CLIENTS.values(), ids=CLIENTS.keys())
def test_the_rebinding_stub_does_reach_the_service_when_allowed(internal, get, monkeypatch):
    """The stub above really routes to the local service: only the guard kept it out."""
    with rebinding_dns(monkeypatch, "rebind.attacker.example", [PUBLIC_STAND_IN, "127.0.0.1"]):
        egress.refusal("http://rebind.attacker.example/", allow_private=False)
        response = get(internal.url("/secret", host="rebind.attacker.example"), allow_private=True)

    assert INTERNAL_SECRET in response.text and internal.hits == ["GET /secret"]


@pytest.fixture
def public_redirector(monkeypatch):
    """A server on 127.0.0.1 that plays a public host (the policy treats 127.0.0.1 as public
    here, and only that address), redirecting to an internal service on 127.0.0.2."""
    policy = egress.address_refusal

    def treating_127_0_0_1_as_public(ip, *, allow_private):
        return None if str(ip) == "127.0.0.1" else policy(ip, allow_private=allow_private)

    monkeypatch.setattr(egress, "address_refusal", treating_127_0_0_1_as_public)
    with InternalService("127.0.0.2") as inside:
        with InternalService("127.0.0.1", redirect_to=inside.url("/latest/meta-data/")) as outside:
            yield outside, inside


@pytest.mark.parametrize("get", CLIENTS.values(), ids=CLIENTS.keys())
def test_a_redirect_to_a_local_address_is_refused(public_redirector, get):
    outside, inside = public_redirector

    with pytest.raises(egress.EgressRefused, match=r"127\.0\.0\.2 is a private, local or reserved address"):
        get(outside.url("/hook"), allow_private=False, follow_redirects=True)

    assert outside.hits == ["GET /hook"] and inside.hits == []


def test_a_guarded_client_takes_no_transport_or_proxy_of_its_own():
    for option in ("transport", "mounts", "proxy"):
        with pytest.raises(TypeError):
            egress.guarded_client(allow_private=False, **{option: None})


def test_a_refusal_survives_pickling_with_its_details():
    original = egress.EgressRefused("db.internal", "10.0.0.5", "a private, local or reserved address")
    refused = pickle.loads(pickle.dumps(original))  # noqa: S301 (our own bytes)

    assert (refused.host, refused.address) == ("db.internal", "10.0.0.5")
    assert str(refused) == "db.internal resolves to a private, local or reserved address; Pulse does not send requests there."


def certificate_for(name: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for the DNS name `name` only (no IP address in it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


@pytest.mark.parametrize("get", [get_sync, get_async], ids=["httpx sync", "httpx async"])
def test_tls_still_verifies_the_host_name_though_the_connection_goes_to_the_checked_ip(get, tmp_path, monkeypatch):
    """The backend connects to an IP address; SNI and the certificate check must still use the
    name (httpcore takes server_hostname from the request's origin), or every HTTPS call fails."""
    cert, key = certificate_for("models.egress.test", tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    seen_names: list[str | None] = []
    server_tls.sni_callback = lambda connection, name, context: seen_names.append(name)
    client_tls = ssl.create_default_context(cafile=str(cert))

    with InternalService(tls=server_tls) as service, rebinding_dns(monkeypatch, "models.egress.test", ["127.0.0.1"]):
        response = get(service.url("/v1/models", host="models.egress.test"), allow_private=True, verify=client_tls)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # the check is real
            get(service.url("/v1/models"), allow_private=True, verify=client_tls)

    assert response.status_code == 200 and service.hits == ["GET /v1/models"]
    assert seen_names[0] == "models.egress.test"


def test_production_refuses_private_addresses_unless_the_operator_says_otherwise():
    show = "import django; django.setup(); from django.conf import settings; print(settings.TENANT_EGRESS_ALLOW_PRIVATE)"
    default = run_python(show, production_env())
    opted_in = run_python(show, production_env(TENANT_EGRESS_ALLOW_PRIVATE="true"))

    assert default.stdout.strip() == "False", default.stderr
    assert opted_in.stdout.strip() == "True", opted_in.stderr


def test_a_forked_worker_resolves_with_its_own_threads():
    """Celery's prefork workers and gunicorn's are forks: the parent's resolver threads do not
    exist there, and a pool that counted them as idle would time out every lookup."""
    egress.resolve("localhost", None, 2)  # the parent's pool now has a thread, idle
    context = multiprocessing.get_context("fork")
    answers = context.Queue()

    def child() -> None:
        try:
            answers.put(sorted(egress.resolve("localhost", None, 2)))
        except Exception as error:  # noqa: BLE001 (reported to the parent)
            answers.put(repr(error))

    worker = context.Process(target=child)
    worker.start()
    answer = answers.get(timeout=10)
    worker.join(10)

    assert isinstance(answer, list) and ("127.0.0.1" in answer or "::1" in answer), answer
