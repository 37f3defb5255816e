"""HTTP routes of Delta Sharing.

``router`` (under /api/v1): a contract's recipient profile — issue (or rotate), revoke,
show. ``protocol`` (under /delta-sharing): the open protocol's REST API, authenticated by
the profile's bearer token alone, answering errors in the protocol's own shape
(``{"errorCode": …, "message": …}``) rather than problem+json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from databourse.api.context import AppContext
from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.delivery import copies, files, sharing
from databourse.delivery.errors import NotShared
from databourse.delivery.models import Recipient
from databourse.errors import DataBourseError, ValidationFailed
from databourse.schemas import Out

PROTOCOL_PREFIX = "/delta-sharing"
JSON_UTF8 = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson; charset=utf-8"
CAPABILITIES = "delta-sharing-capabilities"
VERSION_HEADER = "Delta-Table-Version"
RESPONSE_FORMAT = "responseformat=parquet"


def _endpoint(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PROTOCOL_PREFIX


# The recipient profile (/api/v1) --------------------------------------------------------

router = APIRouter(tags=["delivery"])


class ProfileOut(BaseModel):
    """The profile file, exactly as Delta Sharing clients read it. Shown once."""

    shareCredentialsVersion: int
    endpoint: str
    bearerToken: str
    expirationTime: str


class RecipientOut(Out):
    contract_id: str
    status: str  # none | active | revoked | expired
    endpoint: str
    share: str
    recipient_id: str | None = None
    prefix: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None


def _recipient_out(request: Request, contract_id: str, r: Recipient | None) -> RecipientOut:
    out = RecipientOut(
        contract_id=contract_id,
        status=sharing.status_of(r),
        endpoint=_endpoint(request),
        share=contract_id,
    )
    if r is not None:
        out = out.model_copy(
            update={
                "recipient_id": r.id,
                "prefix": r.prefix,
                "created_by": r.created_by,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "revoked_at": r.revoked_at,
                "revoked_by": r.revoked_by,
            }
        )
    return out


@router.post(
    "/contracts/{contract_id}/share-profile",
    status_code=201,
    response_model=ProfileOut,
    openapi_extra=action("share.grant"),
)
def issue_profile(contract_id: str, request: Request, caller: Caller, cmd: Cmd) -> Any:
    """The buyer's Delta Sharing profile for a dataset contract; issuing again rotates the
    token (the previous one stops working). The token is shown only in this response."""

    def run(uow: Any) -> ProfileOut:
        r, token = sharing.grant(uow, caller, contract_id)
        return ProfileOut(**sharing.profile_document(_endpoint(request), token, r.expires_at))

    return cmd.run(run, status_code=201, redact=("bearerToken",))


@router.delete(
    "/contracts/{contract_id}/share-profile",
    response_model=RecipientOut,
    openapi_extra=action("share.revoke"),
)
def revoke_profile(contract_id: str, request: Request, caller: Caller, cmd: Cmd) -> Any:
    """Revoke the contract's profile: the next protocol request with it is refused."""
    return cmd.run(
        lambda uow: _recipient_out(request, contract_id, sharing.revoke(uow, caller, contract_id))
    )


@router.get(
    "/contracts/{contract_id}/share-profile",
    response_model=RecipientOut,
    openapi_extra=action("share.list"),
)
def show_profile(contract_id: str, request: Request, caller: Caller, session: ReadSession) -> Any:
    """The state of the contract's profile (never its token)."""
    return _recipient_out(request, contract_id, sharing.current(session, caller, contract_id))


# The protocol (/delta-sharing) ----------------------------------------------------------

_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
}


def protocol_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    status = 400 if status == 422 else status
    code = _CODES.get(status, "INTERNAL_ERROR")
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"errorCode": code, "message": message},
        status_code=status,
        headers=headers,
        media_type=JSON_UTF8,
    )


