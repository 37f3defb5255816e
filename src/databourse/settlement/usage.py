"""Usage records: what the delivery paths measured, and what metered billing reads.

A delivery path (the API gateway, downloads, sharing, compute) reports each use of a
contract as a ``UsageEvent`` to a ``UsageSink``. Every event carries its source and a key
unique within that source, so a batch delivered twice is counted once. Only events whose
outcome is ``ok`` are billed; refusals and upstream errors are kept for the record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from databourse.db import new_id, utcnow
from databourse.settlement.errors import InvalidUsage
from databourse.settlement.models import UsageRecord
from databourse.uow import SYSTEM, Actor, UnitOfWork

#: What can be metered: API calls, rows delivered, gigabytes and bytes transferred, and a
#: privacy budget spent (ε in millionths).
METRICS = ("call", "row", "gb", "byte", "epsilon_micro")
OUTCOMES = ("ok", "refused", "upstream_error")
BILLED = "ok"
MAX_BATCH_TOTAL = 2**53 - 1  # exact in the JSON of the ledger entry
MAX_QUANTITY = 2**62  # well inside a signed 64-bit column, sums included
BATCH_ROWS = 500  # rows per INSERT statement


@dataclass(frozen=True)
class UsageEvent:
    contract_id: str
    metric: str  # one of METRICS
    quantity: int  # >= 0
    at: datetime  # aware: when the use happened
    source: str  # the reporting path, e.g. "gateway:gw-1"
    key: str  # unique within the source (a request id, a file transfer id, …)
    outcome: str = "ok"  # one of OUTCOMES; only "ok" is billed


class UsageSink(Protocol):
    def record(self, events: Sequence[UsageEvent]) -> int:
        """Store the events; the number that were new (duplicates are skipped)."""
        ...


def _text(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.strip() == value


def check(events: Sequence[UsageEvent]) -> None:
    """Raise ``InvalidUsage`` naming the first bad event's index and field."""
    for i, e in enumerate(events):
        problem: tuple[str, str] | None = None
        if not _text(e.contract_id, 40):
            problem = ("contract_id", "a contract id of 1-40 characters")
        elif e.metric not in METRICS:
            problem = ("metric", f"one of {', '.join(METRICS)}")
        elif (
            isinstance(e.quantity, bool)
            or not isinstance(e.quantity, int)
            or not 0 <= e.quantity <= MAX_QUANTITY
        ):
            problem = ("quantity", f"an integer from 0 to {MAX_QUANTITY}")
        elif not isinstance(e.at, datetime) or e.at.tzinfo is None:
            problem = ("at", "a time with its time zone")
        elif not _text(e.source, 60):
            problem = ("source", "1-60 characters without surrounding spaces")
        elif not _text(e.key, 120):
            problem = ("key", "1-120 characters without surrounding spaces")
        elif e.outcome not in OUTCOMES:
            problem = ("outcome", f"one of {', '.join(OUTCOMES)}")
        if problem is not None:
            field, expected = problem
            raise InvalidUsage(f"usage event {i}: {field} must be {expected}", index=i, field=field)
    totals: dict[tuple[str, str], int] = {}
    for i, e in enumerate(events):
        key = (e.contract_id, e.metric)
        totals[key] = totals.get(key, 0) + e.quantity
        if totals[key] > MAX_BATCH_TOTAL:  # the batch's totals go into its ledger entry
            raise InvalidUsage(
                f"usage event {i}: a batch may report at most {MAX_BATCH_TOTAL} of a metric "
                "for one contract; split it",
                index=i,
                field="quantity",
            )


