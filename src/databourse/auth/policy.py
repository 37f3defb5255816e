"""The authorization policy: one table of role × action × ownership, deny by default.

Every endpoint names one action; ``authorize`` is the only place that decides. A rule
gives, per role, the reach of the action: ``ANY`` object, the principal's ``OWN``
organisation's objects only, or nothing. The pseudo-role ``MEMBER`` applies to every
authenticated principal whatever its roles (an applicant has no roles yet).

An organisation may act only in the states its action allows: every write needs an
admitted organisation unless the action names other states, and no write ever allows
``suspended`` (a suspended organisation can only read its own records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from databourse.errors import Forbidden, NotFound, OrganisationInactive

MEMBER = "member"


class Reach(Enum):
    OWN = "own"
    ANY = "any"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user acting for its organisation, or an organisation's API key."""

    kind: str  # "user" | "apikey" | "system"
    id: str
    org_id: str
    org_status: str
    roles: frozenset[str]
    is_admin: bool = False
    scopes: frozenset[str] = frozenset({"read", "write"})

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Action:
    name: str
    write: bool
    rules: dict[str, Reach]
    admin_only: bool = False  # needs an organisation administrator (users and keys of an org)
    statuses: frozenset[str] = field(default_factory=lambda: frozenset({"admitted"}))
    users_only: bool = False  # not available to API keys (managing credentials)


READ_STATUSES = frozenset(
    {"applied", "under_review", "admitted", "rejected", "suspended", "withdrawn"}
)
APPLICANT = frozenset({"applied", "under_review", "admitted"})
# An organisation acting on its own admission: the workflow decides what is possible.
SELF_SERVICE = READ_STATUSES - {"suspended"}
OP, REG = "operator", "regulator"
MER, BUY, AGT = "merchant", "buyer", "agent"
OWN, ANY = Reach.OWN, Reach.ANY


def _read(name: str, rules: dict[str, Reach]) -> Action:
    return Action(name, False, rules, statuses=READ_STATUSES)


