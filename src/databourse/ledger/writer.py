"""Appending entries to the log inside the caller's transaction.

Gap-free, ordered sequence numbers with concurrent writers: every appender first locks the
single ``ledger_head`` row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writers are
already serialised by ``BEGIN IMMEDIATE``), so appends happen one transaction at a time
and a rolled-back transaction leaves neither entries nor a gap. The append is done last,
just before commit, to hold the lock briefly.

Appends are O(log n): only the right edge of the tree (at most log2 n perfect-subtree
roots) is read, in one query, and only newly completed nodes are written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause, func, insert, select, text
from sqlalchemy.orm import Session

from databourse.db import utcnow
from databourse.errors import Conflict
from databourse.hashing import canonical, state_hash
from databourse.ledger import merkle
from databourse.ledger.models import LedgerEntry, LedgerEntryParty, LedgerHead, LedgerNode
from databourse.uow import Actor, Record, UnitOfWork

HEAD_ID = 1
log = logging.getLogger("databourse.ledger")


def fetch_nodes(
    session: Session, coords: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """The stored hashes of the given (level, index) nodes, in one primary-key query.

    Proofs call this on every request, so the statement is hand-written per dialect: a
    join on ``unnest`` of two arrays on PostgreSQL (one cached plan whatever the count),
    and OR-ed key equalities on SQLite, which it plans as primary-key seeks (it plans a
    row-value ``IN`` as a scan of the whole table).
    """
    if not coords:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            _PG_NODES,
            {"l": [lv for lv, _ in coords], "i": [ix for _, ix in coords]},
        )
    else:
        params = {f"l{n}": lv for n, (lv, _) in enumerate(coords)}
        params.update({f"i{n}": ix for n, (_, ix) in enumerate(coords)})
        rows = session.execute(_sqlite_nodes(len(coords)), params)
    return {(lv, ix): h for lv, ix, h in rows}


_PG_NODES = text(
    'SELECT n.level, n."index", n.hash FROM ledger_nodes AS n '
    "JOIN unnest(CAST(:l AS integer[]), CAST(:i AS bigint[])) AS w(l, i) "
    'ON n.level = w.l AND n."index" = w.i'
)


@lru_cache(maxsize=128)
def _sqlite_nodes(count: int) -> TextClause:
    where = " OR ".join(f'(level = :l{n} AND "index" = :i{n})' for n in range(count))
    return text(f'SELECT level, "index", hash FROM ledger_nodes WHERE {where}')


def lock_head(session: Session) -> LedgerHead:
    head = session.get(LedgerHead, HEAD_ID, with_for_update=True, populate_existing=True)
    if head is None:
        raise RuntimeError("the ledger head row is missing: run 'databourse db upgrade'")
    return head


def entry_document(
    seq: int, actor: Actor, rec: Record, prev_state_hash: str | None, at: str
) -> dict[str, object]:
    """The JSON object a leaf commits to (ids and hashes only)."""
    return {
        "seq": seq,
        "kind": rec.kind,
        "subject": rec.subject,
        "actor": actor.ref,
        "at": at,
        "body": rec.body,
        "state_hash": state_hash(rec.state) if rec.state is not None else None,
        "prev_state_hash": prev_state_hash,
    }


def last_state_hashes(session: Session, subjects: Sequence[str]) -> dict[str, str | None]:
    """Each subject's latest state hash (None if it has no entry), in one query."""
    out: dict[str, str | None] = dict.fromkeys(subjects)
    if subjects:
        latest = (
            select(func.max(LedgerEntry.seq))
            .where(LedgerEntry.subject.in_(list(out)))
            .group_by(LedgerEntry.subject)
        )
        rows = session.execute(
            select(LedgerEntry.subject, LedgerEntry.state_hash).where(LedgerEntry.seq.in_(latest))
        )
        out.update({subject: h for subject, h in rows})
    return out


class LedgerMismatch(Conflict):
    slug = "ledger-mismatch"
    title = "The record differs from its ledger entry: it was changed outside the exchange"


def assert_untampered(uow: UnitOfWork, subject: str, state: dict[str, Any]) -> None:
    """Refuse to build on a row that was edited outside the service.

    Without this, the next legitimate change would hash the edited row and the edit would
    vanish into a valid-looking entry. The finding is logged for the operator.
    """
    pending = [r for r in uow.records if r.subject == subject and r.state is not None]
    if pending:  # changed earlier in this same unit of work
        recorded: str | None = state_hash(pending[-1].state or {})
    else:
        recorded = last_state_hashes(uow.session, [subject])[subject]
        uow.last_states[subject] = recorded  # the row is locked: still true at commit
    if recorded is not None and recorded != state_hash(state):
        log.error("ledger mismatch", extra={"subject": subject})
        raise LedgerMismatch(
            f"{subject} does not match its last ledger entry; run 'databourse ledger verify'"
        )


def append_records(
    session: Session,
    actor: Actor,
    records: Sequence[Record],
    known_states: dict[str, str | None] | None = None,
) -> list[int]:
    """Append the records as consecutive leaves; returns their sequence numbers.

    ``known_states`` are subjects' latest state hashes the caller already read under a
    row lock; the others are looked up in one query.
    """
    head = lock_head(session)
    frontier = merkle.Frontier.from_bytes(head.size, head.frontier)
    last_state = dict(known_states or {})
    missing = [s for s in dict.fromkeys(r.subject for r in records) if s not in last_state]
    last_state.update(last_state_hashes(session, missing))
    now = utcnow()
    at = now.isoformat().replace("+00:00", "Z")
    entries: list[dict[str, object]] = []
    nodes: list[tuple[int, int, bytes]] = []
    seqs: list[int] = []
    parties: list[dict[str, object]] = []
    for rec in records:
        seq = frontier.size
        prev = last_state[rec.subject]
        doc = entry_document(seq, actor, rec, prev, at)
        raw = canonical(doc)
        leaf = merkle.leaf_hash(raw)
        nodes.extend(frontier.append(leaf))
        last_state[rec.subject] = doc["state_hash"]  # type: ignore[assignment]
        entries.append(
            {
                "seq": seq,
                "kind": rec.kind,
                "subject": rec.subject,
                "actor": actor.ref,
                "at": now,
                "state_hash": doc["state_hash"],
                "entry": raw,
                "leaf_hash": leaf,
            }
        )
        seqs.append(seq)
        parties.extend({"seq": seq, "org_id": org} for org in dict.fromkeys(rec.parties))
    session.execute(insert(LedgerEntry), entries)
    if parties:
        session.execute(insert(LedgerEntryParty), parties)
    session.execute(
        insert(LedgerNode), [{"level": lv, "index": ix, "hash": h} for lv, ix, h in nodes]
    )
    head.size = frontier.size
    head.root = frontier.root()
    head.frontier = frontier.to_bytes()
    head.updated_at = now
    session.flush()
    return seqs
