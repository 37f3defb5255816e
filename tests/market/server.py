"""A real exchange process for the reliability tests, and a throwaway PostgreSQL database.

``ExchangeProcess`` runs ``uvicorn databourse.api.app:create_app --factory`` in its own
process group, configured only through ``DATABOURSE_*`` environment variables, with a
data directory shared across restarts (so the token secret, the exchange's log key and the
custody secret stay the same). The listening socket belongs to the test and is handed to
each server process (``uvicorn --fd``): the port stays the same across restarts and no
other process can take it in between; connections made while no server runs wait in the
socket's backlog for the next one. ``kill`` is a SIGKILL: no shutdown hook runs, open
transactions are cut off mid-flight.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from databourse import migrations

PG_ADMIN = os.environ.get("DATABOURSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


class PostgresUnavailable(Exception):
    pass


@contextmanager
def pg_database(prefix: str = "databourse_test") -> Iterator[str]:
    """A freshly migrated PostgreSQL database (SQLAlchemy URL), dropped on exit whatever
    happened; ``PostgresUnavailable`` if the server cannot be reached."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise PostgresUnavailable(str(exc).strip().splitlines()[0]) from exc
    try:
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}/{name}"
        migrations.upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ExchangeProcess:
    """The exchange served by uvicorn in a child process; restartable on the same port."""

    def __init__(self, data_dir: Path, database_url: str, **settings: object) -> None:
        self.data_dir = data_dir
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.set_inheritable(True)
        self.port = int(self.sock.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DATABOURSE_")}
        self.env |= {
            "DATABOURSE_DATA_DIR": str(data_dir),
            "DATABOURSE_DATABASE_URL": database_url,
            "DATABOURSE_LOG_LEVEL": "WARNING",
            **{f"DATABOURSE_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.start_seconds: list[float] = []  # how long each start took to be ready
        self.log = data_dir / "server.log"

    def start(self, timeout: float = 60) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "databourse.api.app:create_app",
                    "--factory",
                    "--fd",
                    str(self.sock.fileno()),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                cwd=self.data_dir,  # no stray .env is read
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(self.sock.fileno(),),
                start_new_session=True,
            )
        self.starts += 1
        began = time.monotonic()
        deadline = began + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the exchange exited with {self.proc.returncode}: {self.tail()}"
                )
            try:
                if httpx.get(self.base_url + "/ready", timeout=2).status_code == 200:
                    self.start_seconds.append(time.monotonic() - began)
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the exchange did not become ready: {self.tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server's process group and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.kills += 1

    def stop(self) -> None:
        """Stop for good (tests' clean-up): SIGTERM, then SIGKILL if it lingers; the
        listening socket is closed."""
        self.sock.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""
