"""Tables of the participants domain: organisations, roles, users, admission decisions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from databourse.db import Base, UTCDateTime, utcnow


class Role(StrEnum):
    merchant = "merchant"
    buyer = "buyer"
    agent = "agent"
    service_provider = "service_provider"
    financier = "financier"
    operator = "operator"
    regulator = "regulator"


#: Roles an applicant may ask for; the exchange's own roles are granted, never requested.
REQUESTABLE_ROLES = frozenset(Role) - {Role.operator, Role.regulator}


class OrgStatus(StrEnum):
    applied = "applied"
    under_review = "under_review"
    admitted = "admitted"
    rejected = "rejected"
    suspended = "suspended"
    withdrawn = "withdrawn"


class OrgKind(StrEnum):
    domestic = "domestic"
    foreign = "foreign"


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    # "CN:<USCC>" for domestic, "<ISO 3166 alpha-2>:<home registry id>" for foreign.
    identifier: Mapped[str] = mapped_column(String(120), unique=True)
    uscc: Mapped[str | None] = mapped_column(String(18))
    country: Mapped[str] = mapped_column(String(2))
    registry_id: Mapped[str] = mapped_column(String(100))
    legal_representative: Mapped[dict[str, Any]] = mapped_column(JSON)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    address: Mapped[str | None] = mapped_column(String(300))
    requested_roles: Mapped[list[str]] = mapped_column(JSON)
    data_source_statement: Mapped[str | None] = mapped_column(Text)
    compliance_commitment: Mapped[bool] = mapped_column(Boolean, default=False)
    kyb: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    roles: Mapped[list[OrganisationRole]] = relationship(
        back_populates="organisation", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def role_names(self) -> list[str]:
        return sorted(r.role for r in self.roles)


class OrganisationRole(Base):
    __tablename__ = "organisation_roles"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_by: Mapped[str] = mapped_column(String(80))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    organisation: Mapped[Organisation] = relationship(back_populates="roles")


class AdmissionDecision(Base):
    """One step of the admission workflow, with who took it, why and when."""

    __tablename__ = "admission_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(80))
    actor_org_id: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    kyb: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
