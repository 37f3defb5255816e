"""Catalog search and the DCAT export over HTTP, on a labelled set of listed products.

The catalog is shared with other tests, so every assertion is about this module's own
products: which of them a query ranks first, which a filter keeps, how they are counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyshacl
import pytest
from rdflib import Graph, URIRef
from rdflib.namespace import RDF

from databourse.catalog.dcat import shapes_file
from tests import factories
from tests.assets.test_asset_api import (
    Demo,
    Member,
    Staff,
    list_product,
    listed_dataset,
    ok,
    refused,
    registered_asset,
    staff_for,
)
from tests.catalog.test_listing_flow import upload
from tests.catalog.test_product_api import API_POLICY, COMPUTE_POLICY
from tests.conftest import Exchange

ODRL = "http://www.w3.org/ns/odrl/2/"
DCT = "http://purl.org/dc/terms/"
DCAT = "http://www.w3.org/ns/dcat#"


@dataclass(frozen=True)
class Spec:
    """One labelled product: what it is, its price, and (datasets) its file's columns."""

    key: str
    kind: str
    language: str
    title: str
    content: str
    industry: str
    tags: tuple[str, ...]
    plan: dict[str, Any]
    price: int  # the lowest plan price the catalog should show, in fen
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _fixed(price: int) -> dict[str, Any]:
    return {"name": "一口价 one-off", "model": "fixed", "price_fen": price}


def _yearly(price: int) -> dict[str, Any]:
    return {"name": "包年 yearly", "model": "subscription", "price_fen": price, "period": "year"}


SPECS = (
    Spec(
        "metro", "dataset", "zh", "深圳地铁闸机进出站客流",
        "深圳地铁各站点闸机每十五分钟的进站与出站人次。", "transport",
        ("地铁", "客流", "闸机"), _fixed(80_000), 80_000,
        ("站点", "时段", "进站人次", "出站人次"),
        (("车公庙", "08:00", "5321", "4410"), ("福田", "08:00", "6120", "5032")),
    ),
    Spec(
        "rain", "dataset", "en", "Hourly rainfall and temperature observations",
        "Rainfall and air temperature measured every hour by automatic weather stations.",
        "meteorology", ("weather", "rainfall", "temperature"), _yearly(250_000), 250_000,
        ("station", "hour", "rainfall_mm", "temperature_c"),
        (("S001", "2026-03-01T08", "2.5", "14.1"), ("S002", "2026-03-01T08", "0.0", "15.3")),
    ),
    Spec(
        "credit", "api", "zh", "企业工商信用评分接口",
        "输入统一社会信用代码，返回企业信用评分与风险等级。", "finance",
        ("企业信用", "评分", "工商"),
        {"name": "按次 per call", "model": "metered", "unit": "call",
         "tiers": [{"up_to": None, "price_per_1000_fen": 5000}]},
        5_000, ("uscc", "credit_score", "risk_level"),
        ((factories.fresh_uscc(), "82", "low"), (factories.fresh_uscc(), "47", "high")),
    ),
    Spec(
        "idv", "api", "en", "Mobile number identity verification API",
        "Checks that a mobile number is registered to the named subscriber.", "telecom",
        ("identity", "verification", "mobile"), _fixed(1_500_000), 1_500_000,
        ("mobile", "name_match"), (("13700001111", "true"), ("15011112222", "false")),
    ),
    Spec(
        "clinic", "compute", "zh", "医院门诊就诊人次隐私计算",
        "医院数据不出域，统计各科室门诊就诊人次与病种分布，只返回聚合结果。", "healthcare",
        ("医疗", "门诊", "隐私计算"), _yearly(3_000_000), 3_000_000,
        ("科室", "就诊人次"), (("内科", "1520"), ("儿科", "860")),
    ),
    Spec(
        "basket", "compute", "en", "Retail basket sales federated analytics",
        "Federated analysis of supermarket basket composition across retail chains.",
        "retail", ("retail", "basket", "federated"), _yearly(600_000), 600_000,
        ("category", "share"), (("dairy", "0.12"), ("produce", "0.21")),
    ),
    Spec(
        "rice", "dataset", "zh", "水稻种植面积遥感监测",
        "基于卫星遥感影像的县级水稻种植面积与长势监测。", "agriculture",
        ("水稻", "遥感", "农业"), _fixed(12_000_000), 12_000_000,
        ("县", "年份", "水稻面积公顷", "长势指数"),
        (("射阳县", "2025", "80321", "0.82"), ("兴化市", "2025", "95210", "0.79")),
    ),
    Spec(
        "ev", "dataset", "zh", "新能源汽车充电桩使用率 EV charging station utilisation",
        "全国公共充电桩每日充电次数与时长。Daily charging sessions at public EV chargers.",
        "energy", ("充电桩", "新能源", "EV", "charging"),
        {"name": "免费 free", "model": "free"}, 0,
        ("充电桩编号", "日期", "charging_sessions", "时长分钟"),
        (("SZ-0001", "2026-03-01", "14", "620"), ("SZ-0002", "2026-03-01", "9", "410")),
    ),
)  # fmt: skip
PRICES = {s.key: s.price for s in SPECS}


