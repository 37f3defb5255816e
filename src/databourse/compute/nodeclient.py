"""How the exchange reaches a compute node: over signed HTTP (``HttpNode``) or, for data
the exchange hosts, in process (``EmbeddedNode``). Both give the same answers; a node's
refusal arrives as the node's own problem, re-raised here with its type kept."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from databourse.compute import nodeauth
from databourse.compute.node import NodeRuntime, canonical
from databourse.errors import PROBLEM_BASE, DataBourseError

TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=600.0, pool=5.0)


class NodeFailed(DataBourseError):
    slug = "node-failed"
    status = 502
    title = "The compute node did not answer properly"


class NodeRefused(DataBourseError):
    """The node answered with a problem of its own (e.g. the query is not private)."""

    status = 422
    title = "The compute node refused the step"

    def __init__(self, problem: Mapping[str, Any]) -> None:
        slug = str(problem.get("type", "")).removeprefix(PROBLEM_BASE) or "node-refused"
        extra = {k: v for k, v in problem.items() if k not in ("type", "title", "status", "detail")}
        super().__init__(str(problem.get("detail") or self.title), **extra)
        self.slug = slug  # type: ignore[misc]
        self.status = int(problem.get("status") or 422)  # type: ignore[misc]
        self.title = str(problem.get("title") or self.title)  # type: ignore[misc]


class NodeClient(Protocol):
    name: str

    def call(
        self, method: str, step: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]: ...


class HttpNode:
    """A registered node at ``url``, whose answers must be signed by ``public_key``."""

    def __init__(
        self,
        name: str,
        url: str,
        public_key: str,
        exchange_seed: bytes,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._path = urlsplit(self.url).path
        self._node_key = nodeauth.public_key(public_key)
        self._key = nodeauth.private_key(exchange_seed)
        self._client = client or httpx.Client(timeout=TIMEOUT)

    def call(self, method: str, step: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raw = canonical(dict(body or {})) if method == "POST" else b""
        target = f"{self._path}/node/v1/{step}"
        headers = nodeauth.sign_request(self._key, method, target, raw)
        headers["Content-Type"] = "application/json"
        try:
            r = self._client.request(
                method, f"{self.url}/node/v1/{step}", content=raw, headers=headers
            )
        except httpx.HTTPError as exc:
            raise NodeFailed(
                f"node {self.name} could not be reached: {type(exc).__name__}"
            ) from exc
        if r.status_code == 401:
            raise NodeFailed(f"node {self.name} did not accept the exchange's signature")
        try:
            nodeauth.verify_response(
                self._node_key,
                headers[nodeauth.NONCE],
                r.status_code,
                r.content,
                r.headers.get(nodeauth.SIGNATURE),
            )
        except nodeauth.NodeAuthFailed as exc:
            raise NodeFailed(f"node {self.name}: {exc}") from exc
        try:
            payload = json.loads(r.content)
        except ValueError as exc:
            raise NodeFailed(f"node {self.name} answered with something other than JSON") from exc
        if r.status_code >= 500:
            raise NodeFailed(f"node {self.name} failed: {payload.get('detail', r.status_code)}")
        if r.status_code >= 400:
            raise NodeRefused(payload)
        if not isinstance(payload, dict):
            raise NodeFailed(f"node {self.name} answered with something other than an object")
        return payload


class EmbeddedNode:
    """The exchange's own node, for data the exchange hosts: the runtime, in process. Its
    answers pass through the same canonical JSON as a remote node's, so nothing reaches
    the exchange that a remote node could not send."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.name = runtime.name
        self.runtime = runtime

    def call(self, method: str, step: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            result = self.runtime.dispatch(method, step, dict(body or {}))
        except DataBourseError:
            raise
        return json.loads(canonical(result))
