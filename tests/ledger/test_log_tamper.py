"""Tampering with the database outside the services is found by ``databourse ledger verify``.

Each tamper happens in its own copy of a seeded database (never the shared exchange), and
the verifier runs as a separate process configured only by DATABOURSE_DATABASE_URL and
DATABOURSE_DATA_DIR. A property test then tampers random rows and columns in a transaction
that is rolled back, and checks ``audit.verify`` finds every one.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy.orm import Session

from databourse.api.context import AppContext
from databourse.auth import services as auth_services
from databourse.auth.models import ApiKey
from databourse.auth.policy import SYSTEM_PRINCIPAL
from databourse.auth.schemas import ApiKeyIn
from databourse.db import Database, utcnow
from databourse.ledger import audit
from databourse.ledger import services as ledger_services
from databourse.ledger.models import Checkpoint, LedgerEntry, LedgerHead, LedgerNode, Witness
from databourse.ledger.note import Verifier, generate_signer
from databourse.participants import schemas, services
from databourse.participants.models import Organisation, OrganisationRole, Role, User
from databourse.uow import UnitOfWork
from tests import factories
from tests.conftest import make_settings
from tests.ledger.conftest import Databases, cli_env, flip, run_cli


@dataclass
class Seeded:
    """A seeded database nobody else uses, with the data directory holding its log key."""

    url: str
    data_dir: Path
    log_key: Verifier
    orgs: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    witnesses: list[str] = field(default_factory=list)
    entries: int = 0


def _seed(ctx: AppContext, out: Seeded) -> None:
    p = SYSTEM_PRINCIPAL
    kyb = schemas.KybIn.model_validate(factories.KYB)
    for roles, steps in (
        (["buyer"], ["start_review", "admit"]),
        (["merchant"], ["start_review", "admit"]),
        (["agent"], ["start_review"]),
    ):
        data = schemas.ApplicationIn.model_validate(factories.application(roles), strict=False)
        with UnitOfWork(ctx.writes) as uow:
            org, user = services.apply(uow, data)
            uow.commit()
        out.orgs.append(org.id)
        out.users.append(user.id)
        with UnitOfWork(ctx.writes) as uow:
            for step in steps:
                services.transition(uow, p, org.id, step, "seed", kyb if step == "admit" else None)
            uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        services.grant_role(uow, p, out.orgs[0], Role.financier, "seed")
        for org_id in out.orgs[:2]:
            key, _ = auth_services.create_api_key(uow, p, org_id, ApiKeyIn(name="seed"))
            out.keys.append(key.id)
        _, witness_key = generate_signer(f"witness-{secrets.token_hex(3)}", cosignature=True)
        out.witnesses.append(
            ledger_services.register_witness(uow, p, witness_key, "http://127.0.0.1:9/witness").id
        )
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        ledger_services.publish_checkpoint(uow, ctx.log_key)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:  # the log grows past the last checkpoint
        auth_services.revoke_api_key(uow, p, out.keys[1])
        services.transition(uow, p, out.orgs[2], "admit", "seed", kyb)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        ledger_services.publish_checkpoint(uow, ctx.log_key)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        services.grant_role(uow, p, out.orgs[1], Role.agent, "seed")
        uow.commit()
    with ctx.reads() as s:
        out.entries = s.get(LedgerHead, 1).size  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def seeded(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    url = databases.create()
    data_dir = tmp_path_factory.mktemp("tamper-data")
    ctx = AppContext.build(make_settings(data_dir, url))
    out = Seeded(url, data_dir, ctx.log_key.verifier)
    try:
        _seed(ctx, out)
    finally:
        ctx.db.dispose()  # a PostgreSQL template must have no open connection
    return out


def _verify_cli(seeded: Seeded, url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env(database_url=url, data_dir=seeded.data_dir)
    return run_cli(["ledger", "verify"], env, cwd=tmp)


# Tampers through the command line -----------------------------------------------------

Tamper = Callable[[Session, Seeded], list[str]]  # returns what the output must name


def _edit_org_name(s: Session, seeded: Seeded) -> list[str]:
    org = seeded.orgs[1]
    s.execute(
        text("UPDATE organisations SET name = :n WHERE id = :id"),
        {"n": "Forged Data Co., Ltd.", "id": org},
    )
    return ["edited", org, "organisations"]


def _delete_api_key(s: Session, seeded: Seeded) -> list[str]:
    key = seeded.keys[0]
    s.execute(text("DELETE FROM api_keys WHERE id = :id"), {"id": key})
    return ["deleted", key, "api_keys"]


def _insert_user(s: Session, seeded: Seeded) -> list[str]:
    user = f"usr_{secrets.token_hex(10)}"
    s.execute(
        text(
            "INSERT INTO users (id, org_id, email, display_name, password_hash, is_admin, active, "
            "created_at) VALUES (:id, :org, :email, 'Intruder', 'x', :t, :t, :now)"
        ),
        {
            "id": user,
            "org": seeded.orgs[0],
            "email": f"{user}@evil.example",
            "t": True,
            "now": utcnow().replace(tzinfo=None),
        },
    )
    return ["inserted", user, "users"]


def _edit_role_row(s: Session, seeded: Seeded) -> list[str]:
    org = seeded.orgs[0]
    s.execute(
        text(
            "UPDATE organisation_roles SET role = 'operator' WHERE org_id = :id AND role = 'buyer'"
        ),
        {"id": org},
    )
    return ["edited", org, "organisations"]


def _edit_entry_bytes(s: Session, seeded: Seeded) -> list[str]:
    seq = seeded.entries // 2
    raw = s.scalar(select(LedgerEntry.entry).where(LedgerEntry.seq == seq))
    assert raw is not None
    forged = raw.replace(b'"at":"20', b'"at":"19')  # backdated by a century
    assert forged != raw
    s.execute(
        text("UPDATE ledger_entries SET entry = :e WHERE seq = :seq"), {"e": forged, "seq": seq}
    )
    return ["do not hash to its leaf", f"seq={seq}"]


def _delete_node(s: Session, seeded: Seeded) -> list[str]:
    s.execute(delete(LedgerNode).where(LedgerNode.level == 1, LedgerNode.index == 1))
    return ["node (1, 1) missing"]


TAMPERS: dict[str, Tamper] = {
    "organisation name edited": _edit_org_name,
    "API key row deleted": _delete_api_key,
    "user row inserted": _insert_user,
    "organisation_roles row edited": _edit_role_row,
    "entry bytes modified": _edit_entry_bytes,
    "ledger_nodes row deleted": _delete_node,
}


@pytest.fixture(scope="module")
def cli_runs(
    seeded: Seeded, databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[list[str], subprocess.CompletedProcess[str]]]:
    """``databourse ledger verify`` on a clean copy and on one tampered copy per tamper.

    The copies are made and tampered first, then every verifier process runs at once.
    """
    tmp = tmp_path_factory.mktemp("tamper-cli")
    cases: dict[str, tuple[str, list[str]]] = {"clean": (databases.create(copy_of=seeded.url), [])}
    for name, tamper in TAMPERS.items():
        url = databases.create(copy_of=seeded.url)
        db = Database.connect(url)
        try:
            with db.write_sessions()() as s, s.begin():
                expect = tamper(s, seeded)
        finally:
            db.dispose()
        cases[name] = (url, expect)
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda c: _verify_cli(seeded, c[0], tmp), cases.values()))
    return {
        name: (expect, run) for (name, (_, expect)), run in zip(cases.items(), runs, strict=True)
    }


def test_verify_passes_on_a_clean_log(cli_runs: dict[str, Any], seeded: Seeded) -> None:
    _, run = cli_runs["clean"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the ledger and the database agree" in run.stdout
    assert re.search(rf"\b{seeded.entries} entries, 2 checkpoints", run.stdout), run.stdout


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_verify_finds_the_tampered_row(cli_runs: dict[str, Any], tamper: str) -> None:
    expect, run = cli_runs[tamper]
    assert run.returncode == 1, f"{tamper} was not detected:\n{run.stdout}{run.stderr}"
    out = run.stdout
    assert "Findings" in out
    for word in expect:
        if word.startswith("seq="):  # the entry column of the findings table
            seq = word.removeprefix("seq=")
            assert any(
                re.search(rf"[│|]\s*{seq}\s*[│|]", line) and "leaf" in line
                for line in out.splitlines()
            ), out
        else:
            assert word in out, f"{tamper}: {word!r} is not named in\n{out}"


# Random tampers, detected in-process (rolled back: the copy stays clean) -----------------


@pytest.fixture(scope="module")
def scratch(seeded: Seeded, databases: Databases) -> Iterator[Database]:
    db = Database.connect(databases.create(copy_of=seeded.url))
    yield db
    db.dispose()


def _verify_in(s: Session, seeded: Seeded) -> audit.Report:
    return audit.verify(s, seeded.log_key)


def _other(value: Any, column: str, s: Session, seeded: Seeded) -> Any:
    """A value that differs in meaning from ``value``, valid for the column."""
    if column == "org_id":
        return next(o for o in seeded.orgs if o != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value[:-1] + ("x" if value[-1] != "x" else "y")
    if isinstance(value, dict):
        return {**value, "tampered": True}
    if isinstance(value, list):
        return [*value, "tampered"]
    if value is None:
        return utcnow() if column.endswith("_at") else "tampered"
    return value + timedelta(days=1)  # a timestamp


COVERED: dict[str, tuple[Table, list[str], str]] = {
    "organisations": (
        Organisation.__table__,
        [  # type: ignore[dict-item]
            "name",
            "kind",
            "identifier",
            "legal_representative",
            "contacts",
            "requested_roles",
            "data_source_statement",
            "compliance_commitment",
            "kyb",
            "status",
        ],
        "orgs",
    ),
    "users": (
        User.__table__,
        [  # type: ignore[dict-item]
            "org_id",
            "email",
            "display_name",
            "password_hash",
            "is_admin",
            "active",
        ],
        "users",
    ),
    "api_keys": (
        ApiKey.__table__,
        [  # type: ignore[dict-item]
            "org_id",
            "prefix",
            "secret_hash",
            "scopes",
            "expires_at",
            "revoked_at",
        ],
        "keys",
    ),
    "ledger_witnesses": (
        Witness.__table__,
        [  # type: ignore[dict-item]
            "org_id",
            "verifier_key",
            "url",
        ],
        "witnesses",
    ),
}


def _random_tamper(s: Session, seeded: Seeded, data: st.DataObject) -> tuple[str, Any]:
    """Tamper with something at random; return (what, the subject or seq to be named)."""
    kind = data.draw(
        st.sampled_from(
            [
                "column",
                "column",
                "column",
                "delete",
                "insert",
                "role",
                "entry",
                "node",
                "head",
                "checkpoint",
            ]
        )
    )
    if kind == "column":
        table_name = data.draw(st.sampled_from(sorted(COVERED)))
        table, columns, ids = COVERED[table_name]
        row_id = data.draw(st.sampled_from(getattr(seeded, ids)))
        column = data.draw(st.sampled_from(columns))
        old = s.execute(select(table.c[column]).where(table.c.id == row_id)).scalar_one()
        new = _other(old, column, s, seeded)
        s.execute(update(table).where(table.c.id == row_id).values({column: new}))
        return f"{table_name}.{column} of {row_id}: {old!r} -> {new!r}", row_id
    if kind == "delete":
        table_name, ids = data.draw(
            st.sampled_from([("api_keys", "keys"), ("ledger_witnesses", "witnesses")])
        )
        table = COVERED[table_name][0]
        row_id = data.draw(st.sampled_from(getattr(seeded, ids)))
        s.execute(delete(table).where(table.c.id == row_id))
        return f"{table_name} row {row_id} deleted", row_id
    if kind == "insert":
        row_id = f"key_{secrets.token_hex(10)}"
        s.execute(
            insert(ApiKey.__table__).values(  # type: ignore[arg-type]
                id=row_id,
                org_id=data.draw(st.sampled_from(seeded.orgs)),
                name="x",
                prefix=secrets.token_hex(6),
                secret_hash="0" * 64,
                scopes=["read", "write"],
                created_by="user:nobody",
                created_at=utcnow(),
            )
        )
        return f"api_keys row {row_id} inserted", row_id
    if kind == "role":
        org = data.draw(st.sampled_from(seeded.orgs))
        how = data.draw(st.sampled_from(["add", "remove", "rename"]))
        held = s.scalars(select(OrganisationRole.role).where(OrganisationRole.org_id == org)).all()
        if how == "add" or not held:
            s.execute(
                insert(OrganisationRole.__table__).values(  # type: ignore[arg-type]
                    org_id=org, role="operator", granted_by="user:nobody", granted_at=utcnow()
                )
            )
        elif how == "remove":
            s.execute(
                delete(OrganisationRole).where(
                    OrganisationRole.org_id == org, OrganisationRole.role == held[0]
                )
            )
        else:
            s.execute(
                update(OrganisationRole)
                .where(OrganisationRole.org_id == org, OrganisationRole.role == held[0])
                .values(role="regulator")
            )
        return f"role of {org}: {how}", org
    if kind == "entry":
        seq = data.draw(st.integers(0, seeded.entries - 1))
        column = data.draw(st.sampled_from(["entry", "leaf_hash", "kind", "subject", "state_hash"]))
        old = s.execute(
            select(getattr(LedgerEntry, column)).where(LedgerEntry.seq == seq)
        ).scalar_one()
        if column == "entry":  # a digit of the time: the bytes stay valid JSON (see below)
            start = old.index(b'"at":"') + 6
            new: Any = flip(old, data.draw(st.integers(start, old.index(b'"', start) - 1)))
        elif isinstance(old, bytes):
            new = flip(old, data.draw(st.integers(0, len(old) - 1)))
        elif old is None:
            new = "0" * 64
        else:
            new = old[:-1] + ("0" if old[-1] != "0" else "1")
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == seq).values({column: new}))
        return f"entry {seq} {column}", seq
    if kind == "node":
        nodes = s.execute(select(LedgerNode.level, LedgerNode.index)).all()
        level, index = data.draw(st.sampled_from(sorted(nodes)))
        where = (LedgerNode.level == level, LedgerNode.index == index)
        if data.draw(st.booleans()):
            s.execute(delete(LedgerNode).where(*where))
        else:
            old = s.execute(select(LedgerNode.hash).where(*where)).scalar_one()
            s.execute(update(LedgerNode).where(*where).values(hash=flip(old, 31)))
        return f"node ({level}, {index})", "tree"
    if kind == "head":
        head = s.get(LedgerHead, 1)
        assert head is not None
        values: dict[str, Any] = data.draw(
            st.sampled_from(
                [{"size": head.size - 1}, {"size": head.size + 1}, {"root": flip(head.root, 0)}]
            )
        )
        s.execute(update(LedgerHead).where(LedgerHead.id == 1).values(values))
        s.expire_all()
        return f"head {values}", "tree"
    cps = s.execute(select(Checkpoint.id, Checkpoint.note)).all()
    cp_id, note = data.draw(st.sampled_from(sorted(cps)))
    at = data.draw(st.integers(0, len(note) - 2))
    forged = note[:at] + ("A" if note[at] != "A" else "B") + note[at + 1 :]
    s.execute(update(Checkpoint).where(Checkpoint.id == cp_id).values(note=forged))
    return f"checkpoint {cp_id} note[{at}]", "checkpoint"


def _named(report: audit.Report, target: Any) -> bool:
    if target in ("tree", "checkpoint"):
        return any(f.problem == target for f in report.findings)
    return any(target in (f.seq, f.subject) for f in report.findings)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_tampers_are_all_detected(
    scratch: Database, seeded: Seeded, data: st.DataObject
) -> None:
    with scratch.write_sessions()() as s, s.begin():
        assert _verify_in(s, seeded).ok, "the copy was not clean before tampering"
        what, target = _random_tamper(s, seeded, data)
        s.expire_all()
        report = _verify_in(s, seeded)
        s.rollback()
    assert not report.ok, f"not detected: {what}"
    assert _named(report, target), f"{what}: findings do not name it: {report.findings}"


# Known gaps --------------------------------------------------------------------------


@pytest.mark.parametrize("forgery", [b"{", b"\xff\xfe", b"[]"])
def test_an_entry_that_is_no_longer_json_is_a_finding(
    scratch: Database, seeded: Seeded, forgery: bytes
) -> None:
    seq = seeded.entries // 3
    with scratch.write_sessions()() as s, s.begin():
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == seq).values(entry=forgery))
        try:
            report = _verify_in(s, seeded)
        except AttributeError as exc:  # "[]" has no .get: the same bug, another exception
            raise ValueError(str(exc)) from exc
        finally:
            s.rollback()
    assert not report.ok
    assert any(f.seq == seq and f.problem == "entry" for f in report.findings)


@pytest.mark.parametrize("column", ["actor", "at"])
def test_editing_an_entrys_actor_or_time_column_is_detected(
    scratch: Database, seeded: Seeded, column: str
) -> None:
    seq = seeded.entries - 1
    with scratch.write_sessions()() as s, s.begin():
        row = s.get(LedgerEntry, seq)
        assert row is not None
        signed = {"actor": json.loads(row.entry)["actor"], "at": row.at}[column]
        new = {"actor": "user:usr_someone_else", "at": row.at - timedelta(days=365)}[column]
        s.execute(update(LedgerEntry).where(LedgerEntry.seq == seq).values({column: new}))
        s.expire_all()
        shown = s.get(LedgerEntry, seq)  # what GET /ledger/entries/{seq} would now serve
        assert shown is not None and getattr(shown, column) == new != signed
        report = _verify_in(s, seeded)
        s.rollback()
    assert not report.ok, f"ledger_entries.{column} of entry {seq} edited, not detected"


def test_editing_a_checkpoints_root_column_is_detected(scratch: Database, seeded: Seeded) -> None:
    with scratch.write_sessions()() as s, s.begin():
        cp = s.scalars(select(Checkpoint).order_by(Checkpoint.size)).first()
        assert cp is not None
        s.execute(update(Checkpoint).where(Checkpoint.id == cp.id).values(root=flip(cp.root, 0)))
        s.expire_all()
        report = _verify_in(s, seeded)
        s.rollback()
    assert not report.ok, "ledger_checkpoints.root edited, not detected"
