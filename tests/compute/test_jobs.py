"""Compute jobs over real HTTP on both stores, against the demo world's two compute
nodes (served signed, as ``databourse node serve`` serves them): DP SQL with a budget
that runs out, refusals recorded, PSI between the nodes, federated training, cancelling,
metering, and the ledger's account of it all."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from sqlalchemy import select

from databourse.catalog.models import Product
from databourse.compute.models import Node
from databourse.ledger import audit
from databourse.ledger.models import LedgerEntry
from databourse.market.models import Contract
from tests.conftest import Exchange
from tests.market import world
from tests.market.world import key, ok

PER_JOB = "按次计费 per job"
COUNT_BY_PROVINCE = "SELECT province, COUNT(*) AS n FROM subscribers GROUP BY province"
LOGISTIC = {
    "model": "logistic",
    "features": ["age", "income_k", "tenure_months", "risk_score", "debt_ratio"],
    "label": "defaulted",
    "rounds": 5,
    "local_epochs": 2,
    "learning_rate": 0.5,
    "l2": 0.001,
    "seed": 7,
    "test_fraction": 0.25,
}


def refused(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["type"] == f"urn:databourse:problem:{slug}", body
    return body


def product(ex: Exchange, words: str) -> str:
    with ex.ctx.reads() as s:
        pid = s.scalar(
            select(Product.id).where(
                Product.org_id == ex.world["merchant_b"], Product.title.contains(words)
            )
        )
    assert pid is not None
    return pid


def demo_contract(ex: Exchange, words: str) -> str:
    with ex.ctx.reads() as s:
        cid = s.scalar(
            select(Contract.id).where(
                Contract.buyer_org_id == ex.world["buyer_a"],
                Contract.product_id == product(ex, words),
            )
        )
    assert cid is not None
    return cid


def node_id(ex: Exchange, name: str) -> str:
    with ex.ctx.reads() as s:
        nid = s.scalar(select(Node.id).where(Node.name == name))
    assert nid is not None
    return nid


def node_file(ex: Exchange, node: str, dataset: str) -> Any:
    return pacsv.read_csv(ex.ctx.settings.data_dir / "demo-nodes" / node / f"{dataset}.csv")


def mobiles(ex: Exchange, node: str, dataset: str) -> set[str]:
    """The mobile numbers a demo node holds, as written."""
    path = ex.ctx.settings.data_dir / "demo-nodes" / node / f"{dataset}.csv"
    options = pacsv.ConvertOptions(column_types={"mobile": pa.string()})
    return set(pacsv.read_csv(path, convert_options=options).column("mobile").to_pylist())


def fresh_contract(ex: Exchange, words: str, purpose: str, **output: Any) -> tuple[Any, str]:
    """A fresh buyer's active contract on a demo compute product, its policy narrowed."""
    buyer = world.party(ex, ["buyer"])
    policy = {
        "purposes": [purpose],
        "term_days": 30,
        "territories": ["CN"],
        "onward": {"mode": "prohibited"},
        "duties": ["attribution", "delete_at_term_end"],
    }
    if output:
        policy["output"] = {"aggregates_only": True, **output}
    body = {
        "product_id": product(ex, words),
        "purpose": purpose,
        "plan": PER_JOB,
        "term_days": 30,
        "billing": "prepaid",
        "policy": policy,
    }
    with world.client(ex, buyer) as b, ex.as_demo("merchant_b") as m:
        c = ok(b.post("/contracts", json=body, headers=key()), 201)
        ok(b.post(f"/contracts/{c['id']}/sign"))
        assert ok(m.post(f"/contracts/{c['id']}/sign"))["status"] == "active"
    return buyer, str(c["id"])


def sql(client: httpx.Client, cid: str, query: str, epsilon: float = 0.1) -> httpx.Response:
    body = {"kind": "sql", "sql": query, "epsilon": epsilon}
    return client.post(f"/contracts/{cid}/jobs", params={"wait": 30}, json=body)


# DP SQL -------------------------------------------------------------------------------------


