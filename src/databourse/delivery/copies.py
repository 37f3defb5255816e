"""Buyers' fingerprinted copies of data files: made once per contract and file version,
kept in the object store as typed Parquet, committed on the ledger by their SHA-256.

A copy is made by streaming the stored file batch by batch through ``fingerprint.embed``
(keyed by the file's derived key and the contract id), keeping only the fields the
contract licenses, casting each column to its logical type and writing Parquet — memory
stays at one batch whatever the file's size. Making a copy is deterministic, so the
ledger's hash of a copy can be checked by making it again.

Downloads and Delta Sharing both serve these copies; leak tracing recomputes the marks
from the original file and the contracts that received copies.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databourse.assets.models import DataAsset, DataFile
from databourse.assets.store import ObjectStore
from databourse.assets.tabular import stored_batches
from databourse.catalog import services as catalog
from databourse.db import new_id
from databourse.delivery import fingerprint, keys, rules, schemes
from databourse.delivery.access import Grant
from databourse.delivery.errors import NotDeliverable
from databourse.delivery.models import Copy
from databourse.uow import SYSTEM, UnitOfWork

if TYPE_CHECKING:
    from databourse.api.context import AppContext

#: Arrow types of the copies' columns by logical type; other types stay text.
ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
}
ROW_GROUP_ROWS = 128 * 1024


@dataclass(frozen=True)
class SharedTable:
    name: str  # lowercase slug, unique within the product
    asset_id: str
    data_file_id: str
    version: int
    row_count: int


def _slug(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "_".join(words)[:60].strip("_")


def tables(session: Session, grant: Grant) -> list[SharedTable]:
    """The latest data file of each of the product's assets, named for sharing."""
    return product_tables(session, grant.product_id)


def product_tables(session: Session, product_id: str) -> list[SharedTable]:
    asset_ids = catalog.asset_ids_of(session, product_id)
    latest = (
        select(DataFile.asset_id, func.max(DataFile.version).label("v"))
        .where(DataFile.asset_id.in_(asset_ids))
        .group_by(DataFile.asset_id)
        .subquery()
    )
    rows = session.execute(
        select(DataFile, DataAsset.title)
        .join(latest, (latest.c.asset_id == DataFile.asset_id) & (latest.c.v == DataFile.version))
        .join(DataAsset, DataAsset.id == DataFile.asset_id)
        .order_by(DataFile.asset_id)
    ).all()
    out: list[SharedTable] = []
    taken: set[str] = set()
    for df, title in rows:
        name = _slug(title) or df.asset_id.lower()
        if name in taken:
            name = f"{name}_{df.asset_id.lower()[-6:]}"
        taken.add(name)
        out.append(SharedTable(name, df.asset_id, df.id, df.version, df.row_count))
    return out


def _data_file(session: Session, grant: Grant, data_file_id: str) -> DataFile:
    df = session.get(DataFile, data_file_id)
    if df is None or df.asset_id not in catalog.asset_ids_of(session, grant.product_id):
        raise NotDeliverable(f"data file {data_file_id} is not part of the contract's product")
    return df


def licensed_columns(df: DataFile, grant: Grant) -> list[tuple[str, str]]:
    """(name, logical type) of the file's columns the contract licenses, in file order."""
    names = rules.licensed_fields(grant.policy, [c["name"] for c in df.columns])
    types = {c["name"]: c["type"] for c in df.columns}
    return [(n, types[n]) for n in names]


def arrow_schema(session: Session, grant: Grant, data_file_id: str) -> pa.Schema:
    """The typed schema of the buyer's copy of the file."""
    df = _data_file(session, grant, data_file_id)
    return _schema(licensed_columns(df, grant))


def _schema(columns: list[tuple[str, str]]) -> pa.Schema:
    return pa.schema([pa.field(n, ARROW_TYPES.get(t, pa.string())) for n, t in columns])


