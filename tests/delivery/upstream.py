"""A merchant's API for the gateway tests: a real HTTP server (uvicorn, in a thread).

- ``/score?mobile=…`` (GET or POST): the licensed fields and one more the policy does not
  license (``carrier_cost_fen``), so that filtering shows;
- ``/list``: a JSON list of such objects;
- ``/secure``: 401 unless the exchange's credential is presented in ``X-Api-Key``;
- ``/slow``: answers after ``SLOW_SECONDS`` (for timeouts);
- ``/fail``: 500; ``/missing``: 404 with a JSON error; ``/text``: plain text;
- ``/v1/…``: echoes the method and path.

``Upstream.calls`` counts the requests received and ``Upstream.seen`` keeps the headers,
method, path and query of the last ones, to check what the gateway forwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import serve_in_thread

SECRET = "upstream-credential-0123456789abcdef"
SECRET_HEADER = "X-Api-Key"
SLOW_SECONDS = 2.0
UNLICENSED = "carrier_cost_fen"


def score(mobile: str) -> dict[str, Any]:
    n = sum(int(c) for c in mobile if c.isdigit())
    return {
        "mobile": mobile,
        "tenure_months": n * 3,
        "status": "active",
        "risk_score": n % 101,
        UNLICENSED: 7,
    }


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    base_url: str = ""
    calls: int = 0
    seen: deque[Seen] = field(default_factory=lambda: deque(maxlen=50))
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def last(self) -> Seen:
        return self.seen[-1]

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


def _app(state: Upstream) -> Starlette:
    async def note(request: Request) -> None:
        body = await request.body()
        with state._lock:
            state.calls += 1
            state.seen.append(
                Seen(
                    request.method,
                    request.url.path,
                    request.url.query,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                )
            )

    async def score_route(request: Request) -> Response:
        await note(request)
        return JSONResponse(score(request.query_params.get("mobile", "0")))

    async def list_route(request: Request) -> Response:
        await note(request)
        return JSONResponse([score("13800000001"), score("13800000002")])

    async def secure(request: Request) -> Response:
        await note(request)
        if request.headers.get(SECRET_HEADER) != SECRET:
            return JSONResponse({"error": "bad credential"}, status_code=401)
        return JSONResponse(score("13900000000"))

    async def slow(request: Request) -> Response:
        await note(request)
        await asyncio.sleep(SLOW_SECONDS)
        return JSONResponse(score("1"))

    async def fail(request: Request) -> Response:
        await note(request)
        return PlainTextResponse("boom", status_code=500)

    async def missing(request: Request) -> Response:
        await note(request)
        return JSONResponse({"error": "unknown number", UNLICENSED: 1}, status_code=404)

    async def text(request: Request) -> Response:
        await note(request)
        return PlainTextResponse("mobile,risk_score\n13800000000,12\n")

    async def echo(request: Request) -> Response:
        await note(request)
        return JSONResponse({"status": request.method, "mobile": request.url.path})

    return Starlette(
        routes=[
            Route("/score", score_route, methods=["GET", "POST"]),
            Route("/list", list_route),
            Route("/secure", secure),
            Route("/slow", slow),
            Route("/fail", fail),
            Route("/missing", missing),
            Route("/text", text),
            Route("/v1/{rest:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )


def start() -> Upstream:
    state = Upstream()
    server, thread, base = serve_in_thread(_app(state))
    state.base_url, state._server, state._thread = base, server, thread
    return state
