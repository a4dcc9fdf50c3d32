"""Limits and hard-budget reservations (part B2 owns this module).

Only `mark_ingested`'s signature lives here on the recording branch, so the consumer
(gateway/consumer.py) can call it; B2's module replaces this file at merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def mark_ingested(charges: Sequence[tuple[str, Mapping[int, int]]]) -> None:
    """Called by the consumer after each committed batch, with (request_id, budget_charges) for
    every record of the batch — newly inserted and duplicates alike — so that gateway spend
    settled in Redis but not yet in the database moves from each budget's "pending" counter
    into its database baseline. Idempotent per request id: a record delivered twice (its
    consumer died after the commit) is moved once."""
    return None
