"""Leak tracing: which buyer's copy did a suspected file come from?

The merchant (or the operator) uploads the suspected file. The exchange reads it as text
columns (CSV in UTF-8 or GB18030, or Parquet), streams the original data file past
``fingerprint.Tracer`` together with the ids of every contract that received a copy of
that file, and keeps the ranking. The result — who is accused, with what score and what
probability of a false accusation — goes on the ledger as ``trace.completed``, so an
accusation can be shown later exactly as it was made.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.assets.errors import MalformedFile, UnsupportedEncoding
from databourse.assets.models import DataFile
from databourse.assets.tabular import csv_table, parquet_table, stored_batches
from databourse.auth.policy import Principal, authorize
from databourse.catalog.models import Product
from databourse.db import new_id
from databourse.delivery import copies, fingerprint, keys
from databourse.delivery.errors import InvalidSuspect, NotDeliverable
from databourse.delivery.models import Copy, Trace
from databourse.errors import NotFound
from databourse.market.models import Contract
from databourse.participants.models import Organisation
from databourse.uow import Actor, UnitOfWork

if TYPE_CHECKING:
    from databourse.api.context import AppContext

MAX_SUSPECT_BYTES = 256 << 20
MAX_COLUMNS = 2000


def _product(session: Session, principal: Principal, product_id: str, action: str) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    authorize(principal, action, product.org_id)
    return product


def read_suspect(data: bytes) -> pa.Table:
    """The suspected file as a table of text columns, whatever its format."""
    if not data:
        raise InvalidSuspect("the suspected file is empty")
    if len(data) > MAX_SUSPECT_BYTES:
        raise InvalidSuspect(f"the suspected file is larger than {MAX_SUSPECT_BYTES} bytes")
    try:
        if data[:4] == b"PAR1":
            table = parquet_table(io.BytesIO(data), MAX_COLUMNS, 4 * MAX_SUSPECT_BYTES)
        else:
            try:
                data.decode("utf-8")
                encoding = "utf-8"
            except UnicodeDecodeError:
                encoding = "gb18030"
            table = csv_table(io.BytesIO(data), encoding, MAX_COLUMNS, None)
        batches = [pa.RecordBatch.from_arrays(cols, names=table.names) for cols in table.batches]
    except (MalformedFile, UnsupportedEncoding) as exc:
        raise InvalidSuspect(f"the suspected file cannot be read: {exc}") from None
    if not batches:
        return pa.table({n: pa.array([], pa.string()) for n in table.names})
    return pa.Table.from_batches(batches)


def _data_file(session: Session, product: Product, data_file_id: str | None) -> DataFile:
    if data_file_id is not None:
        df = session.get(DataFile, data_file_id)
        if df is None or df.asset_id not in {t.asset_id for t in copies.product_tables(
            session, product.id
        )}:  # fmt: skip
            raise NotFound(f"data file {data_file_id} is not part of product {product.id}")
        return df
    shared = copies.product_tables(session, product.id)
    if not shared:
        raise NotDeliverable("the product has no data file")
    df = session.get(DataFile, shared[0].data_file_id)
    assert df is not None
    return df


def trace(
    ctx: AppContext,
    principal: Principal,
    product_id: str,
    suspect: bytes,
    data_file_id: str | None = None,
) -> Trace:
    """Trace a suspected leak of the product's data file; the stored, recorded result."""
    with ctx.reads() as session:
        product = _product(session, principal, product_id, "trace.create")
        if product.kind != "dataset":
            raise NotDeliverable("only dataset products are fingerprinted")
        df = _data_file(session, product, data_file_id)
        received = session.execute(
            select(Copy.contract_id, Contract.buyer_org_id, Copy.scheme)
            .join(Contract, Contract.id == Copy.contract_id)
            .where(Copy.data_file_id == df.id)
        ).all()
        session.expunge_all()
    recipients = {cid: org for cid, org, _ in received}
    groups: dict[str, tuple[fingerprint.Scheme, list[str]]] = {}  # copies made alike
    for cid, _, scheme in received:
        parsed = fingerprint.Scheme.from_dict(scheme)
        groups.setdefault(json.dumps(scheme, sort_keys=True), (parsed, []))[1].append(cid)
    table = read_suspect(suspect)
    secret = keys.fingerprint_key(ctx.custody_secret, df.id)
    results = [
        _trace_group(ctx, df, scheme, secret, sorted(cids), table)
        for scheme, cids in groups.values()
    ]
    result = _merge(results, len(recipients))
    accused = [s.recipient for s in result.ranking if s.accused]
    actor = Actor(principal.kind, principal.id, principal.org_id)
    with UnitOfWork(ctx.writes, actor) as uow:
        t = Trace(
            id=new_id("trc"),
            product_id=product.id,
            data_file_id=df.id,
            requested_by=principal.ref,
            requested_org_id=principal.org_id,
            suspect_sha256=hashlib.sha256(suspect).hexdigest(),
            suspect_rows=table.num_rows,
            result={**result.to_dict(), "buyers": recipients},
            accused=accused,
        )
        uow.session.add(t)
        uow.session.flush()
        uow.record(
            "trace.completed",
            t.id,
            {
                "product_id": product.id,
                "data_file_id": df.id,
                "suspect_sha256": t.suspect_sha256,
                "accused": accused,
                "candidates": len(recipients),
            },
            trace_state(t),
            (product.org_id,),
        )
        uow.commit()
    return t


