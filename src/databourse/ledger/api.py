"""HTTP routes of the ledger (under /api/v1/ledger).

Checkpoints, the log's key and proofs are public when ``ledger_public_read`` is on, so
monitors and auditors need no account; entry bodies and receipts are for the parties.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action, get_principal
from databourse.auth.policy import Principal, authorize
from databourse.errors import NotFound, ValidationFailed
from databourse.ledger import schemas, services
from databourse.uow import UnitOfWork

router = APIRouter(prefix="/ledger", tags=["ledger"])
NOTE_TYPE = "text/plain; charset=utf-8"


def public_reader(request: Request, ctx: Ctx, session: ReadSession) -> Principal | None:
    """No credentials needed for public ledger data, unless the exchange turned that off."""
    if ctx.settings.ledger_public_read:
        return None
    return get_principal(request, ctx, session)


PublicRead = Annotated[Principal | None, Depends(public_reader)]


@router.get("/key", response_class=PlainTextResponse, openapi_extra=action("public.ledger"))
def log_key(ctx: Ctx, _: PublicRead) -> PlainTextResponse:
    """The exchange's verifier key (C2SP signed-note format): all a receipt check needs."""
    return PlainTextResponse(ctx.log_key.verifier.key + "\n")


@router.get("/checkpoint", response_class=PlainTextResponse, openapi_extra=action("public.ledger"))
def current_checkpoint(session: ReadSession, _: PublicRead) -> PlainTextResponse:
    """The newest signed checkpoint with its witness cosignatures, as a signed note."""
    cp = services.latest_checkpoint(session)
    if cp is None:
        raise NotFound("no checkpoint has been published yet")
    return PlainTextResponse(services.cosigned_note(session, cp), media_type=NOTE_TYPE)


