"""Downloads of dataset products: the buyer asks, the exchange checks the policy, makes
(or finds) the buyer's fingerprinted copy and hands out an expiring signed link.

Each download counts against the policy's ``max_downloads`` at the moment it is granted;
the contract's row is locked while counting, so concurrent requests can never exceed the
limit. The rows are metered when the link is first fetched (``files``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal
from databourse.delivery import access, copies, files, rules
from databourse.delivery.errors import NotDeliverable
from databourse.delivery.models import Copy, Download
from databourse.errors import NotFound
from databourse.market import contracts
from databourse.market.models import Contract
from databourse.uow import Actor, UnitOfWork

if TYPE_CHECKING:
    from databourse.api.context import AppContext


def dataset_grant(
    session: Session, principal: Principal, contract_id: str, purpose: str | None,
    territory: str | None,
) -> access.Grant:  # fmt: skip
    """The buyer's usable grant on a dataset contract, for the declared use."""
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    contracts.authorize_on(principal, "download.create", c, side="buyer")
    grant = access.for_use(session, contract_id, purpose, territory)
    if grant.product_kind != "dataset":
        raise NotDeliverable(f"a {grant.product_kind} product is not delivered as files")
    return grant


def pick_table(session: Session, grant: access.Grant, table: str | None) -> copies.SharedTable:
    available = copies.tables(session, grant)
    if not available:
        raise NotDeliverable("the product has no data file yet")
    if table is None:
        return available[0]
    for t in available:
        if table in (t.name, t.asset_id, t.data_file_id):
            return t
    names = ", ".join(t.name for t in available)
    raise NotDeliverable(f"no table {table!r} in the product; it has: {names}")


def downloads_made(session: Session, contract_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Download)
            .where(Download.contract_id == contract_id, Download.path == "download")
        )
        or 0
    )


def create(
    ctx: AppContext,
    principal: Principal,
    contract_id: str,
    *,
    purpose: str | None,
    territory: str | None = None,
    table: str | None = None,
    fmt: str = "csv",
) -> tuple[Download, str, copies.SharedTable, Copy]:
    """Grant one download: (row, relative URL, table, copy)."""
    with ctx.reads() as session:
        grant = dataset_grant(session, principal, contract_id, purpose, territory)
        chosen = pick_table(session, grant, table)
    copy = copies.ensure(ctx, grant, chosen.data_file_id)  # outside the locking transaction
    actor = Actor(principal.kind, principal.id, principal.org_id)
    with UnitOfWork(ctx.writes, actor) as uow:
        uow.session.get(Contract, contract_id, with_for_update=True)  # serialises counting
        grant = access.for_use(uow.session, contract_id, purpose, territory)
        made = downloads_made(uow.session, contract_id)
        refusal = rules.over_count("downloads", made, 1, [grant.policy.count.max_downloads])
        if refusal is not None:
            raise access.refuse(refusal, grant)
        d, url = files.issue(
            uow,
            ctx.custody_secret,
            copy,
            grant,
            "download",
            fmt,
            ctx.settings.download_link_minutes,
            principal.ref,
        )
        uow.commit()
    return d, url, chosen, copy


def list_downloads(session: Session, principal: Principal, contract_id: str) -> list[Download]:
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    contracts.authorize_on(principal, "download.list", c)
    return list(
        session.scalars(
            select(Download).where(Download.contract_id == contract_id).order_by(Download.issued_at)
        )
    )