def _body(spec: Spec, asset_id: str) -> dict[str, Any]:
    policy = {
        "dataset": factories.POLICY,
        "api": API_POLICY,
        "compute": COMPUTE_POLICY,
    }[spec.kind]
    body: dict[str, Any] = {
        "kind": spec.kind,
        "title": spec.title,
        "asset_ids": [asset_id],
        "description": {
            "content": spec.content,
            "fields": [{"name": c, "meaning": c} for c in spec.columns],
            "update_frequency": "daily",
        },
        "industry": spec.industry,
        "category": spec.industry,
        "tags": list(spec.tags),
        "language": spec.language,
        "plans": [spec.plan],
        "policy": policy,
    }
    if spec.kind != "dataset":
        body["sample"] = {"columns": list(spec.columns), "rows": [list(r) for r in spec.rows]}
    return body


def _csv(spec: Spec) -> bytes:
    lines = [",".join(spec.columns)] + [",".join(r) for r in spec.rows]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Labelled:
    merchant: Member
    ids: dict[str, str]  # spec key -> product id

    @property
    def keys(self) -> dict[str, str]:
        return {pid: key for key, pid in self.ids.items()}


@pytest.fixture(scope="module")
def staff(exchange: Exchange) -> Iterator[Staff]:
    yield from staff_for(exchange)


@pytest.fixture(scope="module")
def buyer(exchange: Exchange) -> Demo:
    return Demo(exchange, "buyer_b")


@pytest.fixture(scope="module")
def side(exchange: Exchange) -> Member:
    """A merchant for the products tests suspend, dispute or delist (not the labelled set)."""
    return Member(exchange, ["merchant"])


@pytest.fixture(scope="module")
def labelled(exchange: Exchange, staff: Staff) -> Labelled:
    merchant = Member(exchange, ["merchant"])
    ids = {}
    for spec in SPECS:
        asset_id = registered_asset(merchant.c, staff.op, title=spec.title)
        if spec.kind == "dataset":
            ok(upload(merchant.c, asset_id, _csv(spec), name=f"{spec.key}.csv"), 201)
        ids[spec.key] = list_product(merchant.c, staff.op, _body(spec, asset_id))
    return Labelled(merchant, ids)


def search(c: httpx.Client, **params: Any) -> dict[str, Any]:
    params.setdefault("limit", 100)
    return dict(ok(c.get("/catalog/search", params=params)))


def mine(result: dict[str, Any], labelled: Labelled) -> list[str]:
    """This module's products among the hits, in the order returned, by key."""
    keys = labelled.keys
    return [keys[h["id"]] for h in result["hits"] if h["id"] in keys]


# ---------------------------------------------------------------- relevance


QUERIES = [
    ("地铁客流", "metro"),
    ("地铁 进站", "metro"),
    ("rainfall temperature", "rain"),
    ("weather observations", "rain"),
    ("企业信用评分", "credit"),
    ("mobile identity verification", "idv"),
    ("门诊就诊人次", "clinic"),
    ("supermarket basket analytics", "basket"),
    ("水稻遥感", "rice"),
    ("EV 充电桩", "ev"),
    ("charging 新能源", "ev"),
]


@pytest.mark.parametrize(("q", "top"), QUERIES)
def test_each_query_ranks_its_product_first(
    q: str, top: str, labelled: Labelled, buyer: Demo
) -> None:
    found = mine(search(buyer.c, q=q), labelled)
    assert found and found[0] == top, (q, found)