def test_the_buyer_reads_the_schema_but_no_row(exchange: Exchange) -> None:
    with exchange.as_demo("buyer_a") as b:
        svc = ok(b.get(f"/products/{product(exchange, '差分隐私')}/compute"))
    assert svc["kind"] == "sql"
    schema = svc["spec"]["schema"]
    assert schema["privacy_unit"] == "person_id"
    columns = {c["name"]: c for c in schema["tables"][0]["columns"]}
    assert columns["age"]["lower"] == 18 and columns["age"]["upper"] == 80
    assert "上海" in columns["province"]["categories"]
    text = json.dumps(svc, ensure_ascii=False)
    assert not any(m in text for m in mobiles(exchange, "huadong-node", "subscribers"))


def test_a_count_by_province_is_noisy_close_and_charged(exchange: Exchange) -> None:
    buyer, cid = fresh_contract(exchange, "差分隐私", "statistics", epsilon_micro=1_000_000)
    with world.client(exchange, buyer) as b:
        job = ok(sql(b, cid, COUNT_BY_PROVINCE, epsilon=0.5), 201)
        assert job["state"] == "succeeded", job["problem"]
        budget = ok(b.get(f"/contracts/{cid}/budget"))
    result = job["result"]
    assert result["mode"] == "dp" and result["columns"] == ["province", "n"]
    truth = node_file(exchange, "huadong-node", "subscribers").column("province")
    counts = {v["values"]: v["counts"] for v in pc.value_counts(truth).to_pylist()}
    got = {row[0]: row[1] for row in result["rows"]}
    assert set(got) == set(counts)  # every declared province, none other
    # Laplace noise of scale 1/ε₁ per count: 95 % within the reported half-width
    half = result["error"]["n"]
    assert 0 < half < 50
    assert all(abs(got[p] - counts[p]) <= 3 * half for p in counts)
    assert sum(got.values()) != sum(counts.values()) or any(got[p] != counts[p] for p in counts)
    assert job["epsilon"] == 0.5 and len(job["result_sha256"]) == 64
    assert budget == [
        {
            "contract_id": cid,
            "privacy_unit": "person_id",
            "epsilon": 1.0,
            "delta": 0.0,
            "spent_epsilon": 0.5,
            "spent_delta": 0.0,
            "remaining_epsilon": 0.5,
            "remaining_delta": 0.0,
        }
    ]


def test_the_budget_goes_down_until_it_refuses_with_what_remains(exchange: Exchange) -> None:
    buyer, cid = fresh_contract(exchange, "差分隐私", "statistics", epsilon_micro=300_000)
    with world.client(exchange, buyer) as b:
        for _ in range(3):
            assert ok(sql(b, cid, COUNT_BY_PROVINCE), 201)["state"] == "succeeded"
        body = refused(sql(b, cid, COUNT_BY_PROVINCE), 409, "privacy-budget-exhausted")
        assert body["remaining"]["epsilon"] == 0 or body["remaining"].get("epsilon_micro") == 0
        jobs = ok(b.get(f"/contracts/{cid}/jobs"))
        usage = ok(b.get(f"/contracts/{cid}/usage"))
    assert [j["state"] for j in jobs] == ["refused", "succeeded", "succeeded", "succeeded"]
    assert jobs[0]["id"] == body["job_id"] and "privacy-budget" in jobs[0]["problem"]["type"]
    assert usage["call"]["quantity"] == 3  # refused jobs are not metered
    assert usage["epsilon_micro"]["quantity"] == 300_000


def test_parallel_queries_never_overspend(exchange: Exchange) -> None:
    buyer, cid = fresh_contract(exchange, "差分隐私", "statistics", epsilon_micro=50_000)

    def one(_: int) -> int:
        with world.client(exchange, buyer) as b:
            body = {"kind": "sql", "sql": COUNT_BY_PROVINCE, "epsilon": 0.01}
            return b.post(f"/contracts/{cid}/jobs", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(12)))
    assert sorted(codes) == [201] * 5 + [409] * 7
    with world.client(exchange, buyer) as b:
        assert ok(b.get(f"/contracts/{cid}/budget"))[0]["remaining_epsilon"] == 0


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SELECT person_id, age FROM subscribers", "raw"),
        ("SELECT * FROM subscribers", ""),
        ("SELECT mobile, COUNT(*) FROM subscribers GROUP BY mobile", ""),
        ("DROP TABLE subscribers", ""),
    ],
)
def test_what_cannot_be_private_is_refused_and_nothing_is_charged(
    exchange: Exchange, query: str, reason: str
) -> None:
    cid = demo_contract(exchange, "差分隐私")
    with exchange.as_demo("buyer_a") as b:
        before = ok(b.get(f"/contracts/{cid}/budget"))[0]["spent_epsilon"]
        body = refused(sql(b, cid, query), 422, "query-not-private")
        assert reason in body["reason"]
        after = ok(b.get(f"/contracts/{cid}/budget"))[0]["spent_epsilon"]
        job = ok(b.get(f"/jobs/{body['job_id']}"))
    assert after == before
    assert job["state"] == "refused" and job["result"] is None


