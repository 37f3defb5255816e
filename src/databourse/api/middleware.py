"""One pure-ASGI middleware: request ids, access logs and the request-body limit.

Written as plain ASGI rather than Starlette's BaseHTTPMiddleware so that it adds no task
switch per request.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from databourse.errors import PROBLEM_BASE
from databourse.logs import request_id

log = logging.getLogger("databourse.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Paths that carry a credential (a signed link is its own): logged without it.
_CREDENTIAL_PATH = re.compile(r"^(/files/)[^/]+")


def logged_path(path: str) -> str:
    """The request's path as the access log shows it: a signed link's token left out."""
    return _CREDENTIAL_PATH.sub(r"\1…", path)


#: Compute nodes mounted in the exchange's process (the demo's) take their own, larger limit.
NODE_PATHS = ("/demo/nodes/",)
NODE_MAX_BODY = 512 * 1024 * 1024


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_upload_bytes: int | None = None,
        upload_paths: str = r"^/api/v1/(assets/[^/]+/files|products/[^/]+/traces)$",
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        # File uploads get their own, larger limit (plus room for the multipart framing)
        # and must declare their length: their bodies are streamed, never buffered here.
        self.max_upload = (max_upload_bytes or max_body_bytes) + 64 * 1024
        self.upload_paths = re.compile(upload_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        rid = given if _SAFE_ID.match(given) else secrets.token_hex(8)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = {"code": 500}
        limit = self.max_body
        declared = headers.get("content-length", "")
        upload = scope["method"] == "POST" and bool(self.upload_paths.match(scope["path"]))
        if scope["path"].startswith(NODE_PATHS):
            limit = NODE_MAX_BODY  # a node app served here (the demo's) carries PSI messages
        elif upload:
            limit = self.max_upload
            if not declared.isdigit():
                await self._problem(
                    scope,
                    send,
                    rid,
                    411,
                    "length-required",
                    "Length required",
                    "a file upload must declare its Content-Length",
                )
                request_id.reset(token)
                return
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, send, rid, limit)
            request_id.reset(token)
            return
        downstream_receive = receive
        if not declared.isdigit() and scope["method"] in ("POST", "PUT", "PATCH"):
            # A body of unknown length is read up to the limit before the app sees it, so
            # an oversized one is refused with a problem rather than failing mid-parse.
            buffered: list[Message] = []
            seen = 0
            while True:
                msg = await receive()
                buffered.append(msg)
                if msg["type"] != "http.request":
                    break
                seen += len(msg.get("body", b""))
                if seen > limit:
                    await self._too_large(scope, send, rid, limit)
                    request_id.reset(token)
                    return
                if not msg.get("more_body", False):
                    break

            async def replay() -> Message:
                return buffered.pop(0) if buffered else await receive()

            downstream_receive = replay

        async def send_with_id(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
                status["started"] = 1
                msg["headers"] = [*msg.get("headers", []), (b"x-request-id", rid.encode())]
            await send(msg)

        try:
            await self.app(scope, downstream_receive, send_with_id)
        except Exception:
            # Here, inside the request's context, the problem and the log line both carry
            # the request id; the details stay in the log.
            log.exception("unhandled error")
            if status["code"] == 500 and not status.get("started"):
                await self._problem(
                    scope,
                    send,
                    rid,
                    500,
                    "internal",
                    "Internal error",
                    "An unexpected error occurred; quote the request id to the operator.",
                )
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": logged_path(scope["path"]),
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id.reset(token)

    async def _too_large(self, scope: Scope, send: Send, rid: str, limit: int) -> None:
        await self._problem(
            scope,
            send,
            rid,
            413,
            "payload-too-large",
            "The request body is too large",
            f"the body exceeds {limit} bytes",
        )

    async def _problem(
        self, scope: Scope, send: Send, rid: str, status: int, slug: str, title: str, detail: str
    ) -> None:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope["path"],
            "request_id": rid,
        }
        raw = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"x-request-id", rid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
