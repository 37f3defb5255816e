"""Usage policies (用途可控, BRIEF §5), modelled on W3C ODRL 2.2 and exported as its JSON-LD.

A product carries a default policy (an ODRL Offer); a contract carries the agreed one (an
ODRL Agreement), which may only be narrower (``narrows``). Pydantic checks the shape of a
policy; ``validate_policy`` checks that it makes sense for the product it governs.

Units: dates are inclusive calendar days; ``epsilon_micro`` is ε × 10⁶ and ``delta_pico`` is
δ × 10¹², so privacy budgets stay integers in rows, contracts and the ledger.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from databourse.catalog.errors import InvalidPolicy
from databourse.catalog.vocab import ProductKind, Purpose, territory_error, within
from databourse.schemas import Strict

__all__ = [
    "DBP",
    "ODRL_CONTEXT_URL",
    "CountLimits",
    "Duty",
    "OnwardTransfer",
    "OutputLimits",
    "Purpose",
    "RateLimits",
    "UsagePolicy",
    "narrows",
    "odrl_context",
    "term_length_days",
    "to_odrl",
    "validate_policy",
]

ODRL_CONTEXT_URL = "http://www.w3.org/ns/odrl.jsonld"
# Terms ODRL lacks (fields, rates, group size, ε, δ, rows) live in this namespace.
DBP = "https://databourse.org/ns/policy#"
PROFILE = "https://databourse.org/ns/policy"
MAX_COUNT = 10**15
MAX_TERM_DAYS = 36_500


class Duty(StrEnum):
    attribution = "attribution"
    pay_per_use = "pay_per_use"
    report_usage = "report_usage"
    delete_at_term_end = "delete_at_term_end"


def _iso_date(value: Any) -> Any:
    """Dates arrive as ISO strings in JSON; strict mode alone would refuse them."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)") from exc
    return value


def _territory(code: str) -> str:
    code = code.upper()
    problem = territory_error(code)
    if problem:
        raise ValueError(problem)
    return code


def _canonical(values: list[Any]) -> list[Any]:
    """Sets travel as sorted lists without repeats, so equal policies serialise equally."""
    return sorted(set(values))


