"""Asset registration over HTTP, as a merchant, the operator and a regulator see it.

The helpers at the top (staff clients, registered assets, listed products) are shared by
the other HTTP-level modules of assets, catalog and demands.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from databourse import demo
from databourse.auth.secrets import mint_access_token
from databourse.ledger.receipts import verify as verify_receipt
from databourse.participants.models import User
from tests import factories
from tests.catalog.test_listing_flow import gbk_csv, upload
from tests.conftest import Exchange, quick_party

PROBLEM = "urn:databourse:problem:"
ALL = {"limit": 500}  # a whole listing of one test party's records
COLUMNS = ["线路", "时段", "站点", "上车人次"]  # the columns of gbk_csv()


# ---------------------------------------------------------------- shared helpers


class Member:
    """A party made through the services (fast), with an open client carrying its token."""

    def __init__(self, ex: Exchange, roles: list[str], status: str = "admitted") -> None:
        self.party = quick_party(ex, roles, status)
        self.id = self.party.id
        self.c = self.party.client()


def demo_client(ex: Exchange, key: str) -> httpx.Client:
    """A demo organisation's user with a freshly minted token (no password hashing)."""
    email = next(d.email for d in demo.DEMO_ORGS if d.key == key)
    with ex.ctx.reads() as s:
        user_id = s.scalar(select(User.id).where(User.email == email))
    assert user_id is not None, email
    token = mint_access_token(
        ex.ctx.tokens.secret, user_id, datetime.now(UTC), ex.ctx.tokens.access_ttl
    )
    return ex.client(token)


class Demo:
    """A demo organisation as a party of a test: for checks that must not touch a fresh one
    (another merchant, an onlooking buyer), at no cost."""

    def __init__(self, ex: Exchange, key: str) -> None:
        self.id = ex.world[key]
        self.c = demo_client(ex, key)


class Staff:
    """The exchange's operator and a regulator, as clients."""

    def __init__(self, ex: Exchange) -> None:
        self.op = demo_client(ex, "operator")
        self.reg = demo_client(ex, "regulator")

    def close(self) -> None:
        self.op.close()
        self.reg.close()


