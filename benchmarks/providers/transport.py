"""The HTTP client benchmark runs measure through: httpx's API on aiohttp's connection handling.

Why not httpx's own transport: every streamed event costs 40-100 µs of Python in
httpx/httpcore/h11, so with 16 streams in one process the 16th stream's chunks wait ~1 ms to be
read, and that wait lands in its TTFT (bench/benchmark_accuracy.py: mean TTFT error 1.5 ms, p99
3.2 ms at 16 streams with httpcore; 0.24 ms / 0.74 ms with this transport). The adapters still
speak httpx (`client.stream(...)`, httpx exceptions, httpx-sse), so nothing else changes.

httpx-aiohttp translates aiohttp's exceptions with a table in which the broad
`ClientConnectionError` (the parent of "connection refused" and of "server disconnected
mid-response") becomes `httpx.ConnectTimeout`. A benchmark must tell those apart (a refused
connection, a connect timeout and a reset mid-stream are three different error kinds), so
`PreciseAiohttpTransport` re-translates from the original aiohttp error, most specific first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from lib import egress

# Most specific first: several of these are subclasses of the later ones.
_TRANSLATIONS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # sock_connect / connect timeouts
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),  # no bytes for sock_read seconds
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # closed mid-response
    (aiohttp.ClientPayloadError, httpx.ReadError),  # truncated body / chunked encoding
    (aiohttp.ClientOSError, httpx.ReadError),  # connection reset by peer
    (aiohttp.ClientConnectionError, httpx.ReadError),
)


def translate(error: BaseException) -> httpx.TransportError | None:
    """The httpx error a benchmark should see for an aiohttp error, or None if it is not one."""
    for aiohttp_type, httpx_type in _TRANSLATIONS:
        if isinstance(error, aiohttp_type):
            return httpx_type(str(error) or type(error).__name__)
    return None


@contextmanager
def _precise_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as error:
        precise = translate(error.__cause__) if error.__cause__ is not None else None
        if precise is None:
            raise
        raise precise from error.__cause__


class _PreciseStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _precise_errors():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _precise_errors():
            await self._inner.aclose()


class PreciseAiohttpTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _precise_errors():
            response = await super().handle_async_request(request)
        response.stream = _PreciseStream(response.stream)  # type: ignore[arg-type]
        return response


def benchmark_client(width: int, *, allow_private: bool) -> httpx.AsyncClient:
    """A client for one run: `width` connections, each used for exactly one request, each to an
    address lib/egress.py allows (`allow_private`: operators' providers and organizations
    allowed in the admin may reach private networks; see lib/egress.py).

    `force_close` instead of keep-alive, deliberately: every target then pays exactly one fresh
    connection setup inside its TTFT, also in the later waves of a run wider than the runner's
    concurrency cap (a reused connection would make those look faster than the first wave's for
    no reason of the provider's own). Must be created inside the event loop that uses it."""
    connector = egress.guarded_connector(allow_private=allow_private, limit=width, force_close=True)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    return httpx.AsyncClient(transport=PreciseAiohttpTransport(client=session), http2=False)
