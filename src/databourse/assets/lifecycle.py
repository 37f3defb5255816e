"""The registration workflow of a data asset, as data (BRIEF §3).

    draft ──submit──▶ submitted ──register──▶ registered ──amend──▶ amended (──amend──▶ …)
      ▲                   │                        │  ▲
      └──── (edit) ◀── rejected ◀──reject──┘       │  └──resolve── disputed ◀──dispute──┘
                                                   └──cancel──▶ cancelled

A disputed asset is frozen: nothing but the operator's resolution moves it, back to the
state the dispute froze or to ``cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass

from databourse.assets.models import AssetStatus as S


@dataclass(frozen=True)
class Step:
    sources: frozenset[str]
    target: str | None  # None: decided by the command (resolve)
    reason_required: bool = False


TRANSITIONS: dict[str, Step] = {
    "submit": Step(frozenset({S.draft, S.rejected}), S.submitted),
    "register": Step(frozenset({S.submitted}), S.registered),
    "reject": Step(frozenset({S.submitted}), S.rejected, reason_required=True),
    "amend": Step(frozenset({S.registered, S.amended}), S.amended, reason_required=True),
    "cancel": Step(frozenset({S.draft, S.rejected, S.registered, S.amended}), S.cancelled),
    "dispute": Step(
        frozenset({S.submitted, S.registered, S.amended}), S.disputed, reason_required=True
    ),
    "resolve": Step(frozenset({S.disputed}), None, reason_required=True),
}

#: States whose content the holder may still edit freely (no certificate issued yet).
EDITABLE = frozenset({S.draft, S.rejected})
