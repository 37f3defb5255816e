"""Concurrent writers append gap-free, in one order, to one tree.

Dozens of threads run real commands at the same moment, each in its own transaction:
some succeed, some are refused, some are rolled back after their entries were appended.
On PostgreSQL (the point: writers really overlap there) and on SQLite (which serialises).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from databourse.api.context import AppContext
from databourse.auth import services as auth_services
from databourse.auth.policy import SYSTEM_PRINCIPAL
from databourse.auth.schemas import ApiKeyIn
from databourse.errors import InvalidTransition
from databourse.ledger import audit, merkle
from databourse.ledger import services as ledger_services
from databourse.ledger.models import LedgerEntry, LedgerHead
from databourse.ledger.note import open_note
from databourse.ledger.writer import append_records
from databourse.participants import schemas, services
from databourse.participants.models import Role
from databourse.uow import Actor, UnitOfWork
from tests import factories
from tests.conftest import Exchange, make_settings, quick_party
from tests.ledger.conftest import (
    Databases,
    b64d,
    demo_client,
    head_size,
    list_entries,
    open_checkpoint,
    publish,
)

WRITERS = 48


class Aborted(Exception):
    """Raised after a command's entries were appended, so its transaction rolls back."""


def _apply(ctx: AppContext, roles: list[str]) -> str:
    data = schemas.ApplicationIn.model_validate(factories.application(roles), strict=False)
    with UnitOfWork(ctx.writes) as uow:
        org, _ = services.apply(uow, data)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        services.transition(uow, SYSTEM_PRINCIPAL, org.id, "start_review", "setup")
        services.transition(
            uow,
            SYSTEM_PRINCIPAL,
            org.id,
            "admit",
            "setup",
            schemas.KybIn.model_validate(factories.KYB),
        )
        uow.commit()
    return org.id


def _writer(ctx: AppContext, orgs: list[str], barrier: threading.Barrier, i: int) -> dict[str, Any]:
    """One writer's commands: two that commit, one refused, one rolled back late."""
    org = orgs[i % len(orgs)]
    actor = Actor("system", f"writer-{i}")
    barrier.wait()
    with UnitOfWork(ctx.writes, actor) as uow:
        key, _ = auth_services.create_api_key(uow, SYSTEM_PRINCIPAL, org, ApiKeyIn(name=f"w{i}"))
        uow.commit()
    with UnitOfWork(ctx.writes, actor) as uow, pytest.raises(InvalidTransition):
        services.transition(uow, SYSTEM_PRINCIPAL, org, "admit", "again")  # refused
    with pytest.raises(Aborted), UnitOfWork(ctx.writes, actor) as uow:
        services.grant_role(uow, SYSTEM_PRINCIPAL, org, Role.agent, "never")
        uow.session.flush()
        append_records(uow.session, uow.actor, uow.records)  # appended under the lock ...
        raise Aborted  # ... then the transaction rolls back
    with UnitOfWork(ctx.writes, actor) as uow:
        auth_services.revoke_api_key(uow, SYSTEM_PRINCIPAL, key.id)
        uow.commit()
    return {"writer": i, "key": key.id}


def _run_all(fn: Callable[[int], dict[str, Any]], n: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, range(n)))


@pytest.fixture
def fresh(databases: Databases, tmp_path: Path) -> Iterator[AppContext]:
    """An exchange context on a database of its own, so the replay sees only this test."""
    ctx = AppContext.build(make_settings(tmp_path / "data", databases.create()))
    yield ctx
    ctx.db.dispose()


def test_concurrent_commands_append_a_gap_free_log(fresh: AppContext) -> None:
    ctx = fresh
    orgs = [_apply(ctx, ["buyer"]) for _ in range(3)]
    with ctx.reads() as s:
        before = s.get(LedgerHead, 1).size  # type: ignore[union-attr]
    barrier = threading.Barrier(WRITERS)
    done = _run_all(lambda i: _writer(ctx, orgs, barrier, i), WRITERS)
    assert len(done) == WRITERS

    with ctx.reads() as s:
        rows = list(s.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
        head = s.get(LedgerHead, 1)
        assert head is not None
        docs = [json.loads(e.entry) for e in rows]
        # Gap-free: 0..n-1, exactly the committed commands' entries, none rolled back.
        assert [e.seq for e in rows] == list(range(len(rows)))
        assert [d["seq"] for d in docs] == list(range(len(rows)))
        assert len(rows) == head.size == before + 2 * WRITERS
        assert not any(d["kind"] == "org.role_granted" for d in docs[before:])
        # One tree: the head is the Merkle root of every leaf in sequence order.
        for e in rows:
            assert e.leaf_hash == merkle.leaf_hash(e.entry)
        assert head.root == merkle.root_from_leaves([e.leaf_hash for e in rows])
        # Each key's history chains, whatever the interleaving.
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for d in docs[before:]:
            by_subject.setdefault(d["subject"], []).append(d)
        assert set(by_subject) == {w["key"] for w in done}
        for issued, revoked in by_subject.values():
            assert (issued["kind"], revoked["kind"]) == ("apikey.issued", "apikey.revoked")
            assert issued["prev_state_hash"] is None
            assert revoked["prev_state_hash"] == issued["state_hash"]
            assert issued["actor"] == revoked["actor"]
        # The auditor's replay agrees with every table.
        report = audit.verify(s, ctx.log_key.verifier)
    assert report.ok, report.findings
    assert report.entries == len(rows)
    with UnitOfWork(ctx.writes) as uow:
        cp = ledger_services.publish_checkpoint(uow, ctx.log_key)
        uow.commit()
    body, _ = open_note(cp.note, [ctx.log_key.verifier])
    assert body.split("\n")[1] == str(len(rows))


def test_concurrent_http_requests_append_a_gap_free_log(exchange: Exchange) -> None:
    parties = [quick_party(exchange, ["buyer"]) for _ in range(4)]
    clients = [p.client() for p in parties]
    barrier = threading.Barrier(32)

    def issue(i: int) -> dict[str, Any]:
        party, client = parties[i % 4], clients[i % 4]
        barrier.wait()
        r = client.post(f"/organisations/{party.id}/api-keys", json={"name": f"c{i}"})
        assert r.status_code == 201, r.text
        return dict(r.json())

    try:
        keys = _run_all(issue, 32)
    finally:
        for c in clients:
            c.close()
    with demo_client(exchange, "regulator") as reg:
        entries = list_entries(reg, exchange)
    size = head_size(exchange)
    assert [e["seq"] for e in entries] == list(range(size))
    issued = [e for e in entries if e["kind"] == "apikey.issued"]
    assert {k["id"] for k in keys} <= {e["subject"] for e in issued}
    cp = open_checkpoint(publish(exchange)["note"], exchange.ctx.log_key.verifier)
    assert cp.size == size
    assert cp.root == merkle.root_from_leaves([b64d(e["leaf_hash"]) for e in entries])
