"""Signed links to buyers' copies, and the route that serves them.

A link (``/files/<token>``) is its own credential, like an object store's pre-signed URL:
it names one ``Download`` row and expires. It is also checked against the contract on
every fetch, so a suspension or an expiry stops a link already handed out; a Delta Sharing
file's link also against the recipient profile it was issued to, so a revocation (or a
rotation) stops it too. Parquet is served with byte ranges (the Delta Sharing client reads
Parquet footers first); CSV is rendered from the Parquet copy batch by batch as it
streams. Rows are metered once per link, at its first fetch; bytes at every fetch.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import update

from databourse.api.deps import Ctx
from databourse.db import new_id, utcnow
from databourse.delivery import access, keys, rules
from databourse.delivery.errors import InvalidSignedUrl
from databourse.delivery.models import Copy, Download, Recipient
from databourse.uow import SYSTEM, UnitOfWork

if TYPE_CHECKING:
    from databourse.api.context import AppContext

PATHS = ("download", "share")
FORMATS = ("parquet", "csv")
CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
RECIPIENT = "recipient:"

router = APIRouter()


def download_state(d: Download) -> dict[str, Any]:
    return {
        "id": d.id,
        "contract_id": d.contract_id,
        "copy_id": d.copy_id,
        "path": d.path,
        "format": d.format,
        "issued_by": d.issued_by,
        "expires_at": d.expires_at,
    }


def issue(
    uow: UnitOfWork,
    root: bytes,
    copy: Copy,
    grant: access.Grant,
    path: str,
    fmt: str,
    minutes: int,
    issued_by: str,
) -> tuple[Download, str]:
    """A new link to the copy, on the ledger as ``download.granted``: (row, relative URL)."""
    assert path in PATHS and fmt in FORMATS
    expires = utcnow() + timedelta(minutes=minutes)
    expires = min(expires, grant.ends_at)  # a link never outlives the contract
    d = Download(
        id=new_id("dl"),
        contract_id=grant.contract_id,
        copy_id=copy.id,
        path=path,
        format=fmt,
        issued_by=issued_by,
        issued_at=utcnow(),
        expires_at=expires,
        fetches=0,
    )
    uow.session.add(d)
    uow.session.flush()
    uow.record(
        "download.granted",
        d.id,
        {"contract_id": d.contract_id, "copy_id": copy.id, "path": path, "format": fmt},
        download_state(d),
        (grant.buyer_org_id, grant.merchant_org_id),
    )
    token = keys.sign_link(root, {"d": d.id}, expires)
    return d, f"/files/{token}"


def recipient_ref(recipient_id: str) -> str:
    """Who a shared file's link was issued to: a Delta Sharing recipient (``issued_by``)."""
    return RECIPIENT + recipient_id


def link(
    ctx: AppContext,
    copy: Copy,
    grant: access.Grant,
    path: str,
    fmt: str,
    minutes: int,
    issued_by: str = "system",
) -> tuple[str, datetime]:
    """A link to the copy in a transaction of its own: (relative URL, expiry)."""
    with UnitOfWork(ctx.writes, SYSTEM) as uow:
        d, url = issue(uow, ctx.custody_secret, copy, grant, path, fmt, minutes, issued_by)
        uow.commit()
    return url, d.expires_at


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``Range: bytes=…``; None for the whole file."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) + 1 if m.group(2) else size
    else:  # the last N bytes
        start, end = max(0, size - int(m.group(2))), size
    end = min(end, size)
    if start >= end:
        raise ValueError("the requested range is outside the file")
    return start, end


def _first_fetch(ctx: AppContext, d: Download) -> bool:
    """Count the fetch; True for the link's first (exactly one process sees True)."""
    with UnitOfWork(ctx.writes, SYSTEM) as uow:
        first = uow.session.execute(
            update(Download)
            .where(Download.id == d.id, Download.fetches == 0)
            .values(fetches=1)
            .execution_options(synchronize_session=False)
        )
        is_first = bool(first.rowcount)  # type: ignore[attr-defined]
        if not is_first:
            uow.session.execute(
                update(Download)
                .where(Download.id == d.id)
                .values(fetches=Download.fetches + 1)
                .execution_options(synchronize_session=False)
            )
        uow.commit()
    return is_first