Count = Annotated[int, Field(gt=0, le=MAX_COUNT)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Territory = Annotated[str, Field(min_length=2, max_length=6), AfterValidator(_territory)]
FieldName = Annotated[str, Field(min_length=1, max_length=200)]
PartyId = Annotated[str, Field(min_length=1, max_length=200)]
# Enums arrive as JSON strings; strict mode would otherwise demand enum instances.
PurposeName = Annotated[Purpose, Field(strict=False)]
DutyName = Annotated[Duty, Field(strict=False)]


class CountLimits(Strict):
    max_calls: Count | None = None
    max_downloads: Count | None = None
    max_rows: Count | None = None


class RateLimits(Strict):
    max_per_second: Count | None = None
    max_per_minute: Count | None = None


class OutputLimits(Strict):
    aggregates_only: bool = False
    min_group_size: Annotated[int, Field(ge=2, le=MAX_COUNT)] | None = None
    epsilon_micro: Annotated[int, Field(ge=0, le=10**9)] | None = None  # ε × 10⁶, at most ε 1000
    delta_pico: Annotated[int, Field(ge=0, lt=10**12)] | None = None  # δ × 10¹², δ < 1


class OnwardTransfer(Strict):
    mode: Literal["prohibited", "allowed_to"] = "prohibited"
    parties: Annotated[list[PartyId], Field(max_length=100), AfterValidator(_canonical)] = Field(
        default_factory=list
    )


class UsagePolicy(Strict):
    """The licence terms under which a product's data may be used."""

    purposes: Annotated[list[PurposeName], Field(min_length=1), AfterValidator(_canonical)]
    term_days: Annotated[int, Field(gt=0, le=MAX_TERM_DAYS)] | None = None
    not_before: IsoDate | None = None
    not_after: IsoDate | None = None
    territories: Annotated[
        list[Territory], Field(min_length=1, max_length=300), AfterValidator(_canonical)
    ] = Field(default_factory=lambda: ["CN"])
    count: CountLimits = CountLimits()
    rate: RateLimits = RateLimits()
    fields: (
        Annotated[list[FieldName], Field(max_length=2000), AfterValidator(_canonical)] | None
    ) = None  # None: every field of the product
    output: OutputLimits = OutputLimits()
    onward: OnwardTransfer = OnwardTransfer()
    retention_days: Annotated[int, Field(gt=0, le=MAX_TERM_DAYS)] | None = None
    duties: Annotated[list[DutyName], Field(max_length=len(Duty)), AfterValidator(_canonical)] = (
        Field(default_factory=list)
    )


def term_length_days(policy: UsagePolicy) -> int | None:
    """The longest the licence can last in days, or None when it is open-ended."""
    window = None
    if policy.not_before and policy.not_after:
        window = (policy.not_after - policy.not_before).days + 1
    lengths = [n for n in (policy.term_days, window) if n is not None]
    return min(lengths) if lengths else None


def validate_policy(policy: UsagePolicy, *, kind: str, fields: set[str] | None) -> None:
    """Raise ``InvalidPolicy`` naming the first term that does not fit the product.

    ``fields`` are the product's field names (None when it declares none, e.g. compute).
    """
    if kind not in set(ProductKind):
        raise InvalidPolicy(f"unknown product kind {kind!r}", field="kind", value=kind)
    if policy.fields is not None:
        if not policy.fields:
            raise InvalidPolicy(
                "an empty field list allows nothing; omit it to allow every field",
                field="fields",
            )
        unknown = [f for f in policy.fields if fields is not None and f not in fields]
        if unknown:
            raise InvalidPolicy(
                f"the policy allows field {unknown[0]!r} which the product does not have",
                field="fields",
                value=unknown[0],
            )
    _check_term(policy)
    _check_limits(policy, kind)
    _check_output(policy.output, kind)
    onward = policy.onward
    if onward.mode == "allowed_to" and not onward.parties:
        raise InvalidPolicy(
            "onward transfer 'allowed_to' must name the parties", field="onward.parties"
        )
    if onward.mode == "prohibited" and onward.parties:
        raise InvalidPolicy(
            "onward transfer is prohibited, so no parties may be named", field="onward.parties"
        )


def _check_term(policy: UsagePolicy) -> None:
    if policy.term_days is None and policy.not_after is None:
        raise InvalidPolicy(
            "a licence needs a term: give term_days or not_after", field="term_days"
        )
    if policy.not_before and policy.not_after and policy.not_before > policy.not_after:
        raise InvalidPolicy(
            f"the term starts on {policy.not_before} after it ends on {policy.not_after}",
            field="not_after",
            value=policy.not_after.isoformat(),
        )
    length = term_length_days(policy)
    if policy.term_days and length is not None and policy.term_days > length:
        raise InvalidPolicy(
            f"term_days {policy.term_days} does not fit between not_before and not_after "
            f"({length} days)",
            field="term_days",
            value=policy.term_days,
        )
    retention = policy.retention_days
    if Duty.delete_at_term_end in policy.duties and retention and length and retention > length:
        raise InvalidPolicy(
            f"retention of {retention} days outlasts the {length}-day term, "
            "yet the data must be deleted at term end",
            field="retention_days",
            value=retention,
        )


def _check_limits(policy: UsagePolicy, kind: str) -> None:
    count, rate = policy.count, policy.rate
    if count.max_downloads is not None and kind != ProductKind.dataset:
        raise InvalidPolicy(
            f"max_downloads limits dataset downloads; {kind} products are not downloaded",
            field="count.max_downloads",
            value=count.max_downloads,
        )
    if count.max_calls is not None and kind == ProductKind.dataset:
        raise InvalidPolicy(
            "max_calls limits API or compute calls; a dataset is downloaded, not called",
            field="count.max_calls",
            value=count.max_calls,
        )
    per_s, per_min = rate.max_per_second, rate.max_per_minute
    if per_s is not None and per_min is not None and per_s > per_min:
        raise InvalidPolicy(
            f"the rate allows {per_s} per second but only {per_min} per minute",
            field="rate.max_per_second",
            value=per_s,
        )


def _check_output(output: OutputLimits, kind: str) -> None:
    if kind == ProductKind.dataset and (output.aggregates_only or output.min_group_size):
        raise InvalidPolicy(
            "output limits (aggregates only, minimum group size) cannot be enforced on a "
            "downloaded dataset; offer it as an api or compute product",
            field="output.aggregates_only" if output.aggregates_only else "output.min_group_size",
        )
    if output.min_group_size is not None and not output.aggregates_only:
        raise InvalidPolicy(
            "a minimum group size applies to aggregate results: set aggregates_only",
            field="output.min_group_size",
            value=output.min_group_size,
        )
    if (output.epsilon_micro is not None or output.delta_pico is not None) and (
        kind != ProductKind.compute
    ):
        raise InvalidPolicy(
            f"a differential-privacy budget applies to compute products, not to {kind} products",
            field="output.epsilon_micro",
        )
    if output.epsilon_micro == 0:
        raise InvalidPolicy(
            "a privacy budget of ε 0 allows no query at all", field="output.epsilon_micro", value=0
        )
    if output.delta_pico is not None and output.epsilon_micro is None:
        raise InvalidPolicy(
            "δ is meaningful only with an ε budget",
            field="output.delta_pico",
            value=output.delta_pico,
        )


def narrows(contract: UsagePolicy, default: UsagePolicy) -> list[str]:
    """What in a contract's policy is wider than the listing allows; empty when it narrows."""
    out: list[str] = []
    out += [
        f"purpose {p.value!r} is not allowed"
        for p in contract.purposes
        if p not in default.purposes
    ]
    out += [
        f"territory {t!r} is outside the allowed territories"
        for t in contract.territories
        if not any(within(t, a) for a in default.territories)
    ]
    if default.fields is not None:
        if contract.fields is None:
            out.append("the contract allows every field, the listing only some")
        else:
            out += [
                f"field {f!r} is not allowed" for f in contract.fields if f not in default.fields
            ]
    limits = [
        (contract.count, default.count, ("max_calls", "max_downloads", "max_rows")),
        (contract.rate, default.rate, ("max_per_second", "max_per_minute")),
    ]
    for mine, theirs, names in limits:
        out += _at_most(mine, theirs, names)
    out += _at_most(contract, default, ("retention_days",))
    if default.not_before and (contract.not_before or date.min) < default.not_before:
        out.append(f"the term may not start before {default.not_before}")
    if default.not_after and (contract.not_after or date.max) > default.not_after:
        out.append(f"the term may not end after {default.not_after}")
    longest, length = term_length_days(default), term_length_days(contract)
    if default.term_days and (length is None or longest is None or length > longest):
        out.append(f"the term may last at most {longest} days")
    c_out, d_out = contract.output, default.output
    if d_out.aggregates_only and not c_out.aggregates_only:
        out.append("the listing allows aggregate results only")
    if d_out.min_group_size and (c_out.min_group_size or 0) < d_out.min_group_size:
        out.append(f"the minimum group size must be at least {d_out.min_group_size}")
    out += _at_most(c_out, d_out, ("epsilon_micro", "delta_pico"))
    if default.onward.mode == "prohibited" and contract.onward.mode != "prohibited":
        out.append("onward transfer is prohibited")
    elif contract.onward.mode == "allowed_to":
        out += [
            f"onward transfer to {p!r} is not allowed"
            for p in contract.onward.parties
            if p not in default.onward.parties
        ]
    out += [
        f"duty {d.value!r} may not be dropped" for d in default.duties if d not in contract.duties
    ]
    return out


def _at_most(mine: Any, theirs: Any, names: tuple[str, ...]) -> list[str]:
    out = []
    for name in names:
        limit, value = getattr(theirs, name), getattr(mine, name)
        if limit is not None and (value is None or value > limit):
            out.append(
                f"{name} must be at most {limit}, not {value if value is not None else 'unlimited'}"
            )
    return out


@cache
def odrl_context() -> dict[str, Any]:
    """The ODRL 2.2 JSON-LD context shipped with the package, to expand policies offline."""
    text = resources.files("databourse.catalog").joinpath("contexts/odrl.jsonld").read_text("utf-8")
    return dict(json.loads(text)["@context"])


def _c(left: str, op: str, right: Any, unit: str | None = None) -> dict[str, Any]:
    constraint = {"leftOperand": left, "operator": op, "rightOperand": right}
    if unit:
        constraint["unit"] = {"@id": unit}
    return constraint


def _typed(value: str, xsd: str) -> dict[str, str]:
    return {"@value": value, "@type": f"xsd:{xsd}"}


def _scaled(value: int, exponent: int) -> dict[str, str]:
    # xsd:decimal has no exponent form: 1E-9 must be written 0.000000001.
    return _typed(f"{Decimal(value).scaleb(-exponent).normalize():f}", "decimal")


def to_odrl(
    policy: UsagePolicy,
    *,
    uid: str,
    assigner: str,
    target: str,
    policy_type: Literal["Offer", "Agreement"] = "Offer",
    assignee: str | None = None,
) -> dict[str, Any]:
    """The policy as an ODRL 2.2 JSON-LD document; ``uid``, parties and target are IRIs."""
    if policy_type == "Agreement" and not assignee:
        raise ValueError("an ODRL Agreement names its assignee")
    parties = {"assigner": assigner} | ({"assignee": assignee} if assignee else {})
    constraints = [
        _c("purpose", "isAnyOf", [p.value for p in policy.purposes]),
        _c("spatial", "isAnyOf", list(policy.territories)),
    ]
    if policy.not_before:
        constraints.append(_c("dateTime", "gteq", _typed(policy.not_before.isoformat(), "date")))
    if policy.not_after:
        constraints.append(_c("dateTime", "lteq", _typed(policy.not_after.isoformat(), "date")))
    if policy.term_days:
        constraints.append(_c("elapsedTime", "lteq", _typed(f"P{policy.term_days}D", "duration")))
    count, rate, output = policy.count, policy.rate, policy.output
    for value, unit in ((count.max_calls, "dbp:call"), (count.max_downloads, "dbp:download")):
        if value is not None:
            constraints.append(_c("count", "lteq", value, unit))
    numeric = [
        ("dbp:rows", "lteq", count.max_rows),
        ("dbp:ratePerSecond", "lteq", rate.max_per_second),
        ("dbp:ratePerMinute", "lteq", rate.max_per_minute),
        ("dbp:minGroupSize", "gteq", output.min_group_size),
    ]
    constraints += [_c(left, op, v) for left, op, v in numeric if v is not None]
    if policy.fields is not None:
        constraints.append(_c("dbp:field", "isAnyOf", list(policy.fields)))
    if output.aggregates_only:
        constraints.append(_c("dbp:aggregatesOnly", "eq", True))
    if output.epsilon_micro is not None:
        constraints.append(_c("dbp:epsilon", "lteq", _scaled(output.epsilon_micro, 6)))
    if output.delta_pico is not None:
        constraints.append(_c("dbp:delta", "lteq", _scaled(output.delta_pico, 12)))
    duties: list[dict[str, Any]] = []
    if Duty.attribution in policy.duties:
        duties.append({"action": "attribute", "attributedParty": assigner})
    if Duty.pay_per_use in policy.duties:
        duties.append({"action": "compensate", "compensatedParty": assigner})
    if Duty.report_usage in policy.duties:
        duties.append({"action": "inform", "informedParty": assigner})
    if policy.retention_days:
        retention = _typed(f"P{policy.retention_days}D", "duration")
        duties.append({"action": "delete", "constraint": [_c("elapsedTime", "lteq", retention)]})
    use: dict[str, Any] = {"target": target, **parties, "action": "use", "constraint": constraints}
    if duties:
        use["duty"] = duties
    doc: dict[str, Any] = {
        "@context": [ODRL_CONTEXT_URL, {"dbp": DBP}],
        "@type": policy_type,
        "uid": uid,
        "profile": PROFILE,
        "permission": [use],
    }
    distribute = {"target": target, **parties, "action": "distribute"}
    if policy.onward.mode == "allowed_to":
        recipients = _c("recipient", "isAnyOf", list(policy.onward.parties))
        doc["permission"].append(distribute | {"constraint": [recipients]})
    else:
        doc["prohibition"] = [distribute]
    if Duty.delete_at_term_end in policy.duties:
        term_end = _c("event", "gt", {"@id": "dbp:termEnd"})
        doc["obligation"] = [
            {"target": target, **parties, "action": "delete", "constraint": [term_end]}
        ]
    return doc
