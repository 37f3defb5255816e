"""供需撮合 on a small labelled market: Chinese and English demands, each with the product a
person would pick, plus the rules (purpose, budget, required fields, ties)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from databourse.catalog.facts import FieldFacts, ListingFacts
from databourse.demands.facts import DemandFacts
from databourse.demands.matching import (
    WEIGHTS,
    Match,
    field_coverage,
    purpose_allowed,
    rank_demands,
    rank_products,
)

T0 = datetime(2025, 5, 1, tzinfo=UTC)


def F(name: str, meaning: str = "", type: str = "string") -> FieldFacts:
    return FieldFacts(name=name, type=type, meaning=meaning)


def listing(
    id: str,
    kind: str,
    title: str,
    summary: str,
    fields: tuple[FieldFacts, ...] = (),
    tags: tuple[str, ...] = (),
    industry: str = "",
    price: int = 100_000,
    **changes: Any,
) -> ListingFacts:
    facts = ListingFacts(
        id=id,
        org_id=f"org-{id}",
        merchant_name=f"merchant {id}",
        kind=kind,
        title=title,
        summary=summary,
        fields=fields,
        tags=tags,
        industry=industry,
        category="",
        grade="general",
        sub_grade=None,
        update_frequency="daily",
        coverage="",
        scenarios=(),
        restrictions="",
        min_price_fen=price,
        max_price_fen=price * 10,
        currency="CNY",
        plan_models=("fixed",),
        has_sample=False,
        listed_at=T0,
        updated_at=T0,
    )
    return replace(facts, **changes)


def demand(id: str, title: str, need: str, scenario: str = "", **changes: Any) -> DemandFacts:
    facts = DemandFacts(
        id=id,
        org_id="org-buyer",
        title=title,
        need=need,
        scenario=scenario,
        purpose="risk_control",
        kinds=(),
        industry=None,
        budget_max_fen=None,
        currency="CNY",
        term_days=365,
        required_fields=(),
        created_at=T0,
    )
    return replace(facts, **changes)


MARKET = [
    listing(
        "L01",
        "dataset",
        "企业工商信用数据",
        "全国企业工商登记、股东、行政处罚与信用评分，按日更新。",
        (
            F("uscc", "统一社会信用代码"),
            F("company_name", "企业名称"),
            F("credit_score", "企业信用评分"),
            F("legal_rep", "法定代表人"),
        ),
        ("信用", "企业", "风控"),
        "finance",
        scenarios=("对公信贷风控", "供应商准入"),
    ),
    listing(
        "L02",
        "api",
        "手机号实名核验",
        "核验手机号、姓名与身份证号是否一致，实时返回核验结果。",
        (
            F("mobile", "手机号码"),
            F("name", "姓名"),
            F("id_number", "身份证号码"),
            F("result", "核验结果"),
        ),
        ("实名", "核验", "手机号"),
        "telecom",
        quality_score=96.0,
    ),
    listing(
        "L03",
        "api",
        "个人消费信贷风险评分",
        "基于多头借贷与还款行为的个人信用风险评分接口。",
        (F("id_number", "身份证号码"), F("mobile", "手机号码"), F("risk_score", "风险评分")),
        ("信贷", "风控", "评分"),
        "finance",
    ),
    listing(
        "L04",
        "dataset",
        "全国港口集装箱吞吐量",
        "主要沿海港口每周集装箱吞吐量统计。",
        (F("port", "港口"), F("week", "周"), F("teu", "标准箱")),
        ("港口", "物流"),
        "transport",
    ),
    listing(
        "L05",
        "dataset",
        "Port container throughput",
        "Weekly container throughput of major seaports.",
        (F("port", "port name"), F("week", "ISO week"), F("teu", "twenty-foot equivalent units")),
        ("ports", "shipping", "logistics"),
        "transport",
        language="en",
    ),
    listing(
        "L06",
        "api",
        "城市实时交通路况",
        "主要城市道路实时拥堵指数与平均车速。",
        (F("road_id", "道路编号"), F("congestion", "拥堵指数"), F("speed", "平均车速")),
        ("交通", "路况"),
        "transport",
    ),
    listing(
        "L07",
        "dataset",
        "电商商品价格监测",
        "主流电商平台商品每日价格与促销信息。",
        (F("sku", "商品编码"), F("price", "价格"), F("platform", "平台")),
        ("电商", "价格"),
        "commerce",
    ),
    listing(
        "L08",
        "dataset",
        "Retail foot traffic by store",
        "Daily visitor counts for shopping malls and stores.",
        (F("store_id", "store identifier"), F("visits", "daily visitor count")),
        ("retail", "footfall"),
        "commerce",
        language="en",
    ),
    listing(
        "L09",
        "dataset",
        "历史气象数据",
        "全国气象站逐日气温、降水与风速历史数据。",
        (F("station", "气象站"), F("temperature", "气温"), F("precipitation", "降水量")),
        ("气象", "天气"),
        "environment",
    ),
    listing(
        "L10",
        "api",
        "Hourly weather observations",
        "Hourly temperature, rainfall and wind from weather stations.",
        (
            F("station", "weather station"),
            F("temperature", "air temperature"),
            F("rainfall", "rainfall in mm"),
        ),
        ("weather", "climate"),
        "environment",
        language="en",
    ),
    listing(
        "L11",
        "dataset",
        "医院门诊量统计",
        "二级以上医院按科室的月度门诊量。",
        (F("hospital", "医院"), F("department", "科室"), F("visits", "门诊量")),
        ("医疗", "门诊"),
        "health",
        grade="important",
    ),
    listing(
        "L12",
        "dataset",
        "新能源汽车充电桩分布",
        "全国公共充电桩位置、功率与运营商。",
        (F("station_id", "充电站编号"), F("location", "地址"), F("power_kw", "功率")),
        ("充电桩", "新能源"),
        "energy",
    ),
    listing(
        "L13",
        "compute",
        "Federated credit risk modelling",
        "Train credit risk models on bank loan data without seeing it.",
        (F("default_flag", "loan default label"),),
        ("credit", "risk", "federated learning"),
        "finance",
        language="en",
    ),
    listing(
        "L14",
        "dataset",
        "企业招聘岗位数据",
        "招聘网站企业岗位、薪资与学历要求。",
        (F("company_name", "企业名称"), F("salary", "薪资")),
        ("招聘", "就业"),
        "labour",
    ),
    listing(
        "L15",
        "dataset",
        "Company registry records",
        "Registered companies with registration number and address.",
        (
            F("company_name", "company name"),
            F("registration_number", "registration number"),
            F("address", "registered address"),
        ),
        ("company", "registry"),
        "finance",
        language="en",
    ),
    listing(
        "L16",
        "dataset",
        "精准营销人群包",
        "按兴趣标签划分的消费人群包，用于广告投放。",
        (F("segment", "人群标签"), F("size", "人数")),
        ("营销", "广告"),
        "marketing",
        policy={"purposes": ["marketing"]},
    ),
]

LABELLED = [
    (
        demand(
            "D01",
            "企业信用数据",
            "需要企业工商登记和信用评分数据",
            "对公信贷风控",
            required_fields=("统一社会信用代码", "信用评分"),
            industry="finance",
        ),
        "L01",
    ),
    (
        demand(
            "D02",
            "手机号实名认证接口",
            "核验用户手机号与身份证是否一致",
            "开户实名认证",
            kinds=("api",),
            required_fields=("手机号", "姓名", "身份证号"),
        ),
        "L02",
    ),
    (
        demand(
            "D03",
            "Container throughput at seaports",
            "weekly port throughput",
            "shipping forecasts",
        ),
        "L05",
    ),
    (
        demand(
            "D04",
            "Hourly weather data",
            "temperature and rainfall by station",
            "crop insurance pricing",
        ),
        "L10",
    ),
    (demand("D05", "充电桩位置数据", "公共充电桩的位置和功率", "选址分析"), "L12"),
    (demand("D06", "港口吞吐量", "沿海港口集装箱吞吐量", "航运预测"), "L04"),
    (
        demand(
            "D07",
            "Company registry with addresses",
            "company names, registration numbers and addresses",
            "KYB checks",
            required_fields=("company name", "address"),
        ),
        "L15",
    ),
    (demand("D08", "医院门诊数据", "各医院科室门诊量", "医疗资源规划", purpose="research"), "L11"),
]


def ids(matches: list[Match]) -> list[str]:
    return [m.product_id for m in matches]


@pytest.mark.parametrize(("d", "best"), LABELLED, ids=[d.id for d, _ in LABELLED])
def test_expected_best_product(d: DemandFacts, best: str) -> None:
    ranked = rank_products(d, MARKET)
    assert ranked and ranked[0].product_id == best, [(m.product_id, m.score) for m in ranked]


def test_reasons_cover_every_factor_and_sum_to_the_score() -> None:
    d, _ = LABELLED[0]
    top = rank_products(d, MARKET)[0]
    assert [r.factor for r in top.reasons] == list(WEIGHTS)
    assert top.score == pytest.approx(
        sum(WEIGHTS[r.factor] * r.score for r in top.reasons), abs=1e-4
    )
    assert all(0.0 <= r.score <= 1.0 and r.detail for r in top.reasons)


def test_unrelated_demand_matches_nothing() -> None:
    d = demand("D99", "卫星遥感影像", "高分辨率卫星影像", "", required_fields=("波段",))
    assert rank_products(d, MARKET) == []


def test_a_policy_that_forbids_the_purpose_excludes_the_product() -> None:
    want = demand("D10", "营销人群包", "按兴趣划分的消费人群包", "广告投放")
    assert "L16" not in ids(rank_products(want, MARKET))  # purpose risk_control
    marketing = replace(want, purpose="marketing")
    assert ids(rank_products(marketing, MARKET))[0] == "L16"
    assert purpose_allowed({}, "anything")
    assert not purpose_allowed({"purposes": []}, "research")
    assert purpose_allowed({"purposes": ["Risk-Control"]}, "risk_control")


def test_budget_orders_otherwise_equal_products() -> None:
    twin = MARKET[0]
    cheap = replace(twin, id="Z-cheap", min_price_fen=400_000)
    dear = replace(twin, id="A-dear", min_price_fen=800_000)
    d = replace(LABELLED[0][0], budget_max_fen=500_000)
    ranked = rank_products(d, [dear, cheap])
    assert ids(ranked) == ["Z-cheap", "A-dear"]
    price = {m.product_id: next(r for r in m.reasons if r.factor == "price") for m in ranked}
    assert price["Z-cheap"].score == 1.0
    assert price["A-dear"].score == pytest.approx(0.5 ** (0.6 / 0.25), abs=1e-4)
    assert "60% over the budget of 5,000.00 CNY" in price["A-dear"].detail
    # Without a budget both are neutral on price: the tie is broken by id.
    assert ids(rank_products(replace(d, budget_max_fen=None), [cheap, dear])) == [
        "A-dear",
        "Z-cheap",
    ]


def test_field_coverage_detail_names_found_and_missing() -> None:
    d = replace(LABELLED[1][0], required_fields=("mobile", "姓名", "身份证号", "地址"))
    top = rank_products(d, MARKET)[0]
    fields = next(r for r in top.reasons if r.factor == "fields")
    assert top.product_id == "L02"
    assert fields.score == 0.75
    assert fields.detail == (
        "3 of 4 required fields: mobile, name for 姓名, id_number for 身份证号 (missing: 地址)."
    )


@pytest.mark.parametrize(
    ("required", "field", "meets"),
    [
        ("手机号", F("mobile", "手机号码"), True),
        ("MOBILE", F("mobile"), True),
        ("ID-Number", F("id_number"), True),
        ("mobile phone", F("phone", "mobile phone number"), True),
        ("credit score", F("creditScore"), True),
        ("客户手机号码", F("mobile", "手机号码"), True),
        ("address", F("addr", "registered address"), True),
        ("手机品牌", F("mobile", "手机号码"), False),
        ("id", F("width", "宽度"), False),
        ("姓名", F("name", "name"), False),  # no shared language, no shared words
    ],
)
def test_required_field_tolerance(required: str, field: FieldFacts, meets: bool) -> None:
    found, missing = field_coverage((required,), (field,))
    assert bool(found) is meets and bool(missing) is not meets


def test_fields_alone_can_make_a_match_across_languages() -> None:
    d = demand(
        "D11", "工商登记信息", "", "", required_fields=("company name", "registration number")
    )
    matches = {m.product_id: m for m in rank_products(d, MARKET, min_score=0)}
    assert "L15" in matches
    text = next(r for r in matches["L15"].reasons if r.factor == "text")
    assert text.score == 0.0


def test_kind_and_industry_and_quality_reasons() -> None:
    d = replace(LABELLED[1][0], industry="telecom")
    by_id = {m.product_id: m for m in rank_products(d, MARKET, min_score=0)}
    reasons = {r.factor: r for r in by_id["L02"].reasons}
    assert reasons["kind"].score == 1.0 and reasons["industry"].score == 1.0
    assert reasons["quality"].score == 0.96
    if "L01" in by_id:
        assert {r.factor: r for r in by_id["L01"].reasons}["kind"].score == 0.0


def test_rank_demands_finds_the_demand_a_product_serves() -> None:
    demands = [d for d, _ in LABELLED]
    for d, best in LABELLED:
        product = next(x for x in MARKET if x.id == best)
        ranked = rank_demands(product, demands)
        assert ranked and ranked[0].demand_id == d.id, (
            best,
            [(m.demand_id, m.score) for m in ranked],
        )
        assert all(m.product_id == best for m in ranked)


def test_rank_demands_respects_the_products_policy() -> None:
    ads = next(x for x in MARKET if x.id == "L16")
    wants = [
        demand("D20", "营销人群包", "消费人群包", "广告投放", purpose="marketing"),
        demand("D21", "营销人群包", "消费人群包", "广告投放", purpose="risk_control"),
    ]
    assert [m.demand_id for m in rank_demands(ads, wants)] == ["D20"]


def test_ordering_is_deterministic_with_ties_broken_by_id() -> None:
    base = MARKET[0]
    clones = [replace(base, id=i) for i in ("c", "a", "b")]
    d = LABELLED[0][0]
    assert ids(rank_products(d, clones)) == ["a", "b", "c"]
    shuffled = MARKET[:]
    random.Random(7).shuffle(shuffled)
    for d, _ in LABELLED:
        assert rank_products(d, shuffled) == rank_products(d, MARKET)
    twins = [replace(LABELLED[0][0], id=i) for i in ("y", "x")]
    assert [m.demand_id for m in rank_demands(base, twins)] == ["x", "y"]


def test_limit_and_min_score() -> None:
    d = demand("D30", "数据", "企业 信用 港口 气象 充电桩", "")
    everything = rank_products(d, MARKET, limit=100, min_score=0)
    assert len(rank_products(d, MARKET, limit=2, min_score=0)) == 2
    cut = everything[len(everything) // 2].score
    assert all(m.score >= cut for m in rank_products(d, MARKET, limit=100, min_score=cut))
    assert rank_products(d, [], limit=5) == []


def test_text_reason_shows_words_as_written() -> None:
    d, _ = LABELLED[3]  # Hourly weather data
    text = next(r for r in rank_products(d, MARKET)[0].reasons if r.factor == "text")
    assert "rainfall" in text.detail and "temperature" in text.detail
    assert "rainfal," not in text.detail