def test_hits_describe_the_listing(labelled: Labelled, buyer: Demo) -> None:
    result = search(buyer.c, q="水稻遥感")
    hit = next(h for h in result["hits"] if h["id"] == labelled.ids["rice"])
    assert (hit["kind"], hit["industry"], hit["merchant"]) == (
        "dataset",
        "agriculture",
        labelled.merchant.id,
    )
    assert (hit["min_price_fen"], hit["currency"], hit["has_sample"]) == (12_000_000, "CNY", True)
    assert hit["title"] == "水稻种植面积遥感监测" and hit["score"] > 0
    assert search(buyer.c, q="qqxzv wkpqj")["total"] == 0


# ---------------------------------------------------------------- filters, facets, order


def test_filters_keep_only_matching_products(labelled: Labelled, buyer: Demo) -> None:
    own = {"merchant": labelled.merchant.id}
    assert sorted(mine(search(buyer.c, **own), labelled)) == sorted(PRICES)
    assert sorted(mine(search(buyer.c, kind="api", **own), labelled)) == ["credit", "idv"]
    both = search(buyer.c, kind=["dataset", "compute"], **own)
    assert sorted(mine(both, labelled)) == ["basket", "clinic", "ev", "metro", "rain", "rice"]
    assert mine(search(buyer.c, industry="finance", **own), labelled) == ["credit"]
    priced = search(buyer.c, price_min_fen=100_000, price_max_fen=3_000_000, **own)
    assert sorted(mine(priced, labelled)) == ["basket", "clinic", "idv", "rain"]
    assert mine(search(buyer.c, price_max_fen=0, **own), labelled) == ["ev"]
    assert sorted(mine(search(buyer.c, has_sample=True, **own), labelled)) == sorted(PRICES)
    assert search(buyer.c, has_sample=False, **own)["total"] == 0
    combined = search(buyer.c, q="隐私计算 federated", kind="compute", **own)
    assert sorted(mine(combined, labelled)) == ["basket", "clinic"]
    for h in search(buyer.c, kind="api")["hits"]:
        assert h["kind"] == "api"
    refused(buyer.c.get("/catalog/search", params={"sort": "random"}), 422, "validation")
    refused(buyer.c.get("/catalog/search", params={"limit": 101}), 422, "validation")


def test_facets_count_the_filtered_result(labelled: Labelled, buyer: Demo) -> None:
    own = {"merchant": labelled.merchant.id}
    facets = search(buyer.c, **own)["facets"]
    assert facets["kind"] == {"dataset": 4, "api": 2, "compute": 2}
    assert facets["industry"] == {s.industry: 1 for s in sorted(SPECS, key=lambda s: s.industry)}
    assert facets["price_band"] == {
        "free": 1,
        "under_1k": 2,
        "1k_10k": 2,
        "10k_100k": 2,
        "100k_up": 1,
    }
    assert facets["has_sample"] == {"true": 8}
    assert facets["merchant"][labelled.merchant.id] == 8

    # A filtered dimension is counted without its own filter; the others with it.
    facets = search(buyer.c, kind="api", **own)["facets"]
    assert facets["kind"] == {"dataset": 4, "api": 2, "compute": 2}
    assert facets["industry"] == {"finance": 1, "telecom": 1}
    assert facets["price_band"]["10k_100k"] == 1


def test_sort_by_price_and_paginate(labelled: Labelled, buyer: Demo) -> None:
    own = {"merchant": labelled.merchant.id}
    cheapest_first = sorted(PRICES, key=lambda k: PRICES[k])
    asc = search(buyer.c, sort="price_asc", **own)
    assert mine(asc, labelled) == cheapest_first
    assert [h["min_price_fen"] for h in asc["hits"]] == sorted(PRICES.values())
    assert mine(search(buyer.c, sort="price_desc", **own), labelled) == cheapest_first[::-1]
    pages = [search(buyer.c, sort="price_asc", limit=3, offset=o, **own) for o in (0, 3, 6, 9)]
    assert [p["total"] for p in pages] == [8, 8, 8, 8]
    assert [len(p["hits"]) for p in pages] == [3, 3, 2, 0]
    assert [k for p in pages for k in mine(p, labelled)] == cheapest_first
    newest = mine(search(buyer.c, sort="newest", **own), labelled)
    assert newest == [s.key for s in SPECS][::-1]


