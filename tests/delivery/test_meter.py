"""The usage meter under concurrency, without a store: a count limit holds exactly."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence

import pytest

from databourse.delivery.meter import Meter
from databourse.settlement.usage import UsageEvent


class Sink:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def record(self, events: Sequence[UsageEvent]) -> int:
        self.events.extend(events)
        return len(events)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads as often as possible, so that races show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _admitted_by_threads(meter: Meter, limit: int, threads: int = 8) -> int:
    """Threads reserving and settling one call at a time until refused: the calls admitted."""
    admitted: list[int] = []

    def calls() -> None:
        refused = 0
        while refused < 100:
            r = meter.reserve("ctr_1", "call", 1, limit)
            if r is None:
                refused += 1
                continue
            meter.settle(r)
            admitted.append(1)

    running = [threading.Thread(target=calls) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return len(admitted)


def test_a_count_limit_is_never_passed_by_concurrent_settles(busy_switching: None) -> None:
    """A settled reservation leaves ``in flight`` and enters the used units in one step:
    a reservation made in between would otherwise see room that is not there."""
    limit = 300
    for _ in range(10):
        meter = Meter(Sink(), "gateway", lambda contract_id, metric: 0, refresh_seconds=3600)
        assert _admitted_by_threads(meter, limit) == limit
        assert meter.used("ctr_1", "call", refresh=False) == limit


def test_a_call_abandoned_while_being_decided_does_not_keep_its_reservation() -> None:
    """The caller goes away while its decision runs in a worker thread: the unit the
    thread reserves is released when it finishes, so the limit is whole again."""
    import asyncio
    import time
    from types import SimpleNamespace

    from databourse.delivery.gateway_api import _admit_in_thread

    meter = Meter(Sink(), "gateway", lambda contract, metric: 0)
    started = threading.Event()

    def decide(at: object, cached: object) -> SimpleNamespace:
        started.set()
        time.sleep(0.2)  # the caller is cancelled meanwhile
        return SimpleNamespace(reservation=meter.reserve("ctr_1", "call", 1, 1))

    async def scenario() -> None:
        call = asyncio.ensure_future(_admit_in_thread(meter, decide, None, None))  # type: ignore[arg-type]
        while not started.is_set():
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.4)  # the thread finishes; its reservation is released

    asyncio.run(scenario())
    r = meter.reserve("ctr_1", "call", 1, 1)
    assert r is not None  # the one unit under the limit is free again
    assert meter.used("ctr_1", "call") == 0  # and nothing was metered for the lost call
