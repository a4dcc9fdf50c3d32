"""The gateway's record of each call, handed to a Redis stream off the request path.

    record = CallRecord(project_id=…, token_id=…, event={…}, bodies=None, request_id=rid, budget_charges=charges)
    add_to_pipeline(pipe, record)      # XADD, in the pipeline that also settles the budget (one round trip)
    await recorder.record(r, record)   # or on its own
    decode(fields)                     # a stream entry (XRANGE/XREADGROUP) back into its CallRecord

The stream (`settings.GATEWAY_CALL_STREAM`) is the durable queue between the gateway and the
database: `gateway/consumer.py` drains it in batches into `costs.ingestion` and deletes each
record only once the event it became is committed. So:

- A record is never trimmed before it is ingested: the XADD has no MAXLEN (a capped stream
  would silently drop the oldest unconsumed calls when the consumers fall behind). The
  consumer deletes what it acknowledged, which keeps the stream as short as the backlog.
- Once XADD has returned, the call survives the gateway process: killing it (even SIGKILL)
  loses nothing already added. A record is lost only if the gateway dies between the end of
  the upstream's answer and the XADD; the proxy narrows that window by adding the record
  before it ends the response (the client sees the response complete only after its record
  is in Redis).
- Redis is then the only copy until the consumer commits, so in production it must persist
  its data: `appendonly yes` (AOF, `appendfsync everysec`: at most about a second of records
  at risk if the Redis host itself crashes). Without a shared Redis (`make run`) the stream
  lives in the in-process stand-in and is drained by the gateway process itself
  (`consumer.run_in_process`); stopping it cleanly drains it first.

Each stream entry holds one field, `record`: the CallRecord as orjson. Budget charges' keys
(budget ids) are integers in Python and strings in JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from django.conf import settings

from lib.text import storable

FIELD = "record"
_OPTIONS = orjson.OPT_NON_STR_KEYS  # budget_charges: {budget id: micro-USD}


@dataclass
class CallRecord:
    """One call through the gateway, as the consumer will ingest it.

    `event` is an item for `costs.ingestion.ingest(…, trusted=True)`: the public event fields
    plus the gateway's own (route, upstream, cache_hit, saved_usd, attempts, overhead_ms; see
    costs/ingestion.py). `bodies` ({"request", "response", "truncated", "retention_days"}) only
    when the project keeps bodies. `request_id` is the call's `x-pulse-request-id`; its event's
    idempotency key is "gw-" + request_id, so a record delivered twice is counted once.
    `budget_charges` is what `gateway.admission.settle()` returned (empty when no hard budget
    covered the call)."""

    project_id: int
    token_id: int | None
    event: dict
    bodies: dict | None
    request_id: str
    budget_charges: dict[int, int] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        return f"gw-{self.request_id}"

    def as_item(self) -> dict:
        """The ingestion item: the event, keyed by the request id, with its bodies if any."""
        item = {**self.event, "idempotency_key": self.idempotency_key}
        if self.bodies is not None:
            item["bodies"] = self.bodies
        return item

    def to_json(self) -> bytes:
        try:
            return orjson.dumps(self, option=_OPTIONS)
        except orjson.JSONEncodeError:
            # Text orjson refuses (a lone surrogate decoded from a client's body): replaced, so
            # the call is still recorded rather than lost.
            return orjson.dumps(_encodable(self.__dict__), option=_OPTIONS)

    @classmethod
    def from_json(cls, data: bytes | str) -> CallRecord:
        """Raises ValueError when `data` is not a record this module wrote."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"not JSON: {error}") from error
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        project_id, token_id, request_id = raw.get("project_id"), raw.get("token_id"), raw.get("request_id")
        event, bodies, charges = raw.get("event"), raw.get("bodies"), raw.get("budget_charges") or {}
        if not _is_id(project_id):
            raise ValueError("project_id must be an integer")
        if token_id is not None and not _is_id(token_id):
            raise ValueError("token_id must be an integer or null")
        if not isinstance(request_id, str) or not request_id:
            raise ValueError("request_id must be a non-empty string")
        if not isinstance(event, dict):
            raise ValueError("event must be an object")
        if bodies is not None and not isinstance(bodies, dict):
            raise ValueError("bodies must be an object or null")
        if not isinstance(charges, dict):
            raise ValueError("budget_charges must be an object")
        try:
            budget_charges = {int(budget): int(amount) for budget, amount in charges.items()}
        except (TypeError, ValueError) as error:
            raise ValueError("budget_charges must map budget ids to micro-USD") from error
        return cls(project_id, token_id, event, bodies, request_id, budget_charges)

    @classmethod
    def from_entry(cls, fields: Mapping[bytes | str, bytes | str]) -> CallRecord:
        data = fields.get(FIELD.encode()) if FIELD.encode() in fields else fields.get(FIELD)
        if data is None:
            raise ValueError(f"no {FIELD!r} field in the stream entry")
        return cls.from_json(data)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _encodable(value: object) -> object:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {key if not isinstance(key, str) else _encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value


def add_to_pipeline(pipeline, record: CallRecord) -> None:  # noqa: ANN001 (redis' sync or asyncio pipeline)
    """XADD `record` to the call stream as part of `pipeline` (the caller executes it)."""
    pipeline.xadd(settings.GATEWAY_CALL_STREAM, {FIELD: record.to_json()})


async def record(r, record: CallRecord) -> None:  # noqa: ANN001 (redis.asyncio.Redis)
    """XADD `record` on its own; returns once Redis has it."""
    await r.xadd(settings.GATEWAY_CALL_STREAM, {FIELD: record.to_json()})


def decode(fields: Mapping[bytes | str, bytes | str]) -> CallRecord:
    """A stream entry's fields back into the CallRecord (ValueError when it is not one)."""
    return CallRecord.from_entry(fields)
