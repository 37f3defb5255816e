"""The policy table decides alone; these are its rules read as a user would state them."""

from __future__ import annotations

import pytest

from databourse.auth.policy import POLICY, Principal, Reach, authorize
from databourse.errors import Forbidden, NotFound, OrganisationInactive


def who(
    *roles: str,
    status: str = "admitted",
    admin: bool = True,
    kind: str = "user",
    scopes: tuple[str, ...] = ("read", "write"),
) -> Principal:
    return Principal(
        kind, "u1", "org_me", status, frozenset(roles), is_admin=admin, scopes=frozenset(scopes)
    )


def test_unknown_action_is_denied() -> None:
    with pytest.raises(Forbidden):
        authorize(who("operator"), "org.delete_everything")


def test_other_organisations_objects_are_not_found_not_forbidden() -> None:
    with pytest.raises(NotFound):
        authorize(who("merchant"), "org.read", "org_other")
    assert authorize(who("merchant"), "org.read", "org_me") is Reach.OWN
    assert authorize(who("regulator"), "org.read", "org_other") is Reach.ANY


def test_only_operator_admits_and_regulator_may_suspend() -> None:
    for role in ("merchant", "buyer", "agent", "financier", "service_provider", "regulator"):
        with pytest.raises(Forbidden):
            authorize(who(role), "admission.admit", "org_x")
    authorize(who("regulator"), "admission.suspend", "org_x")
    with pytest.raises(Forbidden):
        authorize(who("regulator"), "admission.reinstate", "org_x")


def test_suspended_organisation_may_read_but_never_write() -> None:
    p = who("merchant", "operator", status="suspended")
    authorize(p, "org.read", "org_me")
    for name, action in POLICY.items():
        if action.write:
            with pytest.raises((OrganisationInactive, Forbidden, NotFound)):
                authorize(p, name, "org_me")


def test_api_keys_cannot_manage_credentials_and_read_keys_cannot_write() -> None:
    key = who("buyer", kind="apikey", scopes=("read",))
    authorize(key, "org.read", "org_me")
    with pytest.raises(Forbidden):
        authorize(key, "apikey.create", "org_me")
    with pytest.raises(Forbidden):
        authorize(who("buyer", kind="apikey", scopes=("read", "write")), "apikey.create", "org_me")


def test_managing_users_needs_an_organisation_administrator() -> None:
    with pytest.raises(Forbidden):
        authorize(who("buyer", admin=False), "user.create", "org_me")
    authorize(who("buyer", admin=True), "user.create", "org_me")


def test_applicants_may_manage_their_application_but_not_trade() -> None:
    applicant = who(status="applied")
    authorize(applicant, "org.withdraw", "org_me")
    authorize(applicant, "user.create", "org_me")
    with pytest.raises(OrganisationInactive):
        authorize(applicant, "apikey.create", "org_me")
