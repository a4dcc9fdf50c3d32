"""The ASGI entry point: `/v1/…` goes to the gateway (a Starlette app without Django's middleware:
no sessions, CSRF or messages on the hot path), everything else to Django. Lifespan events go to
the gateway, which opens and closes its upstream connection pools and Redis clients there
(Django's ASGI handler has no lifespan of its own).

    uvicorn config.asgi:application --port 8001      # the gateway process (Procfile.dev)
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()  # sets Django up before the gateway imports models

from gateway.asgi import application as gateway_application  # noqa: E402


def is_gateway_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


async def application(scope, receive, send) -> None:
    kind = scope["type"]
    if kind == "lifespan" or (kind == "http" and is_gateway_path(scope["path"])):
        await gateway_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)
