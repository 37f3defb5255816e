"""Synthetic but realistic catalog listings and buyer queries, for the search benchmarks.

``generate_listings(n, seed)`` returns ``n`` :class:`ListingFacts` built from templates:
about thirty data subjects across a dozen industries (company registration, phone risk
scores, bus ridership, weather observations, e-commerce orders, card fraud labels …),
regions, field lists with meanings, scenarios and tags, in Chinese (about 70 %) or English.
``generate_queries(n, seed)`` returns buyer queries of one to three words drawn from the
same vocabulary (Chinese, English or mixed), some with filters, other sorts and later
pages. Both are deterministic for a seed, so every store in a run sees the same work.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from databourse.catalog.facts import FieldFacts, ListingFacts
from databourse.catalog.search import SearchQuery

# (industry, category, zh subject, en subject, zh tags, en tags, fields (name, type, zh, en))
Field = tuple[str, str, str, str]
SUBJECTS: list[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...], tuple[Field, ...]]] = [
    ("government", "registry", "企业工商登记信息", "company registration records",
     ("工商", "企业征信"), ("business registry", "KYB"),
     (("credit_code", "string", "统一社会信用代码", "unified social credit code"),
      ("company_name", "string", "企业名称", "company name"),
      ("reg_capital", "number", "注册资本（万元）", "registered capital"),
      ("legal_rep", "string", "法定代表人", "legal representative"),
      ("est_date", "date", "成立日期", "date of establishment"))),
    ("telecom", "risk", "手机号风险评分", "mobile number risk score",
     ("反欺诈", "号码风险"), ("anti-fraud", "phone risk"),
     (("phone_hash", "string", "手机号哈希", "hashed phone number"),
      ("risk_score", "number", "风险评分（0-100）", "risk score from 0 to 100"),
      ("online_months", "integer", "在网时长（月）", "months on network"))),
    ("transport", "transit", "公交刷卡客流", "bus smart-card ridership",
     ("公共交通", "客流"), ("public transport", "ridership"),
     (("line_no", "string", "线路编号", "bus line number"),
      ("station_id", "string", "站点编号", "stop identifier"),
      ("tap_count", "integer", "刷卡次数", "number of card taps"),
      ("hour", "integer", "小时", "hour of day"))),
    ("transport", "traffic", "道路交通流量", "road traffic flow",
     ("交通", "拥堵"), ("traffic", "congestion"),
     (("road_id", "string", "路段编号", "road segment id"),
      ("avg_speed", "number", "平均车速", "average speed"),
      ("volume", "integer", "车流量", "vehicle volume"))),
    ("meteorology", "observation", "气象观测数据", "weather station observations",
     ("气象", "天气"), ("weather", "climate"),
     (("station_code", "string", "气象站编号", "weather station code"),
      ("temperature", "number", "气温（摄氏度）", "air temperature in celsius"),
      ("precipitation", "number", "降水量", "precipitation"),
      ("wind_speed", "number", "风速", "wind speed"))),
    ("meteorology", "forecast", "降水预报", "precipitation forecast",
     ("气象", "预报"), ("forecast", "rainfall"),
     (("grid_id", "string", "网格编号", "grid cell"),
      ("rain_prob", "number", "降水概率", "probability of rain"))),
    ("ecommerce", "orders", "电商订单明细", "e-commerce orders",
     ("电商", "消费"), ("e-commerce", "retail"),
     (("order_id", "string", "订单号", "order id"),
      ("sku", "string", "商品编码", "stock keeping unit"),
      ("order_amount", "number", "订单金额", "order amount"),
      ("payment_method", "string", "支付方式", "payment method"))),
    ("ecommerce", "reviews", "商品评论情感", "product review sentiment",
     ("评论", "舆情"), ("reviews", "sentiment"),
     (("review_text", "string", "评论内容", "review text"),
      ("sentiment", "number", "情感得分", "sentiment score"))),
    ("finance", "fraud", "信用卡欺诈标签", "credit card fraud labels",
     ("反欺诈", "信用卡"), ("fraud", "credit card"),
     (("txn_id", "string", "交易流水号", "transaction id"),
      ("amount", "number", "交易金额", "transaction amount"),
      ("is_fraud", "boolean", "是否欺诈", "fraud label"))),
    ("finance", "credit", "小微企业信用评分", "small business credit score",
     ("征信", "信贷"), ("credit", "lending"),
     (("credit_code", "string", "统一社会信用代码", "unified social credit code"),
      ("credit_score", "number", "信用评分", "credit score"),
      ("overdue_count", "integer", "逾期次数", "number of overdue payments"))),
    ("finance", "market", "股票行情", "stock market quotes",
     ("证券", "行情"), ("stocks", "market data"),
     (("ticker", "string", "股票代码", "ticker"),
      ("close_price", "number", "收盘价", "closing price"),
      ("turnover", "number", "成交额", "turnover"))),
    ("healthcare", "outpatient", "医院门诊量统计", "hospital outpatient statistics",
     ("医疗", "卫生"), ("healthcare", "hospital"),
     (("hospital_id", "string", "医院编号", "hospital id"),
      ("visits", "integer", "门诊人次", "outpatient visits"),
      ("department", "string", "科室", "department"))),
    ("healthcare", "drugs", "药品价格目录", "drug price catalogue",
     ("医药", "价格"), ("pharma", "prices"),
     (("drug_code", "string", "药品编码", "drug code"),
      ("unit_price", "number", "单价", "unit price"))),
    ("energy", "power", "电力负荷曲线", "electricity load curves",
     ("电力", "能源"), ("power", "energy"),
     (("meter_id", "string", "电表编号", "meter id"),
      ("load_kw", "number", "负荷（千瓦）", "load in kilowatts"),
      ("timestamp", "timestamp", "采集时间", "reading time"))),
    ("energy", "carbon", "企业碳排放核算", "corporate carbon emissions",
     ("双碳", "碳排放"), ("carbon", "ESG"),
     (("credit_code", "string", "统一社会信用代码", "unified social credit code"),
      ("co2_tons", "number", "二氧化碳排放量（吨）", "CO2 emissions in tonnes"))),
    ("real_estate", "transactions", "二手房成交价格", "second-hand housing prices",
     ("房产", "房价"), ("housing", "real estate"),
     (("community", "string", "小区名称", "residential community"),
      ("deal_price", "number", "成交单价", "price per square metre"),
      ("area_sqm", "number", "建筑面积", "floor area"))),
    ("logistics", "waybills", "物流运单轨迹", "logistics waybill tracking",
     ("物流", "快递"), ("logistics", "shipping"),
     (("waybill_no", "string", "运单号", "waybill number"),
      ("lat", "number", "纬度", "latitude"),
      ("lng", "number", "经度", "longitude"))),
    ("agriculture", "prices", "农产品批发价格", "wholesale farm produce prices",
     ("农业", "价格"), ("agriculture", "prices"),
     (("market_name", "string", "批发市场", "wholesale market"),
      ("product", "string", "品种", "produce type"),
      ("price_per_kg", "number", "每公斤价格", "price per kilogram"))),
    ("environment", "air", "空气质量监测", "air quality monitoring",
     ("环保", "空气质量"), ("air quality", "pollution"),
     (("station_code", "string", "监测站编号", "monitoring station code"),
      ("pm25", "number", "PM2.5浓度", "PM2.5 concentration"),
      ("aqi", "integer", "空气质量指数", "air quality index"))),
    ("telecom", "location", "手机信令人口热力", "mobile signalling population heatmap",
     ("人口", "位置"), ("population", "mobility"),
     (("grid_id", "string", "网格编号", "grid cell"),
      ("population", "integer", "人口数", "people present"))),
    ("retail", "poi", "商业网点POI", "retail points of interest",
     ("选址", "POI"), ("site selection", "POI"),
     (("poi_id", "string", "兴趣点编号", "point of interest id"),
      ("category", "string", "业态", "business type"),
      ("address", "string", "地址", "address"))),
    ("manufacturing", "industrial", "工业设备运行监测", "industrial equipment telemetry",
     ("工业互联网", "设备"), ("IIoT", "equipment"),
     (("device_id", "string", "设备编号", "device id"),
      ("vibration", "number", "振动幅度", "vibration amplitude"),
      ("temperature", "number", "温度", "temperature"))),
    ("education", "schools", "中小学学位信息", "school enrolment places",
     ("教育", "学区"), ("education", "schools"),
     (("school_name", "string", "学校名称", "school name"),
      ("places", "integer", "学位数", "enrolment places"))),
    ("government", "judicial", "裁判文书摘要", "court judgement summaries",
     ("司法", "涉诉"), ("litigation", "legal"),
     (("case_no", "string", "案号", "case number"),
      ("court", "string", "法院", "court"),
      ("cause", "string", "案由", "cause of action"))),
    ("finance", "insurance", "车险理赔记录", "motor insurance claims",
     ("保险", "理赔"), ("insurance", "claims"),
     (("policy_no", "string", "保单号", "policy number"),
      ("claim_amount", "number", "理赔金额", "claim amount"),
      ("vehicle_model", "string", "车型", "vehicle model"))),
    ("transport", "aviation", "航班准点率", "flight on-time performance",
     ("航空", "出行"), ("aviation", "flights"),
     (("flight_no", "string", "航班号", "flight number"),
      ("delay_min", "integer", "延误分钟", "delay in minutes"))),
    ("tourism", "hotels", "酒店入住率", "hotel occupancy rates",
     ("旅游", "酒店"), ("tourism", "hotels"),
     (("hotel_id", "string", "酒店编号", "hotel id"),
      ("occupancy", "number", "入住率", "occupancy rate"))),
    ("ecommerce", "ads", "广告投放效果", "advertising campaign performance",
     ("营销", "广告"), ("marketing", "ads"),
     (("campaign_id", "string", "投放计划", "campaign id"),
      ("clicks", "integer", "点击量", "clicks"),
      ("ctr", "number", "点击率", "click-through rate"))),
]  # fmt: skip
REGIONS = [
    ("上海", "Shanghai"), ("北京", "Beijing"), ("广东", "Guangdong"), ("浙江", "Zhejiang"),
    ("江苏", "Jiangsu"), ("深圳", "Shenzhen"), ("四川", "Sichuan"), ("湖北", "Hubei"),
    ("全国", "National"), ("长三角", "Yangtze River Delta"), ("粤港澳大湾区", "Greater Bay Area"),
    ("山东", "Shandong"), ("福建", "Fujian"), ("重庆", "Chongqing"), ("天津", "Tianjin"),
]  # fmt: skip
SUFFIXES = {
    "dataset": (("数据集", "明细数据", "月度统计", "历史数据"), ("dataset", "records", "history")),
    "api": (
        ("查询API", "实时接口", "核验服务", "评分接口"),
        ("API", "lookup service", "scoring API"),
    ),
    "compute": (("隐私计算服务", "联合建模", "安全求交"), ("federated analytics", "secure join")),
}
SCENARIOS = (
    ("金融风控", "credit risk"), ("精准营销", "targeted marketing"), ("城市规划", "urban planning"),
    ("供应链管理", "supply chain"), ("保险定价", "insurance pricing"),
    ("反欺诈", "fraud detection"), ("学术研究", "academic research"),
    ("选址分析", "site selection"), ("交通调度", "dispatching"),
)  # fmt: skip
FREQUENCIES = (("realtime", "实时"), ("daily", "每日"), ("weekly", "每周"), ("monthly", "每月"),
               ("quarterly", "每季度"), ("yearly", "每年"))  # fmt: skip
FIRMS = ("数联", "智信", "云图", "华数", "天元", "星河", "汇通", "中科", "恒信", "博观")
EPOCH = datetime(2023, 1, 1, tzinfo=UTC)


def _merchants(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        zh, en = rng.choice(REGIONS)
        name = (
            f"{zh}{rng.choice(FIRMS)}{rng.choice(FIRMS)}数据科技有限公司"
            if rng.random() < 0.8
            else f"{en} {rng.choice(('Data', 'Analytics', 'Insight'))} Ltd {i}"
        )
        out.append((f"org-{i:05d}", name))
    return out


def _price(rng: random.Random) -> int:
    if rng.random() < 0.1:
        return 0
    return int(round(10 ** rng.uniform(3, 7.7), -2))  # ¥10 to about ¥500,000, in fen


def _listing(rng: random.Random, merchants: list[tuple[str, str]]) -> ListingFacts:
    industry, category, zh_subj, en_subj, zh_tags, en_tags, fields = rng.choice(SUBJECTS)
    kind = rng.choices(("dataset", "api", "compute"), (6, 3, 1))[0]
    zh_region, en_region = rng.choice(REGIONS)
    freq, zh_freq = rng.choice(FREQUENCIES)
    start = rng.randint(2010, 2023)
    years = f"{start}-{rng.randint(start, 2026)}"
    scen = rng.sample(SCENARIOS, rng.randint(1, 3))
    zh = rng.random() < 0.7
    if zh:
        title = f"{zh_region}{zh_subj}{rng.choice(SUFFIXES[kind][0])}"
        sentences = [
            f"本产品提供{zh_region}{zh_subj}，覆盖{years}年，{zh_freq}更新。",
            "数据来源于合作机构授权采集，经过清洗、脱敏和质量校验。",
            f"适用于{'、'.join(s[0] for s in scen)}等场景。",
            f"包含{len(fields)}个字段，支持按{fields[0][2]}查询。",
            "提供样例数据，可申请试用。",
        ]
        tags = (*zh_tags, zh_region, scen[0][0])
        coverage, meanings = f"{zh_region} {years}", [f[2] for f in fields]
    else:
        title = f"{en_region} {en_subj} {rng.choice(SUFFIXES[kind][1])}"
        sentences = [
            f"{en_subj.capitalize()} for {en_region}, {years}, updated {freq}.",
            "Collected from licensed partners, cleaned, de-identified and quality checked.",
            f"Used for {', '.join(s[1] for s in scen)}.",
            f"{len(fields)} fields; look up by {fields[0][3]}.",
            "A sample file is available for evaluation.",
        ]
        tags = (*en_tags, en_region, scen[0][1])
        coverage, meanings = f"{en_region} {years}", [f[3] for f in fields]
    summary = " ".join(sentences[: rng.randint(1, len(sentences))])
    chosen = rng.sample(range(len(fields)), rng.randint(1, len(fields)))
    price = _price(rng)
    listed = EPOCH + timedelta(seconds=rng.randint(0, 3 * 365 * 86400))
    org_id, merchant_name = rng.choice(merchants)
    return ListingFacts(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        org_id=org_id,
        merchant_name=merchant_name,
        kind=kind,
        title=title,
        summary=summary,
        fields=tuple(FieldFacts(fields[i][0], fields[i][1], meanings[i]) for i in sorted(chosen)),
        tags=tags,
        industry=industry,
        category=category,
        grade="important" if rng.random() < 0.2 else "general",
        sub_grade=rng.randint(1, 3),
        update_frequency=freq,
        coverage=coverage,
        scenarios=tuple(s[0] if zh else s[1] for s in scen),
        restrictions="",
        min_price_fen=price,
        max_price_fen=price * rng.choice((1, 2, 5)),
        currency="CNY",
        plan_models=("free",)
        if price == 0
        else (rng.choice(("fixed", "subscription", "metered")),),
        has_sample=rng.random() < 0.4,
        listed_at=listed,
        updated_at=listed + timedelta(days=rng.randint(0, 90)),
        language="zh" if zh else "en",
    )


def generate_listings(n: int, seed: int = 20261) -> list[ListingFacts]:
    """``n`` listings, the same for the same seed (merchants: one per 50 listings)."""
    rng = random.Random(seed)
    merchants = _merchants(rng, max(1, n // 50))
    return [_listing(rng, merchants) for _ in range(n)]


def _words(rng: random.Random) -> str:
    """One to three query words: subjects, tags, field meanings, regions; zh, en or both."""
    _, _, zh_subj, en_subj, zh_tags, en_tags, fields = rng.choice(SUBJECTS)
    zh_region, en_region = rng.choice(REGIONS)
    zh_pool = [zh_subj[:4], zh_subj[-4:], *zh_tags, zh_region, rng.choice(fields)[2]]
    en_pool = [en_subj.split()[-1], *en_tags, en_region, rng.choice(fields)[3].split()[-1]]
    lang = rng.choices(("zh", "en", "mixed"), (6, 3, 1))[0]
    pool = zh_pool if lang == "zh" else en_pool if lang == "en" else zh_pool[:3] + en_pool[:2]
    words = rng.sample(pool, rng.randint(1, min(3, len(pool))))
    if rng.random() < 0.02:
        words = ["量子纠缠"] if lang == "zh" else ["zebra"]  # nothing matches
    sep = "" if lang == "zh" and rng.random() < 0.5 else " "  # 上海公交 or 上海 公交
    return sep.join(words)


def generate_queries(n: int, seed: int = 20262) -> list[SearchQuery]:
    """``n`` buyer queries: mostly text, some browsing; a third filtered; half with facets."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = "" if rng.random() < 0.05 else _words(rng)
        filters: dict[str, object] = {}
        if rng.random() < 0.33:
            pick = rng.choice(("kind", "industry", "price", "sample", "two"))
            if pick in ("kind", "two"):
                filters["kinds"] = (rng.choice(("dataset", "api", "compute")),)
            if pick in ("industry", "two"):
                filters["industries"] = (rng.choice(SUBJECTS)[0],)
            if pick == "price":
                filters["price_max_fen"] = rng.choice((100_000, 1_000_000, 10_000_000))
            if pick == "sample":
                filters["has_sample"] = True
        sort = rng.choices(("relevance", "newest", "price_asc", "title"), (85, 7, 5, 3))[0]
        offset = rng.choices((0, 20, 40), (85, 10, 5))[0]
        out.append(
            SearchQuery(
                text=text,
                sort=sort,
                offset=offset,
                limit=20,
                facets=rng.random() < 0.5,
                **filters,
            )
        )
    return out
