"""The usage policy at the point of delivery (用途可控): may this contract be used now, for
this purpose, in this territory, once more? Pure: the caller gathers the facts.

Every delivery path — the API gateway, downloads and Delta Sharing — asks ``refusal`` the
same question with the same facts, so a suspension or an expiry stops all of them alike.
The answer is the first constraint violated, in a fixed order, or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from databourse.catalog.policy import UsagePolicy
from databourse.catalog.vocab import within

#: The constraints a refusal can name (the ``constraint`` of a ``usage-refused`` problem).
CONSTRAINTS = (
    "contract",  # no active contract: unsigned, unpaid, void, terminated or expired
    "suspended",  # the contract, the product or either organisation is suspended
    "term",  # outside the contract's term or the policy's dates
    "purpose",  # the declared purpose is not licensed
    "territory",  # the declared territory is not licensed
    "count",  # a count limit (calls, downloads, rows, a package's units) is used up
    "rate",  # a rate limit is reached
    "fields",  # a field the policy does not license was asked for
    "path",  # a path or method the merchant has not opened
)

ADMITTED = "admitted"
USABLE_CONTRACT = "active"


@dataclass(frozen=True)
class UseFacts:
    contract_status: str
    buyer_status: str
    merchant_status: str
    product_status: str
    starts_at: datetime
    ends_at: datetime
    policy: UsagePolicy
    now: datetime


@dataclass(frozen=True)
class Refusal:
    constraint: str
    detail: str


def standing(f: UseFacts) -> Refusal | None:
    """Whether the contract can be used at all right now: state, suspensions and term."""
    if f.contract_status == "suspended":
        return Refusal("suspended", "the contract is suspended")
    if f.product_status == "suspended":
        return Refusal("suspended", "the product is suspended")
    for side, status in (("buyer", f.buyer_status), ("merchant", f.merchant_status)):
        if status != ADMITTED:
            return Refusal("suspended", f"the {side}'s organisation is {status}")
    if f.contract_status != USABLE_CONTRACT:
        return Refusal("contract", f"the contract is {f.contract_status}, not active")
    if f.now < f.starts_at:
        return Refusal("term", f"the contract's term starts at {f.starts_at.isoformat()}")
    if f.now >= f.ends_at:
        return Refusal("term", f"the contract's term ended at {f.ends_at.isoformat()}")
    today = f.now.date()
    if f.policy.not_before and today < f.policy.not_before:
        return Refusal("term", f"the policy allows use from {f.policy.not_before.isoformat()}")
    if f.policy.not_after and today > f.policy.not_after:
        return Refusal("term", f"the policy allowed use until {f.policy.not_after.isoformat()}")
    return None


def declared(policy: UsagePolicy, purpose: str | None, territory: str) -> Refusal | None:
    """Whether the caller's declared purpose and territory are licensed."""
    if purpose is None:
        return Refusal("purpose", "declare the purpose of the use (the X-Purpose header)")
    if purpose not in policy.purposes:
        allowed = ", ".join(policy.purposes)
        return Refusal("purpose", f"purpose {purpose!r} is not licensed; licensed: {allowed}")
    if not any(within(territory, t) for t in policy.territories):
        allowed = ", ".join(policy.territories)
        return Refusal("territory", f"use in {territory!r} is not licensed; licensed: {allowed}")
    return None


def count_left(used: int, limits: list[int | None]) -> int | None:
    """How many more units the tightest of ``limits`` allows (None: no limit)."""
    bounds = [n for n in limits if n is not None]
    return None if not bounds else max(0, min(bounds) - used)


def over_count(what: str, used: int, more: int, limits: list[int | None]) -> Refusal | None:
    """Refuse ``more`` units of ``what`` when they would pass a limit."""
    left = count_left(used, limits)
    if left is not None and more > left:
        return Refusal("count", f"{what}: {used} used, {left} left under the contract")
    return None


def unlicensed_fields(policy: UsagePolicy, asked: list[str]) -> Refusal | None:
    if policy.fields is None:
        return None
    extra = sorted(set(asked) - set(policy.fields))
    if extra:
        return Refusal("fields", f"fields not licensed: {', '.join(extra)}")
    return None


def licensed_fields(policy: UsagePolicy, available: list[str]) -> list[str]:
    """The fields of ``available`` the buyer may receive, in their original order."""
    if policy.fields is None:
        return list(available)
    allowed = set(policy.fields)
    return [f for f in available if f in allowed]
