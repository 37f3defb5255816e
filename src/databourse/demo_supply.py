"""The demo world's supply side: registered assets, data files, listed products, demands.

Seeded through the same services as the API (so it is all on the ledger), after the
organisations of ``demo``; idempotent: an asset whose title its merchant already has is
not created again. One product is left in review for a newcomer to approve.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from databourse.assets import schemas as asset_schemas
from databourse.assets import services as assets
from databourse.assets import uploads
from databourse.assets.models import DataAsset
from databourse.assets.store import ObjectStore
from databourse.auth.policy import SYSTEM_PRINCIPAL, Principal
from databourse.auth.services import principal_for_email
from databourse.catalog import schemas as catalog_schemas
from databourse.catalog import services as catalog
from databourse.catalog.indexer import CatalogSearch
from databourse.demands import schemas as demand_schemas
from databourse.demands import services as demands
from databourse.demands.models import Demand
from databourse.uow import Actor, UnitOfWork

RIGHTS = [
    {"right": r, "scope": "all records of the asset", "starts_on": "2024-01-01"}
    for r in ("holding", "processing", "operation")
]
LINES = ["71路", "49路", "927路", "浦东1路", "隧道三线", "785路", "public 5", "机场一线"]
STOPS = ["人民广场", "徐家汇", "虹桥枢纽", "陆家嘴", "静安寺", "五角场", "浦东机场", "外滩"]


def bus_ridership_csv(rows: int = 480, seed: int = 2026) -> bytes:
    """Hourly boardings per line and stop, GBK-encoded as many Chinese systems export.

    Each (line, date, hour, stop) appears once, as in a real hourly extract."""
    rng = random.Random(seed)
    out = ["线路,日期,时段,站点,上车人次,下车人次"]
    first = date(2026, 3, 2)
    per_slot = len(LINES) * len(STOPS)
    for n in range(rows):
        slot = n // per_slot
        day = first + timedelta(days=slot // 16)
        hour = 6 + slot % 16
        line, stop = LINES[n % len(LINES)], STOPS[(n // len(LINES)) % len(STOPS)]
        out.append(
            f"{line},{day.isoformat()},{hour:02d}:00,{stop},"
            f"{rng.randint(20, 1800)},{rng.randint(20, 1800)}"
        )
    return ("\r\n".join(out) + "\r\n").encode("gbk")


def enterprise_csv(rows: int = 120, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    out = ["company_name,uscc_prefix,province,industry,registered_capital_wan,founded"]
    names = ["Huaxin", "Dongfang", "Jinqiao", "Yangtze", "Pearl River", "Tianfu", "Haixi"]
    provinces = ["Shanghai", "Zhejiang", "Jiangsu", "Guangdong", "Sichuan", "Beijing"]
    for n in range(rows):
        out.append(
            f"{rng.choice(names)} Trading Co. {n},9131{rng.randint(1000, 9999)},"
            f"{rng.choice(provinces)},wholesale,{rng.randint(10, 50000)},"
            f"{rng.randint(1995, 2025)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        )
    return ("\n".join(out) + "\n").encode()


@dataclass(frozen=True)
class Offer:
    merchant: str  # demo key
    asset: dict[str, Any]
    product: dict[str, Any]
    file: tuple[str, bytes] | None
    listed: bool = True


#: An asset licensed from a telecom operator: personal information, consented, graded 3.
TELECOM_LICENSED: dict[str, Any] = {
    "industry": "finance",
    "source": {
        "kind": "purchased",
        "description": "Licensed from a telecom operator under a data supply contract.",
        "upstream_provider": "Demo Telecom Data Co.",
        "upstream_contract": "DT-2025-0117",
    },
    "rights": RIGHTS,
    "grade": "general",
    "sub_grade": 3,
    "personal_info": True,
    "pi_consent_basis": "Separate consent collected by the operator (PIPL art. 23).",
}


def _policy(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "purposes": ["research", "statistics", "product_development"],
        "term_days": 365,
        "territories": ["CN"],
        "onward": {"mode": "prohibited"},
        "duties": ["attribution", "delete_at_term_end"],
    }
    return {**base, **over}


def _fields(*spec: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [{"name": n, "type": t, "meaning": m} for n, t, m in spec]


OFFERS = (
    Offer(
        "merchant_a",
        {
            "title": "上海公交刷卡客流 Shanghai bus fare-card ridership",
            "description": "每条线路每个站点每小时的刷卡上下车人次，来自公交一卡通系统。",
            "industry": "transport",
            "source": {
                "kind": "self_generated",
                "description": "Produced by our fare-collection system in daily operation.",
            },
            "rights": RIGHTS,
            "grade": "general",
            "sub_grade": 2,
        },
        {
            "kind": "dataset",
            "title": "上海公交线路小时客流 Shanghai hourly bus ridership by line and stop",
            "description": {
                "content": "按线路、站点、小时统计的公交刷卡上下车人次，可用于交通规划、"
                "商圈客流分析和选址。Hourly boardings and alightings per line and stop.",
                "fields": _fields(
                    ("线路", "string", "bus line 公交线路"),
                    ("日期", "date", "service date 日期"),
                    ("时段", "string", "hour of day 小时"),
                    ("站点", "string", "stop name 站点名称"),
                    ("上车人次", "integer", "boardings 上车人次"),
                    ("下车人次", "integer", "alightings 下车人次"),
                ),
                "coverage": "Shanghai, 2024-01 to now",
                "update_frequency": "daily",
                "scenarios": ["交通规划 transport planning", "商圈选址 retail site selection"],
                "restrictions": "Aggregated counts only; no card identifiers.",
            },
            "industry": "transport",
            "category": "public transport",
            "tags": ["公交", "客流", "交通", "bus", "ridership", "mobility"],
            "plans": [
                {
                    "name": "按行计费 metered per 1,000 rows",
                    "model": "metered",
                    "unit": "row",
                    "tiers": [
                        {"up_to": 1_000_000, "price_per_1000_fen": 80},
                        {"up_to": None, "price_per_1000_fen": 50},
                    ],
                },
                {
                    "name": "包年订阅 yearly",
                    "model": "subscription",
                    "price_fen": 1_200_000,
                    "period": "year",
                },
            ],
            "policy": _policy(
                purposes=["research", "statistics", "marketing", "public_service"],
                count={"max_downloads": 30},
            ),
        },
        ("bus-ridership-2026-03.csv", bus_ridership_csv()),
    ),
    Offer(
        "merchant_b",
        {
            "title": "手机号风险评分 Mobile number risk score",
            "description": "基于运营商授权数据的手机号在网时长、状态与风险评分。",
            **TELECOM_LICENSED,
        },
        {
            "kind": "api",
            "title": "手机号风险评分API Mobile number risk scoring API",
            "description": {
                "content": "输入手机号，返回在网时长、号码状态和0-100风险评分，用于信贷风控和"
                "反欺诈。"
                "Returns tenure, status and a 0–100 risk score for a mobile number.",
                "fields": _fields(
                    ("mobile", "string", "手机号码 (request)"),
                    ("tenure_months", "integer", "在网时长 months in service"),
                    ("status", "string", "号码状态 active/suspended"),
                    ("risk_score", "integer", "风险评分 0-100"),
                ),
                "coverage": "Mainland China mobile numbers",
                "update_frequency": "realtime",
                "scenarios": ["信贷风控 credit risk control", "反欺诈 anti-fraud"],
                "restrictions": "Licensed financial institutions only.",
            },
            "industry": "finance",
            "category": "risk scoring",
            "tags": ["手机号", "风控", "评分", "risk", "score", "anti-fraud"],
            "plans": [
                {
                    "name": "按次计费 per call",
                    "model": "metered",
                    "unit": "call",
                    "tiers": [
                        {"up_to": 100_000, "price_per_1000_fen": 50_000},
                        {"up_to": None, "price_per_1000_fen": 30_000},
                    ],
                },
                {
                    "name": "10万次套餐 100k calls",
                    "model": "package",
                    "unit": "call",
                    "units": 100_000,
                    "price_fen": 4_000_000,
                    "valid_days": 365,
                },
            ],
            "policy": _policy(
                purposes=["risk_control", "credit_assessment", "identity_verification"],
                count={"max_calls": 1_000_000},
                rate={"max_per_second": 50},
            ),
            "sample": {
                "columns": ["mobile", "tenure_months", "status", "risk_score"],
                "rows": [
                    ["13812345678", "86", "active", "12"],
                    ["15987654321", "7", "active", "64"],
                    ["18600001111", "140", "suspended", "88"],
                ],
            },
        },
        None,
    ),
    Offer(
        "merchant_b",
        {
            "title": "企业工商登记信息 Enterprise registry extracts",
            "description": "Registered companies: province, industry, capital, founding date.",
            "industry": "finance",
            "source": {
                "kind": "public_authorised",
                "description": "Public registry data operated under authorisation.",
                "authorisation": "Municipal authorisation SH-PD-2025-08",
            },
            "rights": RIGHTS,
            "grade": "general",
            "sub_grade": 1,
        },
        {
            "kind": "dataset",
            "title": "企业工商登记信息 Enterprise registry extracts",
            "description": {
                "content": "企业名称、所在省份、行业、注册资本和成立日期。"
                "Company registry extracts "
                "for know-your-business checks and market analysis.",
                "fields": _fields(
                    ("company_name", "string", "企业名称"),
                    ("uscc_prefix", "string", "统一社会信用代码前缀"),
                    ("province", "string", "省份"),
                    ("industry", "string", "行业"),
                    ("registered_capital_wan", "integer", "注册资本(万元)"),
                    ("founded", "date", "成立日期"),
                ),
                "coverage": "Six provinces, 1995–2025",
                "update_frequency": "monthly",
                "scenarios": ["KYB 企业核验", "market analysis 市场分析"],
                "restrictions": "",
            },
            "industry": "finance",
            "category": "enterprise data",
            "tags": ["工商", "企业", "registry", "KYB"],
            "plans": [{"name": "一次性 one-off", "model": "fixed", "price_fen": 300_000}],
            "policy": _policy(purposes=["risk_control", "research", "statistics"]),
        },
        ("enterprise-registry.csv", enterprise_csv()),
        listed=False,  # left in review: the operator's first task in the README
    ),
)

DEMANDS = (
    (
        "buyer_a",
        {
            "title": "手机号风险评分用于消费信贷风控",
            "need": "需要手机号在网时长和风险评分接口，用于消费金融贷前审核。",
            "scenario": "信贷风控 credit risk control",
            "purpose": "risk_control",
            "kinds": ["api"],
            "budget_max_fen": 10_000_000,
            "term_days": 365,
            "required_fields": ["手机号", "风险评分"],
        },
    ),
    (
        "buyer_b",
        {
            "title": "Bus ridership near retail sites",
            "need": "Hourly bus boardings by stop in Shanghai to rank candidate shop locations.",
            "scenario": "retail site selection",
            "purpose": "marketing",
            "kinds": ["dataset"],
            "budget_max_fen": 2_000_000,
            "term_days": 180,
            "required_fields": ["stop", "boardings"],
        },
    ),
)


def principal_of(sessions: sessionmaker[Session], email: str) -> Principal:
    with sessions() as s:
        return principal_for_email(s, email)


def seed_supply(
    sessions: sessionmaker[Session], store: ObjectStore, emails: dict[str, str]
) -> list[str]:
    """Create the demo supply (idempotent); returns what was created, in words."""
    created = seed_offers(sessions, store, emails, OFFERS)
    search = CatalogSearch()
    for key, demand in DEMANDS:
        me = principal_of(sessions, emails[key])
        with sessions() as s:
            exists = s.scalar(
                select(Demand.id).where(Demand.org_id == me.org_id, Demand.title == demand["title"])
            )
        if exists:
            continue
        with UnitOfWork(sessions, Actor(me.kind, me.id, me.org_id)) as uow:
            wanted = demand_schemas.DemandIn.model_validate(demand, strict=False)
            d, matches = demands.post(uow, me, search, wanted)
            uow.commit()
        created.append(f"demand {d.title!r} ({len(matches)} matches)")
    return created


def seed_offers(
    sessions: sessionmaker[Session],
    store: ObjectStore,
    emails: dict[str, str],
    offers: tuple[Offer, ...],
) -> list[str]:
    """Register each offer's asset (with its file, if any) and list its product, unless
    the merchant already has an asset of that title."""
    created: list[str] = []
    for offer in offers:
        me = principal_of(sessions, emails[offer.merchant])
        with sessions() as s:
            exists = s.scalar(
                select(DataAsset.id).where(
                    DataAsset.org_id == me.org_id, DataAsset.title == offer.asset["title"]
                )
            )
        if exists:
            continue
        with UnitOfWork(sessions, Actor(me.kind, me.id, me.org_id)) as uow:
            data = asset_schemas.AssetIn.model_validate(offer.asset, strict=False)
            asset = assets.create(uow, me, data)
            assets.transition(uow, me, asset.id, "submit")
            uow.commit()
        with UnitOfWork(sessions) as uow:
            assets.transition(uow, SYSTEM_PRINCIPAL, asset.id, "register", "demo world")
            uow.commit()
        if offer.file is not None:
            name, content = offer.file
            uploads.upload(
                sessions,
                Actor(me.kind, me.id, me.org_id),
                me,
                store,
                asset.id,
                filename=name,
                source=io.BytesIO(content),
            )
        body = {**offer.product, "asset_ids": [asset.id]}
        with UnitOfWork(sessions, Actor(me.kind, me.id, me.org_id)) as uow:
            product = catalog.create(
                uow, me, catalog_schemas.ProductIn.model_validate(body, strict=False)
            )
            catalog.transition(uow, me, product.id, "submit", None)
            uow.commit()
        if offer.listed:
            with UnitOfWork(sessions) as uow:
                catalog.transition(uow, SYSTEM_PRINCIPAL, product.id, "approve", "demo world")
                uow.commit()
        created.append(
            f"{product.kind} product {product.title!r} "
            f"({'listed' if offer.listed else 'in review'})"
        )
    return created