POLICY: dict[str, Action] = {
    a.name: a
    for a in [
        _read("me.read", {MEMBER: OWN}),
        _read("org.read", {MEMBER: OWN, OP: ANY, REG: ANY}),
        _read("org.list", {OP: ANY, REG: ANY}),
        _read("decision.list", {MEMBER: OWN, OP: ANY, REG: ANY}),
        Action(
            "org.resubmit",
            True,
            {MEMBER: OWN},
            admin_only=True,
            users_only=True,
            statuses=SELF_SERVICE,
        ),
        Action(
            "org.withdraw",
            True,
            {MEMBER: OWN},
            admin_only=True,
            users_only=True,
            statuses=SELF_SERVICE,
        ),
        Action("admission.start_review", True, {OP: ANY}),
        Action("admission.admit", True, {OP: ANY}),
        Action("admission.reject", True, {OP: ANY}),
        Action("admission.suspend", True, {OP: ANY, REG: ANY}),
        Action("admission.reinstate", True, {OP: ANY}),
        Action("role.grant", True, {OP: ANY}),
        Action("role.revoke", True, {OP: ANY}),
        _read("user.list", {MEMBER: OWN, OP: ANY, REG: ANY}),
        Action(
            "user.create", True, {MEMBER: OWN}, admin_only=True, users_only=True, statuses=APPLICANT
        ),
        Action(
            "user.deactivate",
            True,
            {MEMBER: OWN, OP: ANY},
            admin_only=True,
            users_only=True,
            statuses=APPLICANT,
        ),
        _read("apikey.list", {MEMBER: OWN, OP: ANY, REG: ANY}),
        Action("apikey.create", True, {MEMBER: OWN}, admin_only=True, users_only=True),
        Action("apikey.revoke", True, {MEMBER: OWN, OP: ANY}, admin_only=True, users_only=True),
        _read("ledger.entry.read", {MEMBER: OWN, OP: ANY, REG: ANY}),
        _read("ledger.alert.list", {OP: ANY, REG: ANY}),
        Action("ledger.receipt", False, {MEMBER: OWN, OP: ANY, REG: ANY}, statuses=READ_STATUSES),
        Action("ledger.checkpoint.publish", True, {OP: ANY}),
        Action("ledger.witness.round", True, {OP: ANY}),
        Action("ledger.witness.register", True, {MEMBER: OWN}, admin_only=True),
        _read("ledger.witness.list", {MEMBER: OWN, OP: ANY, REG: ANY}),
        # assets: merchants register what they hold; the operator certifies
        Action("asset.create", True, {MER: OWN}),
        Action("asset.update", True, {MER: OWN}),
        Action("asset.submit", True, {MER: OWN}),
        Action("asset.cancel", True, {MER: OWN}),
        Action("asset.register", True, {OP: ANY}),
        Action("asset.reject", True, {OP: ANY}),
        Action("asset.dispute", True, {OP: ANY, REG: ANY}),
        Action("asset.resolve", True, {OP: ANY}),
        _read("asset.read", {MER: OWN, OP: ANY, REG: ANY}),
        _read("asset.list", {MER: OWN, OP: ANY, REG: ANY}),
        Action("asset.certificate", False, {MER: OWN, OP: ANY, REG: ANY}, statuses=READ_STATUSES),
        Action("file.upload", True, {MER: OWN}),
        _read("file.read", {MER: OWN, OP: ANY, REG: ANY}),
        # products and their listing review
        Action("product.create", True, {MER: OWN}),
        Action("product.update", True, {MER: OWN}),
        Action("product.submit", True, {MER: OWN}),
        Action("product.approve", True, {OP: ANY}),
        Action("product.reject", True, {OP: ANY}),
        Action("product.delist", True, {MER: OWN, OP: ANY}),
        Action("product.suspend", True, {OP: ANY, REG: ANY}),
        Action("product.reinstate", True, {OP: ANY}),
        _read("product.read", {MER: OWN, OP: ANY, REG: ANY}),
        _read("product.list", {MER: OWN, OP: ANY, REG: ANY}),
        _read("product.checklist", {MER: OWN, OP: ANY, REG: ANY}),
        _read("product.matches", {MER: OWN, OP: ANY}),
        # the catalog of listed products: every admitted member
        Action("catalog.read", False, {MEMBER: ANY}),
        Action("catalog.search", False, {MEMBER: ANY}),
        Action("catalog.dcat", False, {MEMBER: ANY}),
        # demands (需求) and matching (撮合)
        Action("demand.create", True, {BUY: OWN}),
        Action("demand.close", True, {BUY: OWN}),
        Action("demand.withdraw", True, {BUY: OWN}),
        _read("demand.read", {BUY: OWN, OP: ANY, REG: ANY}),
        _read("demand.list", {BUY: OWN, OP: ANY, REG: ANY}),
        Action("demand.browse", False, {MER: ANY}),
        _read("demand.matches", {BUY: OWN, OP: ANY}),
        _read("notice.list", {MEMBER: OWN}),
        Action("notice.read", True, {MEMBER: OWN}),
        # settlement: accounts, payment rails, fees, agency, usage, bills
        _read("account.list", {MEMBER: OWN, OP: ANY, REG: ANY}),
        _read("statement.read", {MEMBER: OWN, OP: ANY, REG: ANY}),
        _read("transfer.list", {MEMBER: OWN, OP: ANY, REG: ANY}),
        Action("deposit.create", True, {MEMBER: OWN}),
        Action("deposit.confirm", True, {OP: ANY}),
        Action("deposit.reject", True, {OP: ANY}),
        Action("withdrawal.create", True, {MEMBER: OWN}, admin_only=True),
        Action("withdrawal.confirm", True, {OP: ANY}),
        Action("withdrawal.reject", True, {OP: ANY}),
        Action("fee.read", False, {MEMBER: ANY}),
        Action("fee.update", True, {OP: ANY}),
        Action("tier.update", True, {OP: ANY}),
        Action("agency.create", True, {AGT: OWN}, admin_only=True),
        Action("agency.certify", True, {OP: ANY}),
        Action("agency.reject", True, {OP: ANY}),
        Action("agency.revoke", True, {OP: ANY}),
        _read("agency.list", {AGT: OWN, MER: OWN, OP: ANY, REG: ANY}),
        Action("commission.payout", True, {OP: ANY}),
        Action("usage.record", True, {OP: ANY}),
        _read("usage.read", {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
        _read("bill.list", {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
        Action("bill.pay", True, {BUY: OWN}),
        # market: signing keys, negotiation, contracts, trades, auctions
        _read("signing_key.list", {MEMBER: OWN, OP: ANY, REG: ANY}),
        Action("signing_key.register", True, {MEMBER: OWN}, admin_only=True, users_only=True),
        Action("signing_key.revoke", True, {MEMBER: OWN}, admin_only=True, users_only=True),
        Action("negotiation.open", True, {BUY: OWN}),
        Action("negotiation.offer", True, {BUY: OWN, MER: OWN}),
        Action("negotiation.accept", True, {BUY: OWN, MER: OWN}),
        Action("negotiation.withdraw", True, {BUY: OWN, MER: OWN}),
        _read("negotiation.read", {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
        Action("contract.create", True, {BUY: OWN}),
        _read("contract.read", {BUY: OWN, MER: OWN, AGT: OWN, OP: ANY, REG: ANY}),
        Action("contract.sign", True, {BUY: OWN, MER: OWN}, admin_only=True),
        Action("contract.pay", True, {BUY: OWN}),
        Action("contract.deliver", True, {MER: OWN}),
        Action("contract.accept", True, {BUY: OWN}),
        Action("contract.cancel", True, {BUY: OWN, MER: OWN}),
        Action("contract.dispute", True, {BUY: OWN, MER: OWN}),
        Action("contract.resolve", True, {OP: ANY}),
        Action("contract.suspend", True, {OP: ANY, REG: ANY}),
        Action("contract.reinstate", True, {OP: ANY}),
        Action("contract.terminate", True, {OP: ANY}),
        Action(
            "contract.receipt",
            False,
            {BUY: OWN, MER: OWN, AGT: OWN, OP: ANY, REG: ANY},
            statuses=READ_STATUSES,
        ),
        Action("settlement.run", True, {OP: ANY}),
        Action("auction.open", True, {MER: OWN}),
        Action("auction.read", False, {MEMBER: ANY}),
        Action("auction.bid", True, {BUY: OWN}),
        Action("auction.reveal", True, {BUY: OWN}),
        Action("auction.close", True, {MER: OWN, OP: ANY}),
        # delivery: the API gateway, downloads, Delta Sharing, leak tracing
        Action("upstream.set", True, {MER: OWN}),
        _read("upstream.read", {MER: OWN, OP: ANY, REG: ANY}),
        Action("gateway.call", True, {BUY: OWN}),
        Action("download.create", True, {BUY: OWN}),
        _read("download.list", {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
        Action("share.grant", True, {BUY: OWN}),
        Action("share.revoke", True, {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
        _read("share.list", {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
        Action("fingerprint.set", True, {MER: OWN}),
        _read("fingerprint.read", {MER: OWN, OP: ANY, REG: ANY}),
        Action("trace.create", True, {MER: OWN, OP: ANY}),
        _read("trace.read", {MER: OWN, OP: ANY, REG: ANY}),
        # compute: nodes, compute services, jobs, privacy budgets
        Action("node.register", True, {MER: OWN, BUY: OWN}, admin_only=True),
        Action("node.revoke", True, {MER: OWN, BUY: OWN, OP: ANY}, admin_only=True),
        _read("node.read", {MER: OWN, BUY: OWN, OP: ANY, REG: ANY}),
        _read("node.exchange_key", {MEMBER: ANY}),
        Action("compute.set", True, {MER: OWN}),
        _read("compute.read", {MEMBER: ANY}),
        Action("job.submit", True, {BUY: OWN}),
        Action("job.cancel", True, {BUY: OWN, OP: ANY}),
        _read("job.read", {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
        _read("budget.read", {BUY: OWN, MER: OWN, OP: ANY, REG: ANY}),
    ]
}


#: Actions open to anyone: applying, logging in, probes, and the ledger's public data
#: (checkpoints, the log key, proofs, gossip) when the exchange allows public reads.
PUBLIC = frozenset(
    {
        "public.apply",
        "public.login",
        "public.token",
        "public.logout",
        "public.health",
        "public.ready",
        "public.ledger",
    }
)


def reach(principal: Principal, action: Action) -> Reach | None:
    """The widest reach any of the principal's roles gives for the action."""
    reaches = [action.rules[r] for r in (*principal.roles, MEMBER) if r in action.rules]
    if not reaches:
        return None
    return ANY if ANY in reaches else OWN


def authorize(principal: Principal, action_name: str, owner_org_id: str | None = None) -> Reach:
    """Allow or raise. ``owner_org_id`` is the organisation owning the object acted on.

    An object of another organisation that the principal may not reach is reported as
    not found, so that ids of other parties' objects cannot be probed.
    """
    action = POLICY.get(action_name)
    if action is None:
        raise Forbidden(f"no policy for action {action_name!r}")  # deny by default
    if principal.kind == "system":
        return ANY  # the exchange itself: its console (CLI) and scheduled jobs
    got = reach(principal, action)
    if got is None:
        raise Forbidden(f"your organisation's roles do not allow {action_name}")
    if owner_org_id is not None and got is OWN and owner_org_id != principal.org_id:
        raise NotFound()
    needed_scope = "write" if action.write else "read"
    if principal.kind == "apikey" and (action.users_only or needed_scope not in principal.scopes):
        raise Forbidden(f"this API key may not {action_name}")
    if principal.org_status not in action.statuses:
        raise OrganisationInactive(
            f"an organisation that is {principal.org_status} may not {action_name}"
        )
    if action.admin_only and not principal.is_admin and principal.kind == "user":
        raise Forbidden(f"{action_name} needs an organisation administrator")
    return got


#: The exchange acting for itself (the operator's console with database access, jobs).
SYSTEM_PRINCIPAL = Principal("system", "exchange", "exchange", "admitted", frozenset({OP}))
