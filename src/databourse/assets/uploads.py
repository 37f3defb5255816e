"""Data files: immutable versions of an asset's data, with their content commitment.

An upload is received and validated *before* the write transaction opens (a large file
must not hold the database's write lock), promoted to its final key, and only then
registered in one transaction with its ledger entry. If that transaction fails the stored
objects are deleted again, so there is never a file without its row nor a row without
its file.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from databourse.assets import commitment, ingest
from databourse.assets.errors import AssetFrozen, SchemaDrift
from databourse.assets.models import AssetStatus, DataAsset, DataFile
from databourse.assets.schemas import ChunkProofOut
from databourse.assets.store import ObjectStore
from databourse.auth.policy import Principal, authorize
from databourse.db import new_id
from databourse.errors import NotFound
from databourse.settings import Settings, get_settings
from databourse.uow import Actor, UnitOfWork

#: An asset whose files may change: not while frozen by a dispute, never once cancelled.
UPLOADABLE = frozenset(
    {
        AssetStatus.draft,
        AssetStatus.submitted,
        AssetStatus.rejected,
        AssetStatus.registered,
        AssetStatus.amended,
    }
)


def file_state(f: DataFile) -> dict[str, Any]:
    """The file version's state the ledger commits to (hashed; the entry holds ids and the
    commitment only)."""
    return {
        "id": f.id,
        "asset_id": f.asset_id,
        "version": f.version,
        "filename": f.filename,
        "format": f.format,
        "encoding": f.encoding,
        "object_key": f.object_key,
        "byte_size": f.byte_size,
        "sha256": f.sha256,
        "row_count": f.row_count,
        "columns": f.columns,
        "chunk_rows": f.chunk_rows,
        "chunk_count": f.chunk_count,
        "chunk_root": f.chunk_root,
        "sample": f.sample,
        "uploaded_by": f.uploaded_by,
    }


def _check_asset(asset: DataAsset | None, principal: Principal, asset_id: str) -> DataAsset:
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    authorize(principal, "file.upload", asset.org_id)
    if asset.status not in UPLOADABLE:
        raise AssetFrozen(
            f"files cannot be added to an asset that is {asset.status}",
            current_status=asset.status,
        )
    return asset


def _columns(facts: ingest.FileFacts) -> list[dict[str, Any]]:
    return [
        {"name": c.name, "type": c.type, "nullable": c.nullable, "null_count": c.null_count}
        for c in facts.columns
    ]


def upload(
    sessions: sessionmaker[Session],
    actor: Actor,
    principal: Principal,
    store: ObjectStore,
    asset_id: str,
    *,
    filename: str,
    source: BinaryIO,
    encoding: str | None = None,
    schema_changed: bool = False,
    settings: Settings | None = None,
) -> DataFile:
    """Receive, validate and register a new version of the asset's data file.

    ``settings`` are the exchange's own (its upload limits); the process environment's
    when omitted.
    """
    with sessions() as s:
        _check_asset(s.get(DataAsset, asset_id), principal, asset_id)
    fmt = ingest.format_of(filename)
    limits = ingest.IngestLimits.from_settings(settings or get_settings())
    temp_key, facts = ingest.ingest(store, source, fmt, limits, encoding=encoding)
    file_id = new_id("fil")
    key = f"assets/{asset_id}/{file_id}.{fmt}"
    leaves_key = key + ".leaves"
    try:
        store.promote(temp_key, key)
    except BaseException:
        store.delete(temp_key)
        raise
    try:
        _write(store, leaves_key, facts.chunk_leaves)
        with UnitOfWork(sessions, actor) as uow:
            row = _register(uow, principal, asset_id, file_id, key, filename, facts, schema_changed)
            uow.commit()
        return row
    except BaseException:
        store.delete(key)
        store.delete(leaves_key)
        raise


def _write(store: ObjectStore, key: str, data: bytes) -> None:
    temp, sink = store.create_temp()
    try:
        with sink:
            sink.write(data)
        store.promote(temp, key)
    except BaseException:
        store.delete(temp)
        raise


def _register(
    uow: UnitOfWork,
    principal: Principal,
    asset_id: str,
    file_id: str,
    key: str,
    filename: str,
    facts: ingest.FileFacts,
    schema_changed: bool,
) -> DataFile:
    s = uow.session
    asset = _check_asset(
        s.get(DataAsset, asset_id, with_for_update=True, populate_existing=True),
        principal,
        asset_id,
    )
    previous = s.scalar(
        select(DataFile)
        .where(DataFile.asset_id == asset.id)
        .order_by(DataFile.version.desc())
        .limit(1)
    )
    if previous is not None and not schema_changed:
        before = [ingest.ColumnFacts(**c) for c in previous.columns]
        drift = ingest.schema_drift(before, facts.columns)
        if drift:
            raise SchemaDrift(
                f"version {previous.version + 1} differs from version {previous.version}: "
                + "; ".join(drift)
                + " (say schema_changed=true if this is intended)",
                differences=drift,
            )
    version = (
        s.scalar(select(func.max(DataFile.version)).where(DataFile.asset_id == asset.id)) or 0
    ) + 1
    row = DataFile(
        id=file_id,
        asset_id=asset.id,
        version=version,
        filename=filename[:255],
        format=facts.format,
        encoding=facts.encoding,
        object_key=key,
        byte_size=facts.byte_size,
        sha256=facts.sha256,
        row_count=facts.row_count,
        columns=_columns(facts),
        chunk_rows=facts.chunk_rows,
        chunk_count=facts.chunk_count,
        chunk_root=facts.chunk_root,
        sample=[list(r) for r in facts.sample],
        uploaded_by=principal.ref,
    )
    s.add(row)
    s.flush()
    uow.record(
        "file.uploaded",
        row.id,
        {
            "org_id": asset.org_id,
            "asset_id": asset.id,
            "version": version,
            "format": row.format,
            "byte_size": row.byte_size,
            "row_count": row.row_count,
            "sha256": row.sha256,
            "chunk_rows": row.chunk_rows,
            "chunk_count": row.chunk_count,
            "chunk_root": row.chunk_root,
            "schema_changed": bool(previous is not None and schema_changed),
        },
        file_state(row),
        (asset.org_id,),
    )
    return row


def _readable(session: Session, principal: Principal, file_id: str) -> tuple[DataFile, DataAsset]:
    row = session.get(DataFile, file_id)
    asset = session.get(DataAsset, row.asset_id) if row is not None else None
    if row is None or asset is None:
        raise NotFound(f"file {file_id} not found")
    authorize(principal, "file.read", asset.org_id)
    return row, asset


def list_files(session: Session, principal: Principal, asset_id: str) -> list[DataFile]:
    asset = session.get(DataAsset, asset_id)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    authorize(principal, "file.read", asset.org_id)
    return list(
        session.scalars(
            select(DataFile).where(DataFile.asset_id == asset_id).order_by(DataFile.version)
        )
    )


def chunk_proof(
    session: Session, principal: Principal, store: ObjectStore, file_id: str, index: int
) -> ChunkProofOut:
    """The rows of one chunk and their inclusion proof under the file's registered root."""
    row, _ = _readable(session, principal, file_id)
    if not 0 <= index < row.chunk_count:
        raise NotFound(f"file {file_id} has chunks 0–{row.chunk_count - 1}, not {index}")
    rows = ingest.read_chunk(store, row.object_key, row.format, row.encoding, row.chunk_rows, index)
    with store.open(row.object_key + ".leaves") as f:
        leaves = commitment.unpack_leaves(f.read())
    proof = commitment.chunk_proof(leaves, index)
    return ChunkProofOut(
        file_id=row.id,
        sha256=row.sha256,
        chunk_root=row.chunk_root,
        chunk_rows=row.chunk_rows,
        chunk_count=row.chunk_count,
        index=index,
        rows=rows,
        proof=[p.hex() for p in proof],
    )
