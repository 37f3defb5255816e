"""The compute node's HTTP server (``databourse node serve``).

Every route takes a request signed by the exchange (``nodeauth``: fresh, never replayed)
and answers with a body signed by the node and bound to the request's nonce. An unsigned
or badly signed request gets ``401`` and nothing else; errors are RFC 9457 problems,
signed like any answer. The routes are the runtime's steps:

    GET  /node/v1/info                      the node's name and its datasets' columns
    POST /node/v1/sql                       a DP SQL query (or an aggregation-threshold one)
    POST /node/v1/psi/{request|reply|finish}
    POST /node/v1/fl/{stats|fit|evaluate|end}
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from databourse import __version__
from databourse.compute import nodeauth
from databourse.compute.node import NodeConfig, NodeRuntime, canonical, runtime_of
from databourse.errors import PROBLEM_BASE, DataBourseError

log = logging.getLogger("databourse.compute.node")
PREFIX = "/node/v1"
MAX_BODY = 512 * 1024 * 1024  # a PSI message of 2^22 elements is 128 MiB in base64


def _problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


def create_node_app(runtime: NodeRuntime, exchange_key: str, node_seed: bytes) -> FastAPI:
    """The node's ASGI app: ``runtime`` answering the exchange holding ``exchange_key``."""
    exchange = nodeauth.public_key(exchange_key)
    key = nodeauth.private_key(node_seed)
    me = nodeauth.public_text(key)
    nonces = nodeauth.Nonces()
    app = FastAPI(
        title=f"DataBourse compute node {runtime.name}",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def signed(nonce: str, status: int, payload: dict[str, Any]) -> Response:
        body = canonical(payload)
        media = "application/problem+json" if status >= 400 else "application/json"
        return Response(
            body,
            status_code=status,
            media_type=media,
            headers={nodeauth.SIGNATURE: nodeauth.sign_response(key, nonce, status, body)},
        )

    @app.api_route(PREFIX + "/{step:path}", methods=["GET", "POST"])
    async def handle(step: str, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            raw = await _bounded_body(request)
            nonce = nodeauth.verify_request(
                exchange, me, request.method, target, raw, request.headers
            )
            if not nonces.first_use(nonce):
                raise nodeauth.NodeAuthFailed("the request was replayed")
        except nodeauth.NodeAuthFailed as exc:
            log.warning("refused an unauthenticated request to %s: %s", step, exc)
            problem = _problem(401, "node-unauthenticated", "Not signed by the exchange", str(exc))
            return Response(canonical(problem), 401, media_type="application/problem+json")
        try:
            body = request_json(raw) if request.method == "POST" else {}
            result = await run_in_threadpool(runtime.dispatch, request.method, step, body)
        except DataBourseError as exc:
            return signed(
                nonce,
                exc.status,
                _problem(exc.status, exc.slug, exc.title, exc.detail, **exc.extra),
            )
        except Exception:
            log.exception("node step %s failed", step)
            return signed(
                nonce, 500, _problem(500, "internal", "Internal error", "the step failed")
            )
        return signed(nonce, 200, result)

    return app


async def _bounded_body(request: Request) -> bytes:
    """The body, read only from a request that carries a signature and within
    ``MAX_BODY``: an unauthenticated caller cannot make the node buffer much."""
    if not nodeauth.has_signature(request.headers):
        raise nodeauth.NodeAuthFailed("the request is not signed")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise nodeauth.NodeAuthFailed("the request is too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise nodeauth.NodeAuthFailed("the request is too large")
        chunks.append(chunk)
    return b"".join(chunks)


class InvalidNodeRequest(DataBourseError):
    slug = "validation"
    status = 422
    title = "The request is not valid"


def request_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidNodeRequest("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise InvalidNodeRequest("the body must be a JSON object")
    return body


def app_from_config(config: NodeConfig) -> FastAPI:
    return create_node_app(runtime_of(config), config.exchange_key, config.key_seed)
