"""Throwaway, freshly migrated databases on each store the exchange supports.

PostgreSQL is the server at 127.0.0.1:5432 as user ``postgres`` (override the admin URL
with ``DATABOURSE_BENCH_PG``); each use creates ``databourse_bench_<hex>`` and drops it
afterwards. If the server cannot be reached, :class:`StoreUnavailable` says why.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from databourse import migrations

STORES = ("sqlite", "postgresql")
PG_ADMIN = os.environ.get("DATABOURSE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


class StoreUnavailable(Exception):
    pass


@contextmanager
def store(kind: str, workdir: Path) -> Iterator[str]:
    """The SQLAlchemy URL of a migrated, empty database of ``kind``; removed on exit."""
    if kind == "sqlite":
        url = f"sqlite:///{(workdir / 'bench.sqlite3').as_posix()}"
        migrations.upgrade(url)
        yield url
        return
    if kind != "postgresql":
        raise ValueError(f"unknown store {kind!r}")
    import psycopg

    name = f"databourse_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreUnavailable(reason) from exc
    try:
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}/{name}"
        migrations.upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def on_each_store(
    name: str,
    console: Any,
    measure: Callable[[str, str, Path, Any], tuple[list[Any], list[str]]],
) -> tuple[list[Any], list[str]]:
    """Rows and notes of ``measure(kind, url, workdir, console)`` on each store in turn,
    each in a throwaway directory and database; an unreachable store is a note."""
    rows: list[Any] = []
    notes: list[str] = []
    for kind in STORES:
        console.print(f"[bold]{name}[/bold] on {kind} …")
        try:
            with (
                tempfile.TemporaryDirectory(prefix="databourse-bench-") as tmp,
                store(kind, Path(tmp)) as url,
            ):
                got, more = measure(kind, url, Path(tmp), console)
        except StoreUnavailable as exc:
            msg = f"{kind} skipped: not reachable ({exc})"
            console.print(f"  [yellow]{msg}[/yellow]")
            notes.append(msg)
            continue
        rows += got
        notes += more
    return rows, notes
