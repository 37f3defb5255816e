"""The gateway's per-process cache of decisions, validated by the ledger head (pure).

A gateway call needs facts from the database: who the credential belongs to and its
organisation's status and roles, which contract the call falls under and its standing
(its status, its product's and both organisations' statuses, its plan and policy), and
the product's upstream registration. Reading them costs several queries per call. This
module lets a process reuse them while they cannot have changed, and says exactly when
that is.

Why it is sound. Every committed change to one of those facts — an organisation
suspended or reinstated, a role granted or withdrawn, a user deactivated, an API key
revoked, a contract suspended, reinstated, terminated or expired, a product suspended, an
upstream re-registered — is a state change recorded on the ledger in the same
transaction, and every such commit appends to the log and moves the single
``ledger_head`` row (``ledger.writer.append_records``). So:

1. A request reads the head (``Head``: its size and root, one primary-key query) *after*
   it arrived. A suspension committed before the request is in the head it reads.
2. An entry is stored under the head read *before* its facts were loaded. Facts read
   after that head reflect at least every commit the head reflects (they can only be
   newer, which is safe: a newer refusal, never an older permission).
3. An entry is used only when the head the request read is the head it was stored under.
   Then no commit has moved the head since the entry's facts were loaded, hence none has
   changed them: the entry is what a fresh load would read now. Any other head — newer,
   or from another history (a restored database: hence the root, not only the size) —
   is a miss, and the facts are loaded afresh.

What depends on time is never decided by the cache. The contract's term and the policy's
dates are checked against the current time on every call (``rules.standing``). What was
loaded and holds only for a while — an API key's expiry, an access token's ``exp``, the
choice of contract among the buyer's (it changes when one of their terms starts or ends)
— bounds the entry: it is used only between the time it was loaded and the earliest of
those instants, on the clock the fresh check would use (the exchange's clock for keys
and terms; the wall clock for an access token, as ``jwt.decode`` uses). Outside that
window it is a miss, and the fresh load decides.

Entries are keyed by a SHA-256 of the presented credential (never the credential
itself) with the product and the contract asked for; the cache holds at most
``max_entries`` of them, least recently used first out, and is safe to share between
threads. A process never learns of another's commits except through the head, so the
rule above holds in every process alike.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_ENTRIES = 10_000

Key = tuple[bytes, str, str | None]


@dataclass(frozen=True)
class Head:
    """What the ledger head says of the log: its size and root. Every state change
    moves both; a root tells two histories of the same size apart."""

    size: int
    root: bytes


@dataclass(frozen=True)
class Window:
    """When an entry may be used: from ``since`` (the exchange's clock when it was
    loaded) until before ``until`` (None: no bound), and before ``wall_until`` on the
    wall clock (Unix seconds; None: no bound)."""

    since: datetime
    until: datetime | None = None
    wall_until: float | None = None

    def holds(self, now: datetime, wall: float) -> bool:
        if now < self.since or (self.until is not None and now >= self.until):
            return False
        return self.wall_until is None or wall < self.wall_until


@dataclass(frozen=True)
class Entry(Generic[V]):
    head: Head
    window: Window
    value: V


def key_of(credential: str, product_id: str, contract_id: str | None) -> Key:
    """The cache key of a call: a SHA-256 of the credential, never the credential."""
    return hashlib.sha256(credential.encode()).digest(), product_id, contract_id


class DecisionCache(Generic[V]):
    """A bounded LRU of loaded facts, each valid under one ledger head and in a window."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, Entry[V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Key, head: Head, now: datetime, wall: float) -> V | None:
        """The value stored under ``key`` if it was loaded under ``head`` and its window
        holds at ``now`` (the exchange's clock) and ``wall`` (Unix seconds); else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.head != head or not entry.window.holds(now, wall):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.value

    def put(self, key: Key, head: Head, window: Window, value: V) -> None:
        """Store ``value``, loaded after ``head`` was read (the latest store wins: a
        slower load under an older head only costs the next call a miss)."""
        with self._lock:
            self._entries[key] = Entry(head, window, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
