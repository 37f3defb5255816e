"""The gateway's decision cache: an entry is used only under the ledger head it was
loaded under, and only inside its time window; it is bounded and safe under threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from databourse.delivery.decisions import DecisionCache, Head, Window, key_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WALL = 1_800_000_000.0


class FakeLedger:
    """A ledger head that every committed state change moves."""

    def __init__(self) -> None:
        self.size = 10

    def head(self) -> Head:
        return Head(self.size, self.size.to_bytes(32, "big"))

    def commit(self) -> None:
        self.size += 1


def test_an_entry_is_used_only_under_the_head_it_was_loaded_under() -> None:
    ledger, cache = FakeLedger(), DecisionCache[str]()
    k = key_of("dbk_a.secret", "prd_1", None)
    loaded_under = ledger.head()  # read before the load
    cache.put(k, loaded_under, Window(T0), "admit")
    assert cache.get(k, ledger.head(), T0, WALL) == "admit"
    assert cache.get(k, ledger.head(), T0 + timedelta(days=300), WALL) == "admit"
    ledger.commit()  # e.g. the contract suspended
    assert cache.get(k, ledger.head(), T0, WALL) is None
    # an older head (a slower request) does not match either
    assert cache.get(k, loaded_under, T0, WALL) == "admit"
    assert cache.get(k, Head(loaded_under.size - 1, b"x" * 32), T0, WALL) is None
    # the same size from another history (a restored database) is another head
    assert cache.get(k, Head(loaded_under.size, b"y" * 32), T0, WALL) is None
    assert (cache.hits, cache.misses) == (3, 3)


def test_a_load_racing_a_commit_is_never_reused_after_it() -> None:
    """The head is read before the load: a commit landing during the load moves the head
    past the entry's, so the next call loads afresh."""
    ledger, cache = FakeLedger(), DecisionCache[str]()
    k = key_of("tok", "prd_1", "ctr_1")
    before = ledger.head()
    ledger.commit()  # committed while the facts were being read
    cache.put(k, before, Window(T0), "facts, maybe newer")
    assert cache.get(k, ledger.head(), T0, WALL) is None


def test_the_window_bounds_an_entry_in_time() -> None:
    cache, head = DecisionCache[str](), FakeLedger().head()
    k = key_of("dbk_a.secret", "prd_1", None)
    ends = T0 + timedelta(days=30)  # an API key's expiry, or the next term boundary
    cache.put(k, head, Window(T0, ends, WALL + 60), "v")
    assert cache.get(k, head, ends - timedelta(microseconds=1), WALL) == "v"
    assert cache.get(k, head, ends, WALL) is None  # expired: the fresh check decides
    assert cache.get(k, head, T0 - timedelta(seconds=1), WALL) is None  # clock turned back
    assert cache.get(k, head, T0, WALL + 59.9) == "v"
    assert cache.get(k, head, T0, WALL + 60) is None  # an access token's exp, wall clock


def test_keys_hold_a_hash_of_the_credential_never_the_credential() -> None:
    k = key_of("dbk_abc.very-secret", "prd_1", None)
    assert "very-secret" not in repr(k) and len(k[0]) == 32
    assert k != key_of("dbk_abc.very-secret", "prd_2", None)
    assert k != key_of("dbk_abc.very-secret", "prd_1", "ctr_1")
    assert k != key_of("dbk_abc.other", "prd_1", None)


def test_the_cache_is_a_bounded_lru() -> None:
    cache, head = DecisionCache[int](max_entries=3), FakeLedger().head()
    keys = [key_of(f"c{i}", "p", None) for i in range(4)]
    for i in range(3):
        cache.put(keys[i], head, Window(T0), i)
    assert cache.get(keys[0], head, T0, WALL) == 0  # now the most recently used
    cache.put(keys[3], head, Window(T0), 3)
    assert len(cache) == 3
    assert cache.get(keys[1], head, T0, WALL) is None  # the least recently used went
    assert [cache.get(keys[i], head, T0, WALL) for i in (0, 2, 3)] == [0, 2, 3]
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        DecisionCache[int](max_entries=0)


def test_the_cache_is_safe_under_threads() -> None:
    cache, ledger = DecisionCache[int](max_entries=50), FakeLedger()
    gate = threading.Barrier(8)

    def hammer(n: int) -> int:
        gate.wait()
        seen = 0
        for i in range(2000):
            k = key_of(f"c{(n * 7 + i) % 80}", "p", None)
            head = ledger.head()
            got = cache.get(k, head, T0, WALL)
            if got is None:
                cache.put(k, head, Window(T0), i)
            else:
                seen += 1
        return seen

    with ThreadPoolExecutor(8) as pool:
        hits = sum(pool.map(hammer, range(8)))
    assert len(cache) == 50
    assert cache.hits == hits and cache.hits + cache.misses == 8 * 2000