def test_bad_epsilon_is_refused(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "差分隐私")
    with exchange.as_demo("buyer_a") as b:
        for eps in (-1, 0):
            refused(sql(b, cid, COUNT_BY_PROVINCE, epsilon=eps), 422, "invalid-privacy-parameter")
        r = b.post(f"/contracts/{cid}/jobs", json={"kind": "sql", "sql": COUNT_BY_PROVINCE,
                                                    "epsilon": "NaN"})  # fmt: skip
        assert r.status_code == 422


def test_only_the_buyer_submits_and_reads(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "差分隐私")
    with exchange.as_demo("buyer_b") as other:
        refused(sql(other, cid, COUNT_BY_PROVINCE), 404, "not-found")
    with exchange.as_demo("merchant_b") as m:  # the merchant sees the jobs, cannot submit
        assert isinstance(ok(m.get(f"/contracts/{cid}/jobs")), list)
        assert sql(m, cid, COUNT_BY_PROVINCE).status_code in (403, 404)
    with exchange.client() as anonymous:
        assert anonymous.get(f"/contracts/{cid}/jobs").status_code == 401


def test_a_purpose_the_contract_does_not_license_is_refused(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "差分隐私")
    with exchange.as_demo("buyer_a") as b:
        body = {"kind": "sql", "sql": COUNT_BY_PROVINCE, "epsilon": 0.1, "purpose": "marketing"}
        r = refused(b.post(f"/contracts/{cid}/jobs", json=body), 403, "usage-refused")
    assert r["constraint"] == "purpose"


# PSI ----------------------------------------------------------------------------------------


def psi_job(ex: Exchange, b: httpx.Client, cid: str, reveal: str) -> dict[str, Any]:
    """Nanfeng's customers' mobile numbers against the merchant's subscribers'."""
    body = {
        "kind": "psi",
        "node_id": node_id(ex, "nanfeng-node"),
        "dataset": "customers",
        "column": "mobile",
        "reveal": reveal,
    }
    job: dict[str, Any] = ok(b.post(f"/contracts/{cid}/jobs", params={"wait": 60}, json=body), 201)
    return job


def test_psi_cardinality_between_two_nodes(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "隐私求交")
    with exchange.as_demo("buyer_a") as b:
        job = psi_job(exchange, b, cid, "cardinality")
    assert job["state"] == "succeeded", job["problem"]
    mine = mobiles(exchange, "nanfeng-node", "customers")
    theirs = mobiles(exchange, "huadong-node", "subscribers")
    assert job["result"]["cardinality"] == len(mine & theirs) == 600
    text = json.dumps(job)
    assert not any(m in text for m in list(mine)[:200] + list(theirs)[:200])
    assert [t["from"] for t in job["result"]["transcript"]] == ["nanfeng-node", "huadong-node"]


def test_psi_intersection_stays_on_the_buyers_node(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "隐私求交")
    with exchange.as_demo("buyer_a") as b:
        job = psi_job(exchange, b, cid, "intersection")
    assert job["state"] == "succeeded", job["problem"]
    out = exchange.ctx.settings.data_dir / "demo-nodes" / "nanfeng-node" / "outputs"
    written = (out / job["result"]["output"]).read_text().split()
    mine = mobiles(exchange, "nanfeng-node", "customers")
    theirs = mobiles(exchange, "huadong-node", "subscribers")
    assert sorted(written) == sorted(mine & theirs)
    assert job["result"]["intersection_size"] == 600
    assert not any(m in json.dumps(job) for m in written)


