"""Per-contract rate limits (policy ``rate.max_per_second`` and ``rate.max_per_minute``).

Pure: the clock is injected (seconds, monotonic). One ``RateLimiter`` per process; a lock
makes every decision atomic, so under any concurrency a process admits at most ``limit``
calls of a contract in any window of the limit's length.

Algorithm: a sliding-window log. Each limit keeps the times of the calls it admitted in
the last window (at most ``limit`` of them); a call is admitted when every limit has room,
and is then logged in all of them. A refused call is not logged, so a client hammering a
full window does not push its own next slot further away. ``Retry-After`` is the time
until the oldest logged call leaves the fullest window.

Limits above ``EXACT_UP_TO`` would make the log large, so they count calls in
``BUCKETS`` sub-intervals instead, and count every bucket the window touches: they never
admit more than the limit in a window, but may refuse up to one bucket's length early.

Memory is bounded: a contract whose last call is older than the longest window has an
empty log and is forgotten (swept every ``SWEEP_EVERY`` calls), so the state is what the
contracts active in the last minute need.

Several processes (``serve --workers N``, many hosts) each keep their own windows: a
contract may then get up to N times its rate, one share per process. The exchange's
load balancer should pin a buyer's key to one process when that matters.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

EXACT_UP_TO = 10_000
BUCKETS = 100
SWEEP_EVERY = 4096
WINDOWS = (("max_per_second", 1.0), ("max_per_minute", 60.0))


class _Log:
    """The admitted calls of one window, exactly."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.times: deque[float] = deque()

    def wait(self, now: float) -> float:
        """0 if a call fits now, else the seconds until one does."""
        edge = now - self.window
        times = self.times
        while times and times[0] <= edge:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return times[len(times) - self.limit] - edge

    def take(self, now: float) -> None:
        self.times.append(now)

    def idle(self, now: float) -> bool:
        return not self.times or self.times[-1] <= now - self.window


class _Buckets:
    """Admitted calls counted per bucket of ``window / BUCKETS``; conservative."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.width = window / BUCKETS
        self.counts: deque[list[float]] = deque()  # [bucket start, count], oldest first
        self.total = 0

    def wait(self, now: float) -> float:
        edge = now - self.window - self.width  # every bucket the window touches counts
        counts = self.counts
        while counts and counts[0][0] <= edge:
            self.total -= int(counts.popleft()[1])
        if self.total < self.limit:
            return 0.0
        excess, freed = self.total - self.limit + 1, 0
        for start, n in counts:
            freed += int(n)
            if freed >= excess:
                return start - edge
        return self.window  # pragma: no cover - the loop always frees enough

    def take(self, now: float) -> None:
        start = math.floor(now / self.width) * self.width
        if self.counts and self.counts[-1][0] == start:
            self.counts[-1][1] += 1
        else:
            self.counts.append([start, 1])
        self.total += 1

    def idle(self, now: float) -> bool:
        return not self.counts or self.counts[-1][0] <= now - self.window - self.width


@dataclass
class _Contract:
    limits: tuple[int | None, int | None]
    windows: list[_Log | _Buckets] = field(default_factory=list)


def _window(limit: int, length: float) -> _Log | _Buckets:
    return _Log(limit, length) if limit <= EXACT_UP_TO else _Buckets(limit, length)


class RateLimiter:
    """One per process: ``acquire`` admits a call or says how long to wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._contracts: dict[str, _Contract] = {}
        self._calls = 0

    def acquire(self, contract_id: str, per_second: int | None, per_minute: int | None) -> float:
        """Admit one call of the contract (0.0) or refuse it: the seconds to wait (> 0).

        No limit at all admits every call and keeps no state."""
        if per_second is None and per_minute is None:
            return 0.0
        limits = (per_second, per_minute)
        with self._lock:
            now = self.clock()
            self._calls += 1
            if self._calls % SWEEP_EVERY == 0:
                self._sweep(now)
            state = self._contracts.get(contract_id)
            if state is None or state.limits != limits:
                state = _Contract(
                    limits,
                    [
                        _window(limit, length)
                        for limit, (_, length) in zip(limits, WINDOWS, strict=True)
                        if limit is not None
                    ],
                )
                self._contracts[contract_id] = state
            wait = max(w.wait(now) for w in state.windows)
            if wait > 0:
                return wait
            for w in state.windows:
                w.take(now)
            return 0.0

    def _sweep(self, now: float) -> None:
        idle = [c for c, s in self._contracts.items() if all(w.idle(now) for w in s.windows)]
        for c in idle:
            del self._contracts[c]

    def tracked(self) -> int:
        """How many contracts the limiter holds state for (for tests and metrics)."""
        with self._lock:
            return len(self._contracts)

    def forget_idle(self) -> None:
        with self._lock:
            self._sweep(self.clock())


def retry_after(wait: float) -> int:
    """Whole seconds for a ``Retry-After`` header (at least 1)."""
    return max(1, math.ceil(wait))
