"""Who is calling: a project API token with the `gateway` scope, from the token snapshot.

The token is read from `Authorization: Bearer pk_live_…` (what the OpenAI SDK sends) or from
`x-api-key` (what the Anthropic SDK sends; accepted on every endpoint). The check is the one
`accounts.models.ApiToken.authenticate` makes (the SHA-256 of the whole token against the
stored hash, by its lookup prefix), on a snapshot (gateway/state.py) instead of a query.

Organization-wide tokens are refused with a 403 that says to use a project token: a gateway
call must know its project's routes, limits and budgets, and picking a project by a header would
let one leaked token spend any project's budget.

`last_used_at` still advances, at most once a minute per token across all gateway processes (a
Redis flag), written after the response and never on the hot path.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, hash_secret

from . import redis as gateway_redis
from .errors import GatewayError, insufficient_scope, invalid_api_key
from .state import StateStore, TokenState

GATEWAY_SCOPE = ApiToken.Scope.GATEWAY.value
PREFIX_LENGTH = len(ApiToken.TYPE_PREFIX) + ApiToken.LOOKUP_LENGTH
MIN_TOKEN_LENGTH = PREFIX_LENGTH + 20  # as ApiToken.authenticate
LAST_USED_RESOLUTION_S = ApiToken.LAST_USED_RESOLUTION.total_seconds()


def raw_token(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _looks_like_a_token(raw: str) -> bool:
    return raw.startswith(ApiToken.TYPE_PREFIX) and len(raw) >= MIN_TOKEN_LENGTH and raw.isascii() and raw.isprintable()


async def authenticate(store: StateStore, r, headers: Mapping[str, str], *, now: float | None = None) -> TokenState:
    """The caller's token, or a GatewayError: 401 (missing, unknown, revoked, expired) or 403
    (no gateway scope, or not bound to a project)."""
    raw = raw_token(headers)
    if raw is None:
        raise invalid_api_key(
            "You didn't provide an API key. Send a Pulse project token with the gateway scope as "
            "`Authorization: Bearer pk_live_…` (or `x-api-key: pk_live_…`)."
        )
    if not _looks_like_a_token(raw):
        raise invalid_api_key("Invalid API token: Pulse tokens start with pk_live_.")
    token = await store.token(r, raw[:PREFIX_LENGTH])
    if token is None or not hmac.compare_digest(token.secret_hash, hash_secret(raw)):
        raise invalid_api_key("Invalid API token.")
    return check(token, time.time() if now is None else now)


def check(token: TokenState, now: float) -> TokenState:
    if token.revoked:
        raise invalid_api_key("This API token has been revoked.")
    if token.expired(now):
        expired = datetime.fromtimestamp(token.expires_at, UTC).isoformat()
        raise invalid_api_key(f"This API token expired at {expired}.")
    if not token.has_scope(GATEWAY_SCOPE):
        raise insufficient_scope(
            "This API token does not have the gateway scope; create a project token with the "
            "gateway scope on the project's API tokens page."
        )
    if token.project_id is None:
        raise GatewayError(
            403, "This is an organization-wide token; the gateway needs a project token (with the "
            "gateway scope), so that calls use that project's routes, limits and budgets.",
            code="project_token_required",
        )
    return token


class LastUsed:
    """Advances ApiToken.last_used_at at most once per LAST_USED_RESOLUTION per token: a local
    clock per process, then a Redis flag across processes, then one conditional UPDATE."""

    def __init__(self) -> None:
        self._seen: dict[int, float] = {}

    def due(self, token_id: int, now: float) -> bool:
        last = self._seen.get(token_id)
        if last is not None and now - last < LAST_USED_RESOLUTION_S:
            return False
        self._seen[token_id] = now
        return True

    async def touch(self, r, token_id: int) -> None:
        if not self.due(token_id, time.monotonic()):
            return
        flag = gateway_redis.key("token-used", str(token_id))
        if await r.set(flag, 1, nx=True, ex=int(LAST_USED_RESOLUTION_S)):
            await sync_to_async(touch_token)(token_id)


def touch_token(token_id: int) -> None:
    close_old_connections()
    now = timezone.now()
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(seconds=LAST_USED_RESOLUTION_S))
    ApiToken.objects.filter(stale, pk=token_id).update(last_used_at=now)
