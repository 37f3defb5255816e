"""The admission workflow through the API: every allowed and every refused transition."""

from __future__ import annotations

import itertools

import pytest

from databourse.participants.admission import TRANSITIONS
from tests import factories
from tests.conftest import Exchange, new_party

PATHS = {
    "start_review": "review",
    "admit": "admit",
    "reject": "reject",
    "suspend": "suspend",
    "reinstate": "reinstate",
    "withdraw": "withdraw",
    "resubmit": "resubmit",
}
# How to bring a fresh applicant into each state, as (actor, action) steps.
ROUTES = {
    "applied": [],
    "under_review": [("op", "start_review")],
    "admitted": [("op", "start_review"), ("op", "admit")],
    "rejected": [("op", "start_review"), ("op", "reject")],
    "suspended": [("op", "start_review"), ("op", "admit"), ("op", "suspend")],
    "withdrawn": [("self", "withdraw")],
}
# Who may take each action: the operator, or the organisation itself.
ACTOR = {
    "start_review": "op",
    "admit": "op",
    "reject": "op",
    "suspend": "op",
    "reinstate": "op",
    "withdraw": "self",
    "resubmit": "self",
}


def _body(action: str) -> dict[str, object]:
    if action == "admit":
        return {"kyb": factories.KYB}
    return {"reason": f"test {action}"}


def _step(ex: Exchange, party, op, actor: str, action: str):  # type: ignore[no-untyped-def]
    client = op if actor == "op" else party.client()
    return client.post(f"/organisations/{party.id}/{PATHS[action]}", json=_body(action))


@pytest.mark.parametrize(("state", "action"), list(itertools.product(ROUTES, TRANSITIONS)))
def test_transition_matrix(exchange: Exchange, state: str, action: str) -> None:
    """From every state, every action is either the allowed move or a 409 problem."""
    party = new_party(exchange, ["merchant"], admit=False)
    with exchange.as_demo("operator") as op:
        for actor, step in ROUTES[state]:
            assert _step(exchange, party, op, actor, step).status_code == 200
        r = _step(exchange, party, op, ACTOR[action], action)
        t = TRANSITIONS[action]
        if state == "suspended" and ACTOR[action] == "self":
            assert r.status_code == 403, r.text
            assert r.json()["type"] == "urn:databourse:problem:organisation-inactive"
        elif state in t.sources:
            assert r.status_code == 200, r.text
            assert r.json()["status"] == t.target
        else:
            assert r.status_code == 409, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"] == "urn:databourse:problem:invalid-transition"
            assert r.json()["current_status"] == state
        got = op.get(f"/organisations/{party.id}").json()["status"]
        assert got == (t.target if state in t.sources else state)


def test_admission_records_reviewer_reason_and_kyb(exchange: Exchange) -> None:
    party = new_party(exchange, ["merchant", "buyer"], admit=False)
    with exchange.as_demo("operator") as op:
        op.post(f"/organisations/{party.id}/review", json={"reason": "documents received"})
        r = op.post(
            f"/organisations/{party.id}/admit",
            json={"reason": "all checks pass", "kyb": factories.KYB},
        )
        assert r.status_code == 200
        org = r.json()
        assert org["roles"] == ["buyer", "merchant"]
        assert org["kyb"]["evidence_ref"] == factories.KYB["evidence_ref"]
        me = op.get("/me").json()
        decisions = op.get(f"/organisations/{party.id}/decisions").json()
    assert [d["action"] for d in decisions] == ["apply", "start_review", "admit"]
    assert [d["to_status"] for d in decisions] == ["applied", "under_review", "admitted"]
    admit = decisions[-1]
    assert admit["actor"] == f"user:{me['id']}"
    assert admit["actor_org_id"] == exchange.world["operator"]
    assert admit["reason"] == "all checks pass"
    assert admit["kyb"]["verified_by"] == f"user:{me['id']}"
    # the organisation sees its own history too
    with party.client() as c:
        assert len(c.get(f"/organisations/{party.id}/decisions").json()) == 3


def test_reject_and_suspend_need_a_reason(exchange: Exchange) -> None:
    party = new_party(exchange, admit=False)
    with exchange.as_demo("operator") as op:
        op.post(f"/organisations/{party.id}/review", json={})
        r = op.post(f"/organisations/{party.id}/reject", json={})
        assert r.status_code == 422
        assert r.json()["type"] == "urn:databourse:problem:validation"
        assert r.json()["errors"][0]["loc"] == ["body", "reason"]


