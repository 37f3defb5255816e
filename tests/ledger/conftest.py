"""Helpers of the ledger integration tests: throwaway databases, the CLI, HTTP shortcuts.

``databases`` makes fresh databases on the same store as the session's ``store_url`` (so
every test using it runs on SQLite and on PostgreSQL), optionally as a copy of another one:
tests that tamper with rows or need a log nobody else writes to never touch the shared
``exchange``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from databourse import demo, migrations
from databourse.auth.secrets import mint_access_token
from databourse.ledger.models import LedgerEntry, LedgerHead
from databourse.ledger.note import Checkpoint, Verifier, open_note
from databourse.participants.models import User
from tests.conftest import PG_ADMIN, Exchange

PROBLEM = "urn:databourse:problem:"


# Throwaway databases -------------------------------------------------------------------


class Databases:
    """Creates migrated (or copied) databases on one store; drops them at the end."""

    def __init__(self, store_url: str, root: Path) -> None:
        self.sqlite = store_url.startswith("sqlite")
        self.root = root
        self._pg: list[str] = []

    @property
    def store(self) -> str:
        return "sqlite" if self.sqlite else "postgresql"

    def create(self, copy_of: str | None = None) -> str:
        """A new database: migrated, or a copy of ``copy_of`` (no connection may be open)."""
        name = f"databourse_ledger_{secrets.token_hex(4)}"
        if self.sqlite:
            path = self.root / f"{name}.sqlite3"
            url = f"sqlite:///{path}"
            if copy_of is None:
                migrations.upgrade(url)
            else:
                src = sqlite3.connect(copy_of.removeprefix("sqlite:///"))
                dst = sqlite3.connect(path)
                with dst:
                    src.backup(dst)
                src.close()
                dst.close()
            return url
        import psycopg

        template = f' TEMPLATE "{copy_of.rsplit("/", 1)[1]}"' if copy_of else ""
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{template}')
        self._pg.append(name)
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}/{name}"
        if copy_of is None:
            migrations.upgrade(url)
        return url

    def drop_all(self) -> None:
        if not self._pg:
            return
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in self._pg:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def databases(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(store_url, tmp_path_factory.mktemp("ledger-dbs"))
    yield dbs
    dbs.drop_all()


# The command line ----------------------------------------------------------------------


def cli_env(**settings: str | Path) -> dict[str, str]:
    """The environment of a fresh ``databourse`` process: no inherited DATABOURSE_* at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABOURSE_")}
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb", "PYTHONIOENCODING": "utf-8"})
    env.update({f"DATABOURSE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``databourse ARGS`` as a separate process (``python -m databourse.cli``)."""
    return subprocess.run(
        [sys.executable, "-m", "databourse.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_args(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "databourse.cli", *args]


# HTTP shortcuts --------------------------------------------------------------------------


def demo_client(ex: Exchange, key: str) -> httpx.Client:
    """A client authenticated as the demo organisation ``key``'s administrator.

    The token is minted with the exchange's secret (as ``quick_party`` does) rather than
    by logging in, to spare an argon2 verification per request.
    """
    email = next(d.email for d in demo.DEMO_ORGS if d.key == key)
    with ex.ctx.reads() as s:
        user_id = s.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    token = mint_access_token(
        ex.ctx.tokens.secret, user_id, datetime.now(UTC), ex.ctx.tokens.access_ttl
    )
    return ex.client(token)


def demo_user_id(ex: Exchange, key: str) -> str:
    email = next(d.email for d in demo.DEMO_ORGS if d.key == key)
    with ex.ctx.reads() as s:
        user_id = s.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


def head_size(ex: Exchange) -> int:
    with ex.ctx.reads() as s:
        head = s.get(LedgerHead, 1)
        assert head is not None
        return head.size


def log_verifier(ex: Exchange) -> Verifier:
    with ex.client() as c:
        r = c.get("/ledger/key")
    assert r.status_code == 200, r.text
    return Verifier.from_key(r.text.strip())


def publish(ex: Exchange) -> dict[str, Any]:
    """The operator signs a checkpoint of the current tree."""
    with demo_client(ex, "operator") as op:
        r = op.post("/ledger/checkpoints")
    assert r.status_code == 200, r.text
    return dict(r.json())


def open_checkpoint(note_text: str, verifier: Verifier) -> Checkpoint:
    body, _ = open_note(note_text, [verifier])
    return Checkpoint.parse(body)


def list_entries(client: httpx.Client, ex: Exchange) -> list[dict[str, Any]]:
    """Every entry the client may read, paging through the whole log."""
    out: list[dict[str, Any]] = []
    size = head_size(ex)
    for start in range(0, size, 1000):
        r = client.get("/ledger/entries", params={"start": start, "limit": 1000})
        assert r.status_code == 200, r.text
        out.extend(r.json())
    return out


def entry_doc(entry: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(b64d(entry["entry"])))


def b64d(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def leaves_from_db(ex_or_sessions: Any) -> list[tuple[int, bytes, bytes]]:
    """(seq, entry bytes, leaf hash) of every entry, in sequence order."""
    sessions = (
        ex_or_sessions.ctx.reads if isinstance(ex_or_sessions, Exchange) else (ex_or_sessions)
    )
    with sessions() as s:
        return [
            (e.seq, e.entry, e.leaf_hash)
            for e in s.scalars(select(LedgerEntry).order_by(LedgerEntry.seq))
        ]


def flip(raw: bytes, index: int) -> bytes:
    return raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1 :]


__all__ = [
    "PROBLEM",
    "Databases",
    "b64d",
    "b64e",
    "cli_args",
    "cli_env",
    "demo_client",
    "demo_user_id",
    "entry_doc",
    "flip",
    "head_size",
    "leaves_from_db",
    "list_entries",
    "log_verifier",
    "open_checkpoint",
    "publish",
    "run_cli",
]