# ---------------------------------------------------------------- what leaves the catalog


def _found(c: httpx.Client, q: str, pid: str) -> bool:
    return pid in [h["id"] for h in search(c, q=q)["hits"]]


def test_a_suspended_product_leaves_search_at_once(side: Member, staff: Staff, buyer: Demo) -> None:
    m = side.c
    _, pid = listed_dataset(m, staff.op, title="珊瑚礁白化监测 coral reef bleaching")
    assert _found(buyer.c, "珊瑚礁", pid)
    ok(staff.reg.post(f"/products/{pid}/suspend", json={"reason": "complaint"}))
    assert not _found(buyer.c, "珊瑚礁", pid)
    assert not _found(buyer.c, "coral reef", pid)
    ok(staff.op.post(f"/products/{pid}/reinstate", json={"reason": "complaint unfounded"}))
    assert _found(buyer.c, "珊瑚礁", pid)
    ok(m.post(f"/products/{pid}/delist", json={}))
    assert not _found(buyer.c, "珊瑚礁", pid)


def test_the_products_of_a_suspended_merchant_leave_search_at_once(
    exchange: Exchange, staff: Staff, buyer: Demo
) -> None:
    merchant = Member(exchange, ["merchant"])
    _, pid = listed_dataset(merchant.c, staff.op, title="冰川消融观测 glacier melt")
    assert _found(buyer.c, "冰川消融", pid)
    ok(staff.op.post(f"/organisations/{merchant.id}/suspend", json={"reason": "licence lapsed"}))
    assert not _found(buyer.c, "冰川消融", pid)
    assert merchant.id not in search(buyer.c)["facets"]["merchant"]
    refused(buyer.c.get(f"/products/{pid}"), 404, "not-found")
    ok(staff.op.post(f"/organisations/{merchant.id}/reinstate", json={"reason": "renewed"}))
    assert _found(buyer.c, "冰川消融", pid)
    assert ok(buyer.c.get(f"/products/{pid}"))["id"] == pid


def test_a_disputed_asset_takes_its_product_out_of_search(
    side: Member, staff: Staff, buyer: Demo
) -> None:
    asset_id, pid = listed_dataset(side.c, staff.op, title="火山口地热 volcanic heat")
    assert _found(buyer.c, "火山口", pid)
    ok(staff.reg.post(f"/assets/{asset_id}/dispute", json={"reason": "ownership contested"}))
    assert not _found(buyer.c, "火山口", pid)
    refused(buyer.c.get(f"/products/{pid}"), 404, "not-found")
    ok(staff.op.post(f"/assets/{asset_id}/resolve", json={"reason": "claim withdrawn"}))
    assert _found(buyer.c, "火山口", pid)


# ---------------------------------------------------------------- DCAT


def test_the_dcat_export_conforms_to_the_shapes(
    labelled: Labelled, side: Member, staff: Staff, buyer: Demo
) -> None:
    _, delisted = listed_dataset(side.c, staff.op, title="已下架 delisted")
    ok(side.c.post(f"/products/{delisted}/delist", json={}))
    r = buyer.c.get("/catalog/dcat")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/ld+json")
    g = Graph().parse(data=json.dumps(r.json()), format="json-ld")
    shapes = Graph().parse(data=shapes_file().read_text(encoding="utf-8"), format="turtle")
    conforms, _, report = pyshacl.validate(g, shacl_graph=shapes, inference="none")
    assert conforms, report
    subjects = {str(o): s for s, o in g.subject_objects(URIRef(DCT + "identifier"))}
    assert delisted not in subjects
    kinds = {s.key: s.kind for s in SPECS}
    for key, pid in labelled.ids.items():
        node = subjects[pid]
        kind = "Dataset" if kinds[key] == "dataset" else "DataService"
        assert (node, RDF.type, URIRef(DCAT + kind)) in g, key
        policy = g.value(node, URIRef(ODRL + "hasPolicy"))
        assert (policy, RDF.type, URIRef(ODRL + "Offer")) in g, key
        assert g.value(policy, URIRef(ODRL + "permission")) is not None, key
