"""Fixtures of the settlement tests: the store's write sessions, the exchange's staff."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from databourse.db import Database
from tests.assets.test_asset_api import Staff, staff_for
from tests.conftest import Exchange


@pytest.fixture(scope="module")
def staff(exchange: Exchange) -> Iterator[Staff]:
    yield from staff_for(exchange)


@pytest.fixture(scope="module")
def writes(store_url: str) -> Iterator[sessionmaker[Session]]:
    """Write sessions on the store (SQLite, then PostgreSQL), without a running exchange."""
    database = Database.connect(store_url)
    yield database.write_sessions()
    database.dispose()
