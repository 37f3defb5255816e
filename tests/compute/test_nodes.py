"""A real compute node: ``databourse node init`` and ``databourse node serve`` in their own
process, reached over signed HTTP. It answers only the exchange; every answer is signed;
and no answer of its API, to any step of any job, carries a row of its data."""

from __future__ import annotations

import csv
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from databourse.compute import nodeauth
from databourse.compute.models import Job
from databourse.compute.nodeclient import HttpNode, NodeFailed, NodeRefused
from tests.conftest import Exchange
from tests.market import world
from tests.market.world import key, ok

PROVINCES = ["east", "west", "north", "south"]
FEATURES = ["x1", "x2", "x3"]
SCHEMA = {
    "privacy_unit": "pid",
    "max_contributions": 1,
    "tables": [
        {
            "name": "people",
            "columns": [
                {"name": "pid", "type": "string"},
                {"name": "region", "type": "string", "categories": PROVINCES},
                {"name": "income", "type": "integer", "lower": 0, "upper": 100},
            ],
        }
    ],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


class RunningNode:
    def __init__(self, url: str, public_key: str, home: Path, rows: list[list[Any]]) -> None:
        self.url, self.public_key, self.home, self.rows = url, public_key, home, rows


def start_node(home: Path, exchange_key: str, name: str = "test-node") -> tuple[Any, RunningNode]:
    rng = random.Random(5)
    people = [[f"pid{i:05d}", rng.choice(PROVINCES), rng.randint(0, 100)] for i in range(800)]
    _write(home / "people.csv", ["pid", "region", "income"], people)
    ids = [[f"id-{rng.randrange(10**12):012d}"] for _ in range(300)] + [[r[0]] for r in people[:50]]
    _write(home / "ids.csv", ["id"], ids)
    train = []
    for _ in range(400):
        x = [rng.gauss(0, 1) for _ in FEATURES]
        y = int(x[0] - 0.5 * x[1] + rng.gauss(0, 0.5) > 0)
        train.append([round(v, 6) for v in x] + [y])
    _write(home / "train.csv", [*FEATURES, "y"], train)
    cli = [sys.executable, "-m", "databourse.cli"]
    made = subprocess.run(
        [*cli, "node", "init", str(home / "node"), "--name", name, "--exchange-key", exchange_key,
         "--dataset", f"people={home / 'people.csv'}", "--dataset", f"ids={home / 'ids.csv'}",
         "--dataset", f"train={home / 'train.csv'}"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    public = made.stdout.split("its public key:")[1].split()[0]
    assert oct((home / "node" / "node.key").stat().st_mode)[-3:] == "600"
    port = _free_port()
    proc = subprocess.Popen(
        [*cli, "node", "serve", "--config", str(home / "node" / "node.toml"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/node/v1/info", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the node did not start") from None
            time.sleep(0.1)
    return proc, RunningNode(url, public, home, people + ids + train)


@pytest.fixture(scope="module")
def node(exchange: Exchange, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    proc, running = start_node(tmp_path_factory.mktemp("node"), exchange.ctx.compute.public_key)
    yield running
    proc.terminate()
    proc.wait(timeout=10)


class Recorder:
    """Every answer the node gives, as bytes."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.bodies.append(response.content)


def _leaks(bodies: list[bytes], rows: list[list[Any]]) -> list[str]:
    """Values of the node's rows found in its answers: identifiers, and whole rows."""
    text = b"\n".join(bodies).decode()
    found = []
    for r in rows:
        ident = str(r[0])
        if ident.startswith(("pid", "id-")) and ident in text:
            found.append(ident)
        if len(r) > 2 and json.dumps(r) in text:
            found.append(json.dumps(r))
    return found


def test_the_node_answers_only_the_exchange(exchange: Exchange, node: RunningNode) -> None:
    r = httpx.post(node.url + "/node/v1/sql", json={"sql": "SELECT 1"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    stranger = HttpNode("n", node.url, node.public_key, os.urandom(32))
    with pytest.raises(NodeFailed, match="signature"):
        stranger.call("GET", "info")
    # a captured request sent again is refused
    seed = exchange.ctx.compute.seed
    exchange_key = nodeauth.private_key(seed)
    headers = nodeauth.sign_request(exchange_key, node.public_key, "GET", "/node/v1/info", b"")
    assert httpx.get(node.url + "/node/v1/info", headers=headers).status_code == 200
    assert httpx.get(node.url + "/node/v1/info", headers=headers).status_code == 401
    # a request the exchange signed for another node is refused here
    elsewhere = nodeauth.public_text(nodeauth.private_key(os.urandom(32)))
    headers = nodeauth.sign_request(exchange_key, elsewhere, "GET", "/node/v1/info", b"")
    assert httpx.get(node.url + "/node/v1/info", headers=headers).status_code == 401


def test_an_answer_not_signed_by_the_registered_key_is_refused(
    exchange: Exchange, node: RunningNode
) -> None:
    # the exchange expects another node at this address: the request, signed for that
    # node, is refused here, and an answer signed by this node would not be accepted
    impostor = nodeauth.public_text(nodeauth.private_key(os.urandom(32)))
    client = HttpNode("n", node.url, impostor, exchange.ctx.compute.seed)
    with pytest.raises(NodeFailed):
        client.call("GET", "info")


def test_no_answer_of_the_node_carries_a_row(exchange: Exchange, node: RunningNode) -> None:
    rec = Recorder()
    http = httpx.Client(timeout=60, event_hooks={"response": [rec]})
    n = HttpNode("n", node.url, node.public_key, exchange.ctx.compute.seed, client=http)
    info = n.call("GET", "info")
    assert set(info["datasets"]) == {"people", "ids", "train"}
    base = {"schema": SCHEMA, "tables": {"people": "people"}}
    by_region = "SELECT region, COUNT(*), AVG(income) FROM people GROUP BY region"
    dp = n.call(
        "POST", "sql", {**base, "job": "j1", "mode": "dp", "epsilon": 1.0, "sql": by_region}
    )
    assert len(dp["rows"]) == 4
    summed = "SELECT region, SUM(income) FROM people GROUP BY region"
    k5 = {"mode": "threshold", "min_group_size": 5}
    n.call("POST", "sql", {**base, **k5, "job": "j2", "sql": summed})
    for raw in ("SELECT * FROM people", "SELECT pid FROM people", "SELECT pid, income FROM people"):
        with pytest.raises(NodeRefused) as refusal:
            n.call("POST", "sql", {**base, "job": "j3", "mode": "dp", "epsilon": 1.0, "sql": raw})
        assert refusal.value.slug == "query-not-private"
    # PSI: the node as initiator and as responder, with itself as the other side
    m1 = n.call("POST", "psi/request", {"job": "p1", "dataset": "ids", "column": "id",
                                        "reveal": "intersection"})  # fmt: skip
    reply = {"job": "p1", "dataset": "people", "column": "pid", "message": m1["message"]}
    # the responder holds the initiator's header to the reveal the job authorised
    with pytest.raises(NodeRefused) as widened:
        n.call("POST", "psi/reply", {**reply, "reveal": "cardinality"})
    assert widened.value.slug == "invalid-psi-input"
    m2 = n.call("POST", "psi/reply", {**reply, "reveal": "intersection"})
    got = n.call("POST", "psi/finish", {"job": "p1", "message": m2["message"]})
    assert got["intersection_size"] == 50
    # federated training messages
    from databourse.compute import federated

    spec = federated.TrainingSpec.from_dict(
        {"model": "logistic", "features": FEATURES, "label": "y", "rounds": 2, "seed": 1}
    )

    def send(message: dict[str, Any]) -> dict[str, Any]:
        body = {"job": "f1", "dataset": "train", "spec": spec.to_dict(), "message": message}
        return n.call("POST", "fl/message", body)

    other = federated.Holder.from_arrow(
        __import__("pyarrow.csv", fromlist=["read_csv"]).read_csv(node.home / "train.csv"), spec
    )
    result = federated.Coordinator(spec, [federated.RemoteParticipant(spec, send), other]).run()
    assert result.rounds_completed == 2
    n.call("POST", "fl/end", {"job": "f1"})
    assert len(rec.bodies) >= 12
    assert _leaks(rec.bodies, node.rows) == []


def test_registration_probes_the_node_and_jobs_run_on_it(
    exchange: Exchange, node: RunningNode
) -> None:
    merchant = world.party(exchange, ["merchant"])
    with world.client(exchange, merchant) as m:
        body = {"name": "remote-node", "url": node.url, "public_key": node.public_key}
        impostor = nodeauth.public_text(nodeauth.private_key(os.urandom(32)))
        wrong = {**body, "name": "wrong-key", "public_key": impostor}
        assert m.post("/nodes", json=wrong).status_code == 502
        n = ok(m.post("/nodes", json=body), 201)
        assert set(n["datasets"]) == {"people", "ids", "train"}
        assert n["datasets"]["people"]["columns"][0] == {"name": "pid", "type": "string"}
    pid = world.listed_product(
        exchange.ctx,
        merchant,
        "compute",
        "People statistics",
        ["result"],
        [{"name": "per job", "model": "metered", "unit": "call",
          "tiers": [{"up_to": None, "price_per_1000_fen": 100_000}]}],
        {"purposes": ["statistics"], "term_days": 60, "territories": ["CN"],
         "onward": {"mode": "prohibited"}, "output": {"aggregates_only": True,
                                                      "epsilon_micro": 2_000_000}},
        ["aggregate"],
    )  # fmt: skip
    with world.client(exchange, merchant) as m:
        svc = {"kind": "sql", "node_id": n["id"], "schema": SCHEMA, "tables": {"people": "people"}}
        ok(m.put(f"/products/{pid}/compute", json=svc))
        bad = {**svc, "tables": {"people": "nowhere"}}
        assert m.put(f"/products/{pid}/compute", json=bad).status_code == 422
    buyer = world.party(exchange, ["buyer"])
    with world.client(exchange, buyer) as b, world.client(exchange, merchant) as m:
        c = ok(b.post("/contracts", json={"product_id": pid, "purpose": "statistics",
                                          "plan": "per job", "term_days": 60,
                                          "billing": "prepaid"}, headers=key()), 201)  # fmt: skip
        ok(b.post(f"/contracts/{c['id']}/sign"))
        ok(m.post(f"/contracts/{c['id']}/sign"))
        rich = "SELECT region, COUNT(*) AS n FROM people WHERE income > 50 GROUP BY region"
        q = {"kind": "sql", "epsilon": 1.0, "sql": rich}
        job = ok(b.post(f"/contracts/{c['id']}/jobs", params={"wait": 30}, json=q), 201)
        assert job["state"] == "succeeded", job
        assert {r[0] for r in job["result"]["rows"]} == set(PROVINCES)
        # the node is revoked: the next job fails to be authorised
        ok(m.post(f"/nodes/{n['id']}/revoke"))
        r = b.post(f"/contracts/{c['id']}/jobs", params={"wait": 30}, json=q)
        assert r.status_code in (409, 201)
        if r.status_code == 201:
            assert r.json()["state"] == "failed"
    with exchange.ctx.reads() as s:
        states = s.scalars(select(Job.state).where(Job.contract_id == c["id"])).all()
    assert "succeeded" in states


def test_registration_refuses_bad_addresses_and_keys_without_probing(exchange: Exchange) -> None:
    merchant = world.party(exchange, ["merchant"])
    key = nodeauth.public_text(nodeauth.private_key(os.urandom(32)))
    with world.client(exchange, merchant) as m:
        for url in ("ftp://node.example", "http://user:pw@node.example", "http://n.example/?a=1"):
            r = m.post("/nodes", json={"name": "bad-url", "url": url, "public_key": key})
            assert r.status_code == 422 and r.json()["field"] == "url", r.text
        r = m.post("/nodes", json={"name": "bad-key", "url": "http://127.0.0.1:9",
                                   "public_key": "!" * 43})  # fmt: skip
        assert r.status_code == 422, r.text
        # nothing listens there: the same answer as a wrong key, naming neither
        r = m.post("/nodes", json={"name": "nobody", "url": "http://127.0.0.1:9",
                                   "public_key": key})  # fmt: skip
        assert r.status_code == 502
        assert (
            r.json()["detail"] == "no compute node signing with that key answered at that address"
        )
