"""HTTP load from a pool of client processes, each running threads with one keep-alive
connection each.

The processes are started once and reused for every segment of a run, so connections stay
open and no segment pays for process or connection start-up. A segment is a fixed number
of requests to one path with one set of headers, bounded by a time budget; it reports the
requests completed, their wall time (first start to last end, on the system-wide monotonic
clock), latency percentiles and the CPU the clients used.

Two clients: ``httpx`` (one ``httpx.Client`` per thread) and ``raw``, a minimal HTTP/1.1
keep-alive GET over a plain socket (pre-encoded request, ``Content-Length`` framing only)
that costs the load generator several times less CPU per request. On a small machine the
clients share the CPU with the server, and an expensive client caps the rate of a cheap
endpoint before the server does, which flatters every ratio against it; so the benchmarks
use ``raw`` and report the server's CPU use to show the server was the bottleneck.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import re
import socket
import statistics
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from benchmarks._server import process_cpu_seconds


@dataclass(frozen=True)
class _Part:
    start: float
    end: float
    ok: int
    errors: int
    latencies: array  # seconds, successful requests only
    first_error: str | None


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.I)


class RawClient:
    """HTTP/1.1 GETs on one keep-alive loopback connection; responses need Content-Length."""

    def __init__(self, base_url: str, timeout: float = 30) -> None:
        u = urlsplit(base_url)
        self.addr = (u.hostname or "127.0.0.1", u.port or 80)
        self.host = u.netloc
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._requests: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}

    def _request(self, path: str, headers: dict[str, str]) -> bytes:
        key = (path, tuple(headers.items()))
        req = self._requests.get(key)
        if req is None:
            lines = [
                f"GET {path} HTTP/1.1",
                f"Host: {self.host}",
                "Accept: */*",
                *(f"{k}: {v}" for k, v in headers.items()),
                "",
                "",
            ]
            req = self._requests[key] = "\r\n".join(lines).encode("latin-1")
        return req

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        try:
            sock.sendall(self._request(path, headers))
            data = b""
            while (end := data.find(b"\r\n\r\n")) < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                data += chunk
            head = data[:end]
            m = _CONTENT_LENGTH.search(head)
            if m is None:
                raise ValueError("response without Content-Length")
            need = end + 4 + int(m.group(1))
            while len(data) < need:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                data += chunk
        except BaseException:
            self.close()
            raise
        if _CLOSE.search(head):
            self.close()
        return int(head[9:12]), data[end + 4 : need]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _HttpxClient:
    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        r = self.client.get(path, headers=headers)
        return r.status_code, r.content

    def close(self) -> None:
        self.client.close()


CLIENTS = {"raw": RawClient, "httpx": _HttpxClient}


def _requests(
    client: RawClient | _HttpxClient, path: str, headers: dict[str, str], n: int, deadline: float
) -> tuple[int, int, array, str | None]:
    ok = errors = 0
    lat = array("d")
    first_error = None
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        try:
            status, body = client.get(path, headers)
        except (OSError, ValueError, httpx.HTTPError) as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                ok += 1
                lat.append(clock() - t0)
            else:
                errors += 1
                first_error = first_error or f"HTTP {status}: {body[:200]!r}"
        if time.monotonic() > deadline:
            break
    return ok, errors, lat, first_error


def _client_process(conn: Connection, base_url: str, threads: int, kind: str) -> None:
    clients = [CLIENTS[kind](base_url) for _ in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            path, headers, n, budget = msg
            shares = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
            start = time.monotonic()
            deadline = start + budget
            futures = [
                pool.submit(_requests, c, path, headers, k, deadline)
                for c, k in zip(clients, shares, strict=True)
                if k
            ]
            done = [f.result() for f in futures]
            end = time.monotonic()
            lat = array("d")
            for d in done:
                lat.extend(d[2])
            first = next((d[3] for d in done if d[3]), None)
            conn.send(
                _Part(start, end, sum(d[0] for d in done), sum(d[1] for d in done), lat, first)
            )
    for c in clients:
        c.close()
    conn.close()


@dataclass(frozen=True)
class Segment:
    ok: int
    errors: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    client_cpu: float  # CPU seconds used by all client processes
    first_error: str | None

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


class LoadPool:
    def __init__(
        self, base_url: str, processes: int = 2, threads: int = 4, client: str = "raw"
    ) -> None:
        if client not in CLIENTS:
            raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
        ctx = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[mp.process.BaseProcess] = []
        for i in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_client_process,
                args=(child, base_url, threads, client),
                name=f"bench-client-{i}",
                daemon=True,
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self.connections = processes * threads

    def run(self, path: str, headers: dict[str, str], n: int, budget: float) -> Segment:
        """``n`` GETs of ``path`` over all connections, stopping after ``budget`` seconds."""
        k = len(self._conns)
        cpu0 = self._client_cpu()
        for i, conn in enumerate(self._conns):
            conn.send((path, headers, n // k + (1 if i < n % k else 0), budget))
        parts: list[_Part] = [conn.recv() for conn in self._conns]
        cpu = self._client_cpu() - cpu0
        lat = sorted(x for p in parts for x in p.latencies)

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

        return Segment(
            ok=sum(p.ok for p in parts),
            errors=sum(p.errors for p in parts),
            elapsed=max(p.end for p in parts) - min(p.start for p in parts),
            p50_ms=statistics.median(lat) * 1000 if lat else float("nan"),
            p99_ms=pct(0.99),
            client_cpu=cpu,
            first_error=next((p.first_error for p in parts if p.first_error), None),
        )

    def _client_cpu(self) -> float:
        return sum(process_cpu_seconds(p.pid) for p in self._procs if p.pid is not None)

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> LoadPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
