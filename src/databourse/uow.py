"""Unit of work: one command, one database transaction, with its ledger entries.

A command handler receives a ``UnitOfWork``, changes rows through its session and calls
``record`` for every state change. ``commit`` appends the recorded entries to the ledger
inside the same transaction, so a change and its entry are committed or rolled back together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class Actor:
    """Who performs a command: a user, an API key, or the exchange itself (CLI, scheduler)."""

    kind: str  # "user" | "apikey" | "system"
    id: str
    org_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.id}"


SYSTEM = Actor("system", "exchange")


@dataclass
class Record:
    """A state change to be filed on the ledger: ids and hashes only, never personal data."""

    kind: str
    subject: str
    body: dict[str, Any]
    state: dict[str, Any] | None = None
    parties: tuple[str, ...] = ()  # organisations that may read the entry and its receipt


@dataclass
class UnitOfWork:
    sessions: sessionmaker[Session]
    actor: Actor = SYSTEM
    records: list[Record] = field(default_factory=list)
    # subjects' latest ledger state hashes read under a row lock during this unit of work
    last_states: dict[str, str | None] = field(default_factory=dict)
    session: Session = field(init=False)
    _done: bool = field(default=False, init=False)

    def __enter__(self) -> UnitOfWork:
        self.session = self.sessions()
        self.session.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._done:
                self.session.rollback()
        finally:
            self.session.close()

    def record(
        self,
        kind: str,
        subject: str,
        body: dict[str, Any],
        state: dict[str, Any] | None = None,
        parties: tuple[str, ...] = (),
    ) -> None:
        self.records.append(Record(kind, subject, body, state, parties))

    def commit(self) -> None:
        from databourse.ledger.writer import append_records

        self.session.flush()
        if self.records:
            append_records(self.session, self.actor, self.records, self.last_states)
            self.records = []
        self.session.commit()
        self._done = True

    def rollback(self) -> None:
        self.session.rollback()
        self.records = []
        self.last_states = {}
        self._done = True
