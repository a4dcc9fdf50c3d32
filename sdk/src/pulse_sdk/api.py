"""A small synchronous client of Pulse's REST API, for the `pulse` command.

    api = PulseAPI.from_config(project=None)      # argument > PULSE_API_KEY/PULSE_BASE_URL > `pulse login`
    me = api.get("/api/v1/me")
    for budget in api.pages("/api/v1/budgets"):
        ...

Every failure is an `ApiError` whose message is one sentence a person can act on (what went
wrong, where, and what to do), so the command prints it and exits without a traceback. Reads
(and writes made idempotent by their keys) are retried on connection errors, 429 and 5xx with
the SDK's own policy (`retry.py`: full-jitter backoff, Retry-After honoured); other writes are
sent once, because a lost answer would leave the user unsure whether it happened twice.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import httpx

from . import config, retry

CLI_USER_AGENT = f"{config.USER_AGENT} pulse-cli"
API_PREFIX = "/api/v1"
NOT_LOGGED_IN = "Not logged in: run `pulse login` or set PULSE_API_KEY."


class ApiError(Exception):
    """A request that did not get the answer the command needs; `str()` is the one line to show."""

    def __init__(self, message: str, *, status: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.data = data


class NotLoggedIn(ApiError):
    """No token in the arguments, the environment or the config file."""


class TokenRejected(ApiError):
    """401: the token is revoked, expired or wrong."""


class Forbidden(ApiError):
    """403: the token lacks a scope, or its owner the role."""


class NotFound(ApiError):
    """404: no such object among those the token can see."""


class BadRequest(ApiError):
    """400: `errors` holds the server's messages per field."""

    def __init__(self, message: str, *, status: int | None = 400, data: Any = None) -> None:
        super().__init__(message, status=status, data=data)
        self.errors: dict[str, list[str]] = field_errors(data)


class Conflict(ApiError):
    """409: e.g. a benchmark run of that target is already going (`data` says which)."""


class ServerError(ApiError):
    """5xx, or 429 still after the retries."""


class Unreachable(ApiError):
    """No answer at all: connection refused, a name that does not resolve, a timeout."""


class NotJSON(ApiError):
    """An answer, but not Pulse's: the base URL is probably not a Pulse server."""


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def server_time(self) -> datetime | None:
        """The server's clock (its `Date` header, to the second): where a follower starts from,
        rather than this machine's clock, which may be minutes off."""
        value = self.headers.get("date")
        if not value:
            return None
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def field_errors(data: Any) -> dict[str, list[str]]:
    """DRF's 400 body as {field: [message, …]} (nested objects flattened to "a.b")."""
    if not isinstance(data, dict):
        return {}
    errors: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            errors.setdefault(prefix or "detail", []).extend(value)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}[{index}]", inner)
        elif value is not None:
            errors.setdefault(prefix or "detail", []).append(str(value))

    walk("", data)
    return errors


def describe_errors(errors: Mapping[str, list[str]]) -> str:
    parts = []
    for name, messages in errors.items():
        text = " ".join(messages)
        parts.append(text if name in ("detail", "non_field_errors") else f"{name}: {text}")
    return "; ".join(parts)


def bad_request(data: Any) -> BadRequest:
    errors = field_errors(data)
    text = describe_errors(errors) or "the server refused the request"
    if "project" in errors:
        # An organization-wide token on a project's endpoint: say how the CLI names one.
        text = f"{text.rstrip('.')} (an organization-wide token: pass --project UUID or set PULSE_PROJECT)."
    return BadRequest(f"Refused: {text}", data=data)


def _detail(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return data["detail"]
    return ""


def _unreachable(base_url: str, error: httpx.TransportError, timeout: float) -> Unreachable:
    """Says which of the usual reasons it was, found in the exception's chain."""
    cause: BaseException | None = error
    reason = str(error) or type(error).__name__
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            reason = "its host name does not resolve (check the URL, or your DNS)"
            break
        if isinstance(cause, ConnectionRefusedError):
            reason = "the connection was refused (is the server running on that port?)"
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, httpx.TimeoutException):
        reason = f"no answer within {timeout:g} s"
    return Unreachable(
        f"Cannot reach Pulse at {base_url}: {reason}. Set the server with --base-url or PULSE_BASE_URL."
    )


