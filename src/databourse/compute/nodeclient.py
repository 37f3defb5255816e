"""How the exchange reaches a compute node: over signed HTTP (``HttpNode``) or, for data
the exchange hosts, in process (``EmbeddedNode``). Both give the same answers; a node's
refusal arrives as the node's own problem, re-raised here with its type kept."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from databourse.compute import nodeauth
from databourse.compute.node import NodeRuntime, canonical
from databourse.errors import PROBLEM_BASE, DataBourseError

TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=600.0, pool=5.0)
MAX_ANSWER = 512 * 1024 * 1024  # the largest answer read from a node (a PSI reply of 2^22)
REFUSAL_MEMBERS = ("reason", "field", "parameter", "column", "dataset")
_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


class NodeFailed(DataBourseError):
    slug = "node-failed"
    status = 502
    title = "The compute node did not answer properly"


class NodeRefused(DataBourseError):
    """The node answered with a problem of its own (e.g. the query is not private)."""

    status = 422
    title = "The compute node refused the step"

    def __init__(self, problem: Mapping[str, Any]) -> None:
        """Only what a refusal may carry is kept: a known problem type (else
        ``node-refused``), a 4xx status (else 422), the detail and a few named members —
        a node chooses neither the exchange's status nor what else its answer holds."""
        kind = str(problem.get("type", ""))
        slug = kind.removeprefix(PROBLEM_BASE)
        if not kind.startswith(PROBLEM_BASE) or not _SLUG.match(slug):
            slug = "node-refused"
        status = problem.get("status")
        ok = isinstance(status, int) and not isinstance(status, bool) and 400 <= status < 500
        extra = {k: problem[k] for k in REFUSAL_MEMBERS if isinstance(problem.get(k), str)}
        super().__init__(str(problem.get("detail") or self.title)[:1000], **extra)
        self.slug = slug  # type: ignore[misc]
        self.status = int(status) if ok and status not in (401, 403, 404) else 422  # type: ignore[misc,arg-type]
        self.title = str(problem.get("title") or self.title)[:200]  # type: ignore[misc]


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
        self._audience = public_key
        self._key = nodeauth.private_key(exchange_seed)
        self._client = client or httpx.Client(timeout=TIMEOUT)

    def call(self, method: str, step: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        raw = canonical(dict(body or {})) if method == "POST" else b""
        target = f"{self._path}/node/v1/{step}"
        headers = nodeauth.sign_request(self._key, self._audience, method, target, raw)
        headers["Content-Type"] = "application/json"
        try:
            with self._client.stream(
                method, f"{self.url}/node/v1/{step}", content=raw, headers=headers
            ) as r:
                status, content = r.status_code, _bounded(r)
                signature = r.headers.get(nodeauth.SIGNATURE)
        except httpx.HTTPError as exc:
            raise NodeFailed(
                f"node {self.name} could not be reached: {type(exc).__name__}"
            ) from exc
        if status == 401:
            raise NodeFailed(f"node {self.name} did not accept the exchange's signature")
        try:
            nodeauth.verify_response(
                self._node_key, headers[nodeauth.NONCE], status, content, signature
            )
        except nodeauth.NodeAuthFailed as exc:
            raise NodeFailed(f"node {self.name}: {exc}") from exc
        try:
            payload = json.loads(content)
        except ValueError as exc:
            raise NodeFailed(f"node {self.name} answered with something other than JSON") from exc
        if not isinstance(payload, dict):
            raise NodeFailed(f"node {self.name} answered with something other than an object")
        if status >= 500 or not 200 <= status < 500:
            raise NodeFailed(f"node {self.name} failed (status {status})")
        if status >= 400:
            raise NodeRefused(payload)
        return payload


def _bounded(r: httpx.Response) -> bytes:
    chunks, size = [], 0
    for chunk in r.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER:
            raise NodeFailed("the node's answer is larger than the exchange accepts")
        chunks.append(chunk)
    return b"".join(chunks)


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
