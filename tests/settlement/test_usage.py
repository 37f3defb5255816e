"""Usage records: validated, stored once per (source, key), summed for billing."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from databourse.ledger.models import LedgerEntry
from databourse.settlement import usage
from databourse.settlement.errors import InvalidUsage
from databourse.settlement.models import UsageRecord
from databourse.settlement.usage import DatabaseUsageSink, UsageEvent, UsageSink
from databourse.uow import UnitOfWork

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def events(
    contract: str, source: str, n: int, metric: str = "call", **over: str
) -> list[UsageEvent]:
    return [
        UsageEvent(contract, metric, 1, T0 + timedelta(minutes=i), source, f"req-{i}", **over)
        for i in range(n)
    ]


def latest_usage_entry(s: Session) -> LedgerEntry | None:
    return s.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.kind == "usage.recorded")
        .order_by(LedgerEntry.seq.desc())
    ).first()


def test_a_batch_is_stored_once_and_filed_in_one_entry(writes: sessionmaker[Session]) -> None:
    contract, other = f"ctr_{secrets.token_hex(10)}", f"ctr_{secrets.token_hex(10)}"
    source = f"gateway:{secrets.token_hex(4)}"
    sink: UsageSink = DatabaseUsageSink(writes)
    batch = [
        *events(contract, source, 5),
        UsageEvent(contract, "row", 1200, T0, source, "dl-1"),
        UsageEvent(contract, "call", 1, T0, source, "req-refused", outcome="refused"),
        UsageEvent(other, "byte", 4096, T0, source, "dl-2"),
        UsageEvent(contract, "call", 1, T0, source, "req-0"),  # the same key twice in a batch
    ]
    with writes() as s:
        size = (
            s.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.kind == "usage.recorded")
            )
            or 0
        )
    assert sink.record(batch) == 8
    with writes() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.kind == "usage.recorded")
            )
            == size + 1
        )
        entry = latest_usage_entry(s)
        assert entry is not None and entry.subject.startswith("usg_")
        body = json.loads(entry.entry)["body"]
        assert body == {
            "sources": [source],
            "count": 8,
            "totals": {contract: {"call": 5, "row": 1200}, other: {"byte": 4096}},
        }
    # delivered again (with one new event): only the new one is stored and filed
    assert sink.record([*batch, UsageEvent(contract, "call", 1, T0, source, "req-new")]) == 1
    assert sink.record(batch) == 0
    with writes() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.kind == "usage.recorded")
            )
            == size + 2
        )
        assert (
            s.scalar(
                select(func.count())
                .select_from(UsageRecord)
                .where(UsageRecord.contract_id == contract)
            )
            == 8
        )
        end = T0 + timedelta(days=1)
        assert usage.units_in(s, contract, "call", T0, end) == 6
        assert usage.units_in(s, contract, "call", T0 + timedelta(minutes=1), end) == 4
        assert usage.units_in(s, contract, "call", T0, T0) == 0
        assert usage.units_in(s, contract, "row", T0, end) == 1200
        assert usage.usage_summary(s, contract, T0, end) == {
            "call": {"calls": 6, "quantity": 6, "refused": 1, "upstream_errors": 0},
            "row": {"calls": 1, "quantity": 1200, "refused": 0, "upstream_errors": 0},
        }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"contract_id": ""}, "contract_id"),
        ({"metric": "minute"}, "metric"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"at": datetime(2026, 3, 1)}, "at"),
        ({"source": " gw"}, "source"),
        ({"key": "k" * 121}, "key"),
        ({"outcome": "maybe"}, "outcome"),
    ],
)
def test_an_invalid_event_refuses_the_whole_batch(
    writes: sessionmaker[Session], change: dict[str, object], field: str
) -> None:
    source = f"gateway:{secrets.token_hex(4)}"
    good = events("ctr_x", source, 2)
    bad = UsageEvent(**{**good[0].__dict__, "key": "bad", **change})
    with pytest.raises(InvalidUsage) as caught, UnitOfWork(writes) as uow:
        usage.ingest(uow, [*good, bad])
    assert (caught.value.extra["index"], caught.value.extra["field"]) == (2, field)
    assert f"usage event 2: {field}" in caught.value.detail
    with writes() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(UsageRecord).where(UsageRecord.source == source)
            )
            == 0
        )


def test_large_batches_are_inserted_in_parts(writes: sessionmaker[Session]) -> None:
    contract, source = f"ctr_{secrets.token_hex(10)}", f"compute:{secrets.token_hex(4)}"
    batch = events(contract, source, usage.BATCH_ROWS + 7, metric="epsilon_micro")
    assert DatabaseUsageSink(writes).record(batch) == usage.BATCH_ROWS + 7
    assert DatabaseUsageSink(writes).record([]) == 0
    with writes() as s:
        got = usage.units_in(s, contract, "epsilon_micro", T0, T0 + timedelta(days=1))
    assert got == usage.BATCH_ROWS + 7