def staff_for(ex: Exchange) -> Iterator[Staff]:
    staff = Staff(ex)
    yield staff
    staff.close()


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def refused(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response is the problem ``slug`` with ``status``; its body."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    assert r.headers["content-type"].startswith("application/problem+json")
    return body


def create_asset(m: httpx.Client, **over: Any) -> str:
    return str(ok(m.post("/assets", json=factories.asset(**over)), 201)["id"])


def registered_asset(m: httpx.Client, op: httpx.Client, **over: Any) -> str:
    asset_id = create_asset(m, **over)
    ok(m.post(f"/assets/{asset_id}/submit", json={}))
    assert (
        ok(op.post(f"/assets/{asset_id}/register", json={"reason": "documents checked"}))["status"]
        == "registered"
    )
    return asset_id


def list_product(m: httpx.Client, op: httpx.Client, body: dict[str, Any]) -> str:
    """Create, submit and approve a product; its id."""
    pid = str(ok(m.post("/products", json=body), 201)["id"])
    ok(m.post(f"/products/{pid}/submit", json={}))
    assert (
        ok(op.post(f"/products/{pid}/approve", json={"reason": "checklist passed"}))["status"]
        == "listed"
    )
    return pid


def listed_dataset(m: httpx.Client, op: httpx.Client, **over: Any) -> tuple[str, str]:
    """A registered asset with the GBK ridership file and a listed dataset product of it."""
    asset_id = registered_asset(m, op)
    ok(upload(m, asset_id, gbk_csv()), 201)
    return asset_id, list_product(m, op, factories.product([asset_id], COLUMNS, **over))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def staff(exchange: Exchange) -> Iterator[Staff]:
    yield from staff_for(exchange)


@pytest.fixture(scope="module")
def merchant(exchange: Exchange) -> Member:
    return Member(exchange, ["merchant"])


def _in_state(m: httpx.Client, staff: Staff, state: str) -> str:
    """A new asset of the merchant ``m``, brought to ``state`` by allowed steps."""
    op = staff.op
    if state in ("registered", "amended", "disputed"):
        asset_id = registered_asset(m, op)
    else:
        asset_id = create_asset(m)
    steps: dict[str, list[tuple[httpx.Client, str, dict[str, Any]]]] = {
        "draft": [],
        "submitted": [(m, "submit", {})],
        "rejected": [(m, "submit", {}), (op, "reject", {"reason": "consent basis unclear"})],
        "cancelled": [(m, "cancel", {})],
        "registered": [],
        "amended": [],
        "disputed": [(staff.reg, "dispute", {"reason": "ownership contested"})],
    }
    if state == "amended":
        r = m.patch(f"/assets/{asset_id}", json={"title": "amended title", "reason": "typo"})
        assert ok(r)["status"] == "amended"
    for client, step, body in steps[state]:
        ok(client.post(f"/assets/{asset_id}/{step}", json=body))
    assert ok(m.get(f"/assets/{asset_id}"))["status"] == state
    return asset_id


STATES = ("draft", "submitted", "registered", "rejected", "amended", "cancelled", "disputed")


@pytest.fixture(scope="module")
def by_state(merchant: Member, staff: Staff) -> dict[str, str]:
    return {state: _in_state(merchant.c, staff, state) for state in STATES}


# ---------------------------------------------------------------- the workflow


def test_every_allowed_step_of_the_workflow(merchant: Member, staff: Staff) -> None:
    m, op, reg = merchant.c, staff.op, staff.reg
    asset_id = create_asset(m)
    a = ok(m.patch(f"/assets/{asset_id}", json={"title": "草稿改名 draft renamed"}))
    assert (a["status"], a["revision"], a["title"]) == ("draft", 1, "草稿改名 draft renamed")
    assert ok(m.post(f"/assets/{asset_id}/submit", json={}))["status"] == "submitted"
    a = ok(op.post(f"/assets/{asset_id}/reject", json={"reason": "consent basis unclear"}))
    assert (a["status"], a["decision_reason"]) == ("rejected", "consent basis unclear")
    assert a["reviewed_by"]
    assert (
        ok(m.patch(f"/assets/{asset_id}", json={"description": "now explained"}))["status"]
        == "rejected"
    )
    assert ok(m.post(f"/assets/{asset_id}/submit", json={}))["status"] == "submitted"
    a = ok(op.post(f"/assets/{asset_id}/register", json={"reason": "documents checked"}))
    assert (a["status"], a["revision"]) == ("registered", 1)
    a = ok(m.patch(f"/assets/{asset_id}", json={"industry": "logistics", "reason": "re-scoped"}))
    assert (a["status"], a["revision"], a["industry"]) == ("amended", 2, "logistics")
    a = ok(m.patch(f"/assets/{asset_id}", json={"sub_grade": 3, "reason": "re-graded"}))
    assert (a["status"], a["revision"], a["sub_grade"]) == ("amended", 3, 3)
    a = ok(reg.post(f"/assets/{asset_id}/dispute", json={"reason": "a third party claims it"}))
    assert a["status"] == "disputed"
    a = ok(op.post(f"/assets/{asset_id}/resolve", json={"reason": "claim withdrawn"}))
    assert (a["status"], a["revision"]) == ("amended", 3)  # back to the state it froze
    assert ok(m.post(f"/assets/{asset_id}/cancel", json={}))["status"] == "cancelled"

    for start in ("draft", "rejected", "registered"):
        other = _in_state(m, staff, start)
        assert ok(m.post(f"/assets/{other}/cancel", json={}))["status"] == "cancelled", start
    submitted = _in_state(m, staff, "submitted")
    ok(op.post(f"/assets/{submitted}/dispute", json={"reason": "contested"}))
    a = ok(op.post(f"/assets/{submitted}/resolve", json={"reason": "settled"}))
    assert a["status"] == "submitted"
    disputed = _in_state(m, staff, "disputed")
    r = op.post(f"/assets/{disputed}/resolve", json={"reason": "claimant won", "outcome": "cancel"})
    assert ok(r)["status"] == "cancelled"


# Written from the brief: which steps each state allows (every other one is refused).
ALLOWED = {
    "submit": {"draft", "rejected"},
    "register": {"submitted"},
    "reject": {"submitted"},
    "cancel": {"draft", "rejected", "registered", "amended"},
    "dispute": {"submitted", "registered", "amended"},
    "resolve": {"disputed"},
    "patch": {"draft", "rejected", "registered", "amended"},  # an edit, or an amendment
}
MERCHANT_STEPS = ("submit", "cancel")


@pytest.mark.parametrize("state", STATES)
def test_steps_the_state_does_not_allow_are_refused(
    state: str, by_state: dict[str, str], merchant: Member, staff: Staff
) -> None:
    asset_id = by_state[state]
    before = ok(merchant.c.get(f"/assets/{asset_id}"))
    for step, sources in ALLOWED.items():
        if state in sources:
            continue
        if step == "patch":
            r = merchant.c.patch(f"/assets/{asset_id}", json={"title": "x", "reason": "why"})
        else:
            client = merchant.c if step in MERCHANT_STEPS else staff.op
            r = client.post(f"/assets/{asset_id}/{step}", json={"reason": "a reason"})
        body = refused(r, 409, "invalid-transition")
        assert body["current_status"] == state, (step, body)
    assert ok(merchant.c.get(f"/assets/{asset_id}")) == before


def test_reasons_are_required_for_reject_dispute_amend_and_resolve(
    merchant: Member, staff: Staff
) -> None:
    m, op = merchant.c, staff.op
    submitted = _in_state(m, staff, "submitted")
    for reason in (None, "", "   "):
        body = {} if reason is None else {"reason": reason}
        refused(op.post(f"/assets/{submitted}/reject", json=body), 422, "validation")
        refused(op.post(f"/assets/{submitted}/dispute", json=body), 422, "validation")
    registered = registered_asset(m, op)
    for body in ({"title": "new"}, {"title": "new", "reason": " "}):
        problem = refused(m.patch(f"/assets/{registered}", json=body), 422, "validation")
        assert problem["field"] == "reason"
    ok(op.post(f"/assets/{registered}/dispute", json={"reason": "contested"}))
    refused(op.post(f"/assets/{registered}/resolve", json={}), 422, "validation")
    refused(op.post(f"/assets/{registered}/resolve", json={"reason": " "}), 422, "validation")
    assert ok(m.get(f"/assets/{submitted}"))["status"] == "submitted"
    a = ok(m.get(f"/assets/{registered}"))
    assert (a["status"], a["title"], a["revision"]) == ("disputed", factories.asset()["title"], 1)


def test_only_the_roles_of_the_policy_may_take_each_step(merchant: Member, staff: Staff) -> None:
    m = merchant.c
    submitted = _in_state(m, staff, "submitted")
    refused(m.post(f"/assets/{submitted}/register", json={}), 403, "forbidden")
    refused(staff.reg.post(f"/assets/{submitted}/register", json={}), 403, "forbidden")
    refused(m.post(f"/assets/{submitted}/dispute", json={"reason": "x"}), 403, "forbidden")
    ok(staff.reg.post(f"/assets/{submitted}/dispute", json={"reason": "contested"}))
    refused(staff.reg.post(f"/assets/{submitted}/resolve", json={"reason": "x"}), 403, "forbidden")
    refused(m.post(f"/assets/{submitted}/resolve", json={"reason": "x"}), 403, "forbidden")
    refused(staff.op.post("/assets", json=factories.asset()), 403, "forbidden")


# ---------------------------------------------------------------- what a registration needs


def test_core_data_is_refused_at_create_and_at_amendment(merchant: Member, staff: Staff) -> None:
    m = merchant.c
    before = len(ok(m.get("/assets", params=ALL)))
    body = refused(m.post("/assets", json=factories.asset(grade="core")), 422, "core-data-refused")
    assert body["grade"] == "core"
    assert len(ok(m.get("/assets", params=ALL))) == before
    asset_id = registered_asset(m, staff.op)
    r = m.patch(f"/assets/{asset_id}", json={"grade": "core", "sub_grade": None, "reason": "x"})
    refused(r, 422, "core-data-refused")
    a = ok(m.get(f"/assets/{asset_id}"))
    assert (a["status"], a["grade"], a["revision"]) == ("registered", "general", 1)


def _source(kind: str, **extra: str) -> dict[str, str]:
    return {"kind": kind, "description": "How we came to hold it.", **extra}


SOURCE_CASES = [
    pytest.param(
        {"source": _source("collected_with_consent")},
        {"source": _source("collected_with_consent", consent_basis="App sign-up, clause 4")},
        "source.consent_basis",
        id="consent-basis",
    ),
    pytest.param(
        {"source": _source("purchased", upstream_provider="Upstream Co.")},
        {"source": _source("purchased", upstream_contract="UP-2025-017")},
        "source.upstream_contract",
        id="upstream-contract",
    ),
    pytest.param(
        {"source": _source("public_authorised")},
        {"source": _source("public_authorised", authorisation="Municipal licence 2025-3")},
        "source.authorisation",
        id="public-authorisation",
    ),
    pytest.param(
        {"personal_info": True},
        {"personal_info": True, "pi_consent_basis": "Separate consent, PIPL art. 23"},
        "pi_consent_basis",
        id="personal-information",
    ),
    pytest.param(
        {"sensitive_personal_info": True},
        {"sensitive_personal_info": True, "pi_consent_basis": "Separate written consent"},
        "pi_consent_basis",
        id="sensitive-personal-information",
    ),
]


@pytest.mark.parametrize(("incomplete", "complete", "field"), SOURCE_CASES)
def test_source_declaration_must_carry_what_its_kind_needs(
    incomplete: dict[str, Any], complete: dict[str, Any], field: str, merchant: Member
) -> None:
    r = merchant.c.post("/assets", json=factories.asset(**incomplete))
    assert refused(r, 422, "source-declaration-incomplete")["field"] == field
    a = ok(merchant.c.post("/assets", json=factories.asset(**complete)), 201)
    if "sensitive_personal_info" in complete:
        assert a["personal_info"] is True  # sensitive PI is PI (PIPL art. 28)


def test_holding_right_is_required(merchant: Member) -> None:
    rights = [
        {"right": r, "scope": "all records", "starts_on": "2024-01-01"}
        for r in ("processing", "operation")
    ]
    body = refused(
        merchant.c.post("/assets", json=factories.asset(rights=rights)), 422, "rights-incomplete"
    )
    assert body["field"] == "rights"


@pytest.mark.parametrize("ends_on", ["2023-12-31", "2024-01-01"])
def test_a_right_must_end_after_it_starts(ends_on: str, merchant: Member) -> None:
    rights = [{"right": "holding", "scope": "all", "starts_on": "2024-01-01", "ends_on": ends_on}]
    problem = refused(
        merchant.c.post("/assets", json=factories.asset(rights=rights)), 422, "validation"
    )
    assert "end after it starts" in problem["detail"]
    rights[0]["ends_on"] = "2024-01-02"
    a = ok(merchant.c.post("/assets", json=factories.asset(rights=rights)), 201)
    assert a["rights"][0]["ends_on"] == "2024-01-02"
    assert a["rights"][0]["holder_org_id"] == merchant.id


def test_sub_grade_stays_within_the_configured_scale(exchange: Exchange, merchant: Member) -> None:
    scale = exchange.ctx.settings.general_sub_grades
    r = merchant.c.post("/assets", json=factories.asset(sub_grade=scale + 1))
    assert refused(r, 422, "validation")["field"] == "sub_grade"
    r = merchant.c.post("/assets", json=factories.asset(grade="important", sub_grade=1))
    assert refused(r, 422, "validation")["field"] == "sub_grade"
    assert (
        ok(merchant.c.post("/assets", json=factories.asset(sub_grade=scale)), 201)["sub_grade"]
        == scale
    )


# ---------------------------------------------------------------- certificates and freezing


def test_amendment_issues_a_new_certificate_that_verifies_offline(
    exchange: Exchange, merchant: Member, staff: Staff
) -> None:
    m = merchant.c
    asset_id = registered_asset(m, staff.op)
    first = ok(m.get(f"/assets/{asset_id}/certificate"))
    v1 = verify_receipt(first, exchange.ctx.log_key.verifier)
    assert (v1.entry["kind"], v1.entry["subject"]) == ("asset.registered", asset_id)
    assert v1.entry["body"]["revision"] == 1

    a = ok(m.patch(f"/assets/{asset_id}", json={"title": "修订 amended", "reason": "renamed"}))
    assert (a["status"], a["revision"]) == ("amended", 2)
    second = ok(m.get(f"/assets/{asset_id}/certificate"))
    v2 = verify_receipt(second, exchange.ctx.log_key.verifier)
    assert (v2.entry["kind"], v2.entry["subject"]) == ("asset.amended", asset_id)
    assert v2.entry["body"]["revision"] == 2
    assert v2.seq > v1.seq
    assert verify_receipt(first, exchange.ctx.log_key.verifier).seq == v1.seq  # still valid

    tampered = {**second, "entry": first["entry"]}
    with pytest.raises(ValueError):
        verify_receipt(tampered, exchange.ctx.log_key.verifier)
    draft = create_asset(m)
    refused(m.get(f"/assets/{draft}/certificate"), 409, "invalid-transition")


def test_a_dispute_freezes_the_asset_until_resolved(
    exchange: Exchange, merchant: Member, staff: Staff
) -> None:
    m = merchant.c
    asset_id = registered_asset(m, staff.op)
    assert ok(upload(m, asset_id, gbk_csv()), 201)["version"] == 1
    ok(staff.reg.post(f"/assets/{asset_id}/dispute", json={"reason": "ownership contested"}))

    body = refused(upload(m, asset_id, gbk_csv()), 409, "asset-frozen")
    assert body["current_status"] == "disputed"
    product = factories.product([asset_id], COLUMNS)
    refused(m.post("/products", json=product), 409, "asset-frozen")
    refused(
        m.patch(f"/assets/{asset_id}", json={"title": "x", "reason": "y"}),
        409,
        "invalid-transition",
    )
    refused(m.post(f"/assets/{asset_id}/cancel", json={}), 409, "invalid-transition")
    assert [f["version"] for f in ok(m.get(f"/assets/{asset_id}/files"))] == [1]
    cert = verify_receipt(
        ok(m.get(f"/assets/{asset_id}/certificate")), exchange.ctx.log_key.verifier
    )
    assert cert.entry["kind"] == "asset.registered"  # the frozen registration still certifies

    a = ok(staff.op.post(f"/assets/{asset_id}/resolve", json={"reason": "claim withdrawn"}))
    assert a["status"] == "registered"
    assert ok(upload(m, asset_id, gbk_csv()), 201)["version"] == 2
    assert ok(m.post("/products", json=product), 201)["asset_ids"] == [asset_id]


def test_cancel_is_refused_while_a_listed_product_uses_the_asset(
    merchant: Member, staff: Staff
) -> None:
    m = merchant.c
    asset_id, pid = listed_dataset(m, staff.op)
    body = refused(m.post(f"/assets/{asset_id}/cancel", json={}), 409, "asset-in-use")
    assert body["products"] == [pid]
    assert ok(m.get(f"/assets/{asset_id}"))["status"] == "registered"
    assert ok(m.post(f"/products/{pid}/delist", json={}))["status"] == "delisted"
    assert ok(m.post(f"/assets/{asset_id}/cancel", json={}))["status"] == "cancelled"
    refused(upload(m, asset_id, gbk_csv()), 409, "asset-frozen")


# ---------------------------------------------------------------- who sees what


def test_another_merchant_can_neither_read_nor_change_my_asset(
    exchange: Exchange, merchant: Member, staff: Staff
) -> None:
    mine = registered_asset(merchant.c, staff.op)
    ok(upload(merchant.c, mine, gbk_csv()), 201)
    other = Demo(exchange, "merchant_b").c
    for r in (
        other.get(f"/assets/{mine}"),
        other.patch(f"/assets/{mine}", json={"title": "hijacked", "reason": "mine now"}),
        other.post(f"/assets/{mine}/cancel", json={}),
        other.get(f"/assets/{mine}/certificate"),
        other.get(f"/assets/{mine}/files"),
        upload(other, mine, gbk_csv()),
    ):
        refused(r, 404, "not-found")
    refused(other.get("/assets", params={"org_id": merchant.id}), 404, "not-found")
    assert mine not in [a["id"] for a in ok(other.get("/assets", params=ALL))]
    a = ok(merchant.c.get(f"/assets/{mine}"))
    assert (a["title"], a["status"]) == (factories.asset()["title"], "registered")
    assert len(ok(merchant.c.get(f"/assets/{mine}/files"))) == 1
    assert ok(staff.op.get(f"/assets/{mine}"))["id"] == mine
    assert ok(staff.reg.get(f"/assets/{mine}"))["id"] == mine


def test_a_buyer_cannot_create_or_read_assets(exchange: Exchange, merchant: Member) -> None:
    buyer = Demo(exchange, "buyer_b").c
    refused(buyer.post("/assets", json=factories.asset()), 403, "forbidden")
    refused(buyer.get(f"/assets/{create_asset(merchant.c)}"), 403, "forbidden")
    refused(buyer.get("/assets"), 403, "forbidden")
