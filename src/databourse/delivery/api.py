"""HTTP edge of downloads and leak tracing (the gateway and Delta Sharing have their own)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.delivery import access, copies, downloads, schemes, tracing
from databourse.delivery.models import Trace
from databourse.delivery.schemas import (
    DownloadGranted,
    DownloadIn,
    DownloadOut,
    SuspicionOut,
    TableOut,
    TraceOut,
)
from databourse.errors import NotFound
from databourse.market import contracts
from databourse.market.models import Contract

router = APIRouter(tags=["delivery"])


def _absolute(request: Request, relative: str) -> str:
    return str(request.base_url).rstrip("/") + relative


@router.get(
    "/contracts/{contract_id}/tables",
    response_model=list[TableOut],
    openapi_extra=action("download.list"),
)
def list_tables(contract_id: str, caller: Caller, session: ReadSession) -> Any:
    """The tables a dataset contract delivers, with the columns it licenses."""
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    contracts.authorize_on(caller, "download.list", c)
    grant = access.grant_of(c)
    out = []
    for t in copies.tables(session, grant):
        schema = copies.arrow_schema(session, grant, t.data_file_id)
        cols = [{"name": f.name, "type": str(f.type)} for f in schema]
        out.append(TableOut(**t.__dict__, columns=cols))
    return out


@router.post(
    "/contracts/{contract_id}/downloads",
    status_code=201,
    response_model=DownloadGranted,
    openapi_extra=action("download.create"),
)
def create_download(
    contract_id: str, body: DownloadIn, request: Request, caller: Caller, ctx: Ctx
) -> Any:
    """Grant a download of the buyer's fingerprinted copy: an expiring signed link.

    Declare the purpose of use (and the territory, default CN); the policy's download
    count is checked and the grant goes on the ledger."""
    d, url, table, copy = downloads.create(
        ctx,
        caller,
        contract_id,
        purpose=body.purpose,
        territory=body.territory,
        table=body.table,
        fmt=body.format,
    )
    out = DownloadGranted(
        **DownloadOut.model_validate(d).model_dump(),
        url=_absolute(request, url),
        table=table.name,
        version=table.version,
        rows=copy.row_count,
        copy_sha256=copy.sha256,
    )
    return out


@router.get(
    "/contracts/{contract_id}/downloads",
    response_model=list[DownloadOut],
    openapi_extra=action("download.list"),
)
def list_downloads(contract_id: str, caller: Caller, session: ReadSession) -> Any:
    return downloads.list_downloads(session, caller, contract_id)


@router.put(
    "/assets/{asset_id}/fingerprint",
    response_model=schemes.SchemeOut,
    openapi_extra=action("fingerprint.set"),
)
def declare_scheme(asset_id: str, body: schemes.SchemeIn, caller: Caller, cmd: Cmd) -> Any:
    """Declare how buyers' copies of the asset's data are fingerprinted: the columns that
    identify rows, and how far each marked column's values may move. Applies to copies
    made from now on; on the ledger as ``fingerprint.declared``."""

    def declare(uow: Any) -> schemes.SchemeOut:
        row = schemes.declare(uow, caller, asset_id, body)
        return schemes.SchemeOut(
            asset_id=row.asset_id, declared=True, revision=row.revision, scheme=row.scheme
        )

    return cmd.run(declare, body)


@router.get(
    "/assets/{asset_id}/fingerprint",
    response_model=schemes.SchemeOut,
    openapi_extra=action("fingerprint.read"),
)
def read_scheme(asset_id: str, caller: Caller, session: ReadSession) -> Any:
    """The asset's fingerprint scheme: the declared one, or the default."""
    return schemes.read(session, caller, asset_id)


def _trace_out(session: Any, t: Trace) -> TraceOut:
    buyers: dict[str, str] = t.result.get("buyers", {})
    names = tracing.buyer_names(session, list(set(buyers.values())))
    ranking = [
        SuspicionOut(
            contract_id=s["recipient"],
            buyer_org_id=buyers.get(s["recipient"], ""),
            buyer_name=names.get(buyers.get(s["recipient"], ""), ""),
            score=s["score"],
            matched=s["matched"],
            evidence=s["evidence"],
            p_false=s["p_false"],
            accused=s["accused"],
        )
        for s in t.result.get("ranking", [])
    ]
    return TraceOut(
        id=t.id,
        product_id=t.product_id,
        data_file_id=t.data_file_id,
        requested_by=t.requested_by,
        suspect_sha256=t.suspect_sha256,
        suspect_rows=t.suspect_rows,
        rows_matched=int(t.result.get("rows_matched", 0)),
        threshold=float(t.result.get("threshold", 0.0)),
        columns_used=list(t.result.get("columns_used", [])),
        accused=t.accused,
        ranking=ranking,
        created_at=t.created_at,
        details={k: v for k, v in t.result.items() if k not in ("ranking", "buyers")},
    )


@router.post(
    "/products/{product_id}/traces",
    status_code=201,
    response_model=TraceOut,
    openapi_extra=action("trace.create"),
)
def create_trace(
    product_id: str,
    caller: Caller,
    ctx: Ctx,
    file: Annotated[UploadFile, File(description="The suspected leaked file, CSV or Parquet.")],
    data_file_id: Annotated[str | None, Form(max_length=40)] = None,
) -> Any:
    """Trace a suspected leak: the buyers whose copies it came from, ranked, each with the
    probability that an innocent buyer would score as high. The result goes on the
    ledger."""
    data = file.file.read(tracing.MAX_SUSPECT_BYTES + 1)
    t = tracing.trace(ctx, caller, product_id, data, data_file_id)
    with ctx.reads() as session:
        out = _trace_out(session, t)
    return out


@router.get(
    "/products/{product_id}/traces",
    response_model=list[TraceOut],
    openapi_extra=action("trace.read"),
)
def list_traces(product_id: str, caller: Caller, session: ReadSession) -> Any:
    return [_trace_out(session, t) for t in tracing.list_traces(session, caller, product_id)]


@router.get("/traces/{trace_id}", response_model=TraceOut, openapi_extra=action("trace.read"))
def read_trace(trace_id: str, caller: Caller, session: ReadSession) -> Any:
    return _trace_out(session, tracing.get(session, caller, trace_id))
