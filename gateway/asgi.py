"""The gateway's ASGI app (Starlette, mounted at /v1/ by config/asgi.py).

    POST /v1/chat/completions    OpenAI chat completions, streaming or not
    POST /v1/embeddings          OpenAI embeddings
    POST /v1/messages            Anthropic Messages, streaming or not (errors in Anthropic's shape)
    GET  /v1/models              the project's routes, as OpenAI's model list (Anthropic's with
    GET  /v1/models/{model}      an `anthropic-version` header)

No Django middleware runs here (no sessions, CSRF or messages): the hot path is gateway/proxy.py.
Unknown paths are OpenAI-shaped 404s, a wrong method a 405, and anything unexpected a logged 500
in OpenAI's shape; the app never answers HTML.

The lifespan opens the upstream connection pools and closes them and the Redis client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import redis, wire
from .auth import authenticate
from .consumer import run_in_process
from .errors import (
    ANTHROPIC,
    OPENAI,
    GatewayError,
    internal_error,
    method_not_allowed,
    model_not_found,
    not_found,
)
from .proxy import STARTED, gateway, handle, project_of, request_ids

logger = logging.getLogger(__name__)


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers=headers, media_type="application/json")


def _overhead(request: Request) -> str:
    return f"{(time.perf_counter() - request.scope.get(STARTED, time.perf_counter())) * 1000:.3f}"


def _error(request: Request, error: GatewayError, flavor: str = OPENAI) -> Response:
    headers = {**error.headers, "x-pulse-request-id": request_ids.next(), "x-pulse-cache": "BYPASS",
               "x-pulse-overhead-ms": _overhead(request)}
    return Response(error.body(flavor), error.status, headers=headers, media_type="application/json")


async def chat_completions(request: Request) -> Response:
    return await handle(request, wire.CHAT)


async def embeddings(request: Request) -> Response:
    return await handle(request, wire.EMBEDDINGS)


async def messages(request: Request) -> Response:
    return await handle(request, wire.MESSAGES)


def _openai_model(name: str, created: float) -> dict:
    return {"id": name, "object": "model", "created": int(created), "owned_by": "pulse"}


def _anthropic_model(name: str, created: float) -> dict:
    created_at = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": name, "display_name": name, "created_at": created_at}


async def models(request: Request) -> Response:
    """The routes this project's callers may use, by name (a route is the model a caller asks for)."""
    anthropic = "anthropic-version" in request.headers
    flavor = ANTHROPIC if anthropic else OPENAI
    try:
        r = gateway.redis()
        token = await authenticate(gateway.store, r, request.headers)
        project = await project_of(r, token)
        wanted = request.path_params.get("model")
        routes = sorted(project.routes.values(), key=lambda route: route.name)
        if wanted is not None:
            routes = [route for route in routes if route.name == wanted]
            if not routes:
                raise model_not_found(wanted)
    except GatewayError as error:
        return _error(request, error, flavor)
    render = _anthropic_model if anthropic else _openai_model
    items = [render(route.name, route.created_at) for route in routes]
    if wanted is not None:
        payload = items[0]
    elif anthropic:
        names = [item["id"] for item in items]
        payload = {"data": items, "has_more": False, "first_id": names[0] if names else None,
                   "last_id": names[-1] if names else None}
    else:
        payload = {"object": "list", "data": items}
    headers = {"x-pulse-request-id": request_ids.next(), "x-pulse-cache": "BYPASS",
               "x-pulse-overhead-ms": _overhead(request)}
    return _json(payload, headers=headers)


async def http_error(request: Request, exc: HTTPException) -> Response:
    flavor = ANTHROPIC if request.url.path.rstrip("/") == "/v1/messages" else OPENAI
    if exc.status_code == 405:
        allowed = [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()]
        return _error(request, method_not_allowed(request.method, request.url.path, allowed), flavor)
    if exc.status_code == 404:
        return _error(request, not_found(request.url.path), flavor)
    return _error(request, GatewayError(exc.status_code, str(exc.detail)), flavor)


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the exception (re-raised to the server) after this answer is sent.
    return _error(request, internal_error())


@asynccontextmanager
async def lifespan(app: Starlette):
    await gateway.start()
    # Without a shared Redis the call stream lives in this process's stand-in, where no
    # `gateway_consumer` process can read it: drain it here (and finish draining at shutdown).
    stop, consumer = asyncio.Event(), None
    if not redis.is_shared():
        consumer = asyncio.create_task(run_in_process(stop), name="gateway-consumer")
    try:
        yield
    finally:
        if consumer is not None:
            stop.set()
            await consumer
        await gateway.close()


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", models, methods=["GET"]),
    ],
    exception_handlers={HTTPException: http_error, Exception: server_error},
    lifespan=lifespan,
)
app.router.redirect_slashes = False  # a POST to /v1/chat/completions/ is a 404, not a redirect


async def application(scope, receive, send) -> None:
    """The app, with each request's arrival stamped first (x-pulse-overhead-ms counts from it)."""
    if scope["type"] == "http":
        scope[STARTED] = time.perf_counter()
    await app(scope, receive, send)