class PulseAPI:
    """One server, one token. Not thread-safe (one httpx.Client); the CLI uses one per command."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str = config.DEFAULT_BASE_URL,
        *,
        project: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        api_key_from: str = "argument",
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str, float], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.base_url = config.normalize_base_url(base_url)
        self.project = project
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.api_key_from = api_key_from
        self._sleep = sleep
        self.on_retry = on_retry  # told (why, seconds to wait) before each retry, e.g. to show it
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"User-Agent": CLI_USER_AGENT, "Accept": "application/json"},
            transport=transport,
        )

    @classmethod
    def from_config(
        cls, api_key: str | None = None, base_url: str | None = None, *, project: str | None = None, **options: Any,
    ) -> PulseAPI:
        credentials = config.resolve(api_key, base_url)
        return cls(
            credentials.api_key, credentials.base_url, project=project, api_key_from=credentials.api_key_from, **options,
        )

    def __enter__(self) -> PulseAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ requests

    def project_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`params` plus `?project=` when one was chosen (an organization-wide token needs it on
        project-level endpoints; a project-bound token already has its own)."""
        merged = dict(params or {})
        if self.project and "project" not in merged:
            merged["project"] = self.project
        return merged

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).data

    def post(self, path: str, body: Any = None, *, params: Mapping[str, Any] | None = None, idempotent: bool = False) -> Any:
        return self.request("POST", path, params=params, json=body, idempotent=idempotent).data

    def pages(self, path: str, params: Mapping[str, Any] | None = None, *, limit: int | None = None) -> Iterator[dict]:
        """The items of a paginated list, page after page (at most `limit` of them)."""
        page, given = 1, 0
        while True:
            data = self.get(path, {**(params or {}), "page": page})
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise NotJSON(f"Pulse at {self.base_url} answered {path} without a list of results.")
            for item in data["results"]:
                if limit is not None and given >= limit:
                    return
                given += 1
                yield item
            if not data.get("next"):
                return
            page += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        accept: tuple[int, ...] = (),
    ) -> Answer:
        """Sends, retrying when that is safe; returns the answer for a 2xx or a status in
        `accept`, raises the matching ApiError otherwise."""
        if not self.api_key:
            raise NotLoggedIn(NOT_LOGGED_IN)
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS")
        url = path if path.startswith("/") else f"{API_PREFIX}/{path}"
        headers = {"Authorization": f"Bearer {self.api_key}"}
        attempt = 0
        while True:
            attempt += 1
            last_try = not idempotent or attempt >= self.max_attempts
            try:
                response = self._http.request(method, url, params=params, json=json, headers=headers)
            except retry.RETRYABLE_ERRORS as error:
                if last_try:
                    raise _unreachable(self.base_url, error, self.timeout) from None
                self._wait(str(error) or type(error).__name__, retry.delay_for(attempt, None))
                continue
            if retry.is_retryable_status(response.status_code) and not last_try:
                self._wait(f"{response.status_code} {response.reason_phrase}", retry.delay_for(attempt, response, cap=10.0))
                continue
            return self._answer(method, url, response, accept)

    def _wait(self, reason: str, seconds: float) -> None:
        if self.on_retry is not None:
            self.on_retry(reason, seconds)
        self._sleep(seconds)

    def _answer(self, method: str, url: str, response: httpx.Response, accept: tuple[int, ...]) -> Answer:
        status = response.status_code
        if status == 204:
            return Answer(status, None, response.headers)
        try:
            data = response.json()
        except ValueError:
            data = None
            if status < 500 or status in accept:  # a 5xx page from a proxy is still a server error
                kind = response.headers.get("content-type", "no content type").split(";")[0]
                raise NotJSON(
                    f"{self.base_url} answered {method} {url} with {status} {kind}, not Pulse's JSON: "
                    "is it the right server (--base-url, PULSE_BASE_URL)?",
                    status=status,
                ) from None
        if 200 <= status < 300 or status in accept:
            return Answer(status, data, response.headers)
        raise self._error(method, url, status, data, response)

    def _error(self, method: str, url: str, status: int, data: Any, response: httpx.Response) -> ApiError:
        detail = _detail(data)
        if status == 401:
            where = {"environment": " (from PULSE_API_KEY)", "config file": " (from `pulse login`)"}.get(self.api_key_from, "")
            reason = detail or "the token was not accepted"
            return TokenRejected(
                f"Token rejected by {self.base_url}{where}: {reason.rstrip('.')}. It may be revoked, "
                "expired or mistyped: run `pulse login` with a valid token.",
                status=status, data=data,
            )
        if status == 403:
            return Forbidden(f"Not allowed: {detail or 'the token may not do this'}", status=status, data=data)
        if status == 404:
            return NotFound(f"Not found: {detail or 'nothing there'} ({method} {url})", status=status, data=data)
        if status == 400:
            return bad_request(data)
        if status == 409:
            return Conflict(detail or "Conflict: the server refused it as it stands.", status=status, data=data)
        if status == 429:
            wait = retry.retry_after(response)
            hint = f"try again in {wait:.0f} s" if wait is not None else "try again later"
            return ServerError(f"Pulse at {self.base_url} is throttling requests (429): {hint}.", status=status, data=data)
        if status >= 500:
            reason = response.reason_phrase or "server error"
            return ServerError(
                f"Pulse at {self.base_url} failed with {status} {reason} ({method} {url}); try again later.",
                status=status, data=data,
            )
        return ApiError(f"{method} {url} answered {status}: {detail or describe_errors(field_errors(data))}", status=status, data=data)
