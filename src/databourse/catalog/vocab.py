"""Controlled vocabularies of the catalog: purposes, industries, frequencies, kinds, territories.

Codes are stable English identifiers stored in rows, policies and the ledger; each term also
has a Chinese label (``member.zh``) for the user interface. Adding a term is safe; renaming
or removing one breaks stored policies and contracts, so do neither.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Vocab(StrEnum):
    """A vocabulary term whose value is its code and whose ``zh`` is its Chinese label."""

    @property
    def zh(self) -> str:
        return ZH_LABELS[type(self)][self.value]


class Purpose(Vocab):
    """What a buyer uses data for (用途), declared per call or query and checked (BRIEF §5)."""

    marketing = "marketing"
    risk_control = "risk_control"
    anti_fraud = "anti_fraud"
    credit_assessment = "credit_assessment"
    insurance_underwriting = "insurance_underwriting"
    identity_verification = "identity_verification"
    research = "research"
    model_training = "model_training"
    statistics = "statistics"
    public_service = "public_service"
    product_development = "product_development"
    operations = "operations"


class Industry(Vocab):
    """The industry a product serves; catalog search filters on it."""

    finance = "finance"
    transport = "transport"
    logistics = "logistics"
    healthcare = "healthcare"
    retail = "retail"
    manufacturing = "manufacturing"
    energy = "energy"
    telecom = "telecom"
    government = "government"
    agriculture = "agriculture"
    geospatial = "geospatial"
    meteorology = "meteorology"
    environment = "environment"
    education = "education"
    tourism = "tourism"
    real_estate = "real_estate"
    other = "other"


class UpdateFrequency(Vocab):
    realtime = "realtime"
    hourly = "hourly"
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"
    quarterly = "quarterly"
    yearly = "yearly"
    irregular = "irregular"
    static = "static"


class ProductKind(Vocab):
    """The three kinds of data product (BRIEF §3)."""

    dataset = "dataset"
    api = "api"
    compute = "compute"


ZH_LABELS: dict[type[Vocab], dict[str, str]] = {
    Purpose: {
        "marketing": "营销推广",
        "risk_control": "风险控制",
        "anti_fraud": "反欺诈",
        "credit_assessment": "信用评估",
        "insurance_underwriting": "保险核保",
        "identity_verification": "身份核验",
        "research": "科学研究",
        "model_training": "模型训练",
        "statistics": "统计分析",
        "public_service": "公共服务",
        "product_development": "产品研发",
        "operations": "经营管理",
    },
    Industry: {
        "finance": "金融",
        "transport": "交通运输",
        "logistics": "物流",
        "healthcare": "医疗健康",
        "retail": "商贸零售",
        "manufacturing": "工业制造",
        "energy": "能源",
        "telecom": "通信",
        "government": "政务",
        "agriculture": "农业",
        "geospatial": "地理空间",
        "meteorology": "气象",
        "environment": "生态环境",
        "education": "教育",
        "tourism": "文化旅游",
        "real_estate": "房地产",
        "other": "其他",
    },
    UpdateFrequency: {
        "realtime": "实时",
        "hourly": "每小时",
        "daily": "每日",
        "weekly": "每周",
        "monthly": "每月",
        "quarterly": "每季度",
        "yearly": "每年",
        "irregular": "不定期",
        "static": "不更新",
    },
    ProductKind: {"dataset": "数据集", "api": "数据接口", "compute": "隐私计算"},
}

# ISO 3166-1 alpha-2: the 249 officially assigned codes (ISO 3166 Maintenance Agency).
_ALPHA2 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ  EC EE EG EH ER ES ET  FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY  HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT  JE JM JO JP  KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ  OM  PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA  RE RO RS RU RW  SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ  UA UG UM US UY UZ
    VA VC VE VG VI VN VU  WF WS  YE YT  ZA ZM ZW
"""
COUNTRIES = frozenset(_ALPHA2.split())
# In a DataBourse policy "CN" means mainland China. Hong Kong (HK), Macao (MO) and Taiwan (TW)
# have their own ISO codes, and providing data to them counts as cross-border for PRC rules.
MAINLAND = "CN"
# ISO 3166-2 subdivision: the country code, a hyphen, one to three letters or digits
# (e.g. CN-SH Shanghai, CN-GD Guangdong, US-CA California).
_SUBDIVISION = re.compile(r"^([A-Z]{2})-[A-Z0-9]{1,3}$")


def territory_error(code: str) -> str | None:
    """Why ``code`` is not a territory (alpha-2 country or ISO 3166-2 subdivision), or None."""
    if code in COUNTRIES:
        return None
    match = _SUBDIVISION.match(code)
    if match is None:
        return f"{code!r} is neither an ISO 3166-1 alpha-2 code nor an ISO 3166-2 subdivision"
    if match.group(1) not in COUNTRIES:
        return f"{code!r} names a subdivision of {match.group(1)!r}, which is not a country code"
    return None


def country_of(territory: str) -> str:
    """The country part of a territory: CN-SH → CN, CN → CN."""
    return territory.split("-", 1)[0]


def within(territory: str, allowed: str) -> bool:
    """Whether ``territory`` lies inside ``allowed``: equal, or a subdivision of it."""
    return territory == allowed or (
        "-" in territory and "-" not in allowed and country_of(territory) == allowed
    )


def outside_mainland(territories: list[str]) -> list[str]:
    """The territories where use would be cross-border from mainland China."""
    return [t for t in territories if country_of(t) != MAINLAND]