def test_psi_refuses_a_node_that_is_not_the_buyers(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "隐私求交")
    body = {
        "kind": "psi",
        "node_id": node_id(exchange, "huadong-node"),
        "dataset": "subscribers",
        "column": "mobile",
    }
    with exchange.as_demo("buyer_a") as b:
        refused(b.post(f"/contracts/{cid}/jobs", json=body), 422, "validation")


# Federated learning --------------------------------------------------------------------------


def test_federated_training_across_the_two_nodes(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "联邦")
    body = {
        "kind": "fl",
        "spec": LOGISTIC,
        "participant": {"node_id": node_id(exchange, "nanfeng-node"), "dataset": "loans_b"},
    }
    with exchange.as_demo("buyer_a") as b:
        before = ok(b.get(f"/contracts/{cid}/usage"))
        job = ok(b.post(f"/contracts/{cid}/jobs", params={"wait": 60}, json=body), 201)
        after = ok(b.get(f"/contracts/{cid}/usage"))
    assert job["state"] == "succeeded", job["problem"]
    r = job["result"]
    assert r["rounds_completed"] == 5 and r["nodes"] == ["huadong-node", "nanfeng-node"]
    assert 0.6 < r["metrics"]["auc_pooled"] <= 1.0
    assert set(r["model"]["coefficients"]) == set(LOGISTIC["features"])
    assert [p["train_rows"] for p in r["participants"]] == [2250, 1500]

    def used(u: dict[str, Any], metric: str) -> int:
        return int(u.get(metric, {}).get("quantity", 0))

    assert used(after, "call") - used(before, "call") == 1 + 5 * 2  # rounds × participants
    assert used(after, "row") - used(before, "row") == 2250 + 1500


def test_training_needs_two_holders_and_offered_features(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "联邦")
    with exchange.as_demo("buyer_a") as b:
        alone = {"kind": "fl", "spec": LOGISTIC}
        refused(b.post(f"/contracts/{cid}/jobs", json=alone), 422, "invalid-training-spec")
        extra = {
            "kind": "fl",
            "spec": {**LOGISTIC, "features": [*LOGISTIC["features"], "mobile"]},
            "participant": {"node_id": node_id(exchange, "nanfeng-node"), "dataset": "loans_b"},
        }
        refused(b.post(f"/contracts/{cid}/jobs", json=extra), 422, "invalid-training-spec")


def test_a_running_training_can_be_cancelled(exchange: Exchange) -> None:
    cid = demo_contract(exchange, "联邦")
    body = {
        "kind": "fl",
        "spec": {**LOGISTIC, "rounds": 100, "local_epochs": 20},
        "participant": {"node_id": node_id(exchange, "nanfeng-node"), "dataset": "loans_b"},
    }
    with exchange.as_demo("buyer_a") as b:
        job = ok(b.post(f"/contracts/{cid}/jobs", json=body), 201)
        ok(b.post(f"/jobs/{job['id']}/cancel"))
        done = ok(b.get(f"/jobs/{job['id']}", params={"wait": 60}))
        again = b.post(f"/jobs/{job['id']}/cancel")
    assert done["state"] == "cancelled" and done["result"] is None
    refused(again, 409, "invalid-transition")


# The ledger ---------------------------------------------------------------------------------


def test_jobs_are_on_the_ledger_and_verify(exchange: Exchange) -> None:
    buyer, cid = fresh_contract(exchange, "差分隐私", "statistics", epsilon_micro=100_000)
    with world.client(exchange, buyer) as b:
        job = ok(sql(b, cid, COUNT_BY_PROVINCE), 201)
    with exchange.ctx.reads() as s:
        kinds = s.scalars(
            select(LedgerEntry.kind)
            .where(LedgerEntry.subject == job["id"])
            .order_by(LedgerEntry.seq)
        ).all()
        report = audit.verify(s)
    assert kinds == ["job.submitted", "job.authorised", "job.started", "job.succeeded"]
    assert not [f for f in report.findings if f.subject == job["id"]]


# The embedded node, over data the exchange hosts, in threshold mode ----------------------------


