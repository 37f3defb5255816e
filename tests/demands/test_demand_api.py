"""Demands (需求) and matching (撮合) over HTTP: a buyer posts, both sides are told."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests import factories
from tests.assets.test_asset_api import (
    Demo,
    Member,
    Staff,
    list_product,
    ok,
    refused,
    registered_asset,
    staff_for,
)
from tests.catalog.test_listing_flow import upload
from tests.conftest import Exchange

FACTORS = ["text", "fields", "price", "kind", "industry", "quality", "grade"]


def listed(
    m: httpx.Client,
    op: httpx.Client,
    title: str,
    content: str,
    columns: list[str],
    rows: list[list[str]],
    purposes: list[str],
    industry: str = "logistics",
    price_fen: int = 200_000,
) -> str:
    """A dataset product listed from a new asset and its CSV file."""
    asset_id = registered_asset(m, op, title=title)
    csv = "\n".join(",".join(r) for r in [columns, *rows]) + "\n"
    ok(upload(m, asset_id, csv.encode()), 201)
    body = factories.product(
        [asset_id],
        columns,
        title=title,
        industry=industry,
        category=industry,
        tags=[],
        plans=[{"name": "一口价", "model": "fixed", "price_fen": price_fen}],
        policy={**factories.POLICY, "purposes": purposes},
    )
    body["description"] |= {"content": content, "scenarios": []}
    return list_product(m, op, body)


@dataclass
class Supply:
    merchant: Member
    throughput: str  # 港口集装箱吞吐量, for research and statistics
    vessels: str  # container vessel arrivals, for research and operations
    leads: str  # 港口集装箱吞吐量 as marketing leads: marketing only


@pytest.fixture(scope="module")
def staff(exchange: Exchange) -> Iterator[Staff]:
    yield from staff_for(exchange)


@pytest.fixture(scope="module")
def supply(exchange: Exchange, staff: Staff) -> Supply:
    merchant = Member(exchange, ["merchant"])
    m, op = merchant.c, staff.op
    throughput = listed(
        m,
        op,
        "港口集装箱吞吐量月度统计",
        "全国沿海港口每月集装箱吞吐量（标箱）与同比增长。",
        ["港口", "月份", "集装箱吞吐量标箱", "同比增长"],
        [["宁波舟山港", "2026-01", "3120000", "4.2"], ["上海港", "2026-01", "4210000", "3.1"]],
        ["research", "statistics"],
    )
    vessels = listed(
        m,
        op,
        "Container vessel arrival times",
        "Actual and scheduled arrival times of container vessels at major ports.",
        ["vessel_id", "port", "scheduled_arrival", "actual_arrival"],
        [["IMO9811000", "Ningbo", "2026-03-01T08:00", "2026-03-01T10:30"]],
        ["research", "operations"],
    )
    leads = listed(
        m,
        op,
        "港口集装箱吞吐量营销线索",
        "按港口集装箱吞吐量整理的货代企业营销线索。",
        ["港口", "企业", "集装箱吞吐量标箱"],
        [["宁波舟山港", "甲货代", "12000"]],
        ["marketing"],
    )
    return Supply(merchant, throughput, vessels, leads)


@pytest.fixture(scope="module")
def buyer(exchange: Exchange) -> Member:
    return Member(exchange, ["buyer"])


@pytest.fixture(scope="module")
def other(exchange: Exchange) -> Demo:
    """Another buyer."""
    return Demo(exchange, "buyer_b")


def post(buyer: httpx.Client, **over: Any) -> dict[str, Any]:
    body = {
        "title": "港口集装箱吞吐量数据",
        "need": "需要各港口每月的集装箱吞吐量，用于航运市场研究。",
        "purpose": "research",
        "required_fields": ["港口", "集装箱吞吐量标箱"],
        "budget_max_fen": 300_000,
        **over,
    }
    return dict(ok(buyer.post("/demands", json=body), 201))


def product_ids(matches: list[dict[str, Any]]) -> list[str]:
    return [m["product_id"] for m in matches]


def notices(c: httpx.Client) -> list[dict[str, Any]]:
    return list(ok(c.get("/notices", params={"limit": 500})))


# ---------------------------------------------------------------- matching


def test_a_chinese_demand_is_matched_with_reasons(supply: Supply, buyer: Member) -> None:
    posted = post(buyer.c)
    demand, matches = posted["demand"], posted["matches"]
    assert (demand["status"], demand["org_id"], demand["purpose"]) == ("open", buyer.id, "research")
    ours = [m for m in matches if m["product_id"] in (supply.throughput, supply.vessels)]
    assert ours and ours[0]["product_id"] == supply.throughput, matches
    assert supply.leads not in product_ids(matches)  # its policy allows marketing only
    scores = [m["score"] for m in matches]
    assert scores == sorted(scores, reverse=True)
    best = ours[0]
    assert best["demand_id"] == demand["id"] and 0 < best["score"] <= 1
    assert best["title"] == "港口集装箱吞吐量月度统计"
    reasons = {r["factor"]: r for r in best["reasons"]}
    assert list(reasons) == FACTORS
    assert reasons["fields"]["score"] == 1.0 and "2 of 2" in reasons["fields"]["detail"]
    assert reasons["price"]["score"] == 1.0 and "within the budget" in reasons["price"]["detail"]
    assert reasons["text"]["score"] > 0

    again = ok(buyer.c.get(f"/demands/{demand['id']}/matches"))
    assert product_ids(again) == product_ids(matches)


def test_an_english_demand_is_matched(supply: Supply, buyer: Member) -> None:
    posted = post(
        buyer.c,
        title="Container vessel arrivals",
        need="Arrival times of container vessels at ports, to research port congestion.",
        required_fields=["port", "actual arrival"],
        budget_max_fen=None,
    )
    ours = [p for p in product_ids(posted["matches"]) if p in (supply.throughput, supply.vessels)]
    assert ours[:1] == [supply.vessels], posted["matches"]


def test_both_sides_of_a_match_get_a_notice(supply: Supply, buyer: Member) -> None:
    demand = post(buyer.c)["demand"]["id"]
    told = [n for n in notices(buyer.c) if n["demand_id"] == demand]
    assert supply.throughput in [n["product_id"] for n in told]
    assert {n["side"] for n in told} == {"buyer"} and all(n["org_id"] == buyer.id for n in told)
    merchant_side = [
        n
        for n in notices(supply.merchant.c)
        if (n["demand_id"], n["product_id"]) == (demand, supply.throughput)
    ]
    assert len(merchant_side) == 1 and merchant_side[0]["side"] == "merchant"
    assert [r["factor"] for r in merchant_side[0]["reasons"]] == FACTORS

    notice = merchant_side[0]
    read = ok(supply.merchant.c.post(f"/notices/{notice['id']}/read", json={}))
    assert read["read_at"] is not None
    unread = ok(supply.merchant.c.get("/notices", params={"unread": True, "limit": 500}))
    assert notice["id"] not in [n["id"] for n in unread]
    refused(buyer.c.post(f"/notices/{notice['id']}/read", json={}), 404, "not-found")


def test_a_purpose_the_policy_does_not_allow_excludes_the_product(
    supply: Supply, buyer: Member
) -> None:
    matches = post(buyer.c, purpose="marketing")["matches"]
    assert supply.leads in product_ids(matches)
    assert supply.throughput not in product_ids(matches)
    assert supply.vessels not in product_ids(matches)


def test_a_product_listed_after_the_demand_notifies_its_buyer(
    supply: Supply, staff: Staff, buyer: Member
) -> None:
    demand = post(
        buyer.c,
        title="鲸鲨迁徙路线 whale shark migration",
        need="需要鲸鲨的卫星追踪迁徙路线，用于海洋保护研究。Satellite tracks of whale sharks.",
        required_fields=["个体编号", "纬度", "经度"],
    )["demand"]["id"]
    before = {n["product_id"] for n in notices(buyer.c) if n["demand_id"] == demand}

    pid = listed(
        supply.merchant.c,
        staff.op,
        "鲸鲨迁徙卫星追踪 whale shark migration tracks",
        "鲸鲨个体的卫星追踪定位点，用于迁徙路线研究。Satellite positions of tagged whale sharks.",
        ["个体编号", "时间", "纬度", "经度"],
        [["WS-001", "2026-03-01T00:00", "20.1", "110.5"]],
        ["research"],
        industry="environment",
    )
    told = [n for n in notices(buyer.c) if n["demand_id"] == demand]
    assert {(n["product_id"], n["side"]) for n in told} == {(p, "buyer") for p in before | {pid}}
    merchant_side = [n for n in notices(supply.merchant.c) if n["demand_id"] == demand]
    assert [(n["product_id"], n["side"]) for n in merchant_side] == [(pid, "merchant")]
    assert pid in product_ids(ok(buyer.c.get(f"/demands/{demand}/matches")))
    found = ok(supply.merchant.c.get(f"/products/{pid}/matches"))
    assert demand in [m["demand_id"] for m in found]


# ---------------------------------------------------------------- the demand's life


def test_close_and_withdraw(supply: Supply, buyer: Member, other: Demo) -> None:
    merchant = supply.merchant.c
    closing = post(buyer.c)["demand"]["id"]
    withdrawing = post(buyer.c)["demand"]["id"]
    board = [d["id"] for d in ok(merchant.get("/demand-board", params={"limit": 500}))]
    assert closing in board and withdrawing in board

    refused(other.c.post(f"/demands/{closing}/close", json={}), 404, "not-found")
    refused(merchant.post(f"/demands/{closing}/close", json={}), 403, "forbidden")
    assert ok(buyer.c.post(f"/demands/{closing}/close", json={}))["status"] == "closed"
    body = refused(buyer.c.post(f"/demands/{closing}/close", json={}), 409, "invalid-transition")
    assert body["current_status"] == "closed"
    refused(buyer.c.post(f"/demands/{closing}/withdraw", json={}), 409, "invalid-transition")
    assert ok(buyer.c.post(f"/demands/{withdrawing}/withdraw", json={}))["status"] == "withdrawn"

    board = [d["id"] for d in ok(merchant.get("/demand-board", params={"limit": 500}))]
    assert closing not in board and withdrawing not in board
    refused(merchant.get(f"/demands/{closing}"), 403, "forbidden")  # off the board
    assert ok(buyer.c.get(f"/demands/{closing}"))["status"] == "closed"
    own = {d["id"]: d["status"] for d in ok(buyer.c.get("/demands", params={"limit": 500}))}
    assert (own[closing], own[withdrawing]) == ("closed", "withdrawn")
    closed = ok(buyer.c.get("/demands", params={"status": "closed", "limit": 500}))
    assert {d["status"] for d in closed} == {"closed"} and closing in [d["id"] for d in closed]


def test_only_the_buyer_and_the_operator_read_a_demands_matches(
    supply: Supply, buyer: Member, other: Demo, staff: Staff
) -> None:
    demand = post(buyer.c)["demand"]["id"]
    assert supply.throughput in product_ids(ok(buyer.c.get(f"/demands/{demand}/matches")))
    assert supply.throughput in product_ids(ok(staff.op.get(f"/demands/{demand}/matches")))
    refused(other.c.get(f"/demands/{demand}/matches"), 404, "not-found")
    refused(other.c.get(f"/demands/{demand}"), 404, "not-found")
    assert demand not in [d["id"] for d in ok(other.c.get("/demands", params={"limit": 500}))]
    refused(supply.merchant.c.get(f"/demands/{demand}/matches"), 403, "forbidden")
    refused(staff.reg.get(f"/demands/{demand}/matches"), 403, "forbidden")


def test_merchants_see_open_demands_on_the_board(supply: Supply, buyer: Member) -> None:
    demand = post(buyer.c, title="冷链物流温度记录", need="需要冷链车辆的温度记录。")["demand"]
    board = ok(supply.merchant.c.get("/demand-board", params={"limit": 500}))
    shown = next(d for d in board if d["id"] == demand["id"])
    assert (shown["title"], shown["purpose"], shown["status"]) == (
        "冷链物流温度记录",
        "research",
        "open",
    )
    assert ok(supply.merchant.c.get(f"/demands/{demand['id']}"))["id"] == demand["id"]
    refused(buyer.c.get("/demand-board"), 403, "forbidden")


@pytest.mark.parametrize(
    "over",
    [
        {"budget_max_fen": -1},
        {"budget_max_fen": 10.5},
        {"purpose": "espionage"},
        {"title": ""},
        {"term_days": 0},
        {"currency": "cny"},
        {"kinds": ["spreadsheet"]},
    ],
    ids=[
        "negative-budget",
        "float-budget",
        "unknown-purpose",
        "no-title",
        "term",
        "currency",
        "kind",
    ],
)
def test_an_invalid_demand_is_refused(over: dict[str, Any], buyer: Member) -> None:
    before = len(ok(buyer.c.get("/demands", params={"limit": 500})))
    body = {"title": "数据", "need": "需要数据", "purpose": "research", **over}
    refused(buyer.c.post("/demands", json=body), 422, "validation")
    assert len(ok(buyer.c.get("/demands", params={"limit": 500}))) == before


def test_only_buyers_post_demands(supply: Supply) -> None:
    body = {"title": "数据", "need": "需要数据", "purpose": "research"}
    refused(supply.merchant.c.post("/demands", json=body), 403, "forbidden")
