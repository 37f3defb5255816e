"""Delivery through the console: ``databourse delivery|share|gateway …`` on a seeded exchange.

The demo buyer downloads its fingerprinted copy with ``delivery download``, writes a
Delta Sharing profile, and the merchant traces a fifth of the copy — shuffled and rounded
by ``examples/leak.py`` — back to it with ``delivery trace``. Every command's ``--help``
renders (a help text is Rich markup, and a stray bracket breaks it).
"""

from __future__ import annotations

import csv
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.testing
from sqlalchemy import select

from databourse.cli import app
from databourse.settings import get_settings
from tests.console import Console, seeded

BUYER = "buyer-a@databourse.example"
MERCHANT = "merchant-a@databourse.example"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with seeded(Console(tmp_path_factory.mktemp("exchange"))) as c:
        yield c


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, cmd in group.commands.items():
        yield (*path, name)
        if hasattr(cmd, "commands"):  # a group (typer's own click)
            yield from _commands(cmd, (*path, name))


def test_every_command_renders_its_help() -> None:
    root = typer.main.get_command(app)
    paths = list(_commands(root))
    assert ("delivery", "trace") in paths and ("gateway", "upstream", "set") in paths
    runner = typer.testing.CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)


def _buyer_contract(kind: str) -> tuple[str, str]:
    from databourse.auth.services import principal_for_email
    from databourse.db import Database
    from databourse.market.models import Contract

    db = Database.connect(get_settings().database)
    try:
        with db.read_sessions()() as s:
            org = principal_for_email(s, BUYER).org_id
            row = s.execute(
                select(Contract.id, Contract.product_id).where(
                    Contract.buyer_org_id == org, Contract.product_kind == kind
                )
            ).one()
    finally:
        db.dispose()
    return row[0], row[1]


def test_download_profile_and_trace_on_the_console(cli: Console, tmp_path: Path) -> None:
    contract, product = _buyer_contract("dataset")
    tables = cli("delivery", "tables", contract, "--as", BUYER).stdout
    assert "shanghai_bus_fare_card_ridership" in tables and "上车人次:int64" in tables
    copy = tmp_path / "copy.csv"
    out = cli(
        "delivery", "download", contract, "--as", BUYER, "--purpose", "research", "-o", str(copy)
    ).stdout
    assert "480 rows" in out
    with copy.open(encoding="utf-8") as f:
        assert len(list(csv.reader(f))) == 481
    refused = cli(
        "delivery", "download", contract, "--as", BUYER, "--purpose", "risk_control", "-o",
        str(tmp_path / "x.csv"), ok=False,
    )  # fmt: skip
    assert refused.exit_code == 1 and "usage-refused" in refused.output
    assert "Traceback" not in refused.output
    listed = cli("delivery", "downloads", contract, "--as", BUYER).stdout
    assert listed.count("dl_") >= 2  # the demo's and this one

    profile = tmp_path / "profile.share"
    cli("share", "profile", contract, "--as", BUYER, "-o", str(profile))
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert '"bearerToken"' in profile.read_text()

    leaked = tmp_path / "leaked.csv"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "leak.py"), str(copy), str(leaked),
         "--share", "0.2", "--round", "10", "--seed", "3"],
        check=True, capture_output=True,
    )  # fmt: skip
    traced = cli("delivery", "trace", product, str(leaked), "--as", MERCHANT).stdout
    line = next(ln for ln in traced.splitlines() if contract in ln)
    assert "yes" in line, traced
    assert sum("yes" in ln for ln in traced.splitlines() if "ctr_" in ln) == 1
    assert "trace.completed" in traced
    assert "trc_" in cli("delivery", "traces", product, "--as", MERCHANT).stdout

    api_contract, _ = _buyer_contract("api")
    usage = cli("gateway", "usage", api_contract).stdout
    assert "12,000" in usage


def test_a_download_that_fails_to_be_written_is_still_metered(cli: Console) -> None:
    """The rows are charged at the link's first fetch, which happened: the usage is
    written even when the copy cannot be (here, a full disk)."""
    contract, _ = _buyer_contract("dataset")

    def rows() -> int:
        usage = json.loads(cli("gateway", "usage", contract, "--json").stdout)["usage"]
        return int(usage.get("row", {}).get("quantity", 0))

    before = rows()
    failed = cli(
        "delivery", "download", contract, "--as", BUYER, "--purpose", "research", "-o",
        "/dev/full", ok=False,
    )  # fmt: skip
    assert isinstance(failed.exception, OSError), failed.output
    assert rows() == before + 480
