"""The exchange's side of compute, held by each serving process: its node-signing key,
its embedded node over the data files it hosts, its HTTP clients to registered nodes and
the job runner."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import httpx
import pyarrow as pa
from sqlalchemy import select

from databourse.assets.models import DataFile
from databourse.compute import nodeauth
from databourse.compute.models import Node
from databourse.compute.node import NodeRuntime, TableSource, UnknownDataset
from databourse.compute.nodeclient import TIMEOUT, EmbeddedNode, HttpNode, NodeClient
from databourse.compute.runner import JobRunner
from databourse.compute.services import EMBEDDED
from databourse.delivery import copies, keys

if TYPE_CHECKING:
    from databourse.api.context import AppContext


PROBE_TIMEOUT = httpx.Timeout(5.0)


def exchange_seed(custody_secret: bytes) -> bytes:
    """The seed of the key the exchange signs its requests to nodes with."""
    return keys.derive(custody_secret, "compute-node-signing")


def exchange_public_key(custody_secret: bytes) -> str:
    return nodeauth.public_text(nodeauth.private_key(exchange_seed(custody_secret)))


class ComputeState:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.seed = exchange_seed(ctx.custody_secret)
        self.public_key = nodeauth.public_text(nodeauth.private_key(self.seed))
        self.http = httpx.Client(timeout=TIMEOUT)
        self._tables: dict[str, pa.Table] = {}
        self._lock = threading.Lock()
        self.embedded = NodeRuntime(EMBEDDED, TableSource(self._hosted, list), psi_workers=2)
        self.runner = JobRunner(ctx.writes, ctx.reads, self.node_for)

    def _hosted(self, name: str) -> pa.Table:
        """``asset:<id>``: the asset's latest data file, typed (cached per file version)."""
        asset_id = name.removeprefix("asset:")
        with self.ctx.reads() as s:
            df = s.scalar(
                select(DataFile)
                .where(DataFile.asset_id == asset_id)
                .order_by(DataFile.version.desc())
                .limit(1)
            )
            if not name.startswith("asset:") or df is None:
                raise UnknownDataset(f"the exchange hosts no data for {name!r}", dataset=name)
            s.expunge(df)
        with self._lock:
            hit = self._tables.get(df.id)
        if hit is not None:
            return hit
        table = copies.typed_table(self.ctx.store, df)
        with self._lock:
            self._tables = {df.id: table, **dict(list(self._tables.items())[:7])}
        return table

    def node_for(self, node: Node | None) -> NodeClient:
        if node is None:
            return EmbeddedNode(self.embedded)
        return HttpNode(node.name, node.url, node.public_key, self.seed, client=self.http)

    def probe(self, url: str, public_key: str) -> dict[str, Any]:
        """Ask a node being registered for its info: reachable, and signing with the key.
        A few seconds at most: a node that is slow to say who it is is not registered."""
        with httpx.Client(timeout=PROBE_TIMEOUT) as client:
            return HttpNode("new node", url, public_key, self.seed, client=client).call(
                "GET", "info"
            )

    def close(self) -> None:
        self.runner.close()
        self.http.close()