def test_admitting_a_merchant_needs_source_statement_and_verified_identity(
    exchange: Exchange,
) -> None:
    party = new_party(
        exchange, ["merchant"], admit=False, data_source_statement=None, compliance_commitment=False
    )
    with exchange.as_demo("operator") as op:
        op.post(f"/organisations/{party.id}/review", json={})
        kyb = {**factories.KYB, "legal_representative_verified": False}
        r = op.post(f"/organisations/{party.id}/admit", json={"kyb": kyb})
        assert r.status_code == 422
        body = r.json()
        assert body["type"] == "urn:databourse:problem:admission-incomplete"
        assert len(body["missing"]) == 3
        assert op.get(f"/organisations/{party.id}").json()["status"] == "under_review"


def test_only_the_operator_reviews_and_a_regulator_may_suspend(exchange: Exchange) -> None:
    party = new_party(exchange, admit=False)
    other = new_party(exchange, ["buyer"])
    with exchange.as_demo("regulator") as reg, other.client() as stranger:
        assert reg.post(f"/organisations/{party.id}/review", json={}).status_code == 403
        # another organisation cannot even tell that this one exists
        r = stranger.post(f"/organisations/{party.id}/review", json={})
        assert r.status_code in (403, 404)
        assert stranger.get(f"/organisations/{party.id}").status_code == 404
    with exchange.as_demo("operator") as op:
        op.post(f"/organisations/{party.id}/review", json={})
        op.post(f"/organisations/{party.id}/admit", json={"kyb": factories.KYB})
    with exchange.as_demo("regulator") as reg:
        r = reg.post(f"/organisations/{party.id}/suspend", json={"reason": "regulator order"})
        assert r.status_code == 200
        assert r.json()["status"] == "suspended"
        assert (
            reg.post(f"/organisations/{party.id}/reinstate", json={"reason": "x"}).status_code
            == 403
        )


def test_suspended_organisation_can_only_read_its_own_records(exchange: Exchange) -> None:
    party = new_party(exchange, ["buyer"])
    with exchange.as_demo("operator") as op:
        op.post(f"/organisations/{party.id}/suspend", json={"reason": "risk alert"})
    with party.client() as c:
        assert c.get(f"/organisations/{party.id}").status_code == 200
        assert c.get(f"/organisations/{party.id}/decisions").status_code == 200
        for path, body in [
            (f"/organisations/{party.id}/api-keys", {"name": "k"}),
            (
                f"/organisations/{party.id}/users",
                {"email": "x@y.example", "display_name": "x", "password": "long-enough-pass"},
            ),
            (f"/organisations/{party.id}/withdraw", {}),
        ]:
            r = c.post(path, json=body)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["type"] == "urn:databourse:problem:organisation-inactive"


def test_duplicate_application_is_a_conflict(exchange: Exchange) -> None:
    body = factories.application()
    with exchange.client() as c:
        assert c.post("/applications", json=body).status_code == 201
        again = {**factories.application(), "uscc": body["uscc"]}
        r = c.post("/applications", json=again)
    assert r.status_code == 409
    assert r.json()["type"] == "urn:databourse:problem:duplicate-organisation"


def test_foreign_organisation_applies_with_country_and_registry_id(exchange: Exchange) -> None:
    body = factories.application(
        ["merchant"], kind="foreign", uscc=None, country="de", registry_id="HRB 123456 B"
    )
    with exchange.client() as c:
        r = c.post("/applications", json=body)
    assert r.status_code == 201, r.text
    org = r.json()["organisation"]
    assert org["identifier"] == "DE:HRB 123456 B"
    assert org["status"] == "applied"


def test_operator_grants_and_revokes_roles(exchange: Exchange) -> None:
    party = new_party(exchange, ["buyer"])
    with exchange.as_demo("operator") as op:
        r = op.post(f"/organisations/{party.id}/roles", json={"role": "agent", "reason": "ok"})
        assert r.json()["roles"] == ["agent", "buyer"]
        r = op.post(f"/organisations/{party.id}/roles/buyer/revoke", json={"reason": "ended"})
        assert r.json()["roles"] == ["agent"]
    with party.client() as c:
        assert (
            c.post(
                f"/organisations/{party.id}/roles", json={"role": "operator", "reason": "please"}
            ).status_code
            == 403
        )


def test_a_row_edited_outside_the_service_is_not_built_upon(exchange: Exchange) -> None:
    """The next change to a hand-edited row is refused, so the edit cannot be laundered."""
    from sqlalchemy import update

    from databourse.participants.models import Organisation

    party = new_party(exchange, ["buyer"])
    with exchange.ctx.writes() as s, s.begin():
        s.execute(update(Organisation).where(Organisation.id == party.id).values(name="Forged"))
    with exchange.as_demo("operator") as op:
        r = op.post(f"/organisations/{party.id}/suspend", json={"reason": "check"})
    assert r.status_code == 409
    assert r.json()["type"] == "urn:databourse:problem:ledger-mismatch"
    with exchange.as_demo("operator") as op:
        assert op.get(f"/organisations/{party.id}").json()["status"] == "admitted"
