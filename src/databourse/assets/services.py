"""Commands and queries of the assets domain: registration of data assets.

Each command is one unit of work: it checks the policy, changes the asset and records the
change for the ledger. The registration certificate (登记凭证) is the ledger receipt of the
entry that registered (or last amended) the asset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from databourse.assets import schemas
from databourse.assets.errors import (
    AssetInUse,
    CoreDataRefused,
    RightsIncomplete,
    SourceDeclarationIncomplete,
)
from databourse.assets.lifecycle import EDITABLE, TRANSITIONS
from databourse.assets.models import REGISTERED, AssetStatus, DataAsset, DataFile, Grade
from databourse.auth.policy import Principal, Reach, authorize
from databourse.db import new_id
from databourse.errors import InvalidTransition, NotFound, ValidationFailed
from databourse.ledger.models import LedgerEntry
from databourse.ledger.writer import assert_untampered
from databourse.settings import get_settings
from databourse.uow import UnitOfWork

CERTIFYING_KINDS = ("asset.registered", "asset.amended")


def asset_state(asset: DataAsset) -> dict[str, Any]:
    """The asset's state the ledger commits to (hashed; the entry holds ids only)."""
    return {
        "id": asset.id,
        "org_id": asset.org_id,
        "title": asset.title,
        "description": asset.description,
        "industry": asset.industry,
        "source": asset.source,
        "rights": asset.rights,
        "grade": asset.grade,
        "sub_grade": asset.sub_grade,
        "personal_info": asset.personal_info,
        "sensitive_personal_info": asset.sensitive_personal_info,
        "pi_consent_basis": asset.pi_consent_basis,
        "status": asset.status,
        "frozen_from": asset.frozen_from,
        "reviewed_by": asset.reviewed_by,
        "decision_reason": asset.decision_reason,
        "revision": asset.revision,
    }


def _record(uow: UnitOfWork, kind: str, asset: DataAsset, **body: Any) -> None:
    uow.session.flush()
    body = {"org_id": asset.org_id, "status": asset.status, "revision": asset.revision, **body}
    uow.record(kind, asset.id, body, asset_state(asset), (asset.org_id,))


def _check_content(asset: DataAsset, sub_grades: int | None) -> None:
    """The rules a registration must satisfy (BRIEF §3, §6): checked on save and on submit.

    ``sub_grades`` is the exchange's scale of general data's sub-grades (its settings);
    the process environment's when not given.
    """
    if asset.grade == Grade.core:
        raise CoreDataRefused(
            "core data (核心数据) may never be registered for trading (DSL art. 21)",
            grade=asset.grade,
        )
    scale = sub_grades or get_settings().general_sub_grades
    if asset.sub_grade is not None:
        if asset.grade != Grade.general:
            raise ValidationFailed("only general data has a sub-grade", field="sub_grade")
        if asset.sub_grade > scale:
            raise ValidationFailed(
                f"general data's sub-grade is 1–{scale} on this exchange", field="sub_grade"
            )
    source = asset.source
    needs = {
        "collected_with_consent": ("consent_basis", "the consent basis"),
        "purchased": ("upstream_contract", "the upstream contract"),
        "public_authorised": ("authorisation", "the authorisation to operate public data"),
    }.get(source["kind"])
    if needs and not source.get(needs[0]):
        raise SourceDeclarationIncomplete(
            f"a {source['kind']} source must state {needs[1]}", field=f"source.{needs[0]}"
        )
    if asset.sensitive_personal_info and not asset.personal_info:
        asset.personal_info = True  # sensitive PI is PI (PIPL art. 28)
    if asset.personal_info and not asset.pi_consent_basis:
        raise SourceDeclarationIncomplete(
            "an asset holding personal information must state its consent basis "
            "(PIPL arts. 13, 23)",
            field="pi_consent_basis",
        )
    if not any(g["right"] == "holding" for g in asset.rights):
        raise RightsIncomplete(
            "registration needs the holding right (数据资源持有权)", field="rights"
        )


