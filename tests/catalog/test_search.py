"""The catalog search index over a small labelled catalog in Chinese and English."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from databourse.catalog.errors import InvalidQuery
from databourse.catalog.facts import FieldFacts, ListingFacts
from databourse.catalog.search import CatalogIndex, SearchQuery, price_band

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def listing(
    id: str,
    title: str,
    summary: str,
    industry: str,
    kind: str = "dataset",
    *,
    fields: tuple[tuple[str, str], ...] = (),
    tags: tuple[str, ...] = (),
    price: int = 100_000,
    sample: bool = False,
    day: int = 0,
    org: str = "org-a",
    grade: str = "general",
    freq: str = "monthly",
) -> ListingFacts:
    return ListingFacts(
        id=id,
        org_id=org,
        merchant_name={"org-a": "数联科技", "org-b": "Acme Data Ltd", "org-c": "华数信息"}[org],
        kind=kind,
        title=title,
        summary=summary,
        fields=tuple(FieldFacts(name, "string", meaning) for name, meaning in fields),
        tags=tags,
        industry=industry,
        category=f"{industry}-main",
        grade=grade,
        sub_grade=None,
        update_frequency=freq,
        coverage="",
        scenarios=(),
        restrictions="",
        min_price_fen=price,
        max_price_fen=price,
        currency="CNY",
        plan_models=("fixed",),
        has_sample=sample,
        listed_at=T0 + timedelta(days=day),
        updated_at=T0 + timedelta(days=day),
    )


L = listing
CATALOG = [
    L("p01", "企业工商登记信息", "全国企业的工商登记与变更记录。", "government",
      fields=(("credit_code", "统一社会信用代码"), ("reg_capital", "注册资本")),
      tags=("工商", "企业征信"), price=500_000, sample=True, day=1),
    L("p02", "手机号风险评分API", "按手机号返回风险评分，用于反欺诈。", "telecom", "api",
      fields=(("phone_hash", "手机号哈希"), ("risk_score", "风险评分")), tags=("反欺诈",),
      price=2_000, org="org-b", grade="important", freq="realtime", day=2),
    L("p03", "上海公交刷卡客流", "上海市公交线路每小时刷卡人次。", "transport",
      fields=(("line_no", "线路编号"), ("tap_count", "刷卡次数")), tags=("公共交通", "客流"),
      price=0, sample=True, freq="daily", day=3),
    L("p04", "全国气象观测数据", "地面气象站的气温、降水、风速观测。", "meteorology",
      fields=(("temperature", "气温"), ("precipitation", "降水量")), tags=("气象",),
      price=300_000, org="org-c", freq="daily", day=4),
    L("p05", "E-commerce orders", "Order-level records of an online marketplace.", "ecommerce",
      fields=(("order_id", "order id"), ("paymentMethod", "how the buyer paid")),
      tags=("retail",), price=80_000, org="org-b", sample=True, day=5),
    L("p06", "Credit card fraud labels", "Anonymised card transactions labelled genuine or not.",
      "finance", fields=(("is_fraud", "label"),), tags=("fraud", "credit card"),
      price=1_200_000, org="org-b", grade="important", day=6),
    L("p07", "小微企业信用评分", "小微企业的信用评分与逾期记录。", "finance", "api",
      fields=(("credit_score", "信用评分"),), tags=("征信", "信贷"), price=50_000, day=7),
    L("p08", "北京地铁进出站客流", "北京地铁各站进出站人次。", "transport",
      tags=("地铁", "客流"), price=200_000, org="org-c", day=8),
    L("p09", "Air quality monitoring", "Hourly PM2.5 and ozone readings by station.",
      "environment", fields=(("pm25", "PM2.5 concentration"),), tags=("air quality",),
      price=0, org="org-b", sample=True, freq="realtime", day=9),
    L("p10", "电力负荷曲线", "工业用户十五分钟电力负荷。", "energy",
      fields=(("load_kw", "负荷"),), tags=("电力", "能源"), price=900_000, day=10),
    L("p11", "二手房成交价格", "各小区二手房成交单价和面积。", "real_estate",
      fields=(("deal_price", "成交单价"),), tags=("房产",), price=150_000, org="org-c", day=11),
    L("p12", "Hospital outpatient statistics", "Monthly outpatient visits by department.",
      "healthcare", tags=("healthcare",), price=40_000, org="org-b", day=12),
    L("p13", "物流运单轨迹查询", "按运单号查询物流轨迹。", "logistics", "api",
      fields=(("waybill_no", "运单号"),), tags=("物流", "快递"), price=1_000, day=13),
    L("p14", "农产品批发价格", "主要批发市场蔬菜水果每日价格。", "agriculture",
      tags=("农业",), price=20_000, org="org-c", freq="daily", day=14),
    L("p15", "Stock market daily quotes", "Closing prices and turnover of listed shares.",
      "finance", tags=("股票", "证券"), price=3_000_000, org="org-b", freq="daily", day=15),
    L("p16", "裁判文书摘要", "公开裁判文书的案号、法院、案由。", "government",
      tags=("司法",), price=60_000, day=16),
    L("p17", "Mobile payment transactions", "Payment volumes by merchant category.",
      "finance", tags=("payments",), price=700_000, org="org-b", day=17),
    L("p18", "企业碳排放核算", "基于用能数据的企业碳排放核算，数据不出域。", "energy", "compute",
      tags=("双碳",), price=20_000_000, org="org-c", grade="important", day=18),
    L("p19", "Weather forecast API", "Hourly precipitation and temperature forecasts.",
      "meteorology", "api", tags=("forecast",), price=5_000, org="org-b", day=19),
    L("p20", "车险理赔记录", "车辆保险理赔金额与车型。", "finance", tags=("保险",), day=20),
    L("p21", "航班准点率统计", "国内航班起降延误统计。", "transport", tags=("航空",), day=21),
    L("p22", "酒店入住率", "重点城市酒店每日入住率。", "tourism", tags=("旅游",), day=22),
    L("p23", "广告投放效果", "广告计划的曝光、点击和转化。", "ecommerce", tags=("营销",), day=23),
    L("p24", "手机信令人口热力", "基于手机信令的人口分布，联合计算。", "telecom", "compute",
      tags=("人口",), price=8_000_000, org="org-c", day=24),
    L("p25", "Company registry lookup API", "Look up companies by unified social credit code.",
      "government", "api", tags=("KYB",), price=3_000, org="org-b", day=25),
    L("p26", "工业设备运行监测", "设备振动与温度遥测。", "manufacturing", tags=("工业互联网",),
      day=26),
    L("p27", "中小学学位信息", "各学校学位数与招生范围。", "education", tags=("教育",), day=27),
    L("p28", "Federated credit risk modelling", "Train a model on data you never see.",
      "finance", "compute", tags=("federated learning",), price=5_000_000, org="org-b", day=28),
    L("p29", "上海出租车GPS轨迹", "出租车行驶轨迹点。", "transport", tags=("出租车",), day=29),
    L("p30", "Product review sentiment", "Sentiment scores of product reviews.", "ecommerce",
      tags=("reviews",), price=30_000, org="org-b", sample=True, day=29),
]  # fmt: skip
BY_ID = {d.id: d for d in CATALOG}
ALL = SearchQuery(limit=100)


@pytest.fixture(scope="module")
def index() -> CatalogIndex:
    idx = CatalogIndex()
    idx.upsert(CATALOG)
    return idx


@pytest.fixture
def fresh() -> CatalogIndex:
    idx = CatalogIndex()
    idx.upsert(CATALOG)
    return idx


def ids(index: CatalogIndex, q: SearchQuery) -> list[str]:
    return [h.id for h in index.search(q).hits]


# --- relevance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "top"),
    [
        ("企业工商", "p01"),  # segmented: matches 企业工商登记信息
        ("手机号 风险", "p02"),
        ("公交客流", "p03"),
        ("气象观测", "p04"),
        ("payments", "p17"),  # stemmed: payment
        ("fraud", "p06"),
        ("credit card", "p06"),
        ("上海 GPS", "p29"),  # mixed languages
        ("PM2.5", "p09"),
        ("碳排放", "p18"),
        ("股票 quotes", "p15"),
        ("注册资本", "p01"),  # a field's meaning
        ("reg_capital", "p01"),  # a field's name
        ("payment method", "p17"),  # title outweighs p05's field paymentMethod
        ("weather forecast", "p19"),
        ("二手房价格", "p11"),
    ],
)
def test_expected_top_result(index: CatalogIndex, text: str, top: str) -> None:
    result = index.search(SearchQuery(text=text))
    assert result.hits and result.hits[0].id == top, [h.id for h in result.hits]
    assert result.hits[0].score > 0


def test_camel_case_field_name_is_split(index: CatalogIndex) -> None:
    assert "p05" in ids(index, SearchQuery(text="method"))


def test_no_matching_term_returns_nothing(index: CatalogIndex) -> None:
    for text in ("量子纠缠", "zebra", "的"):
        result = index.search(SearchQuery(text=text))
        assert result.total == 0 and result.hits == ()


def test_long_text_is_cut_not_refused(index: CatalogIndex) -> None:
    assert index.search(SearchQuery(text="客流 " + "量子纠缠" * 2_000)).total == 2


def test_scores_are_descending(index: CatalogIndex) -> None:
    scores = [h.score for h in index.search(SearchQuery(text="客流 数据 price", limit=50)).hits]
    assert scores == sorted(scores, reverse=True) and len(scores) > 3


@pytest.mark.parametrize(
    "text", ['"', ":", "(", "AND", "*", 'title:"x', "a AND (b OR", "\\", "+-&&||!{}[]^~?/", "🙂"]
)
def test_special_characters_never_raise(index: CatalogIndex, text: str) -> None:
    result = index.search(SearchQuery(text=text))
    assert result.total == 0
    assert index.search(SearchQuery(text=f"{text} 客流")).total == 2


def test_empty_query_browses_newest_first(index: CatalogIndex) -> None:
    result = index.search(ALL)
    assert result.total == len(CATALOG) == len(index)
    assert [h.id for h in result.hits] == expected_order("newest")


# --- filters -----------------------------------------------------------------------------


def expected(pred: object) -> set[str]:
    return {d.id for d in CATALOG if pred(d)}  # type: ignore[operator]


def test_filters_or_within_and_across(index: CatalogIndex) -> None:
    assert set(ids(index, replace(ALL, kinds=("api",)))) == expected(lambda d: d.kind == "api")
    q = replace(ALL, kinds=("api", "compute"), industries=("finance", "telecom"))
    assert set(ids(index, q)) == {"p02", "p07", "p24", "p28"}
    assert set(ids(index, replace(ALL, grades=("important",)))) == {"p02", "p06", "p18"}
    assert set(ids(index, replace(ALL, categories=("energy-main",)))) == {"p10", "p18"}
    assert set(ids(index, replace(ALL, merchants=("org-c",)))) == expected(
        lambda d: d.org_id == "org-c"
    )
    assert set(ids(index, replace(ALL, update_frequencies=("realtime",)))) == {"p02", "p09"}
    assert set(ids(index, replace(ALL, kinds=("nonexistent",)))) == set()


def test_price_and_sample_filters(index: CatalogIndex) -> None:
    q = replace(ALL, price_min_fen=20_000, price_max_fen=150_000)  # both bounds inclusive
    assert set(ids(index, q)) == expected(lambda d: 20_000 <= d.min_price_fen <= 150_000)
    assert set(ids(index, replace(ALL, price_max_fen=0))) == {"p03", "p09"}
    assert set(ids(index, replace(ALL, has_sample=True))) == expected(lambda d: d.has_sample)
    assert set(ids(index, replace(ALL, has_sample=False))) == expected(lambda d: not d.has_sample)


def test_filters_combine_with_text(index: CatalogIndex) -> None:
    assert ids(index, SearchQuery(text="客流", price_max_fen=0)) == ["p03"]
    assert ids(index, SearchQuery(text="credit", kinds=("compute",))) == ["p28"]


# --- facets ------------------------------------------------------------------------------


def test_facets_count_the_whole_result_set(index: CatalogIndex) -> None:
    facets = index.search(SearchQuery(limit=1)).facets
    assert facets["kind"] == dict(Counter(d.kind for d in CATALOG))
    assert facets["industry"] == dict(Counter(d.industry for d in CATALOG))
    assert facets["merchant"] == dict(Counter(d.org_id for d in CATALOG))
    assert facets["has_sample"] == {"false": 25, "true": 5}
    assert facets["price_band"] == dict(Counter(price_band(d.min_price_fen) for d in CATALOG))
    assert list(facets["kind"].values()) == sorted(facets["kind"].values(), reverse=True)


def test_facets_follow_text_and_filters(index: CatalogIndex) -> None:
    result = index.search(SearchQuery(text="credit", limit=100))
    matched = [BY_ID[h.id] for h in result.hits]
    assert result.facets["industry"] == dict(Counter(d.industry for d in matched))
    result = index.search(SearchQuery(kinds=("api",), limit=1))
    apis = [d for d in CATALOG if d.kind == "api"]
    assert result.facets["industry"] == dict(Counter(d.industry for d in apis))
    assert result.facets["grade"] == dict(Counter(d.grade for d in apis))


def test_filtered_dimension_is_counted_without_its_own_filter(index: CatalogIndex) -> None:
    q = SearchQuery(kinds=("api",), industries=("finance",), price_max_fen=100_000, limit=1)
    facets = index.search(q).facets
    cheap = [d for d in CATALOG if d.min_price_fen <= 100_000]
    assert facets["kind"] == dict(Counter(d.kind for d in cheap if d.industry == "finance"))
    assert facets["industry"] == dict(Counter(d.industry for d in cheap if d.kind == "api"))
    fin_api = [d for d in CATALOG if d.kind == "api" and d.industry == "finance"]
    assert facets["price_band"] == {
        **{band: 0 for band in facets["price_band"]},
        **Counter(price_band(d.min_price_fen) for d in fin_api),
    }
    assert facets["grade"] == {"general": 1}  # only p07 passes every filter


def test_facets_when_the_filtered_result_is_empty(index: CatalogIndex) -> None:
    result = index.search(SearchQuery(kinds=("compute",), industries=("agriculture",)))
    assert result.total == 0
    assert result.facets["kind"] == {"dataset": 1}  # p14: what dropping kind would give
    assert index.search(SearchQuery(text="客流", facets=False)).facets == {}


# --- sorting and pagination --------------------------------------------------------------


def expected_order(sort: str) -> list[str]:
    key = {
        "newest": lambda d: (-d.listed_at.timestamp(), d.id),
        "price_asc": lambda d: (d.min_price_fen, d.id),
        "price_desc": lambda d: (-d.min_price_fen, d.id),
        "title": lambda d: (d.title.casefold(), d.id),
    }[sort]
    return [d.id for d in sorted(CATALOG, key=key)]


@pytest.mark.parametrize("sort", ["newest", "price_asc", "price_desc", "title"])
def test_sort_orders_break_ties_by_id(index: CatalogIndex, sort: str) -> None:
    assert ids(index, replace(ALL, sort=sort)) == expected_order(sort)


@pytest.mark.parametrize("sort", ["relevance", "newest", "price_asc", "price_desc", "title"])
@pytest.mark.parametrize("text", ["", "数据 客流 credit 价格"])
def test_pages_concatenate_to_the_full_list(index: CatalogIndex, sort: str, text: str) -> None:
    full = index.search(SearchQuery(text=text, sort=sort, limit=100))
    pages: list[str] = []
    for offset in range(0, full.total + 7, 7):
        page = index.search(SearchQuery(text=text, sort=sort, offset=offset, limit=7))
        assert page.total == full.total
        pages += [h.id for h in page.hits]
    assert pages == [h.id for h in full.hits]
    assert len(set(pages)) == len(pages) == full.total


def test_equal_scores_are_ordered_by_id() -> None:
    twins = [
        # ids sharing their first 8 bytes: the fast id key alone cannot order them
        listing(f"{'t' if i % 2 else 'twinlist'}-{i:03d}", "重复样例", "同一段描述。", "energy")
        for i in range(100)  # more than the first fetch of a 7-hit page holds
    ]
    random.Random(7).shuffle(twins)
    idx = CatalogIndex()
    for start in range(0, 100, 25):  # several segments, in shuffled order
        idx.upsert(twins[start : start + 25])
    full = idx.search(SearchQuery(text="样例", limit=100))
    assert [h.id for h in full.hits] == sorted(d.id for d in twins)
    assert len({h.score for h in full.hits}) == 1
    paged = [
        h.id
        for off in range(0, 100, 7)
        for h in idx.search(SearchQuery(text="样例", offset=off, limit=7)).hits
    ]
    assert paged == [h.id for h in full.hits]


# --- writes ------------------------------------------------------------------------------


def test_upsert_replaces_by_id(fresh: CatalogIndex) -> None:
    new = replace(BY_ID["p01"], title="Bicycle sharing trips", summary="", fields=(), tags=())
    fresh.upsert([new])
    assert len(fresh) == len(CATALOG)
    assert ids(fresh, SearchQuery(text="bicycle")) == ["p01"]
    assert "p01" not in ids(fresh, SearchQuery(text="企业工商"))
    fresh.upsert([replace(BY_ID["p02"], id="p99")])  # a new id adds
    assert len(fresh) == len(CATALOG) + 1


def test_remove_is_visible_to_the_next_search(fresh: CatalogIndex) -> None:
    assert ids(fresh, SearchQuery(text="公交客流"))[0] == "p03"
    fresh.remove(["p03", "unknown"])
    assert "p03" not in ids(fresh, SearchQuery(text="公交客流"))
    assert len(fresh) == len(CATALOG) - 1
    assert fresh.search(SearchQuery()).facets["price_band"]["free"] == 1


def test_replace_all_and_watermark(fresh: CatalogIndex) -> None:
    fresh.applied_seq = 42
    fresh.replace_all(CATALOG[:3])
    assert len(fresh) == 3 and fresh.applied_seq == 42
    assert CatalogIndex().applied_seq == 0 and len(CatalogIndex()) == 0


def test_searches_run_while_upserting(fresh: CatalogIndex) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                result = fresh.search(SearchQuery(text="客流 credit"))
                assert result.total >= 4
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(20):
        fresh.upsert([replace(BY_ID["p08"], summary=f"第{i}版")])
    done.set()
    for t in threads:
        t.join()
    assert not errors and len(fresh) == len(CATALOG)


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(limit=101),
        SearchQuery(limit=-1),
        SearchQuery(offset=-1),
        SearchQuery(offset=10_001),
        SearchQuery(sort="popular"),
        SearchQuery(price_min_fen=-1),
    ],
)
def test_invalid_queries_are_refused(index: CatalogIndex, query: SearchQuery) -> None:
    with pytest.raises(InvalidQuery):
        index.search(query)