def ingest(uow: UnitOfWork, events: Sequence[UsageEvent]) -> int:
    """Store the events not seen before (by source and key); the number newly stored.

    The whole batch is checked first (nothing is stored if one event is invalid). When
    anything new was stored, one ``usage.recorded`` entry goes on the ledger with the
    totals of the new ``ok`` events per contract and metric.
    """
    check(events)
    if not events:
        return 0
    now = utcnow()
    dialect = uow.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stored: set[tuple[str, str]] = set()
    for start in range(0, len(events), BATCH_ROWS):
        rows = [
            {
                "contract_id": e.contract_id,
                "metric": e.metric,
                "quantity": e.quantity,
                "at": e.at,
                "source": e.source,
                "key": e.key,
                "outcome": e.outcome,
                "received_at": now,
            }
            for e in events[start : start + BATCH_ROWS]
        ]
        result = uow.session.execute(
            insert(UsageRecord)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(UsageRecord.source, UsageRecord.key)
        )
        stored.update((s, k) for s, k in result.all())
    if not stored:
        return 0
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen: set[tuple[str, str]] = set()
    for e in events:
        if (e.source, e.key) in stored and (e.source, e.key) not in seen:
            seen.add((e.source, e.key))
            if e.outcome == BILLED:
                totals[e.contract_id][e.metric] += e.quantity
    body: dict[str, Any] = {
        "sources": sorted({s for s, _ in stored}),
        "count": len(stored),
        "totals": {c: dict(sorted(m.items())) for c, m in sorted(totals.items())},
    }
    uow.record("usage.recorded", new_id("usg"), body)
    return len(stored)


class DatabaseUsageSink:
    """A ``UsageSink`` writing to the exchange's database: one unit of work per batch."""

    def __init__(self, sessions: sessionmaker[Session], actor: Actor = SYSTEM) -> None:
        self.sessions = sessions
        self.actor = actor

    def record(self, events: Sequence[UsageEvent]) -> int:
        with UnitOfWork(self.sessions, self.actor) as uow:
            count = ingest(uow, events)
            uow.commit()
        return count


def units_in(
    session: Session, contract_id: str, metric: str, start: datetime, end: datetime
) -> int:
    """The billable quantity of ``metric`` used under the contract in ``[start, end)``."""
    total = session.scalar(
        select(func.coalesce(func.sum(UsageRecord.quantity), 0)).where(
            UsageRecord.contract_id == contract_id,
            UsageRecord.metric == metric,
            UsageRecord.outcome == BILLED,
            UsageRecord.at >= start,
            UsageRecord.at < end,
        )
    )
    return int(total or 0)


def usage_summary(
    session: Session, contract_id: str, start: datetime, end: datetime
) -> dict[str, dict[str, int]]:
    """Per metric used in ``[start, end)``: ``calls`` (billable events), ``quantity``
    (their total), ``refused`` and ``upstream_errors`` (events not billed)."""
    rows = session.execute(
        select(
            UsageRecord.metric,
            UsageRecord.outcome,
            func.count(),
            func.coalesce(func.sum(UsageRecord.quantity), 0),
        )
        .where(
            UsageRecord.contract_id == contract_id,
            UsageRecord.at >= start,
            UsageRecord.at < end,
        )
        .group_by(UsageRecord.metric, UsageRecord.outcome)
    ).all()
    out: dict[str, dict[str, int]] = {}
    for metric, outcome, count, quantity in rows:
        m = out.setdefault(metric, {"calls": 0, "quantity": 0, "refused": 0, "upstream_errors": 0})
        if outcome == BILLED:
            m["calls"] += int(count)
            m["quantity"] += int(quantity)
        elif outcome == "refused":
            m["refused"] += int(count)
        else:
            m["upstream_errors"] += int(count)
    return dict(sorted(out.items()))


def total(session: Session, contract_id: str, metric: str) -> int:
    """The billable quantity of ``metric`` used under the contract so far."""
    value = session.scalar(
        select(func.coalesce(func.sum(UsageRecord.quantity), 0)).where(
            UsageRecord.contract_id == contract_id,
            UsageRecord.metric == metric,
            UsageRecord.outcome == BILLED,
        )
    )
    return int(value or 0)
