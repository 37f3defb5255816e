"""Privacy computing through the console, as the README walks a newcomer through it: the
demo buyer runs a COUNT … GROUP BY over the merchant's subscribers and watches its budget
go down until the query is refused, runs a PSI between the two demo nodes, and trains a
federated model across them — and no row of either node's data appears on the console.

The demo nodes are served, as ``make run`` serves them, by the exchange's own process
(here a server in a thread, on the port the demo world was seeded with)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import uvicorn
from sqlalchemy import select

from databourse.settings import get_settings
from tests.console import Console, one_id, seeded

BUYER = "buyer-a@databourse.example"
QUERY = "SELECT province, COUNT(*) AS n FROM subscribers GROUP BY province"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    from databourse.api.app import create_app

    port = _free_port()
    console = Console(
        tmp_path_factory.mktemp("exchange"),
        DATABOURSE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        DATABOURSE_DEMO_NODES="true",
    )
    with seeded(console) as c:
        app = create_app(get_settings(), configure_logging=False)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield c
        server.should_exit = True
        thread.join(timeout=15)


def _contract(words: str) -> str:
    from databourse.catalog.models import Product
    from databourse.db import Database
    from databourse.market.models import Contract

    db = Database.connect(get_settings().database)
    try:
        with db.read_sessions()() as s:
            cid = s.scalar(
                select(Contract.id)
                .join(Product, Product.id == Contract.product_id)
                .where(Product.title.contains(words))
            )
    finally:
        db.dispose()
    assert cid is not None
    return cid


def _mobiles(home: Path) -> set[str]:
    out: set[str] = set()
    for node, dataset in (("huadong-node", "subscribers"), ("nanfeng-node", "customers")):
        path = home / "demo-nodes" / node / f"{dataset}.csv"
        opts = pacsv.ConvertOptions(column_types={"mobile": pa.string()})
        out |= set(pacsv.read_csv(path, convert_options=opts).column("mobile").to_pylist())
    return out


def test_dp_sql_until_the_budget_refuses(cli: Console) -> None:
    cid = _contract("差分隐私")
    shown = cli("compute", "show", cli_product(cid)).output
    assert "person_id" in shown and "18 … 80" in shown and "上海" in shown
    spent = 0.0
    outputs = []
    while spent < 1.0 - 1e-9:
        r = cli("compute", "sql", cid, QUERY, "--epsilon", "0.25", "--as", BUYER)
        spent += 0.25
        assert f"{1.0 - spent:g} of 1 remain" in r.output, r.output
        assert "上海" in r.output and "(±" in r.output
        outputs.append(r.output)
    refusal = cli.refused("compute", "sql", cid, QUERY, "--epsilon", "0.25", "--as", BUYER)
    assert "privacy-budget-exhausted" in refusal and "ε 0 and δ 0 remain" in refusal
    jobs = cli("compute", "jobs", cid, "--as", BUYER).output
    assert jobs.count("succeeded") == 4 and jobs.count("refused") == 1
    budget = cli("compute", "budget", cid, "--as", BUYER).output
    assert "█" * 30 in budget
    leaked = _mobiles(cli.dir)
    assert not any(m in "".join(outputs) for m in leaked)


def cli_product(cid: str) -> str:
    from databourse.db import Database
    from databourse.market.models import Contract

    db = Database.connect(get_settings().database)
    try:
        with db.read_sessions()() as s:
            c = s.get(Contract, cid)
            assert c is not None
            return c.product_id
    finally:
        db.dispose()


def test_psi_and_federated_training_between_the_demo_nodes(cli: Console) -> None:
    node = one_id("nod", cli("node", "list", "--as", BUYER).output)
    psi = cli(
        "compute", "psi", _contract("隐私求交"), "--as", BUYER, "--node", node,
        "--dataset", "customers", "--column", "mobile",
    ).output  # fmt: skip
    assert "intersection size: 600" in psi
    spec = cli.write(
        "spec.json",
        {"model": "logistic", "label": "defaulted", "rounds": 4, "local_epochs": 2,
         "learning_rate": 0.5, "seed": 3,
         "features": ["age", "income_k", "tenure_months", "risk_score", "debt_ratio"]},
    )  # fmt: skip
    model = cli.dir / "model.json"
    train = cli(
        "compute", "train", _contract("联邦"), "--spec", spec, "--as", BUYER, "--node", node,
        "--dataset", "loans_b", "--out", str(model),
    ).output  # fmt: skip
    assert "after 4 rounds on huadong-node, nanfeng-node" in train and "█" in train
    result = json.loads(model.read_text())
    assert set(result["model"]["coefficients"]) >= {"age", "debt_ratio"}
    assert not any(m in psi + train + model.read_text() for m in _mobiles(cli.dir))
    job = one_id("job", cli("compute", "jobs", _contract("联邦"), "--as", BUYER).output)
    assert "already succeeded" in cli.refused("compute", "cancel", job, "--as", BUYER)
