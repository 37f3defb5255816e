"""Compute nodes and compute services: who runs what, where.

An organisation registers its node (address and Ed25519 public key); the exchange checks
the node answers, signed, before it is recorded (``node.registered`` on the ledger). A
merchant declares what its ``compute`` product runs (``compute.declared``): DP SQL over a
schema whose bounds and categories the buyer may read, a PSI set, or a federated
training's participants — on its own node or, for data the exchange hosts, on the
exchange's embedded node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, authorize
from databourse.catalog import services as catalog
from databourse.catalog.models import Product
from databourse.compute import dpsql, nodeauth
from databourse.compute.models import ComputeService, Node
from databourse.compute.nodeclient import NodeFailed
from databourse.compute.schemas import (
    FlService,
    NodeIn,
    NodeOut,
    PsiService,
    ServiceIn,
    ServiceOut,
    SqlService,
)
from databourse.db import new_id, utcnow
from databourse.delivery.errors import NotDeliverable
from databourse.errors import Conflict, NotFound, ValidationFailed
from databourse.ledger.writer import assert_untampered
from databourse.uow import UnitOfWork

EMBEDDED = "exchange"  # the embedded node's name in results and messages


def node_state(n: Node) -> dict[str, Any]:
    return {
        "id": n.id,
        "org_id": n.org_id,
        "name": n.name,
        "url": n.url,
        "public_key": n.public_key,
        "status": n.status,
    }


def service_state(c: ComputeService) -> dict[str, Any]:
    return {
        "product_id": c.product_id,
        "node_id": c.node_id,
        "kind": c.kind,
        "spec": c.spec,
        "revision": c.revision,
    }


def _url(url: str) -> str:
    """An http(s) URL with a host and nothing the node protocol does not sign: no
    credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValidationFailed(f"the node's url is not a URL: {exc}", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("a node's url must be http(s) with a host", field="url")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValidationFailed(
            "a node's url carries no credentials, query or fragment", field="url"
        )
    return url.rstrip("/")


# Nodes ------------------------------------------------------------------------------------


def check_node(data: NodeIn) -> str:
    """The node's address, once its form and the key's are checked: before any probe."""
    url = _url(data.url)
    try:
        nodeauth.public_key(data.public_key)
    except nodeauth.NodeAuthFailed as exc:
        raise ValidationFailed(f"public_key: {exc}", field="public_key") from None
    return url


def probe_node(probe: Callable[[str, str], dict[str, Any]], data: NodeIn) -> dict[str, Any]:
    """Ask the node for its info, outside any transaction. Every way of failing gives the
    same answer, so registration is no probe of the network."""
    url = check_node(data)
    try:
        info = probe(url, data.public_key)
    except Exception as exc:
        raise NodeFailed("no compute node signing with that key answered at that address") from (
            exc
        )
    return info


def register_node(
    uow: UnitOfWork, principal: Principal, data: NodeIn, info: dict[str, Any]
) -> NodeOut:
    """Register the caller's organisation's node, with the ``info`` it gave when probed
    (``probe_node``: a signed exchange, so the key and the address belong together) — its
    datasets and their columns, never rows."""
    authorize(principal, "node.register", principal.org_id)
    s = uow.session
    if s.scalar(select(Node.id).where(Node.org_id == principal.org_id, Node.name == data.name)):
        raise Conflict(f"your organisation already has a node named {data.name}")
    url = check_node(data)
    given = info.get("datasets")
    datasets: dict[str, Any] = given if isinstance(given, dict) else {}
    now = utcnow()
    n = Node(
        id=new_id("nod"),
        org_id=principal.org_id,
        name=data.name,
        url=url,
        public_key=data.public_key,
        datasets=datasets,
        status="active",
        registered_by=principal.ref,
        created_at=now,
        updated_at=now,
    )
    s.add(n)
    s.flush()
    uow.record(
        "node.registered",
        n.id,
        {**node_state(n), "datasets": sorted(datasets)},
        node_state(n),
        (n.org_id,),
    )
    return NodeOut.model_validate(n)


def move_node(
    uow: UnitOfWork, principal: Principal, node_id: str, url: str, info: dict[str, Any]
) -> NodeOut:
    """Record a node's new address (``node.moved``), with the ``info`` it gave there when
    probed: the same key answering at the new address."""
    n = uow.session.get(Node, node_id, with_for_update=True)
    if n is None:
        raise NotFound(f"node {node_id} not found")
    authorize(principal, "node.register", n.org_id)
    assert_untampered(uow, n.id, node_state(n))
    n.url = check_node(NodeIn(name=n.name, url=url, public_key=n.public_key))
    given = info.get("datasets")
    n.datasets = given if isinstance(given, dict) else n.datasets
    n.updated_at = utcnow()
    uow.session.flush()
    uow.record("node.moved", n.id, {"id": n.id, "url": n.url}, node_state(n), (n.org_id,))
    return NodeOut.model_validate(n)


def revoke_node(uow: UnitOfWork, principal: Principal, node_id: str) -> NodeOut:
    n = uow.session.get(Node, node_id, with_for_update=True)
    if n is None:
        raise NotFound(f"node {node_id} not found")
    authorize(principal, "node.revoke", n.org_id)
    assert_untampered(uow, n.id, node_state(n))
    if n.status == "revoked":
        return NodeOut.model_validate(n)
    n.status = "revoked"
    n.updated_at = utcnow()
    uow.session.flush()
    uow.record("node.revoked", n.id, {"id": n.id}, node_state(n), (n.org_id,))
    return NodeOut.model_validate(n)


def list_nodes(session: Session, principal: Principal, org_id: str | None = None) -> list[Node]:
    org = org_id or principal.org_id
    authorize(principal, "node.read", org)
    return list(session.scalars(select(Node).where(Node.org_id == org).order_by(Node.name)))


def get_node(session: Session, principal: Principal, node_id: str) -> Node:
    n = session.get(Node, node_id)
    if n is None:
        raise NotFound(f"node {node_id} not found")
    authorize(principal, "node.read", n.org_id)
    return n


def active_node(session: Session, node_id: str, org_id: str, role: str) -> Node:
    """The node, if it is active and belongs to ``org_id`` (the party it must act for)."""
    n = session.get(Node, node_id)
    if n is None or n.org_id != org_id:
        raise ValidationFailed(f"{role}'s node {node_id} is not a node of {role}", field="node_id")
    if n.status != "active":
        raise Conflict(f"node {node_id} is {n.status}")
    return n


# Compute services -------------------------------------------------------------------------


def _check_dataset(session: Session, product: Product, node_id: str | None, dataset: str) -> None:
    if node_id is None:
        assets = catalog.asset_ids_of(session, product.id)
        if dataset.removeprefix("asset:") not in assets or not dataset.startswith("asset:"):
            raise ValidationFailed(
                "on the exchange's embedded node a dataset is one of the product's assets, "
                f"named asset:<id> (one of {', '.join('asset:' + a for a in assets)})",
                field="dataset",
            )
        return
    n = active_node(session, node_id, product.org_id, "the merchant")
    if n.datasets and dataset not in n.datasets:
        held = ", ".join(sorted(n.datasets))
        raise ValidationFailed(
            f"node {n.name} holds no dataset {dataset!r} (it holds {held})", field="dataset"
        )


def declare(uow: UnitOfWork, principal: Principal, product_id: str, data: ServiceIn) -> ServiceOut:
    """Declare or replace what the merchant's ``compute`` product runs (revision +1)."""
    s = uow.session
    product = s.get(Product, product_id, with_for_update=True)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    authorize(principal, "compute.set", product.org_id)
    if product.kind != "compute":
        raise NotDeliverable(f"product {product_id} is a {product.kind}, not a compute product")
    node_id: str | None
    if isinstance(data, SqlService):
        node_id = data.node_id
        try:
            schema = dpsql.Schema.from_dict(data.schema_)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValidationFailed(f"the schema is not valid: {exc}", field="schema") from exc
        tables = {t.name: data.tables.get(t.name, t.name) for t in schema.tables}
        for dataset in tables.values():
            _check_dataset(s, product, node_id, dataset)
        spec: dict[str, Any] = {"schema": schema.to_dict(), "tables": tables}
    elif isinstance(data, PsiService):
        node_id = data.node_id
        _check_dataset(s, product, node_id, data.dataset)
        spec = {"dataset": data.dataset, "column": data.column, "reveal": sorted(set(data.reveal))}
    else:
        assert isinstance(data, FlService)
        node_id = data.participants[0].node_id
        for p in data.participants:
            _check_dataset(s, product, p.node_id, p.dataset)
        spec = {
            "participants": [p.model_dump() for p in data.participants],
            "features": list(dict.fromkeys(data.features)),
            "label": data.label,
            "models": sorted(set(data.models)),
        }
    c = s.get(ComputeService, product_id, with_for_update=True, populate_existing=True)
    subject = f"compute:{product_id}"
    if c is not None:
        assert_untampered(uow, subject, service_state(c))
    else:
        c = ComputeService(product_id=product_id, revision=0)
        s.add(c)
    c.node_id = node_id
    c.kind = data.kind
    c.spec = spec
    c.revision = (c.revision or 0) + 1
    c.updated_by = principal.ref
    c.updated_at = utcnow()
    s.flush()
    uow.record("compute.declared", subject, service_state(c), service_state(c), (product.org_id,))
    return ServiceOut.model_validate(c)


def get_service(session: Session, principal: Principal, product_id: str) -> ServiceOut:
    """What the product computes, as any member may read it: the schema with its public
    bounds and categories, never a row."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    authorize(principal, "compute.read")
    c = session.get(ComputeService, product_id)
    if c is None:
        raise NotFound(f"product {product_id} has no compute service declared")
    return ServiceOut.model_validate(c)
