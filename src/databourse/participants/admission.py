"""The admission workflow as data: which action moves an organisation from where to where.

applied ──start_review──▶ under_review ──admit──▶ admitted ◀──reinstate── suspended
   ▲                          │                      │  └──────suspend──────▲
   └──────resubmit── rejected ◀┘reject               │
applied | under_review | admitted ──withdraw──▶ withdrawn
"""

from __future__ import annotations

from dataclasses import dataclass

from databourse.participants.models import OrgStatus as S


@dataclass(frozen=True)
class Transition:
    action: str
    sources: frozenset[S]
    target: S
    reason_required: bool


TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in [
        Transition("start_review", frozenset({S.applied}), S.under_review, False),
        Transition("admit", frozenset({S.under_review}), S.admitted, False),
        Transition("reject", frozenset({S.under_review}), S.rejected, True),
        Transition("suspend", frozenset({S.admitted}), S.suspended, True),
        Transition("reinstate", frozenset({S.suspended}), S.admitted, True),
        Transition(
            "withdraw", frozenset({S.applied, S.under_review, S.admitted}), S.withdrawn, False
        ),
        Transition("resubmit", frozenset({S.rejected}), S.applied, False),
    ]
}


def kyb_findings(
    *,
    has_identifier: bool,
    legal_representative: dict[str, object],
    contacts: list[dict[str, object]],
    requested_roles: list[str],
    data_source_statement: str | None,
    compliance_commitment: bool,
) -> list[str]:
    """What is missing before an organisation can be admitted (empty list: nothing)."""
    missing = []
    if not has_identifier:
        missing.append("a valid registry identifier")
    if not legal_representative.get("name"):
        missing.append("the legal representative")
    if not contacts:
        missing.append("a contact")
    if "merchant" in requested_roles:
        if not (data_source_statement or "").strip():
            missing.append("a data-source statement (merchants)")
        if not compliance_commitment:
            missing.append("a compliance commitment (merchants)")
    return missing
