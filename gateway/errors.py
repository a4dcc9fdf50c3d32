"""The gateway's errors, in the shape the caller's SDK understands.

Under `/v1/` every error is OpenAI's `{"error": {"message", "type", "param", "code"}}` with the
status codes the OpenAI SDK maps to its exceptions (400 BadRequestError, 401 AuthenticationError,
403 PermissionDeniedError, 404 NotFoundError, 413, 429 RateLimitError, 5xx InternalServerError);
`/v1/messages` answers in Anthropic's shape `{"type": "error", "error": {"type", "message"}}`,
which the Anthropic SDK maps the same way by status.

Code raises `GatewayError`; the app renders it for the endpoint's flavor (`render`). Upstream
errors are not GatewayErrors: they are passed through as the upstream sent them (proxy.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

OPENAI = "openai"
ANTHROPIC = "anthropic"

# OpenAI error type -> Anthropic error type, by what the caller should do about it.
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}


class GatewayError(Exception):
    """An error answered by the gateway itself (not passed through from an upstream)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 (OpenAI's field name)
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = dict(headers or {})

    def openai_body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def anthropic_body(self) -> dict:
        kind = _ANTHROPIC_TYPES.get(self.status) or ("invalid_request_error" if self.status < 500 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}}

    def body(self, flavor: str) -> bytes:
        return orjson.dumps(self.anthropic_body() if flavor == ANTHROPIC else self.openai_body())


# -- the errors the gateway answers, one constructor each -----------------------------------------


def invalid_api_key(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")


def insufficient_scope(message: str) -> GatewayError:
    return GatewayError(403, message, code="insufficient_scope")


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model `{model}` does not exist or you do not have access to it: this project has no route "
        "by that name (GET /v1/models lists the ones it has).",
        code="model_not_found", param="model",
    )


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def not_found(path: str) -> GatewayError:
    return GatewayError(404, f"Unknown endpoint: {path}. The gateway serves POST /v1/chat/completions, "
                        "POST /v1/embeddings, POST /v1/messages and GET /v1/models.", code="unknown_url")


def method_not_allowed(method: str, path: str, allowed: list[str]) -> GatewayError:
    return GatewayError(405, f"{method} is not allowed on {path}; use {', '.join(allowed)}.",
                        code="method_not_allowed", headers={"allow": ", ".join(allowed)})


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")


def rate_limited(message: str, retry_after_s: float | None, headers: Mapping[str, str]) -> GatewayError:
    extra = dict(headers)
    if retry_after_s is not None:
        extra["retry-after"] = str(max(1, int(retry_after_s + 0.999)))
    return GatewayError(429, message, type="requests", code="rate_limit_exceeded", headers=extra)


def budget_exceeded(message: str, retry_after_s: float | None, headers: Mapping[str, str]) -> GatewayError:
    extra = dict(headers)
    if retry_after_s is not None:
        extra["retry-after"] = str(max(1, int(retry_after_s + 0.999)))
    return GatewayError(429, message, type="insufficient_quota", code="budget_exceeded", headers=extra)


def no_upstream_answered(message: str, *, timeout: bool = False) -> GatewayError:
    if timeout:
        return GatewayError(504, message, type="server_error", code="upstream_timeout")
    return GatewayError(502, message, type="server_error", code="upstream_unavailable")


def internal_error() -> GatewayError:
    return GatewayError(500, "The gateway failed to handle this request; it has been logged.",
                        type="server_error", code="internal_error")
