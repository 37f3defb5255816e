"""Metering every delivery (用途可计量): usage events buffered in memory and written in
batches, so a metered call costs a list append rather than a database transaction.

Bytes are merged: ``add_bytes`` adds to the contract's running total, and each flush
writes one ``byte`` event per contract (its key unique to that flush) rather than one per
use. Calls stay one event each: they are the billing unit and the idempotency key.

Durability: a background thread flushes the buffer every ``flush_seconds`` or as soon as
``max_pending`` events wait, each batch in one transaction with its ``usage.recorded``
ledger entry (``settlement.usage.ingest``); a clean stop flushes what is left. A batch that
fails to write stays in the buffer and is retried. On a crash (SIGKILL, power loss) the
events of at most the last ``flush_seconds`` — and never more than ``max_pending`` plus one
batch in flight — are lost; they are uses the buyer is then not billed for, never uses
billed twice (each event's ``(source, key)`` is unique).

Count limits: ``reserve`` admits a use only if the units already used (the database's
total, refreshed at most every ``refresh_seconds``) plus this process's unflushed and
in-flight units leave room under the limit. Across several processes each sees the
others' use once it is flushed and its refresh is due, so the overshoot is bounded by what
the other processes meter in ``flush_seconds + refresh_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from databourse.db import utcnow
from databourse.settlement.usage import UsageEvent, UsageSink

log = logging.getLogger("databourse.delivery.meter")


@dataclass
class Reservation:
    contract_id: str
    metric: str
    quantity: int
    at: datetime
    key: str
    done: bool = False


class Meter:
    """One per process and delivery path (``source``)."""

    def __init__(
        self,
        sink: UsageSink,
        source: str,
        used_in_store: Callable[[str, str], int],
        *,
        flush_seconds: float = 1.0,
        max_pending: int = 1000,
        refresh_seconds: float = 1.0,
    ) -> None:
        self.sink = sink
        self.source = f"{source}:{uuid.uuid4().hex[:12]}"  # unique to this process's run
        self.used_in_store = used_in_store
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()  # guards the buffer and the counters
        self._flush_lock = threading.Lock()  # one flush at a time; refreshes wait for it
        self._pending: list[UsageEvent] = []
        self._base: dict[tuple[str, str], tuple[int, float]] = {}  # stored total, when read
        self._local: dict[tuple[str, str], int] = {}  # ok units metered since that read
        self._inflight: dict[tuple[str, str], int] = {}  # reserved, outcome not yet known
        self._bytes: dict[str, tuple[int, datetime]] = {}  # merged bytes, first use's time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushed = 0  # events written by this meter (for tests and metrics)

    # Recording ----------------------------------------------------------------------------

    def record(
        self,
        contract_id: str,
        metric: str,
        quantity: int,
        outcome: str = "ok",
        at: datetime | None = None,
        key: str | None = None,
    ) -> None:
        """Meter one use now (``ok``), or a refusal or upstream error (kept, not billed)."""
        event = self._event(contract_id, metric, quantity, outcome, at, key)
        with self._lock:
            full = self._append(event)
        if full:
            self._wake.set()

    def _event(
        self,
        contract_id: str,
        metric: str,
        quantity: int,
        outcome: str,
        at: datetime | None,
        key: str | None,
    ) -> UsageEvent:
        return UsageEvent(
            contract_id,
            metric,
            quantity,
            at or utcnow(),
            self.source,
            key or uuid.uuid4().hex,
            outcome,
        )

    def _append(self, event: UsageEvent) -> bool:
        """Buffer the event (the lock held); whether the buffer is due for a flush."""
        self._pending.append(event)
        if event.outcome == "ok":
            k = (event.contract_id, event.metric)
            self._local[k] = self._local.get(k, 0) + event.quantity
        return len(self._pending) >= self.max_pending

    def add_bytes(self, contract_id: str, quantity: int) -> None:
        """Meter ``quantity`` bytes delivered under the contract (``ok``): merged with the
        contract's other bytes until the next flush writes them as one event."""
        with self._lock:
            merged = self._bytes.get(contract_id)
            if merged is None:
                self._bytes[contract_id] = (quantity, utcnow())
            else:
                self._bytes[contract_id] = (merged[0] + quantity, merged[1])
            k = (contract_id, "byte")
            self._local[k] = self._local.get(k, 0) + quantity

    def used(self, contract_id: str, metric: str, *, refresh: bool = True) -> int:
        """Units used under the contract: stored, plus this process's unflushed ones.
        ``refresh=False`` never reads the store (the total read last, maybe none: 0)."""
        k = (contract_id, metric)
        if refresh:
            self._refresh_if_due(k)
        with self._lock:
            base = self._base.get(k)
            return (base[0] if base else 0) + self._local.get(k, 0)

    def refresh_due(self, contract_id: str, metric: str) -> bool:
        """Whether a ``reserve`` under a limit would read the stored total first."""
        base = self._base.get((contract_id, metric))
        return base is None or time.monotonic() - base[1] >= self.refresh_seconds

    def reserve(
        self, contract_id: str, metric: str, quantity: int, limit: int | None
    ) -> Reservation | None:
        """Hold ``quantity`` units under ``limit`` (None: no limit) while the use runs;
        None when they would pass the limit. ``settle`` it with the use's outcome."""
        k = (contract_id, metric)
        if limit is not None:
            self._refresh_if_due(k)
        with self._lock:
            if limit is not None:
                taken = self._base[k][0] + self._local.get(k, 0) + self._inflight.get(k, 0)
                if taken + quantity > limit:
                    return None
            self._inflight[k] = self._inflight.get(k, 0) + quantity
        return Reservation(contract_id, metric, quantity, utcnow(), uuid.uuid4().hex)

    def settle(self, r: Reservation, outcome: str = "ok", quantity: int | None = None) -> None:
        """End a reservation: meter it with its outcome (only ``ok`` counts and bills).
        The units leave ``in flight`` and join the used ones in one step, so a concurrent
        ``reserve`` always counts them."""
        if r.done:
            return
        r.done = True
        n = r.quantity if quantity is None else quantity
        event = self._event(r.contract_id, r.metric, n, outcome, r.at, r.key)
        with self._lock:
            self._inflight[(r.contract_id, r.metric)] -= r.quantity
            full = self._append(event)
        if full:
            self._wake.set()

    def release(self, r: Reservation) -> None:
        """End a reservation whose use did not happen: nothing is metered."""
        if r.done:
            return
        r.done = True
        with self._lock:
            self._inflight[(r.contract_id, r.metric)] -= r.quantity

    def _refresh_if_due(self, k: tuple[str, str]) -> None:
        base = self._base.get(k)
        if base is not None and time.monotonic() - base[1] < self.refresh_seconds:
            return
        with self._flush_lock:  # no batch half-way into the store while we read it
            stored = self.used_in_store(*k)
            with self._lock:
                unflushed = sum(
                    e.quantity
                    for e in self._pending
                    if (e.contract_id, e.metric) == k and e.outcome == "ok"
                )
                if k[1] == "byte" and k[0] in self._bytes:
                    unflushed += self._bytes[k[0]][0]
                self._base[k] = (stored, time.monotonic())
                self._local[k] = unflushed

    # Flushing -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write what is buffered; the number of events written. On failure the events
        stay buffered (and the error propagates)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
                merged, self._bytes = self._bytes, {}
            batch.extend(
                UsageEvent(cid, "byte", n, at, self.source, uuid.uuid4().hex, "ok")
                for cid, (n, at) in merged.items()
            )
            if not batch:
                return 0
            try:
                self.sink.record(batch)
            except BaseException:
                with self._lock:
                    self._pending[:0] = batch
                raise
            self.flushed += len(batch)
            return len(batch)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="meter", daemon=True)
            self._thread.start()

    def stop(self, attempts: int = 5) -> None:
        """Stop the thread and flush what is left (a clean stop loses nothing)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for attempt in range(attempts):
            try:
                self.flush()
                return
            except Exception:
                log.exception("metering flush failed at stop (attempt %d)", attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        with self._lock:
            lost = len(self._pending)
        log.error("metering: %d usage events could not be written at stop", lost)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("metering flush failed; the events stay buffered")
