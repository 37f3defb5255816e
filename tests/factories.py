"""Builders of valid requests for tests: organisations with fresh, valid identities."""

from __future__ import annotations

import secrets
from typing import Any

from databourse.participants.uscc import ALPHABET, check_character

PASSWORD = "a-long-test-password"


def fresh_uscc() -> str:
    body = "91" + "310115" + "".join(secrets.choice(ALPHABET) for _ in range(9))
    return body + check_character(body)


def application(roles: list[str] | None = None, **over: Any) -> dict[str, Any]:
    email = f"admin-{secrets.token_hex(5)}@org.example"
    body: dict[str, Any] = {
        "kind": "domestic",
        "name": f"Test Data Co. {secrets.token_hex(3)}",
        "uscc": fresh_uscc(),
        "legal_representative": {"name": "Li Wei", "id_type": "passport", "id_number": "E1234567"},
        "contacts": [{"name": "Wang Fang", "email": email, "phone": "+86 21 5555 0101"}],
        "requested_roles": roles or ["buyer"],
        "data_source_statement": "Self-generated sales records.",
        "compliance_commitment": True,
        "admin": {"email": email, "display_name": "Admin", "password": PASSWORD},
    }
    body.update(over)
    return body


KYB = {
    "method": "registry_lookup",
    "evidence_ref": "GSXT-2026-001",
    "legal_representative_verified": True,
}
