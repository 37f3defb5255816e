"""`make run` seeds the demo world; running the seed again duplicates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select

from databourse.catalog.models import Product
from databourse.compute.models import ComputeService, Node
from databourse.delivery.models import Copy, Download, Upstream
from databourse.demands.models import Demand
from databourse.ledger.models import LedgerEntry
from databourse.market.models import Contract
from databourse.participants.models import Organisation, User
from databourse.settlement.models import Account


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABOURSE_DATA_DIR": str(data_dir)}
    env.pop("DATABOURSE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "databourse.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_seed_twice_creates_the_world_once(tmp_path: Path) -> None:
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    first = _cli(tmp_path, "demo", "seed")
    assert first.returncode == 0, first.stderr
    assert "operator@databourse.example" in first.stdout
    engine = create_engine(f"sqlite:///{tmp_path / 'databourse.sqlite3'}")

    def counts() -> tuple[int, int, int]:
        with engine.connect() as c:
            return tuple(
                c.scalar(select(func.count()).select_from(m))  # type: ignore[return-value]
                for m in (Organisation, User, LedgerEntry)
            )

    after_first = counts()
    assert after_first[0] == 9 and after_first[1] == 9
    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    second = _cli(tmp_path, "demo", "seed")
    assert second.returncode == 0, second.stderr
    assert counts() == after_first
    with engine.connect() as c:
        statuses = dict(c.execute(select(Organisation.name, Organisation.status)).all())
    assert sorted(statuses.values()).count("admitted") == 8
    assert "applied" in statuses.values()
    with engine.connect() as c:
        products = dict(c.execute(select(Product.title, Product.status)).all())
        demands = c.scalar(select(func.count()).select_from(Demand))
    assert sorted(products.values()) == ["in_review"] + ["listed"] * 5  # 3 compute products
    assert demands == 2
    # trades: a settled negotiated subscription, a settled package, two active metered
    # contracts (the API's calls, the dataset's rows)
    with engine.connect() as c:
        trades = sorted(c.execute(select(Contract.status, Contract.payment_status)).all())
        fee = c.scalar(select(Account.balance_fen).where(Account.kind == "fee_revenue"))
        copies = c.scalar(select(func.count()).select_from(Copy))
        links = c.execute(select(Download.path, Download.format)).all()
        upstreams = c.scalar(select(func.count()).select_from(Upstream))
    # … and Nanfeng's three metered compute contracts (DP SQL, PSI, federated learning)
    assert trades == [("active", "none")] * 5 + [("active", "released")] * 2
    # deliveries: both dataset buyers hold their own fingerprinted copy; the API has its
    # upstream
    assert copies == 2 and links == [("download", "csv")] * 2 and upstreams == 1
    with engine.connect() as c:  # two compute nodes, one service per compute product
        nodes = c.scalar(select(func.count()).select_from(Node))
        services = sorted(c.scalars(select(ComputeService.kind)).all())
    assert nodes == 2 and services == ["fl", "psi", "sql"]
    assert fee == 33_000 + 120_000  # 3 % of ¥11,000 and of ¥40,000
    # the seed's history is on the ledger, and the ledger agrees with the rows
    verify = _cli(tmp_path, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
