"""Engines, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_clock_offset = timedelta(0)


def utcnow() -> datetime:
    """The exchange's clock. Deadlines (offers, acceptance windows, auctions, terms) are
    read from it, so tests move it forward with ``advance_clock`` instead of sleeping."""
    return datetime.now(UTC) + _clock_offset


def advance_clock(delta: timedelta | None) -> None:
    """Move this process's clock by ``delta`` (None: back to real time). Tests only."""
    global _clock_offset
    _clock_offset = _clock_offset + delta if delta is not None else timedelta(0)


def new_id(prefix: str) -> str:
    """Opaque, unguessable ids with a readable prefix (``org_…``, ``usr_…``)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def _sqlite_setup(engine: Engine, *, immediate: bool) -> None:
    """SQLite: WAL, foreign keys, and BEGIN IMMEDIATE for writers.

    Writers take the write lock when they start, so two concurrent commands serialise
    instead of failing with 'database is locked' on upgrade from a read lock.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, *, immediate: bool = True, **kw: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)
        _sqlite_setup(engine, immediate=immediate)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kw)


@dataclass
class Database:
    """A writer engine (for commands) and a reader engine (for queries).

    On PostgreSQL they are the same engine; on SQLite readers use deferred transactions so
    they never wait for the write lock.
    """

    url: str
    writer: Engine
    reader: Engine

    @classmethod
    def connect(cls, url: str) -> Database:
        writer = make_engine(url, immediate=True)
        # Readers run in FastAPI's worker threads (40 by default): keep their connections
        # pooled rather than reopening one (and re-running the PRAGMAs) per request.
        reader = (
            make_engine(url, immediate=False, pool_size=20, max_overflow=20)
            if url.startswith("sqlite")
            else writer
        )
        return cls(url, writer, reader)

    @property
    def is_sqlite(self) -> bool:
        return self.writer.dialect.name == "sqlite"

    def write_sessions(self) -> sessionmaker[Any]:
        return sessionmaker(self.writer, expire_on_commit=False)

    def read_sessions(self) -> sessionmaker[Any]:
        return sessionmaker(self.reader, expire_on_commit=False)

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