def _typed(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for f in schema:
        text = batch.column(batch.schema.get_field_index(f.name))
        if pa.types.is_string(f.type):
            arrays.append(text)
            continue
        if pa.types.is_boolean(f.type):
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(text))
            arrays.append(pc.is_in(lowered, pa.array(["true", "1", "yes", "t", "y"])))
            arrays[-1] = pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), arrays[-1])
            continue
        trimmed = pc.utf8_trim_whitespace(text)
        blank = pc.equal(trimmed, "")
        arrays.append(pc.cast(pc.if_else(blank, pa.scalar(None, pa.string()), trimmed), f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Hashing:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha.update(view)
        self.size += len(view)
        return self.raw.write(view)

    def flush(self) -> None:
        self.raw.flush()

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        self.closed = True


def marked_batches(
    store: ObjectStore, df: DataFile, scheme: fingerprint.Scheme, secret: bytes, recipient: str
) -> Iterator[pa.RecordBatch]:
    """The recipient's copy of the file, as text batches with every column."""
    with store.open(df.object_key) as f:
        for _, columns in stored_batches(f, df.format, df.encoding, 0):
            names = [c["name"] for c in df.columns]
            batch = pa.RecordBatch.from_arrays(columns, names=names)
            yield fingerprint.embed(batch, scheme, secret, recipient)


def write_copy(
    store: ObjectStore, df: DataFile, grant: Grant, scheme: fingerprint.Scheme, secret: bytes
) -> tuple[str, str, int, int]:
    """Write the buyer's copy to a temporary object: (key, sha256, bytes, rows)."""
    schema = _schema(licensed_columns(df, grant))
    temp_key, raw = store.create_temp(".parquet")
    rows = 0
    try:
        with raw:
            sink = _Hashing(raw)
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                for batch in marked_batches(store, df, scheme, secret, grant.contract_id):
                    typed = _typed(batch.select(schema.names), schema)
                    writer.write_batch(typed, row_group_size=ROW_GROUP_ROWS)
                    rows += typed.num_rows
        return temp_key, sink.sha.hexdigest(), sink.size, rows
    except BaseException:
        store.delete(temp_key)
        raise


def copy_state(c: Copy) -> dict[str, Any]:
    return {
        "id": c.id,
        "contract_id": c.contract_id,
        "data_file_id": c.data_file_id,
        "scheme": c.scheme,
        "object_key": c.object_key,
        "sha256": c.sha256,
        "byte_size": c.byte_size,
        "row_count": c.row_count,
    }


def find(session: Session, contract_id: str, data_file_id: str) -> Copy | None:
    return session.scalar(
        select(Copy).where(Copy.contract_id == contract_id, Copy.data_file_id == data_file_id)
    )


def ensure(ctx: AppContext, grant: Grant, data_file_id: str) -> Copy:
    """The buyer's copy of the file, made on first use (idempotent, safe under races:
    of two processes making the same copy, the first to commit wins; the other's object
    is deleted, as is the object of a copy that fails to be recorded)."""
    with ctx.reads() as session:
        found = find(session, grant.contract_id, data_file_id)
        if found is not None:
            session.expunge(found)
            return found
        df = _data_file(session, grant, data_file_id)
        scheme = schemes.scheme_for(session, df)
        session.expunge(df)
    secret = keys.fingerprint_key(ctx.custody_secret, df.id)
    temp_key, sha, size, rows = write_copy(ctx.store, df, grant, scheme, secret)
    final_key = f"copies/{grant.contract_id}/{df.id}-{uuid.uuid4().hex[:8]}.parquet"
    ctx.store.promote(temp_key, final_key)
    try:
        with UnitOfWork(ctx.writes, SYSTEM) as uow:
            c = Copy(
                id=new_id("cpy"),
                contract_id=grant.contract_id,
                data_file_id=df.id,
                scheme=scheme.to_dict(),
                object_key=final_key,
                sha256=sha,
                byte_size=size,
                row_count=rows,
            )
            uow.session.add(c)
            uow.session.flush()
            uow.record(
                "copy.made",
                c.id,
                {"contract_id": c.contract_id, "data_file_id": df.id, "sha256": sha, "rows": rows},
                copy_state(c),
                (grant.buyer_org_id, grant.merchant_org_id),
            )
            uow.commit()
            uow.session.expunge(c)
            return c
    except BaseException as exc:
        with ctx.reads() as session:  # what the database holds now decides
            found = find(session, grant.contract_id, data_file_id)
            if found is not None:
                session.expunge(found)
        if found is None or found.object_key != final_key:
            ctx.store.delete(final_key)  # not recorded: never an object without its row
        if found is None or not isinstance(exc, IntegrityError):
            raise
        return found  # another maker's copy committed first


def typed_table(store: ObjectStore, df: DataFile) -> pa.Table:
    """The stored file, whole and typed by its declared columns (no marks): what the
    exchange's own compute node computes on for data the exchange hosts."""
    schema = _schema([(c["name"], c["type"]) for c in df.columns])
    batches: list[pa.RecordBatch] = []
    with store.open(df.object_key) as f:
        for _, columns in stored_batches(f, df.format, df.encoding, 0):
            batch = pa.RecordBatch.from_arrays(columns, names=schema.names)
            batches.append(_typed(batch, schema))
    return pa.Table.from_batches(batches, schema=schema)
