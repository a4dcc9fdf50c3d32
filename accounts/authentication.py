"""API token authentication: `Authorization: Bearer pk_live_…`."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiToken


class TokenUser(AnonymousUser):
    """`request.user` for token requests: not a person, only the token's own rights."""

    def __init__(self, token: ApiToken) -> None:
        self.token = token

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"API token {self.token.masked}"


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TokenUser, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("The Authorization header has no token after 'Bearer'.")
        # Tokens are printable ASCII; anything else (a NUL would fail the prefix lookup in
        # PostgreSQL with a 500) cannot be one.
        token = ApiToken.authenticate(raw) if raw.isascii() and raw.isprintable() else None
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid API token.", code="invalid_token")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API token has been revoked.", code="token_revoked")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed(
                f"This API token expired at {token.expires_at.isoformat()}.", code="token_expired"
            )
        token.record_use()
        return TokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing or bad.
        return f'{self.keyword} realm="api"'


class ApiTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents token authentication in the OpenAPI schema (drf-spectacular finds it by import)."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "pk_live_…",
            "description": "A project API token from the “API tokens” page.",
        }
