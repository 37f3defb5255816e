"""The demo world's privacy computing (idempotent).

Two compute nodes, each holding its organisation's data on its own disk (under the data
directory's ``demo-nodes/``): the credit-data merchant's ``huadong-node`` (subscriber
profiles and one half of a loan book) and the consumer-finance buyer's ``nanfeng-node``
(its customers' mobile numbers and the other half). For the demo the exchange process
serves both at ``/demo/nodes/<name>`` when ``DATABOURSE_DEMO_NODES`` is set (``make run``
sets it); each is the same node app ``databourse node serve`` runs, with its own key,
speaking signed HTTP to the exchange.

The merchant lists three compute products on its node — DP SQL over subscriber profiles
(ε 1.0 per contract), PSI on mobile numbers, a federated risk model — and Nanfeng holds a
contract for each.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from databourse.catalog.vocab import Purpose
from databourse.compute import schemas as cs
from databourse.compute import services as compute
from databourse.compute.exchange import exchange_public_key
from databourse.compute.models import ComputeService, Node
from databourse.compute.node import FileDatasets, NodeRuntime
from databourse.compute.node_app import create_node_app
from databourse.delivery import keys
from databourse.demo_supply import (
    TELECOM_LICENSED,
    Offer,
    _fields,
    _policy,
    principal_of,
    seed_offers,
)
from databourse.demo_trades import _actor, _product, metered_contract
from databourse.market.models import Contract
from databourse.settings import Settings
from databourse.uow import UnitOfWork

if TYPE_CHECKING:
    from fastapi import FastAPI

    from databourse.api.context import AppContext

PREFIX = "/demo/nodes"
PROVINCES = ("上海", "浙江", "江苏", "安徽", "福建", "江西")
FEATURES = ["age", "income_k", "tenure_months", "risk_score", "debt_ratio"]
NODES = {
    "huadong-node": ("merchant_b", ("subscribers", "loans_a")),
    "nanfeng-node": ("buyer_a", ("customers", "loans_b")),
}
PER_QUERY = "按次计费 per job"


def node_seed(custody_secret: bytes, name: str) -> bytes:
    """A demo node's key seed (a real node makes its own with ``databourse node init``)."""
    return keys.derive(custody_secret, "demo-compute-node", name)


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue().encode()


def _mobiles(rng: random.Random, n: int) -> list[str]:
    seen: set[str] = set()
    while len(seen) < n:
        seen.add(f"1{rng.choice('3589')}{rng.randrange(10**9):09d}")
    return sorted(seen)


