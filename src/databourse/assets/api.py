"""HTTP routes of the assets domain (under /api/v1): registration and data files."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.assets import schemas, services, uploads
from databourse.assets.models import AssetStatus
from databourse.auth.policy import authorize
from databourse.ledger import services as ledger
from databourse.uow import Actor, UnitOfWork

router = APIRouter(tags=["assets"])


@router.post(
    "/assets",
    status_code=201,
    response_model=schemas.AssetOut,
    openapi_extra=action("asset.create"),
)
def create_asset(body: schemas.AssetIn, caller: Caller, cmd: Cmd) -> object:
    """Draft the registration of a data asset: source, rights, grade and personal data."""
    return cmd.run(
        lambda uow: schemas.AssetOut.model_validate(
            services.create(uow, caller, body, cmd.ctx.settings.general_sub_grades)
        ),
        body,
        status_code=201,
    )


@router.get("/assets", response_model=list[schemas.AssetOut], openapi_extra=action("asset.list"))
def list_assets(
    caller: Caller,
    session: ReadSession,
    org_id: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[AssetStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    return services.list_assets(session, caller, org_id, status, limit, offset)


@router.get(
    "/assets/{asset_id}", response_model=schemas.AssetOut, openapi_extra=action("asset.read")
)
def get_asset(asset_id: str, caller: Caller, session: ReadSession) -> object:
    return services.get(session, caller, asset_id)


@router.patch(
    "/assets/{asset_id}", response_model=schemas.AssetOut, openapi_extra=action("asset.update")
)
def update_asset(asset_id: str, body: schemas.AssetPatch, caller: Caller, cmd: Cmd) -> object:
    """Edit a draft; on a registered asset, an amendment (a new certificate is issued)."""
    return cmd.run(
        lambda uow: schemas.AssetOut.model_validate(
            services.update(uow, caller, asset_id, body, cmd.ctx.settings.general_sub_grades)
        ),
        body,
    )


def _add_step_route(step: str) -> None:
    def handler(asset_id: str, body: schemas.DecisionIn, caller: Caller, cmd: Cmd) -> object:
        return cmd.run(
            lambda uow: schemas.AssetOut.model_validate(
                services.transition(
                    uow,
                    caller,
                    asset_id,
                    step,
                    body.reason,
                    sub_grades=cmd.ctx.settings.general_sub_grades,
                )
            ),
            body,
        )

    handler.__name__ = f"{step}_asset"
    handler.__doc__ = f"Registration workflow: {step}."
    router.add_api_route(
        f"/assets/{{asset_id}}/{step}",
        handler,
        methods=["POST"],
        response_model=schemas.AssetOut,
        openapi_extra=action(f"asset.{step}"),
    )


for _step in ("submit", "register", "reject", "cancel", "dispute"):
    _add_step_route(_step)


@router.post(
    "/assets/{asset_id}/resolve",
    response_model=schemas.AssetOut,
    openapi_extra=action("asset.resolve"),
)
def resolve_asset(asset_id: str, body: schemas.ResolveIn, caller: Caller, cmd: Cmd) -> object:
    """The operator ends a dispute: the asset is restored or cancelled."""
    return cmd.run(
        lambda uow: schemas.AssetOut.model_validate(
            services.transition(uow, caller, asset_id, "resolve", body.reason, body.outcome)
        ),
        body,
    )


@router.get("/assets/{asset_id}/certificate", openapi_extra=action("asset.certificate"))
def asset_certificate(asset_id: str, caller: Caller, ctx: Ctx) -> Any:
    """The registration certificate (登记凭证): the ledger receipt of the registering entry,
    verifiable offline with the exchange's public key (``databourse receipt verify``)."""
    with UnitOfWork(ctx.writes) as uow:
        asset = services.get(uow.session, caller, asset_id)
        authorize(caller, "asset.certificate", asset.org_id)
        seq = services.certificate_seq(uow.session, asset)
        out = ledger.receipt(uow, caller, ctx.log_key, seq)
        uow.commit()
    return out


@router.post(
    "/assets/{asset_id}/files",
    status_code=201,
    response_model=schemas.FileOut,
    openapi_extra=action("file.upload"),
)
def upload_file(
    asset_id: str,
    caller: Caller,
    ctx: Ctx,
    file: Annotated[UploadFile, File(description="A CSV or Parquet file.")],
    encoding: Annotated[str | None, Form(max_length=20)] = None,
    schema_changed: Annotated[bool, Form()] = False,
) -> object:
    """Upload a new immutable version of the asset's data file. The exchange validates it,
    records its schema, row count and content commitment, and files them on the ledger."""
    row = uploads.upload(
        ctx.writes,
        Actor(caller.kind, caller.id, caller.org_id),
        caller,
        ctx.store,
        asset_id,
        filename=file.filename or "data",
        source=file.file,
        encoding=encoding,
        schema_changed=schema_changed,
        settings=ctx.settings,
    )
    return schemas.FileOut.model_validate(row)


@router.get(
    "/assets/{asset_id}/files",
    response_model=list[schemas.FileOut],
    openapi_extra=action("file.read"),
)
def list_files(asset_id: str, caller: Caller, session: ReadSession) -> object:
    return uploads.list_files(session, caller, asset_id)


@router.get(
    "/files/{file_id}/chunks/{index}",
    response_model=schemas.ChunkProofOut,
    openapi_extra=action("file.read"),
)
def chunk_proof(file_id: str, index: int, caller: Caller, ctx: Ctx, session: ReadSession) -> object:
    """One chunk of a file's rows with its Merkle inclusion proof against the registered
    commitment: evidence that these rows belong to the registered file."""
    return uploads.chunk_proof(session, caller, ctx.store, file_id, index)