def test_threshold_mode_on_hosted_data_suppresses_small_groups(exchange: Exchange) -> None:
    import io

    from databourse.assets import uploads
    from databourse.catalog import services as catalog
    from databourse.uow import Actor

    merchant = world.party(exchange, ["merchant"])
    pid = world.listed_product(
        exchange.ctx,
        merchant,
        "compute",
        "Hosted people statistics",
        ["result"],
        [{"name": PER_JOB, "model": "metered", "unit": "call",
          "tiers": [{"up_to": None, "price_per_1000_fen": 100_000}]}],
        {"purposes": ["statistics"], "term_days": 60, "territories": ["CN"],
         "onward": {"mode": "prohibited"},
         "output": {"aggregates_only": True, "min_group_size": 20}},
        ["aggregate"],
    )  # fmt: skip
    with exchange.ctx.reads() as s:
        (asset_id,) = catalog.asset_ids_of(s, pid)
    sizes = {"east": 100, "west": 60, "north": 25, "south": 5}
    lines = ["pid,region,income"] + [
        f"p{region}{i},{region},{(i * 7) % 101}" for region, n in sizes.items() for i in range(n)
    ]
    me = merchant.principal
    uploads.upload(
        exchange.ctx.writes,
        Actor(me.kind, me.id, me.org_id),
        me,
        exchange.ctx.store,
        asset_id,
        filename="people.csv",
        source=io.BytesIO(("\n".join(lines) + "\n").encode()),
    )
    schema = {
        "privacy_unit": "pid",
        "tables": [
            {
                "name": "people",
                "columns": [
                    {"name": "pid", "type": "string"},
                    {"name": "region", "type": "string", "categories": list(sizes)},
                    {"name": "income", "type": "integer", "lower": 0, "upper": 100},
                ],
            }
        ],
    }
    with world.client(exchange, merchant) as m:
        svc = {"kind": "sql", "node_id": None, "schema": schema,
               "tables": {"people": f"asset:{asset_id}"}}  # fmt: skip
        assert ok(m.put(f"/products/{pid}/compute", json=svc))["node_id"] is None
        wrong = {**svc, "tables": {"people": "asset:ast_not_this_products"}}
        refused(m.put(f"/products/{pid}/compute", json=wrong), 422, "validation")
    buyer = world.party(exchange, ["buyer"])
    with world.client(exchange, buyer) as b, world.client(exchange, merchant) as m:
        c = ok(b.post("/contracts", json={"product_id": pid, "purpose": "statistics",
                                          "plan": PER_JOB, "term_days": 60,
                                          "billing": "prepaid"}, headers=key()), 201)  # fmt: skip
        ok(b.post(f"/contracts/{c['id']}/sign"))
        ok(m.post(f"/contracts/{c['id']}/sign"))
        q = "SELECT region, COUNT(*) AS n, SUM(income) AS total FROM people GROUP BY region"
        job = ok(b.post(f"/contracts/{c['id']}/jobs", params={"wait": 30},
                        json={"kind": "sql", "sql": q}), 201)  # fmt: skip
        raw = b.post(
            f"/contracts/{c['id']}/jobs", json={"kind": "sql", "sql": "SELECT * FROM people"}
        )
    assert job["state"] == "succeeded", job["problem"]
    r = job["result"]
    assert r["mode"] == "threshold" and r["node"] == "exchange" and job["epsilon"] == 0
    got = {row[0]: row[1:] for row in r["rows"]}
    expected = {
        region: [n, sum((i * 7) % 101 for i in range(n))] for region, n in sizes.items() if n >= 20
    }
    assert got == expected  # exact, and the 5-person group is not there
    assert r["suppressed_groups"] == 1
    refused(raw, 422, "query-not-private")


def test_the_merchant_sees_a_job_but_not_its_result(exchange: Exchange) -> None:
    buyer, cid = fresh_contract(exchange, "差分隐私", "statistics", epsilon_micro=100_000)
    with world.client(exchange, buyer) as b:
        job = ok(sql(b, cid, COUNT_BY_PROVINCE), 201)
    assert job["result"] is not None
    with exchange.as_demo("merchant_b") as m:
        seen = ok(m.get(f"/jobs/{job['id']}"))
        listed = ok(m.get(f"/contracts/{cid}/jobs"))
    assert seen["state"] == "succeeded" and seen["result_sha256"] == job["result_sha256"]
    assert seen["result"] is None and listed[0]["result"] is None
    with exchange.as_demo("regulator") as r:
        assert ok(r.get(f"/jobs/{job['id']}"))["result"] == job["result"]