def _rights(org_id: str, grants: list[schemas.RightGrantIn]) -> list[dict[str, Any]]:
    out = []
    for g in sorted(grants, key=lambda g: g.right):
        d = g.model_dump(mode="json")
        d["holder_org_id"] = d["holder_org_id"] or org_id
        out.append(d)
    return out


def _load(uow: UnitOfWork, asset_id: str) -> DataAsset:
    asset = uow.session.get(DataAsset, asset_id, with_for_update=True, populate_existing=True)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    return asset


def _load_checked(uow: UnitOfWork, principal: Principal, action: str, asset_id: str) -> DataAsset:
    asset = _load(uow, asset_id)
    authorize(principal, action, asset.org_id)
    assert_untampered(uow, asset.id, asset_state(asset))
    return asset


def create(
    uow: UnitOfWork, principal: Principal, data: schemas.AssetIn, sub_grades: int | None = None
) -> DataAsset:
    """A merchant drafts the registration of an asset it holds."""
    authorize(principal, "asset.create", principal.org_id)
    asset = DataAsset(
        id=new_id("ast"),
        org_id=principal.org_id,
        title=data.title,
        description=data.description,
        industry=data.industry,
        source=data.source.model_dump(mode="json"),
        rights=_rights(principal.org_id, data.rights),
        grade=data.grade,
        sub_grade=data.sub_grade,
        personal_info=data.personal_info or data.sensitive_personal_info,
        sensitive_personal_info=data.sensitive_personal_info,
        pi_consent_basis=data.pi_consent_basis,
        status=AssetStatus.draft,
        revision=1,
    )
    _check_content(asset, sub_grades)
    uow.session.add(asset)
    _record(uow, "asset.drafted", asset)
    return asset


def update(
    uow: UnitOfWork,
    principal: Principal,
    asset_id: str,
    patch: schemas.AssetPatch,
    sub_grades: int | None = None,
) -> DataAsset:
    """Edit a draft, or amend a registered asset (which issues a new certificate)."""
    asset = _load_checked(uow, principal, "asset.update", asset_id)
    amending = asset.status in REGISTERED
    if not amending and asset.status not in EDITABLE:
        raise InvalidTransition(
            f"an asset that is {asset.status} cannot be changed", current_status=asset.status
        )
    if amending and not (patch.reason or "").strip():
        raise ValidationFailed("an amendment needs a reason", field="reason")
    changes = patch.model_dump(exclude_unset=True, exclude={"reason"})
    for name, value in changes.items():
        if name == "source":
            value = patch.source.model_dump(mode="json") if patch.source else None
        elif name == "rights":
            value = _rights(asset.org_id, patch.rights or [])
        if value is None and name not in ("sub_grade", "pi_consent_basis"):
            raise ValidationFailed(f"{name} cannot be removed", field=name)
        setattr(asset, name, value)
    _check_content(asset, sub_grades)
    if amending:
        asset.status = AssetStatus.amended
        asset.revision += 1
        asset.decision_reason = patch.reason
        _record(uow, "asset.amended", asset, changed=sorted(changes))
    else:
        _record(uow, "asset.edited", asset, changed=sorted(changes))
    return asset