def _loans(seed: int, n: int) -> list[list[Any]]:
    """A synthetic loan book: default odds rise with debt and risk score, fall with
    income and tenure."""
    g = np.random.default_rng(seed)
    age = g.integers(20, 66, n)
    income = np.round(g.lognormal(2.3, 0.45, n), 1)
    tenure = g.integers(1, 241, n)
    risk = np.clip(np.round(g.normal(45, 18, n)), 0, 100).astype(int)
    debt = np.round(np.clip(g.beta(2, 4, n), 0, 1), 3)
    z = -1.2 + 3.5 * (debt - 0.33) + 0.04 * (risk - 45) - 0.12 * (income - 10) - 0.004 * tenure
    y = (g.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return [
        [int(a), float(i), int(t), int(r), float(d), int(v)]
        for a, i, t, r, d, v in zip(age, income, tenure, risk, debt, y, strict=True)
    ]


def node_files(data_dir: Path) -> dict[str, dict[str, Path]]:
    """Write the demo nodes' data (once; deterministic) and return name -> dataset -> path."""
    rng = random.Random(8)
    mobiles = _mobiles(rng, 6000)
    subscribers = mobiles[:5000]
    customers = rng.sample(subscribers, 600) + mobiles[5000:6000] + _mobiles(rng, 400)
    customers = sorted(set(customers))
    sub_rows = [
        [
            f"p{i:05d}",
            m,
            PROVINCES[rng.randrange(len(PROVINCES))],
            rng.randint(18, 80),
            rng.randint(0, 240),
            rng.randint(0, 100),
        ]
        for i, m in enumerate(subscribers)
    ]
    loan_header = [*FEATURES, "defaulted"]
    content = {
        "huadong-node": {
            "subscribers": _csv(
                ["person_id", "mobile", "province", "age", "tenure_months", "risk_score"],
                sub_rows,
            ),
            "loans_a": _csv(loan_header, _loans(11, 3000)),
        },
        "nanfeng-node": {
            "customers": _csv(
                ["customer_id", "mobile"], [[f"c{i:05d}", m] for i, m in enumerate(customers)]
            ),
            "loans_b": _csv(loan_header, _loans(12, 2000)),
        },
    }
    out: dict[str, dict[str, Path]] = {}
    for name, files in content.items():
        home = data_dir / "demo-nodes" / name
        home.mkdir(parents=True, exist_ok=True)
        out[name] = {}
        for dataset, data in files.items():
            path = home / f"{dataset}.csv"
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
            out[name][dataset] = path
    return out


def runtimes(settings: Settings) -> dict[str, NodeRuntime]:
    files = node_files(settings.data_dir)
    return {
        name: NodeRuntime(
            name,
            FileDatasets(paths),
            outputs=settings.data_dir / "demo-nodes" / name / "outputs",
            psi_workers=1,
        )
        for name, paths in files.items()
    }


def mount_nodes(app: FastAPI, settings: Settings, custody_secret: bytes) -> None:
    """Serve the demo nodes inside the exchange's process (demo only)."""
    key = exchange_public_key(custody_secret)
    for name, runtime in runtimes(settings).items():
        app.mount(
            f"{PREFIX}/{name}", create_node_app(runtime, key, node_seed(custody_secret, name))
        )


SUBSCRIBER_SCHEMA: dict[str, Any] = {
    "privacy_unit": "person_id",
    "max_contributions": 1,
    "tables": [
        {
            "name": "subscribers",
            "columns": [
                {"name": "person_id", "type": "string"},
                {"name": "province", "type": "string", "categories": list(PROVINCES)},
                {"name": "age", "type": "integer", "lower": 18, "upper": 80},
                {"name": "tenure_months", "type": "integer", "lower": 0, "upper": 240},
                {"name": "risk_score", "type": "integer", "lower": 0, "upper": 100},
            ],
        }
    ],
}


def _offer(
    title: str,
    product_title: str,
    content: str,
    tags: list[str],
    sample: tuple[list[str], list[str]],
    **policy: Any,
) -> Offer:
    return Offer(
        "merchant_b",
        {
            "title": title,
            "description": "Held on the merchant's own compute node; rows never leave it.",
            **TELECOM_LICENSED,
        },
        {
            "kind": "compute",
            "title": product_title,
            "description": {
                "content": content,
                "fields": _fields(("result", "string", "aggregate results only")),
                "coverage": "Six East China provinces",
                "update_frequency": "monthly",
                "scenarios": ["信贷风控 credit risk control", "统计分析 statistics"],
                "restrictions": "Results only; raw rows never leave the merchant's node.",
            },
            "industry": "finance",
            "category": "privacy computing",
            "tags": [*tags, "隐私计算", "privacy computing"],
            "plans": [
                {
                    "name": PER_QUERY,
                    "model": "metered",
                    "unit": "call",
                    "tiers": [{"up_to": None, "price_per_1000_fen": 200_000}],
                }
            ],
            "policy": _policy(**policy),
            "sample": {"columns": sample[0], "rows": [sample[1]]},
        },
        None,
    )


OFFERS = (
    _offer(
        "手机用户画像 Subscriber profiles",
        "用户画像差分隐私查询 Subscriber profiles, DP SQL",
        "对手机用户画像做差分隐私SQL统计(COUNT/SUM/AVG)，每份合约隐私预算ε=1。"
        "Differentially private SQL over subscriber profiles; ε 1.0 per contract.",
        ["差分隐私", "DP SQL"],
        (["province", "n (±30)"], ["上海", "838"]),
        purposes=["statistics", "research", "risk_control"],
        output={"aggregates_only": True, "epsilon_micro": 1_000_000},
    ),
    _offer(
        "手机号码库 Mobile number registry",
        "手机号隐私求交 Mobile-number PSI",
        "与您的客户手机号做隐私集合求交，只得交集数量或交集本身，双方原始号码不出域。"
        "Private set intersection on mobile numbers: the count, or the intersection to you.",
        ["隐私求交", "PSI"],
        (["cardinality"], ["600"]),
        purposes=["risk_control", "credit_assessment"],
    ),
    _offer(
        "消费贷违约样本 Consumer loan outcomes",
        "联邦风控建模 Federated default-risk model",
        "在双方节点上横向联邦训练违约预测模型(逻辑回归)，只交换模型参数。"
        "Horizontal federated training of a default model; only parameters move.",
        ["联邦学习", "federated learning"],
        (["round", "auc"], ["5", "0.78"]),
        purposes=["risk_control", "credit_assessment"],
    ),
)


def _register_nodes(ctx: AppContext, emails: dict[str, str]) -> dict[str, str]:
    """Register each demo node for its organisation; name -> node id."""
    from databourse.compute.nodeauth import private_key, public_text

    base = (ctx.settings.public_url or "http://127.0.0.1:8000").rstrip("/")
    ids: dict[str, str] = {}
    for name, runtime in runtimes(ctx.settings).items():
        owner = principal_of(ctx.writes, emails[NODES[name][0]])
        url = f"{base}{PREFIX}/{name}"
        with ctx.reads() as s:
            found = s.scalar(select(Node).where(Node.org_id == owner.org_id, Node.name == name))
        if found is not None:
            ids[name] = found.id
            if found.url != url:  # the exchange is served elsewhere now (another port)
                with UnitOfWork(ctx.writes, _actor(owner)) as uow:
                    compute.move_node(uow, owner, found.id, url, runtime.info())
                    uow.commit()
            continue
        key = public_text(private_key(node_seed(ctx.custody_secret, name)))
        with UnitOfWork(ctx.writes, _actor(owner)) as uow:
            n = compute.register_node(
                uow,
                owner,
                cs.NodeIn(name=name, url=url, public_key=key),
                runtime.info(),  # the demo nodes are not served yet: asked in process
            )
            uow.commit()
        ids[name] = n.id
    return ids


def seed_compute(ctx: AppContext, emails: dict[str, str]) -> list[str]:
    """Nodes, compute products and services, and Nanfeng's contracts (idempotent)."""
    created = seed_offers(ctx.writes, ctx.store, emails, OFFERS)
    ids = _register_nodes(ctx, emails)
    merchant = principal_of(ctx.writes, emails["merchant_b"])
    buyer = principal_of(ctx.writes, emails["buyer_a"])
    huadong = ids["huadong-node"]
    declarations: list[tuple[str, Any]] = [
        (
            "差分隐私",
            cs.SqlService.model_validate(
                {"kind": "sql", "node_id": huadong, "schema": SUBSCRIBER_SCHEMA,
                 "tables": {"subscribers": "subscribers"}}
            ),
        ),
        (
            "隐私求交",
            cs.PsiService(kind="psi", node_id=huadong, dataset="subscribers", column="mobile",
                          reveal=["cardinality", "intersection"]),
        ),
        (
            "联邦",
            cs.FlService(kind="fl", participants=[cs.Participant(node_id=huadong,
                         dataset="loans_a")], features=FEATURES, label="defaulted",
                         models=["logistic"]),
        ),
    ]  # fmt: skip
    purposes = {"差分隐私": Purpose.statistics, "隐私求交": Purpose.risk_control,
                "联邦": Purpose.risk_control}  # fmt: skip
    for words, declaration in declarations:
        product_id = _product(ctx.writes, merchant.org_id, words)
        with ctx.reads() as s:
            declared = s.get(ComputeService, product_id) is not None
            has_contract = s.scalar(
                select(Contract.id).where(
                    Contract.product_id == product_id, Contract.buyer_org_id == buyer.org_id
                )
            )
        if not declared:
            with UnitOfWork(ctx.writes, _actor(merchant)) as uow:
                compute.declare(uow, merchant, product_id, declaration)
                uow.commit()
            created.append(f"compute service ({declaration.kind}) on huadong-node for {words}")
        if not has_contract:
            cid = metered_contract(
                ctx.writes, ctx.settings, ctx.custody_secret, (buyer, merchant), product_id,
                purposes[words], PER_QUERY, 365,
            )  # fmt: skip
            created.append(f"compute contract {cid} ({declaration.kind}) for Nanfeng, active")
    return created
