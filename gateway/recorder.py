"""Handing each call's record to the durable call stream (a Redis stream the consumer drains
into costs.ingestion). PLACEHOLDER on the proxy's branch: part C owns this module; this version
implements design.md's interface so the proxy's tests run end to end.

    add_to_pipeline(pipe, record)   # XADD, executed by the proxy with the budget settle
    await record(r, record)          # the same, on its own
    decode(fields)                   # an XRANGE/XREADGROUP entry back into a CallRecord
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from django.conf import settings

FIELD = b"record"


@dataclass
class CallRecord:
    project_id: int
    token_id: int | None
    event: dict  # an item for costs.ingestion.ingest() plus the gateway's fields
    bodies: dict | None  # {"request", "response", "truncated", "retention_days"} when the project stores bodies
    request_id: str  # also in event["idempotency_key"] as "gw-" + request_id
    budget_charges: dict[int, int] = field(default_factory=dict)  # what admission.settle() returned


def _fields(record: CallRecord) -> dict[bytes, bytes]:
    # Not dataclasses.asdict(): it deep-copies the event, which costs more than the XADD.
    data = {
        "project_id": record.project_id, "token_id": record.token_id, "event": record.event,
        "bodies": record.bodies, "request_id": record.request_id,
        "budget_charges": {str(budget_id): charge for budget_id, charge in record.budget_charges.items()},
    }
    return {FIELD: orjson.dumps(data)}


def add_to_pipeline(pipeline, record: CallRecord) -> None:
    pipeline.xadd(settings.GATEWAY_CALL_STREAM, _fields(record))


async def record(r, record: CallRecord) -> None:
    await r.xadd(settings.GATEWAY_CALL_STREAM, _fields(record))


def decode(fields: dict) -> CallRecord:
    data = orjson.loads(fields[FIELD])
    data["budget_charges"] = {int(budget_id): charge for budget_id, charge in data["budget_charges"].items()}
    return CallRecord(**data)