def transition(
    uow: UnitOfWork,
    principal: Principal,
    asset_id: str,
    action: str,
    reason: str | None = None,
    outcome: str = "restore",
    sub_grades: int | None = None,
) -> DataAsset:
    """Move an asset through its registration workflow (see ``lifecycle``)."""
    asset = _load_checked(uow, principal, f"asset.{action}", asset_id)
    step = TRANSITIONS[action]
    if asset.status not in step.sources:
        raise InvalidTransition(
            f"cannot {action} an asset that is {asset.status}", current_status=asset.status
        )
    if step.reason_required and not (reason or "").strip():
        raise ValidationFailed(f"{action} needs a reason", field="reason")
    if action == "submit":
        _check_content(asset, sub_grades)
    if action == "cancel" or (action == "resolve" and outcome == "cancel"):
        _refuse_if_in_use(uow.session, asset)
    before = asset.status
    if action == "dispute":
        asset.frozen_from = asset.status
        asset.status = AssetStatus.disputed
    elif action == "resolve":
        restored = asset.frozen_from or AssetStatus.registered
        asset.status = restored if outcome == "restore" else AssetStatus.cancelled
        asset.frozen_from = None
    else:
        asset.status = step.target or asset.status
    if action in ("register", "reject", "dispute", "resolve"):
        asset.reviewed_by = principal.ref
    if reason:
        asset.decision_reason = reason
    kind = {
        "submit": "asset.submitted",
        "register": "asset.registered",
        "reject": "asset.rejected",
        "cancel": "asset.cancelled",
        "dispute": "asset.disputed",
        "resolve": "asset.resolved",
    }[action]
    _record(uow, kind, asset, previous=before)
    return asset


def _refuse_if_in_use(session: Session, asset: DataAsset) -> None:
    from databourse.catalog.services import products_using

    live = products_using(session, asset.id, statuses=("in_review", "listed", "suspended"))
    if live:
        raise AssetInUse(
            f"asset {asset.id} backs products that are in review or listed: delist them first",
            products=live,
        )


def get(session: Session, principal: Principal, asset_id: str) -> DataAsset:
    asset = session.get(DataAsset, asset_id)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    authorize(principal, "asset.read", asset.org_id)
    return asset


def list_assets(
    session: Session,
    principal: Principal,
    org_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[DataAsset]:
    reach = authorize(principal, "asset.list", org_id)
    q = select(DataAsset)
    if reach is Reach.OWN:
        q = q.where(DataAsset.org_id == principal.org_id)
    elif org_id:
        q = q.where(DataAsset.org_id == org_id)
    if status:
        q = q.where(DataAsset.status == status)
    return list(
        session.scalars(q.order_by(DataAsset.created_at, DataAsset.id).limit(limit).offset(offset))
    )


def certificate_seq(session: Session, asset: DataAsset) -> int:
    """The ledger entry that certifies the asset's current registration."""
    if asset.status not in REGISTERED and asset.frozen_from not in REGISTERED:
        raise InvalidTransition(
            f"an asset that is {asset.status} has no registration certificate",
            current_status=asset.status,
        )
    seq = session.scalar(
        select(LedgerEntry.seq)
        .where(LedgerEntry.subject == asset.id, LedgerEntry.kind.in_(CERTIFYING_KINDS))
        .order_by(LedgerEntry.seq.desc())
        .limit(1)
    )
    if seq is None:  # pragma: no cover - a registered asset always has its entry
        raise NotFound(f"asset {asset.id} has no certifying entry")
    return int(seq)


def usable_assets(session: Session, org_id: str, asset_ids: list[str]) -> list[DataAsset]:
    """The organisation's registered assets among ``asset_ids`` (for building products)."""
    rows = list(
        session.scalars(select(DataAsset).where(DataAsset.id.in_(asset_ids)).order_by(DataAsset.id))
    )
    found = {a.id for a in rows if a.org_id == org_id}
    missing = [a for a in asset_ids if a not in found]
    if missing:
        raise NotFound(f"assets not found: {', '.join(missing)}")
    return rows


def latest_files(session: Session, asset_ids: Sequence[str]) -> list[DataFile]:
    """The newest file version of each asset, in asset order (one query for all of them)."""
    if not asset_ids:
        return []
    newest = (
        select(DataFile.asset_id, func.max(DataFile.version).label("version"))
        .where(DataFile.asset_id.in_(asset_ids))
        .group_by(DataFile.asset_id)
        .subquery()
    )
    return list(
        session.scalars(
            select(DataFile)
            .join(
                newest,
                (DataFile.asset_id == newest.c.asset_id) & (DataFile.version == newest.c.version),
            )
            .order_by(DataFile.asset_id)
        )
    )