def _trace_group(
    ctx: AppContext,
    df: DataFile,
    scheme: fingerprint.Scheme,
    secret: bytes,
    recipients: list[str],
    table: pa.Table,
) -> fingerprint.TraceResult:
    tracer = fingerprint.Tracer(scheme, secret, recipients, table)
    names = [c["name"] for c in df.columns]
    with ctx.store.open(df.object_key) as f:
        for _, columns in stored_batches(f, df.format, df.encoding, 0):
            tracer.feed(pa.RecordBatch.from_arrays(columns, names=names))
    return tracer.result()


def _merge(results: list[fingerprint.TraceResult], candidates: int) -> fingerprint.TraceResult:
    """One ranking over every group of copies. Each group's false-accusation
    probabilities were corrected for its own size; correct them for all candidates."""
    if len(results) == 1:
        return results[0]
    if not results:
        return fingerprint.TraceResult((), 0, 0, fingerprint.DEFAULT_THRESHOLD, ())
    ranking = []
    for r in results:
        shift = math.log10(candidates / max(1, len(r.ranking)))  # in logs: p may underflow
        for s in r.ranking:
            log10_p = min(0.0, s.log10_p_false + shift)
            accused = log10_p < math.log10(r.threshold)
            ranking.append(
                replace(s, p_false=10.0**log10_p, log10_p_false=log10_p, accused=accused)
            )
    ranking.sort(key=lambda s: (s.log10_p_false, -s.score))
    first = results[0]
    return fingerprint.TraceResult(
        tuple(ranking),
        first.rows_suspect,
        max(r.rows_matched for r in results),
        first.threshold,
        tuple(sorted({c for r in results for c in r.columns_used})),
    )


def trace_state(t: Trace) -> dict[str, Any]:
    return {
        "id": t.id,
        "product_id": t.product_id,
        "data_file_id": t.data_file_id,
        "requested_by": t.requested_by,
        "suspect_sha256": t.suspect_sha256,
        "suspect_rows": t.suspect_rows,
        "result": t.result,
        "accused": t.accused,
    }


def get(session: Session, principal: Principal, trace_id: str) -> Trace:
    t = session.get(Trace, trace_id)
    if t is None:
        raise NotFound(f"trace {trace_id} not found")
    product = session.get(Product, t.product_id)
    assert product is not None
    try:
        authorize(principal, "trace.read", product.org_id)
    except NotFound:
        raise NotFound(f"trace {trace_id} not found") from None
    return t


def list_traces(session: Session, principal: Principal, product_id: str) -> list[Trace]:
    _product(session, principal, product_id, "trace.read")
    return list(
        session.scalars(
            select(Trace).where(Trace.product_id == product_id).order_by(Trace.created_at)
        )
    )


def buyer_names(session: Session, org_ids: list[str]) -> dict[str, str]:
    rows = session.execute(
        select(Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids))
    ).all()
    return dict(rows)