@router.get(
    "/checkpoints",
    response_model=list[schemas.CheckpointOut],
    openapi_extra=action("public.ledger"),
)
def checkpoint_history(
    session: ReadSession,
    _: PublicRead,
    size: Annotated[int | None, Query(ge=0)] = None,
    after: Annotated[int, Query(ge=-1)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The history of checkpoints (every one the exchange signed), oldest first."""
    from sqlalchemy import select

    from databourse.ledger.models import Checkpoint

    q = select(Checkpoint).where(Checkpoint.size > after).order_by(Checkpoint.size).limit(limit)
    if size is not None:
        q = select(Checkpoint).where(Checkpoint.size == size)
    return [
        schemas.CheckpointOut(
            size=c.size,
            root=c.root,
            note=services.cosigned_note(session, c),
            created_at=c.created_at,
        )
        for c in session.scalars(q)
    ]


@router.post(
    "/checkpoints",
    response_model=schemas.CheckpointOut,
    openapi_extra=action("ledger.checkpoint.publish"),
)
def publish(caller: Caller, cmd: Cmd, ctx: Ctx) -> Any:
    """Sign a checkpoint of the current tree now (operator)."""
    authorize(caller, "ledger.checkpoint.publish")
    return cmd.run(
        lambda uow: schemas.CheckpointOut.model_validate(
            services.publish_checkpoint(uow, ctx.log_key)
        )
    )


@router.get(
    "/proofs/inclusion", response_model=schemas.InclusionOut, openapi_extra=action("public.ledger")
)
def inclusion(
    session: ReadSession,
    _: PublicRead,
    size: Annotated[int, Query(ge=1)],
    seq: Annotated[int | None, Query(ge=0)] = None,
    leaf_hash: Annotated[str | None, Query(description="base64 leaf hash")] = None,
) -> Any:
    """RFC 9162 inclusion proof of a leaf (by sequence number or leaf hash) in a tree size."""
    if (seq is None) == (leaf_hash is None):
        raise ValidationFailed("give exactly one of seq and leaf_hash")
    if leaf_hash is not None:
        try:
            seq = services.entry_by_leaf(session, base64.b64decode(leaf_hash, validate=True)).seq
        except (binascii.Error, ValueError) as exc:
            raise ValidationFailed("leaf_hash must be base64") from exc
    assert seq is not None
    proof = services.inclusion_proof(session, seq, size)
    leaf = services.entry(session, seq).leaf_hash
    return schemas.InclusionOut(
        seq=seq,
        size=size,
        leaf_hash=base64.b64encode(leaf).decode(),
        proof=[base64.b64encode(h).decode() for h in proof],
    )


@router.get(
    "/proofs/consistency",
    response_model=schemas.ConsistencyOut,
    openapi_extra=action("public.ledger"),
)
def consistency(
    session: ReadSession,
    _: PublicRead,
    old: Annotated[int, Query(ge=1)],
    new: Annotated[int, Query(ge=1)],
) -> Any:
    """RFC 9162 consistency proof between two tree sizes."""
    proof = services.consistency_proof(session, old, new)
    return schemas.ConsistencyOut(
        old_size=old, size=new, proof=[base64.b64encode(h).decode() for h in proof]
    )


@router.get(
    "/entries", response_model=list[schemas.EntryOut], openapi_extra=action("ledger.entry.read")
)
def list_entries(
    caller: Caller,
    session: ReadSession,
    start: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Entries in [start, start+limit) that the caller is a party to (all, for auditors)."""
    return services.entries(session, caller, start, start + limit)


@router.get(
    "/entries/{seq}", response_model=schemas.EntryOut, openapi_extra=action("ledger.entry.read")
)
def get_entry(seq: int, caller: Caller, session: ReadSession) -> Any:
    return services.authorize_entry(session, caller, seq)


@router.get("/entries/{seq}/receipt", openapi_extra=action("ledger.receipt"))
def get_receipt(seq: int, caller: Caller, ctx: Ctx) -> Any:
    """The registration certificate (登记凭证): verifiable offline with the log's key."""
    authorize(caller, "ledger.receipt")
    with UnitOfWork(ctx.writes) as uow:
        out = services.receipt(uow, caller, ctx.log_key, seq)
        uow.commit()
    return out


@router.post(
    "/witnesses",
    status_code=201,
    response_model=schemas.WitnessOut,
    openapi_extra=action("ledger.witness.register"),
)
def register_witness(body: schemas.WitnessIn, caller: Caller, cmd: Cmd) -> Any:
    """Register a witness key of the caller's organisation (e.g. a regulator's)."""
    return cmd.run(
        lambda uow: schemas.WitnessOut.model_validate(
            services.register_witness(uow, caller, body.verifier_key, body.url)
        ),
        body,
        status_code=201,
    )


@router.get(
    "/witnesses",
    response_model=list[schemas.WitnessOut],
    openapi_extra=action("ledger.witness.list"),
)
def list_witnesses(caller: Caller, session: ReadSession) -> Any:
    return services.list_witnesses(session, caller)


@router.post("/witnesses/round", openapi_extra=action("ledger.witness.round"))
def witness_round(caller: Caller, ctx: Ctx) -> dict[str, str]:
    """Publish a checkpoint and ask every witness with a URL to cosign it (operator)."""
    import httpx

    authorize(caller, "ledger.witness.round")
    with UnitOfWork(ctx.writes) as uow:
        services.publish_checkpoint(uow, ctx.log_key)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow, httpx.Client(timeout=10) as client:
        outcome = services.witness_round(uow, client)
        uow.commit()
    return outcome


@router.post(
    "/cosignatures",
    response_model=schemas.CheckpointOut,
    openapi_extra=action("ledger.witness.register"),
)
def submit_cosignature(
    body: schemas.CosignatureIn, caller: Caller, cmd: Cmd, session: ReadSession
) -> Any:
    """A pulling witness hands in its cosignature line for a checkpoint it verified."""

    def run(uow: UnitOfWork) -> schemas.CheckpointOut:
        cp = services.submit_cosignature(
            uow, caller, body.witness_id, body.size, body.signature_line
        )
        uow.session.flush()
        return schemas.CheckpointOut(
            size=cp.size,
            root=cp.root,
            created_at=cp.created_at,
            note=services.cosigned_note(uow.session, cp),
        )

    return cmd.run(run, body)


@router.post("/gossip", openapi_extra=action("public.ledger"))
def gossip(body: schemas.GossipIn, ctx: Ctx, _: PublicRead) -> Any:
    """Present a checkpoint you were given; a split view is detected and raises an alert."""
    with UnitOfWork(ctx.writes) as uow:
        out = services.gossip(uow, ctx.log_key, body.note)
        uow.commit()
    return out


@router.get(
    "/alerts", response_model=list[schemas.AlertOut], openapi_extra=action("ledger.alert.list")
)
def list_alerts(caller: Caller, session: ReadSession) -> Any:
    return services.alerts(session, caller)
