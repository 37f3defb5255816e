"""The demo world: one organisation for every role, seeded idempotently.

Everything is created through the same services the API uses, so the demo's history is on
the ledger like any other. Running the seed again finds what exists and adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from databourse.auth.policy import SYSTEM_PRINCIPAL
from databourse.participants import schemas, services
from databourse.participants.models import Organisation, OrgStatus, Role
from databourse.uow import UnitOfWork


@dataclass(frozen=True)
class DemoOrg:
    key: str
    name: str
    uscc: str | None
    roles: tuple[str, ...]
    email: str
    admit: bool = True
    country: str | None = None
    registry_id: str | None = None


DEMO_ORGS = (
    DemoOrg(
        "operator",
        "DataBourse Exchange Operations Co., Ltd.",
        "91110000MA01DB001B",
        ("operator",),
        "operator@databourse.example",
    ),
    DemoOrg(
        "regulator",
        "Municipal Data Administration (demo)",
        "11110000MB0199201K",
        ("regulator",),
        "regulator@databourse.example",
    ),
    DemoOrg(
        "merchant_a",
        "Jingcheng Mobility Data Co., Ltd.",
        "91310115MA1K4DB02L",
        ("merchant",),
        "merchant-a@databourse.example",
    ),
    DemoOrg(
        "merchant_b",
        "Huadong Credit Data Technology Co., Ltd.",
        "91330106MA2DB01035",
        ("merchant",),
        "merchant-b@databourse.example",
    ),
    DemoOrg(
        "buyer_a",
        "Nanfeng Consumer Finance Co., Ltd.",
        "91440300MA5DB0204Y",
        ("buyer",),
        "buyer-a@databourse.example",
    ),
    DemoOrg(
        "buyer_b",
        "Xishan Retail Analytics Co., Ltd.",
        "91510100MA6DB0305X",
        ("buyer",),
        "buyer-b@databourse.example",
    ),
    DemoOrg(
        "agent",
        "Beiyang Cross-Border Data Agency Co., Ltd.",
        "91110105MA01DB406Y",
        ("agent",),
        "agent@databourse.example",
    ),
    DemoOrg(
        "financier",
        "Pudong Digital Bank (demo)",
        "91310000MA1DB0507X",
        ("financier",),
        "financier@databourse.example",
    ),
    DemoOrg(
        "applicant",
        "Xinan Geospatial Data Co., Ltd.",
        "91110108MA01DB608U",
        ("merchant",),
        "applicant@databourse.example",
        admit=False,
    ),
)


@dataclass(frozen=True)
class Seeded:
    key: str
    org_id: str
    name: str
    status: str
    email: str
    created: bool


def _application(d: DemoOrg, password: str) -> schemas.ApplicationIn:
    requested = [r for r in d.roles if r not in ("operator", "regulator")]
    app = schemas.ApplicationIn.model_validate(
        {
            "kind": "domestic",
            "name": d.name,
            "uscc": d.uscc,
            "legal_representative": {
                "name": "Demo Representative",
                "id_type": "passport",
                "id_number": f"DEMO{d.uscc[-6:] if d.uscc else '000000'}",
            },
            "contacts": [{"name": "Demo Contact", "email": d.email, "phone": "+86 10 0000 0000"}],
            "address": "Demo Road 1, Beijing",
            "requested_roles": requested or ["buyer"],
            "data_source_statement": (
                "Self-generated operational data, collected with consent where personal "
                "information is involved."
                if "merchant" in requested
                else None
            ),
            "compliance_commitment": True,
            "admin": {"email": d.email, "display_name": f"Demo {d.key}", "password": password},
        },
        strict=False,
    )
    # The exchange's own organisations request nothing: their roles are granted.
    return app if requested else app.model_copy(update={"requested_roles": []})


def seed(sessions: sessionmaker[Session], password: str) -> list[Seeded]:
    out = []
    for d in DEMO_ORGS:
        with sessions() as s:
            existing = s.scalar(
                select(Organisation).where(Organisation.identifier == f"CN:{d.uscc}")
            )
        if existing is not None:
            out.append(Seeded(d.key, existing.id, d.name, existing.status, d.email, False))
            continue
        with UnitOfWork(sessions) as uow:
            org, _ = services.apply(uow, _application(d, password))
            uow.commit()
        p = SYSTEM_PRINCIPAL
        if d.admit:
            with UnitOfWork(sessions) as uow:
                services.transition(uow, p, org.id, "start_review", "demo world")
                services.transition(
                    uow,
                    p,
                    org.id,
                    "admit",
                    "demo world",
                    schemas.KybIn(
                        method="registry_lookup",
                        evidence_ref="demo",
                        legal_representative_verified=True,
                    ),
                )
                for role in d.roles:
                    if role in ("operator", "regulator"):
                        services.grant_role(uow, p, org.id, Role(role), "demo world")
                uow.commit()
        status = OrgStatus.admitted if d.admit else OrgStatus.applied
        out.append(Seeded(d.key, org.id, d.name, status, d.email, True))
    return out
