"""The listing workflow of a product and the operator's review checklist (BRIEF §3, §10).

    draft ──submit──▶ in_review ──approve──▶ listed ──delist──▶ delisted ──submit──▶ in_review
      ▲                   │                    │ ▲
      └──(edit)── rejected ◀──reject──┘        │ └──reinstate── suspended ◀──suspend──┘

The checklist is pure: it is computed from plain values, so the merchant can preview it
before submitting and the operator sees the very same items when deciding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from databourse.catalog.models import ProductStatus as S


@dataclass(frozen=True)
class Step:
    sources: frozenset[str]
    target: str
    reason_required: bool = False


TRANSITIONS: dict[str, Step] = {
    "submit": Step(frozenset({S.draft, S.rejected, S.delisted}), S.in_review),
    "approve": Step(frozenset({S.in_review}), S.listed),
    "reject": Step(frozenset({S.in_review}), S.rejected, reason_required=True),
    "delist": Step(frozenset({S.listed}), S.delisted),
    "suspend": Step(frozenset({S.listed, S.in_review, S.delisted}), S.suspended, True),
    "reinstate": Step(frozenset({S.suspended}), S.listed, reason_required=True),
}


@dataclass(frozen=True)
class Check:
    item: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"item": self.item, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class ReviewInput:
    """What the checklist looks at: the product, its assets and their files, as plain values."""

    kind: str
    org_id: str
    org_data_source_statement: str | None
    assets: Sequence[dict[str, Any]]  # asset_state() of each asset
    has_file: bool  # every asset of a dataset product has an uploaded file
    sample_columns: Sequence[str]
    sample_rows: Sequence[Sequence[str | None]]
    policy_error: str | None  # the policy/plan validation outcome (None: valid)
    today: date


def checklist(
    inp: ReviewInput,
    unmasked: Callable[[Sequence[str], Sequence[Sequence[str | None]]], list[str]],
) -> list[Check]:
    """The listing review's items, in the order the operator reads them."""
    checks: list[Check] = []
    incomplete = [a["id"] for a in inp.assets if not a["source"].get("description")]
    checks.append(
        Check(
            "source_statement",
            bool(inp.org_data_source_statement) and not incomplete,
            "the merchant's data-source statement and every asset's source declaration are present"
            if not incomplete and inp.org_data_source_statement
            else "missing: "
            + ", ".join(
                (
                    ["the merchant's data-source statement"]
                    if not inp.org_data_source_statement
                    else []
                )
                + [f"source declaration of {a}" for a in incomplete]
            ),
        )
    )
    uncovered = [a["id"] for a in inp.assets if not _operates(a, inp.org_id, inp.today)]
    checks.append(
        Check(
            "rights_cover_operation",
            not uncovered,
            "the merchant holds the product operation right (数据产品经营权) of every asset today"
            if not uncovered
            else "no current product operation right held by the merchant on: "
            + ", ".join(uncovered),
        )
    )
    bad = [
        f"{a['id']} is {a['status']}"
        for a in inp.assets
        if a["status"] not in ("registered", "amended")
    ]
    core = [a["id"] for a in inp.assets if a["grade"] == "core"]
    checks.append(
        Check(
            "assets_registered",
            not bad,
            "every asset is registered" if not bad else "; ".join(bad),
        )
    )
    checks.append(
        Check(
            "grade_allows_listing",
            not core,
            "no asset is core data"
            if not core
            else "core data may not be listed: " + ", ".join(core),
        )
    )
    if inp.kind == "dataset":
        checks.append(
            Check(
                "data_file",
                inp.has_file,
                "every asset has an uploaded data file"
                if inp.has_file
                else "a dataset product needs an uploaded data file for each asset",
            )
        )
    leaking = unmasked(inp.sample_columns, inp.sample_rows) if inp.sample_rows else []
    has_sample = bool(inp.sample_rows)
    checks.append(
        Check(
            "sample_masked",
            has_sample and not leaking,
            "the sample shows no unmasked personal information"
            if has_sample and not leaking
            else "there is no sample"
            if not has_sample
            else "unmasked personal information in sample columns: " + ", ".join(leaking),
        )
    )
    checks.append(
        Check(
            "policy_valid",
            inp.policy_error is None,
            "the usage policy and pricing plans are valid"
            if inp.policy_error is None
            else inp.policy_error,
        )
    )
    return checks


def _operates(asset: dict[str, Any], org_id: str, today: date) -> bool:
    for grant in asset["rights"]:
        if grant["right"] != "operation" or grant.get("holder_org_id") != org_id:
            continue
        starts = date.fromisoformat(grant["starts_on"])
        ends = date.fromisoformat(grant["ends_on"]) if grant.get("ends_on") else None
        if starts <= today and (ends is None or today < ends):
            return True
    return False


def failures(checks: Sequence[Check]) -> list[dict[str, Any]]:
    return [c.as_dict() for c in checks if not c.passed]