def _meter_rows(ctx: AppContext, d: Download, copy: Copy, grant: access.Grant) -> None:
    """Charge the copy's rows to the contract at the link's first fetch, within
    ``max_rows``."""
    if d.fetches > 0:  # charged at its first fetch already
        _first_fetch(ctx, d)
        return
    meter = ctx.meter(d.path)
    r = meter.reserve(grant.contract_id, "row", copy.row_count, grant.policy.count.max_rows)
    if r is None:
        refusal = rules.over_count(
            "rows", meter.used(grant.contract_id, "row"), copy.row_count,
            [grant.policy.count.max_rows],
        )  # fmt: skip
        raise access.refuse(refusal or rules.Refusal("count", "rows used up"), grant)
    try:
        first = _first_fetch(ctx, d)
    except BaseException:
        meter.release(r)
        raise
    if first:
        meter.settle(r)
    else:
        meter.release(r)


def _parquet_chunks(ctx: AppContext, key: str, start: int, end: int) -> Iterator[bytes]:
    with ctx.store.open(key) as f:
        f.seek(start)
        left = end - start
        while left > 0:
            block = f.read(min(CHUNK, left))
            if not block:
                break
            left -= len(block)
            yield block


def _csv_chunks(ctx: AppContext, key: str) -> Iterator[bytes]:
    with ctx.store.open(key) as f:
        pf = pq.ParquetFile(f)
        header = True
        for batch in pf.iter_batches(batch_size=64 * 1024):
            out = io.BytesIO()
            pacsv.write_csv(batch, out, pacsv.WriteOptions(include_header=header))
            header = False
            yield out.getvalue()
        if header:  # an empty file still has its header
            out = io.BytesIO()
            pacsv.write_csv(pf.schema_arrow.empty_table(), out)
            yield out.getvalue()


def _metered(chunks: Iterator[bytes], ctx: AppContext, d: Download) -> Iterator[bytes]:
    sent = 0
    try:
        for block in chunks:
            sent += len(block)
            yield block
    finally:
        if sent:
            ctx.meter(d.path).add_bytes(d.contract_id, sent)  # merged per flush


def content(ctx: AppContext, d: Download, copy: Copy, grant: access.Grant) -> Iterator[bytes]:
    """The whole copy in the link's format, metered as a fetch of the link is."""
    _meter_rows(ctx, d, copy, grant)
    if d.format == "csv":
        return _metered(_csv_chunks(ctx, copy.object_key), ctx, d)
    return _metered(_parquet_chunks(ctx, copy.object_key, 0, copy.byte_size), ctx, d)


@router.api_route("/files/{token}", methods=["GET", "HEAD"], include_in_schema=False)
def fetch(token: str, request: Request, ctx: Ctx) -> Response:
    """Serve a signed link (not in the OpenAPI document: the link is the credential)."""
    claims = keys.read_link(ctx.custody_secret, token, utcnow())
    if claims is None or not isinstance(claims.get("d"), str):
        raise InvalidSignedUrl("the link is not valid or has expired; ask for a new one")
    with ctx.reads() as session:
        d = session.get(Download, claims["d"])
        copy = session.get(Copy, d.copy_id) if d is not None else None
        if d is None or copy is None:
            raise InvalidSignedUrl("the link names nothing")
        if d.issued_by.startswith(RECIPIENT):  # dies with the profile it was issued to
            r = session.get(Recipient, d.issued_by.removeprefix(RECIPIENT))
            if r is None or r.revoked_at is not None:
                raise InvalidSignedUrl("the share profile this link was issued to is revoked")
        grant = access.usable(session, d.contract_id)  # suspended or expired: refused now
        session.expunge_all()
    name = f"{copy.data_file_id}-{grant.contract_id}.{d.format}"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "private, no-store",
        "X-Contract-Id": grant.contract_id,
    }
    if d.format == "csv":
        if request.method == "HEAD":
            return Response(headers=headers, media_type="text/csv; charset=utf-8")
        _meter_rows(ctx, d, copy, grant)
        return StreamingResponse(
            _metered(_csv_chunks(ctx, copy.object_key), ctx, d),
            media_type="text/csv; charset=utf-8",
            headers=headers,
        )
    size = copy.byte_size
    headers["Accept-Ranges"] = "bytes"
    if request.method == "HEAD":
        headers["Content-Length"] = str(size)
        return Response(headers=headers, media_type="application/vnd.apache.parquet")
    try:
        span = _byte_range(request.headers.get("range"), size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    _meter_rows(ctx, d, copy, grant)
    start, end = span or (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(
        _metered(_parquet_chunks(ctx, copy.object_key, start, end), ctx, d),
        status_code=status,
        media_type="application/vnd.apache.parquet",
        headers=headers,
    )
