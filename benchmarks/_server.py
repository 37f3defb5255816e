"""An ASGI app served by uvicorn in its own process (one worker, loopback, ephemeral port).

The app is built *in the server process* by a factory named ``"module:function"`` and
called with keyword arguments, so nothing but plain data crosses the process boundary.
uvicorn runs as ``databourse serve`` does: ``loop`` and ``http`` on ``auto`` (uvloop and
httptools when installed), no access log.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx

_TICKS = os.sysconf("SC_CLK_TCK")


def _serve(factory: str, kwargs: dict[str, Any], conn: Connection) -> None:
    import uvicorn

    module, _, name = factory.partition(":")
    app = getattr(importlib.import_module(module), name)(**kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    conn.send(sock.getsockname()[1])
    conn.close()
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[sock])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


@dataclass(frozen=True)
class Served:
    base_url: str
    pid: int

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)


@contextmanager
def serve(
    factory: str, ready_path: str = "/health", timeout: float = 30, **kwargs: Any
) -> Iterator[Served]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_serve, args=(factory, kwargs, child), name="bench-server", daemon=True
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise RuntimeError("the benchmark server did not report its port")
        base = f"http://127.0.0.1:{parent.recv()}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(base + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not proc.is_alive():
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.05)
        assert proc.pid is not None
        yield Served(base, proc.pid)
    finally:
        parent.close()
        if proc.is_alive():
            proc.terminate()  # SIGTERM: uvicorn shuts down gracefully (lifespan included)
            proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
