"""Request and response models of the auth API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field

from databourse.schemas import Out, Strict


class LoginIn(Strict):
    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=200)]


class TokenOut(Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MeOut(Out):
    kind: str
    id: str
    org_id: str
    org_status: str
    roles: list[str]
    is_admin: bool
    scopes: list[str]


class ApiKeyIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=120)]
    scopes: Annotated[
        list[Literal["read", "write"]],
        Field(min_length=1, max_length=2, default_factory=lambda: ["read"]),
    ]
    expires_in_days: Annotated[int | None, Field(ge=1, le=730)] = 90


class ApiKeyOut(Out):
    id: str
    org_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str | None = Field(
        description="The secret key. Shown once (null when a retry replays the creation)."
    )