def test_max_calls_holds_under_parallel_submissions(exchange: Exchange) -> None:
    buyer = world.party(exchange, ["buyer"])
    body = {
        "product_id": product(exchange, "差分隐私"),
        "purpose": "statistics",
        "plan": PER_JOB,
        "term_days": 30,
        "billing": "prepaid",
        "policy": {
            "purposes": ["statistics"],
            "term_days": 30,
            "territories": ["CN"],
            "onward": {"mode": "prohibited"},
            "duties": ["attribution", "delete_at_term_end"],
            "count": {"max_calls": 2},
            "output": {"aggregates_only": True, "epsilon_micro": 1_000_000},
        },
    }
    with world.client(exchange, buyer) as b, exchange.as_demo("merchant_b") as m:
        c = ok(b.post("/contracts", json=body, headers=key()), 201)
        ok(b.post(f"/contracts/{c['id']}/sign"))
        ok(m.post(f"/contracts/{c['id']}/sign"))

    def one(_: int) -> int:
        with world.client(exchange, buyer) as b:
            q = {"kind": "sql", "sql": COUNT_BY_PROVINCE, "epsilon": 0.01}
            return b.post(f"/contracts/{c['id']}/jobs", json=q).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(one, range(8)))
    assert codes == [201, 201] + [403] * 6


def test_a_job_authorised_under_an_earlier_declaration_does_not_run(exchange: Exchange) -> None:
    from databourse.auth.services import principal_for_email
    from databourse.compute import jobs, services
    from databourse.compute.models import ComputeService, Job
    from databourse.compute.schemas import SqlJobIn, SqlService
    from databourse.uow import Actor, UnitOfWork

    buyer, cid = fresh_contract(exchange, "差分隐私", "statistics", epsilon_micro=100_000)
    ctx = exchange.ctx
    me = buyer.principal
    with UnitOfWork(ctx.writes, Actor(me.kind, me.id, me.org_id)) as uow:
        body = SqlJobIn(kind="sql", sql=COUNT_BY_PROVINCE, epsilon=0.1)
        job = jobs.submit(uow, me, cid, body)
        uow.commit()
    pid = product(exchange, "差分隐私")
    with ctx.reads() as s:
        merchant = principal_for_email(s, "merchant-b@databourse.example")
        svc = s.get(ComputeService, pid)
        assert svc is not None
        again = SqlService.model_validate(
            {"kind": "sql", "node_id": svc.node_id, "schema": svc.spec["schema"],
             "tables": svc.spec["tables"]}
        )  # fmt: skip
    with UnitOfWork(ctx.writes, Actor(merchant.kind, merchant.id, merchant.org_id)) as uow:
        services.declare(uow, merchant, pid, again)
        uow.commit()
    ctx.compute.runner.run(job.id)
    with ctx.reads() as s:
        done = s.get(Job, job.id)
        assert done is not None
        assert done.state == "failed" and "declared again" in done.problem["detail"]


def test_seeding_again_at_another_address_moves_the_demo_nodes(exchange: Exchange) -> None:
    from databourse import demo
    from databourse.demo_compute import seed_compute

    emails = {d.key: d.email for d in demo.DEMO_ORGS}
    settings = exchange.ctx.settings
    original = settings.public_url
    try:
        settings.public_url = "http://127.0.0.1:9"
        assert seed_compute(exchange.ctx, emails) == []  # nothing new is created
        with exchange.ctx.reads() as s:
            moved = s.scalar(select(Node.url).where(Node.name == "huadong-node"))
        assert moved == "http://127.0.0.1:9/demo/nodes/huadong-node"
    finally:
        settings.public_url = original
        seed_compute(exchange.ctx, emails)
    with exchange.ctx.reads() as s:
        back = s.scalar(select(Node.url).where(Node.name == "huadong-node"))
        kinds = s.scalars(
            select(LedgerEntry.kind).where(LedgerEntry.subject == node_id(exchange, "huadong-node"))
        ).all()
    assert back == f"{original}/demo/nodes/huadong-node"
    assert kinds == ["node.registered", "node.moved", "node.moved"]
    cid = demo_contract(exchange, "隐私求交")
    with exchange.as_demo("buyer_a") as b:  # and the node answers at its address again
        assert psi_job(exchange, b, cid, "cardinality")["state"] == "succeeded"
