"""Products over HTTP: the three kinds, their terms, the listing review and who sees what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from rdflib import Graph, URIRef
from rdflib.namespace import RDF

from databourse.catalog.policy import DBP, odrl_context
from tests import factories
from tests.assets.test_asset_api import (
    ALL,
    COLUMNS,
    Demo,
    Member,
    Staff,
    create_asset,
    list_product,
    ok,
    refused,
    registered_asset,
    staff_for,
)
from tests.catalog.test_listing_flow import gbk_csv, upload
from tests.conftest import Exchange

ODRL = "http://www.w3.org/ns/odrl/2/"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(body17: str) -> str:
    """A PRC resident ID with its GB 11643-1999 check character."""
    total = sum(int(d) * w for d, w in zip(body17, _ID_WEIGHTS, strict=True))
    return body17 + "10X98765432"[total % 11]


PER_CALL = {
    "name": "按次计费 per call",
    "model": "metered",
    "unit": "call",
    "tiers": [{"up_to": 100_000, "price_per_1000_fen": 3000}, {"price_per_1000_fen": 2000}],
}
API_POLICY = {
    "purposes": ["risk_control", "anti_fraud"],
    "term_days": 365,
    "count": {"max_calls": 1_000_000},
    "rate": {"max_per_second": 20},
    "duties": ["report_usage"],
}
COMPUTE_POLICY = {
    "purposes": ["research", "statistics"],
    "term_days": 180,
    "count": {"max_calls": 500},
    "output": {"aggregates_only": True, "min_group_size": 20, "epsilon_micro": 2_000_000},
}
MOBILES = ["13812345678", "15900001111", "18611112222"]
IDS = [
    resident_id("11010519491231002"),
    resident_id("31011519850615123"),
    resident_id("44030420010101555"),
]


def api_product(asset_ids: list[str], **over: Any) -> dict[str, Any]:
    """A phone-risk scoring API whose sample holds mobile numbers and resident IDs."""
    body: dict[str, Any] = {
        "kind": "api",
        "title": "手机号风险评分接口 Mobile risk score API",
        "asset_ids": asset_ids,
        "description": {
            "content": "按手机号与身份证号返回欺诈风险评分。Returns a fraud risk score.",
            "fields": [
                {"name": "mobile", "meaning": "手机号码", "personal": True},
                {"name": "id_number", "meaning": "居民身份证号", "personal": True},
                {"name": "risk_score", "type": "integer", "meaning": "风险评分 0–100"},
            ],
            "coverage": "全国 nationwide",
            "update_frequency": "realtime",
            "scenarios": ["信贷反欺诈 anti-fraud"],
        },
        "industry": "finance",
        "category": "risk scoring",
        "tags": ["风控", "反欺诈", "risk"],
        "language": "zh",
        "plans": [PER_CALL],
        "policy": API_POLICY,
        "sample": {
            "columns": ["mobile", "id_number", "risk_score"],
            "rows": [
                [m, i, str(10 + n)] for n, (m, i) in enumerate(zip(MOBILES, IDS, strict=True))
            ],
        },
    }
    body.update(over)
    return body


def compute_product(asset_ids: list[str], **over: Any) -> dict[str, Any]:
    """Differentially private SQL over ridership: aggregates only, with an ε budget."""
    body: dict[str, Any] = {
        "kind": "compute",
        "title": "公交客流隐私计算 Private ridership analytics",
        "asset_ids": asset_ids,
        "description": {
            "content": "在不出域的客流数据上运行差分隐私SQL，只返回聚合结果。",
            "fields": [
                {"name": "line", "meaning": "线路"},
                {"name": "boardings", "type": "integer", "meaning": "上车人次"},
            ],
            "update_frequency": "daily",
        },
        "industry": "transport",
        "category": "privacy computing",
        "tags": ["隐私计算", "差分隐私"],
        "plans": [
            {
                "name": "包年 yearly",
                "model": "subscription",
                "price_fen": 1_200_000,
                "period": "year",
            }
        ],
        "policy": COMPUTE_POLICY,
        "sample": {"columns": ["line", "boardings"], "rows": [["71路", "15320"], ["49路", "9870"]]},
    }
    body.update(over)
    return body


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def staff(exchange: Exchange) -> Iterator[Staff]:
    yield from staff_for(exchange)


@pytest.fixture(scope="module")
def merchant(exchange: Exchange) -> Member:
    return Member(exchange, ["merchant"])


@pytest.fixture(scope="module")
def buyer(exchange: Exchange) -> Demo:
    return Demo(exchange, "buyer_b")


@pytest.fixture(scope="module")
def other(exchange: Exchange) -> Demo:
    """Another merchant."""
    return Demo(exchange, "merchant_b")


@pytest.fixture(scope="module")
def asset_id(merchant: Member, staff: Staff) -> str:
    """A registered asset with the ridership file, for products that only need one."""
    asset_id = registered_asset(merchant.c, staff.op)
    ok(upload(merchant.c, asset_id, gbk_csv()), 201)
    return asset_id


def failed_items(body: dict[str, Any]) -> list[str]:
    return sorted(c["item"] for c in body["failed"])


# ---------------------------------------------------------------- the three kinds


def test_a_dataset_needs_a_data_file_before_review(merchant: Member, staff: Staff) -> None:
    m = merchant.c
    bare = registered_asset(m, staff.op)
    product = ok(m.post("/products", json=factories.product([bare], COLUMNS)), 201)
    assert (product["kind"], product["status"], product["sample"]) == ("dataset", "draft", None)
    body = refused(
        m.post(f"/products/{product['id']}/submit", json={}), 409, "listing-checks-failed"
    )
    assert failed_items(body) == ["data_file", "sample_masked"]
    assert ok(m.get(f"/products/{product['id']}"))["status"] == "draft"

    ok(upload(m, bare, gbk_csv()), 201)
    submitted = ok(m.post(f"/products/{product['id']}/submit", json={}))
    assert submitted["status"] == "in_review"
    assert submitted["sample"]["columns"] == COLUMNS
    assert submitted["sample"]["rows"][0] == ["71路", "2026-03-02 08:00", "人民广场", "1532"]
    assert all(c["passed"] for c in submitted["checklist"])


def test_an_api_product_sample_has_its_personal_columns_masked(
    merchant: Member, asset_id: str
) -> None:
    product = ok(merchant.c.post("/products", json=api_product([asset_id])), 201)
    sample = product["sample"]
    assert sample["masked"] == {"mobile": "mobile", "id_number": "resident_id"}
    assert sample["columns"] == ["mobile", "id_number", "risk_score"]
    for row, mobile, number in zip(sample["rows"], MOBILES, IDS, strict=True):
        assert "*" in row[0] and row[0] != mobile
        assert "*" in row[1] and row[1] != number
        assert mobile not in json.dumps(product) and number not in json.dumps(product)
    assert [r[2] for r in sample["rows"]] == ["10", "11", "12"]
    assert (product["min_price_fen"], product["max_price_fen"]) == (3000, 3000)


def test_a_sample_of_undeclared_personal_columns_is_masked_too(
    merchant: Member, asset_id: str
) -> None:
    body = api_product([asset_id])
    for f in body["description"]["fields"]:
        f["personal"] = False
    sample = ok(merchant.c.post("/products", json=body), 201)["sample"]
    assert sample["masked"] == {"mobile": "mobile", "id_number": "resident_id"}


def test_a_compute_product_with_a_privacy_budget(
    merchant: Member, staff: Staff, asset_id: str
) -> None:
    pid = list_product(merchant.c, staff.op, compute_product([asset_id]))
    product = ok(merchant.c.get(f"/products/{pid}"))
    assert (product["kind"], product["status"], product["sample"]["masked"]) == (
        "compute",
        "listed",
        {},
    )
    assert product["policy"]["output"]["epsilon_micro"] == 2_000_000


# ---------------------------------------------------------------- terms


@pytest.mark.parametrize(
    ("kind", "plan", "slug"),
    [
        ("dataset", {"name": "一口价", "model": "fixed", "price_fen": -100}, "validation"),
        ("dataset", {"name": "一口价", "model": "fixed", "price_fen": 99.5}, "validation"),
        ("dataset", {"name": "一口价", "model": "fixed", "price_fen": "100"}, "validation"),
        (
            "dataset",
            {
                "name": "阶梯",
                "model": "metered",
                "unit": "row",
                "tiers": [
                    {"up_to": 1_000_000, "price_per_1000_fen": 50},
                    {"up_to": 1_000, "price_per_1000_fen": 40},
                    {"up_to": None, "price_per_1000_fen": 30},
                ],
            },
            "invalid-pricing",
        ),
        ("api", factories.METERED, "invalid-pricing"),
        ("dataset", PER_CALL, "invalid-pricing"),
        (
            "api",
            {"name": "拍卖", "model": "auction", "reserve_fen": 1, "bidding_days": 7},
            "invalid-pricing",
        ),
    ],
    ids=[
        "negative",
        "float",
        "string",
        "unsorted-tiers",
        "rows-on-api",
        "calls-on-dataset",
        "auction-api",
    ],
)
def test_invalid_pricing_is_refused(
    kind: str, plan: dict[str, Any], slug: str, merchant: Member, asset_id: str
) -> None:
    body = (
        factories.product([asset_id], COLUMNS, plans=[plan])
        if kind == "dataset"
        else api_product([asset_id], plans=[plan])
    )
    before = len(ok(merchant.c.get("/products", params=ALL)))
    refused(merchant.c.post("/products", json=body), 422, slug)
    assert len(ok(merchant.c.get("/products", params=ALL))) == before


@pytest.mark.parametrize(
    ("policy", "slug", "field"),
    [
        ({**factories.POLICY, "fields": ["线路", "车牌号"]}, "invalid-policy", "fields"),
        (
            {**factories.POLICY, "output": {"epsilon_micro": 1_000_000}},
            "invalid-policy",
            "output.epsilon_micro",
        ),
        ({**factories.POLICY, "count": {"max_calls": 10}}, "invalid-policy", "count.max_calls"),
        ({**factories.POLICY, "term_days": None}, "invalid-policy", "term_days"),
        ({**factories.POLICY, "purposes": ["espionage"]}, "validation", None),
    ],
    ids=["field-not-in-product", "epsilon-on-dataset", "calls-on-dataset", "no-term", "purpose"],
)
def test_invalid_policies_are_refused(
    policy: dict[str, Any], slug: str, field: str | None, merchant: Member, asset_id: str
) -> None:
    body = factories.product([asset_id], COLUMNS, policy=policy)
    problem = refused(merchant.c.post("/products", json=body), 422, slug)
    if field:
        assert problem["field"] == field


def test_editing_a_draft_rechecks_its_terms(merchant: Member, asset_id: str) -> None:
    pid = ok(merchant.c.post("/products", json=factories.product([asset_id], COLUMNS)), 201)["id"]
    bad = {**factories.POLICY, "fields": ["车牌号"]}
    refused(merchant.c.patch(f"/products/{pid}", json={"policy": bad}), 422, "invalid-policy")
    good = {**factories.POLICY, "fields": ["线路", "上车人次"]}
    assert ok(merchant.c.patch(f"/products/{pid}", json={"policy": good}))["policy"]["fields"] == [
        "上车人次",
        "线路",
    ]


# ---------------------------------------------------------------- listing review


def _rights(operation: dict[str, Any] | None) -> list[dict[str, Any]]:
    rights = [
        {"right": r, "scope": "all records", "starts_on": "2024-01-01"}
        for r in ("holding", "processing")
    ]
    return rights + ([{"right": "operation", "scope": "all", **operation}] if operation else [])


@pytest.mark.parametrize(
    "operation",
    [
        None,
        {"starts_on": "2024-01-01", "ends_on": "2025-01-01"},
        {"starts_on": "2024-01-01", "holder_org_id": "org_someone_else"},
    ],
    ids=["no-operation-right", "expired", "held-by-another"],
)
def test_submit_is_refused_without_a_current_operation_right(
    operation: dict[str, Any] | None, merchant: Member, staff: Staff
) -> None:
    m = merchant.c
    asset_id = registered_asset(m, staff.op, rights=_rights(operation))
    ok(upload(m, asset_id, gbk_csv()), 201)
    pid = ok(m.post("/products", json=factories.product([asset_id], COLUMNS)), 201)["id"]
    body = refused(m.post(f"/products/{pid}/submit", json={}), 409, "listing-checks-failed")
    assert failed_items(body) == ["rights_cover_operation"]
    assert asset_id in body["failed"][0]["detail"]
    preview = ok(m.get(f"/products/{pid}/checklist"))
    assert [c["item"] for c in preview if not c["passed"]] == ["rights_cover_operation"]
    assert ok(m.get(f"/products/{pid}"))["status"] == "draft"


def test_reject_then_edit_and_resubmit_then_approve(
    merchant: Member, staff: Staff, asset_id: str
) -> None:
    m, op = merchant.c, staff.op
    pid = ok(m.post("/products", json=factories.product([asset_id], COLUMNS)), 201)["id"]
    assert ok(m.post(f"/products/{pid}/submit", json={}))["status"] == "in_review"
    refused(m.post(f"/products/{pid}/approve", json={}), 403, "forbidden")
    refused(staff.reg.post(f"/products/{pid}/approve", json={}), 403, "forbidden")
    refused(op.post(f"/products/{pid}/reject", json={}), 422, "validation")
    refused(m.patch(f"/products/{pid}", json={"title": "x"}), 409, "invalid-transition")
    p = ok(op.post(f"/products/{pid}/reject", json={"reason": "说明书缺少覆盖范围"}))
    assert (p["status"], p["decision_reason"]) == ("rejected", "说明书缺少覆盖范围")
    assert p["reviewed_by"]
    refused(op.post(f"/products/{pid}/approve", json={}), 409, "invalid-transition")

    p = ok(m.patch(f"/products/{pid}", json={"title": "上海公交客流（修订）"}))
    assert (p["status"], p["title"]) == ("draft", "上海公交客流（修订）")
    assert ok(m.post(f"/products/{pid}/submit", json={}))["status"] == "in_review"
    p = ok(op.post(f"/products/{pid}/approve", json={"reason": "ok"}))
    assert (p["status"], p["version"]) == ("listed", 1)
    assert p["listed_at"]


def test_delist_suspend_reinstate_and_relisting_makes_a_new_version(
    merchant: Member, staff: Staff, buyer: Demo, asset_id: str
) -> None:
    m, op, reg = merchant.c, staff.op, staff.reg
    pid = list_product(m, op, factories.product([asset_id], COLUMNS))
    refused(m.patch(f"/products/{pid}", json={"title": "x"}), 409, "invalid-transition")

    assert ok(m.post(f"/products/{pid}/delist", json={}))["status"] == "delisted"
    refused(buyer.c.get(f"/products/{pid}"), 404, "not-found")
    p = ok(m.patch(f"/products/{pid}", json={"tags": ["公交", "客流", "v2"]}))
    assert (p["status"], p["version"]) == ("delisted", 1)
    ok(m.post(f"/products/{pid}/submit", json={}))
    p = ok(op.post(f"/products/{pid}/approve", json={"reason": "changes reviewed"}))
    assert (p["status"], p["version"], p["tags"]) == ("listed", 2, ["公交", "客流", "v2"])
    assert ok(buyer.c.get(f"/products/{pid}"))["version"] == 2

    refused(reg.post(f"/products/{pid}/suspend", json={}), 422, "validation")
    refused(m.post(f"/products/{pid}/suspend", json={"reason": "x"}), 403, "forbidden")
    p = ok(reg.post(f"/products/{pid}/suspend", json={"reason": "complaint under review"}))
    assert (p["status"], p["decision_reason"]) == ("suspended", "complaint under review")
    refused(buyer.c.get(f"/products/{pid}"), 404, "not-found")
    refused(m.patch(f"/products/{pid}", json={"title": "x"}), 409, "invalid-transition")
    refused(m.post(f"/products/{pid}/delist", json={}), 409, "invalid-transition")
    refused(reg.post(f"/products/{pid}/reinstate", json={"reason": "x"}), 403, "forbidden")
    refused(m.post(f"/products/{pid}/reinstate", json={"reason": "x"}), 403, "forbidden")
    refused(op.post(f"/products/{pid}/reinstate", json={}), 422, "validation")
    p = ok(op.post(f"/products/{pid}/reinstate", json={"reason": "complaint unfounded"}))
    assert (p["status"], p["version"]) == ("listed", 2)
    assert ok(buyer.c.get(f"/products/{pid}"))["status"] == "listed"


def test_a_product_cannot_use_another_merchants_or_an_unregistered_asset(
    merchant: Member, other: Demo, buyer: Demo, asset_id: str
) -> None:
    refused(
        other.c.post("/products", json=factories.product([asset_id], COLUMNS)), 404, "not-found"
    )
    draft = create_asset(merchant.c)
    body = factories.product([draft], COLUMNS)
    refused(merchant.c.post("/products", json=body), 409, "asset-not-usable")
    refused(buyer.c.post("/products", json=body), 403, "forbidden")


# ---------------------------------------------------------------- visibility


def test_only_listed_products_are_visible_to_members(
    exchange: Exchange, merchant: Member, other: Demo, staff: Staff, buyer: Demo, asset_id: str
) -> None:
    m, o = merchant.c, other.c
    pid = ok(m.post("/products", json=factories.product([asset_id], COLUMNS)), 201)["id"]
    for stage in ("draft", "in_review"):
        for client in (buyer.c, o):
            refused(client.get(f"/products/{pid}"), 404, "not-found")
            refused(client.get(f"/products/{pid}/policy"), 404, "not-found")
        refused(o.get(f"/products/{pid}/checklist"), 404, "not-found")
        for client in (m, staff.op, staff.reg):
            assert ok(client.get(f"/products/{pid}"))["status"] == stage
        if stage == "draft":
            ok(m.post(f"/products/{pid}/submit", json={}))
    ok(staff.op.post(f"/products/{pid}/approve", json={"reason": "ok"}))
    for client in (buyer.c, o, m, staff.op, staff.reg):
        assert ok(client.get(f"/products/{pid}"))["id"] == pid
    assert pid not in [p["id"] for p in ok(o.get("/products", params=ALL))]
    refused(buyer.c.get("/products"), 403, "forbidden")
    applicant = Demo(exchange, "applicant").c  # applied, not admitted
    refused(applicant.get(f"/products/{pid}"), 403, "organisation-inactive")


def test_the_policy_is_an_odrl_offer_in_json_ld(
    merchant: Member, staff: Staff, buyer: Demo, asset_id: str
) -> None:
    pid = list_product(merchant.c, staff.op, api_product([asset_id]))
    r = buyer.c.get(f"/products/{pid}/policy")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/ld+json")
    doc = r.json()
    assert doc["@type"] == "Offer"
    assert doc["uid"].endswith(f"/products/{pid}/policy")
    (use,) = doc["permission"]
    assert use["action"] == "use"
    assert use["target"].endswith(f"/products/{pid}")
    assert use["assigner"].endswith(f"/organisations/{merchant.id}")
    constraints = {c["leftOperand"]: c for c in use["constraint"]}
    assert constraints["purpose"]["rightOperand"] == ["anti_fraud", "risk_control"]
    assert constraints["count"]["rightOperand"] == 1_000_000
    assert constraints["dbp:ratePerSecond"]["rightOperand"] == 20
    assert [d["action"] for d in use["duty"]] == ["inform"]
    assert doc["prohibition"][0]["action"] == "distribute"

    # As RDF (the ODRL context resolved offline): an odrl:Offer with a use permission.
    g = Graph().parse(
        data=json.dumps({**doc, "@context": [odrl_context(), {"dbp": DBP}]}), format="json-ld"
    )
    offer = URIRef(doc["uid"])
    assert (offer, RDF.type, URIRef(ODRL + "Offer")) in g
    permission = g.value(offer, URIRef(ODRL + "permission"))
    assert g.value(permission, URIRef(ODRL + "action")) == URIRef(ODRL + "use")
