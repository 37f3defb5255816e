"""The fingerprint scheme of an asset's data: declared by its merchant, or the default.

The merchant knows how far each value may move and stay useful (a count by a few percent,
a price by a cent), so it may declare the scheme; until it does, ``fingerprint``'s default
applies. A declaration is checked against the asset's latest data file, goes on the ledger
(subject ``fingerprint:<asset id>``), and applies to copies made afterwards: each copy
keeps the scheme it was made with, and tracing uses each copy's own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.assets.models import DataAsset, DataFile
from databourse.auth.policy import Principal, authorize
from databourse.db import utcnow
from databourse.delivery import fingerprint
from databourse.delivery.errors import InvalidScheme
from databourse.delivery.models import FingerprintScheme
from databourse.errors import NotFound
from databourse.ledger.writer import assert_untampered
from databourse.schemas import Out, Strict
from databourse.uow import UnitOfWork

Name = Annotated[str, Field(min_length=1, max_length=200)]


class MarkIn(Strict):
    name: Name
    kind: Literal["integer", "number"]
    tolerance: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]
    relative: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None


class SchemeIn(Strict):
    """Which columns identify a row, which carry marks, and about one row in ``gamma``
    marked (1: every row)."""

    key_columns: Annotated[list[Name], Field(min_length=1, max_length=2000)]
    marks: Annotated[list[MarkIn], Field(min_length=1, max_length=fingerprint.MAX_MARKS)]
    gamma: Annotated[int, Field(ge=1, le=1000)] = 1


class SchemeOut(Out):
    asset_id: str
    declared: bool  # False: the default, derived from the columns
    revision: int
    scheme: dict[str, Any]


def subject_of(asset_id: str) -> str:
    return f"fingerprint:{asset_id}"


def state(row: FingerprintScheme) -> dict[str, Any]:
    return {
        "asset_id": row.asset_id,
        "scheme": row.scheme,
        "revision": row.revision,
        "updated_by": row.updated_by,
    }


def _latest_file(session: Session, asset_id: str) -> DataFile | None:
    return session.scalar(
        select(DataFile)
        .where(DataFile.asset_id == asset_id)
        .order_by(DataFile.version.desc())
        .limit(1)
    )


def columns_of(df: DataFile) -> list[tuple[str, str]]:
    return [(c["name"], c["type"]) for c in df.columns]


def scheme_for(session: Session, df: DataFile) -> fingerprint.Scheme:
    """The scheme copies of this file are made with: the declared one if it fits the
    file's columns, else the default."""
    row = session.get(FingerprintScheme, df.asset_id)
    if row is not None:
        declared = fingerprint.Scheme.from_dict(row.scheme)
        if not fingerprint.check_scheme(declared, columns_of(df)):
            return declared
    return fingerprint.default_scheme(columns_of(df))


def declare(
    uow: UnitOfWork, principal: Principal, asset_id: str, data: SchemeIn
) -> FingerprintScheme:
    asset = uow.session.get(DataAsset, asset_id, with_for_update=True)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    authorize(principal, "fingerprint.set", asset.org_id)
    df = _latest_file(uow.session, asset_id)
    if df is None:
        raise InvalidScheme("upload the asset's data file first: the scheme names its columns")
    scheme = fingerprint.Scheme(
        tuple(data.key_columns),
        tuple(fingerprint.MarkColumn(m.name, m.kind, m.tolerance, m.relative) for m in data.marks),
        gamma=data.gamma,
    )
    problems = fingerprint.check_scheme(scheme, columns_of(df))
    if problems:
        raise InvalidScheme("; ".join(problems), problems=problems)
    row = uow.session.get(FingerprintScheme, asset_id, with_for_update=True)
    if row is None:
        row = FingerprintScheme(asset_id=asset_id, scheme={}, revision=0, updated_by="")
        uow.session.add(row)
    else:
        assert_untampered(uow, subject_of(asset_id), state(row))
    row.scheme = scheme.to_dict()
    row.revision += 1
    row.updated_by = principal.ref
    row.updated_at = utcnow()
    uow.session.flush()
    uow.record(
        "fingerprint.declared",
        subject_of(asset_id),
        {"asset_id": asset_id, "revision": row.revision, "scheme": row.scheme},
        state(row),
        (asset.org_id,),
    )
    return row


def read(session: Session, principal: Principal, asset_id: str) -> SchemeOut:
    asset = session.get(DataAsset, asset_id)
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    authorize(principal, "fingerprint.read", asset.org_id)
    row = session.get(FingerprintScheme, asset_id)
    if row is not None:
        return SchemeOut(asset_id=asset_id, declared=True, revision=row.revision, scheme=row.scheme)
    df = _latest_file(session, asset_id)
    default = fingerprint.default_scheme(columns_of(df)).to_dict() if df else {}
    return SchemeOut(asset_id=asset_id, declared=False, revision=0, scheme=default)