class ProtocolRoute(APIRoute):
    """Errors of the protocol's routes in the protocol's shape, not problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except DataBourseError as exc:
                message = exc.detail
                constraint = exc.extra.get("constraint")
                if constraint:
                    message = f"{message} (constraint: {constraint})"
                return protocol_error(exc.status, message, getattr(exc, "headers", None))
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in exc.errors()
                )
                return protocol_error(400, detail or "the request is not valid")

        return route


# Not in the OpenAPI document (include_in_schema=False): this is a separate, open protocol
# with its own bearer tokens (recipient profiles), not an action of the exchange's policy;
# who may read is decided per request by the token and ``access.usable``.
protocol = APIRouter(prefix=PROTOCOL_PREFIX, route_class=ProtocolRoute, include_in_schema=False)

MaxResults = Annotated[int | None, Query(alias="maxResults", ge=0, le=2**31 - 1)]
PageToken = Annotated[str | None, Query(alias="pageToken", max_length=200)]


def _reader(request: Request, session: Session) -> sharing.Reader:
    auth = request.headers.get("authorization", "")
    scheme, _, credential = auth.partition(" ")
    if scheme.lower() != "bearer":
        credential = ""
    return sharing.authenticate(session, credential.strip() or None)


def _share(reader: sharing.Reader, share: str) -> None:
    if share.lower() != reader.share.lower():
        raise NotShared(f"share {share!r} does not exist or is not shared with you")


def _schema(reader: sharing.Reader, share: str, schema: str) -> None:
    _share(reader, share)
    if schema.lower() != sharing.SCHEMA:
        raise NotShared(f"schema {share}.{schema} does not exist")


def _table(
    session: Session, reader: sharing.Reader, share: str, schema: str, table: str
) -> copies.SharedTable:
    _schema(reader, share, schema)
    for t in copies.tables(session, reader.grant):
        if t.name == table.lower():
            return t
    raise NotShared(f"table {share}.{schema}.{table} does not exist")


def _table_items(session: Session, reader: sharing.Reader) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "schema": sharing.SCHEMA,
            "share": reader.share,
            "shareId": reader.share,
            "id": t.asset_id,
        }
        for t in copies.tables(session, reader.grant)
    ]


def _json(doc: dict[str, Any]) -> Response:
    return JSONResponse(doc, media_type=JSON_UTF8)


def _ndjson(lines: bytes, version: int) -> Response:
    return Response(
        lines,
        media_type=NDJSON,
        headers={VERSION_HEADER: str(version), CAPABILITIES: RESPONSE_FORMAT},
    )


def _accepts_parquet(request: Request) -> None:
    """Answer in the parquet response format: refuse a client that accepts only delta."""
    asked = request.headers.get(CAPABILITIES, "")
    for part in asked.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "responseformat":
            formats = {f.strip().lower() for f in value.split(",") if f.strip()}
            if formats and "parquet" not in formats:
                raise ValidationFailed(
                    "this server answers in responseformat=parquet only; "
                    "read with the parquet format (use_delta_format=False)"
                )


@protocol.get("/shares")
def list_shares(
    request: Request,
    session: ReadSession,
    max_results: MaxResults = None,
    page_token: PageToken = None,
) -> Response:
    reader = _reader(request, session)
    items = [{"name": reader.share, "id": reader.share}]
    return _json(sharing.page(items, max_results, page_token))


@protocol.get("/shares/{share}")
def get_share(share: str, request: Request, session: ReadSession) -> Response:
    reader = _reader(request, session)
    _share(reader, share)
    return _json({"share": {"name": reader.share, "id": reader.share}})


@protocol.get("/shares/{share}/schemas")
def list_schemas(
    share: str,
    request: Request,
    session: ReadSession,
    max_results: MaxResults = None,
    page_token: PageToken = None,
) -> Response:
    reader = _reader(request, session)
    _share(reader, share)
    items = [{"name": sharing.SCHEMA, "share": reader.share}]
    return _json(sharing.page(items, max_results, page_token))


@protocol.get("/shares/{share}/schemas/{schema}/tables")
def list_tables(
    share: str,
    schema: str,
    request: Request,
    session: ReadSession,
    max_results: MaxResults = None,
    page_token: PageToken = None,
) -> Response:
    reader = _reader(request, session)
    _schema(reader, share, schema)
    return _json(sharing.page(_table_items(session, reader), max_results, page_token))


@protocol.get("/shares/{share}/all-tables")
def list_all_tables(
    share: str,
    request: Request,
    session: ReadSession,
    max_results: MaxResults = None,
    page_token: PageToken = None,
) -> Response:
    reader = _reader(request, session)
    _share(reader, share)
    return _json(sharing.page(_table_items(session, reader), max_results, page_token))


_TABLE = "/shares/{share}/schemas/{schema}/tables/{table}"


@protocol.api_route(_TABLE + "/version", methods=["GET", "HEAD"])
def table_version(
    share: str,
    schema: str,
    table: str,
    request: Request,
    session: ReadSession,
    starting_timestamp: Annotated[str | None, Query(alias="startingTimestamp")] = None,
) -> Response:
    reader = _reader(request, session)
    t = _table(session, reader, share, schema, table)
    if starting_timestamp is not None:
        raise ValidationFailed(
            "startingTimestamp is not supported: only the current version is shared "
            f"(version {t.version})"
        )
    return Response(status_code=200, headers={VERSION_HEADER: str(t.version)})


@protocol.get(_TABLE + "/metadata")
def table_metadata(
    share: str, schema: str, table: str, request: Request, session: ReadSession
) -> Response:
    reader = _reader(request, session)
    t = _table(session, reader, share, schema, table)
    _accepts_parquet(request)
    arrow = copies.arrow_schema(session, reader.grant, t.data_file_id)
    lines = sharing.ndjson(
        sharing.protocol_line(), sharing.metadata_line(t.asset_id, t.name, arrow, t.version)
    )
    return _ndjson(lines, t.version)


class QueryIn(BaseModel):
    """The body of a table query. Hints are accepted and ignored (the protocol makes them
    best effort: the client applies its own filters); time travel is refused."""

    model_config = ConfigDict(extra="ignore", strict=True)

    predicateHints: list[str] | None = None
    jsonPredicateHints: str | None = None
    limitHint: Annotated[int, Field(ge=0)] | None = None
    version: int | None = None
    timestamp: str | None = None
    startingVersion: int | None = None
    endingVersion: int | None = None


def _query_body(raw: bytes) -> QueryIn:
    if not raw.strip():
        return QueryIn()
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ValidationFailed("the query body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ValidationFailed("the query body must be a JSON object")
    try:
        return QueryIn.model_validate(doc)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationFailed(detail) from None


def _refuse_time_travel(q: QueryIn, t: copies.SharedTable) -> None:
    if q.startingVersion is not None or q.endingVersion is not None:
        raise ValidationFailed("change data feed (startingVersion) is not supported")
    if q.timestamp is not None:
        raise ValidationFailed(
            f"time travel by timestamp is not supported; the current version is {t.version}"
        )
    if q.version is not None and q.version != t.version:
        raise ValidationFailed(
            f"version {q.version} is not available: only the current version, "
            f"{t.version}, is shared"
        )


@protocol.post(_TABLE + "/query")
async def query_table(share: str, schema: str, table: str, request: Request, ctx: Ctx) -> Response:
    raw = await request.body()  # read here, parsed once the token is checked
    lines, version = await run_in_threadpool(_query, ctx, request, raw, share, schema, table)
    return _ndjson(lines, version)


def _query(
    ctx: AppContext, request: Request, raw: bytes, share: str, schema: str, table: str
) -> tuple[bytes, int]:
    """The query's lines: the copy is made on first use and a fresh link is signed."""
    with ctx.reads() as session:
        reader = _reader(request, session)
        t = _table(session, reader, share, schema, table)
        _refuse_time_travel(_query_body(raw), t)
        _accepts_parquet(request)
        arrow = copies.arrow_schema(session, reader.grant, t.data_file_id)
    copy = copies.ensure(ctx, reader.grant, t.data_file_id)
    url, expires = files.link(
        ctx,
        copy,
        reader.grant,
        "share",
        "parquet",
        ctx.settings.share_link_minutes,
        files.recipient_ref(reader.recipient_id),
    )
    base = str(request.base_url).rstrip("/")
    lines = sharing.ndjson(
        sharing.protocol_line(),
        sharing.metadata_line(t.asset_id, t.name, arrow, t.version, copy.byte_size),
        sharing.file_line(base + url, copy.id, copy.byte_size, copy.row_count, t.version, expires),
    )
    return lines, t.version


@protocol.get(_TABLE + "/changes")
def table_changes(
    share: str, schema: str, table: str, request: Request, session: ReadSession
) -> Response:
    reader = _reader(request, session)
    _table(session, reader, share, schema, table)
    raise ValidationFailed("change data feed is not supported: tables are shared as snapshots")
