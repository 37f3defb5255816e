"""Request and response models of the participants API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, field_validator, model_validator

from databourse.participants.models import REQUESTABLE_ROLES, Role
from databourse.participants.uscc import USCCError, validate
from databourse.schemas import Out, Strict

Text = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
# Enums arrive as JSON strings; strict mode would otherwise demand enum instances.
RoleName = Annotated[Role, Field(strict=False)]


class LegalRepresentative(Strict):
    name: Text
    id_type: Literal["prc_resident_id", "passport", "hk_macao_permit", "taiwan_permit", "other"]
    id_number: Annotated[str, Field(min_length=4, max_length=40)]


class Contact(Strict):
    name: Text
    email: EmailStr
    phone: Annotated[str, Field(min_length=5, max_length=30)]
    title: Annotated[str | None, Field(max_length=100)] = None


class AdminUserIn(Strict):
    email: EmailStr
    display_name: Text
    password: Annotated[str, Field(min_length=12, max_length=200)]


class ApplicationIn(Strict):
    """An organisation's application for admission, with its first administrator."""

    kind: Literal["domestic", "foreign"]
    name: Text
    uscc: str | None = Field(None, description="Unified Social Credit Code (domestic)")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2 (foreign)")
    registry_id: Annotated[str | None, Field(max_length=100)] = Field(
        None, description="Home registry id (foreign)"
    )
    legal_representative: LegalRepresentative
    contacts: Annotated[list[Contact], Field(min_length=1, max_length=10)]
    address: Annotated[str | None, Field(max_length=300)] = None
    requested_roles: Annotated[list[RoleName], Field(min_length=1, max_length=5)]
    data_source_statement: Annotated[str | None, Field(max_length=10_000)] = None
    compliance_commitment: bool = False
    admin: AdminUserIn

    @field_validator("uscc")
    @classmethod
    def _uscc(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return validate(v)
        except USCCError as exc:
            raise ValueError(f"invalid USCC: {exc}") from exc

    @field_validator("requested_roles")
    @classmethod
    def _roles(cls, v: list[Role]) -> list[Role]:
        refused = [r.value for r in v if r not in REQUESTABLE_ROLES]
        if refused:
            raise ValueError(f"roles {refused} are granted by the exchange, not requested")
        return sorted(set(v))

    @model_validator(mode="after")
    def _identity(self) -> ApplicationIn:
        if self.kind == "domestic":
            if not self.uscc:
                raise ValueError("a domestic organisation needs its USCC")
            if self.country not in (None, "CN") or self.registry_id:
                raise ValueError("a domestic organisation is identified by its USCC alone")
        else:
            if not self.country or len(self.country) != 2 or not self.country.isalpha():
                raise ValueError("a foreign organisation needs an ISO 3166-1 alpha-2 country")
            if self.country.upper() == "CN":
                raise ValueError("an organisation registered in CN applies as domestic")
            if not self.registry_id or self.uscc:
                raise ValueError("a foreign organisation needs its home registry id, no USCC")
            self.country = self.country.upper()
        return self


class DecisionIn(Strict):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class KybIn(Strict):
    """The operator's record of how identity was verified (KYB)."""

    method: Literal["business_licence", "registry_lookup", "in_person", "notarised_documents"]
    evidence_ref: Text
    legal_representative_verified: bool
    notes: Annotated[str | None, Field(max_length=2000)] = None


class AdmitIn(Strict):
    reason: Annotated[str | None, Field(max_length=2000)] = None
    kyb: KybIn


class RoleIn(Strict):
    role: RoleName
    reason: Reason


class UserIn(Strict):
    email: EmailStr
    display_name: Text
    password: Annotated[str, Field(min_length=12, max_length=200)]
    is_admin: bool = False


class UserOut(Out):
    id: str
    org_id: str
    email: str
    display_name: str
    is_admin: bool
    active: bool
    created_at: datetime
    last_login_at: datetime | None


class OrganisationOut(Out):
    id: str
    kind: str
    name: str
    identifier: str
    uscc: str | None
    country: str
    registry_id: str
    status: str
    roles: list[str] = Field(validation_alias="role_names")
    requested_roles: list[str]
    legal_representative: LegalRepresentative
    contacts: list[Contact]
    address: str | None
    data_source_statement: str | None
    compliance_commitment: bool
    kyb: dict[str, object]
    created_at: datetime
    updated_at: datetime


class ApplicationOut(Out):
    organisation: OrganisationOut
    admin_user: UserOut


class DecisionOut(Out):
    id: int
    org_id: str
    action: str
    from_status: str | None
    to_status: str
    actor: str
    actor_org_id: str | None
    reason: str | None
    kyb: dict[str, object] | None
    at: datetime
