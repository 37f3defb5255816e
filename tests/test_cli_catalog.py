"""The supply side through the console: ``databourse asset|product|catalog|demand …``.

Every step runs the real command line in-process against a SQLite database in a temporary
directory, seeded by ``db upgrade`` and ``demo seed`` as an operator would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests import factories
from tests.console import Console, one_id, seeded

MERCHANT = "merchant-a@databourse.example"
BUYER = "buyer-a@databourse.example"
COLUMNS = ["线路", "时段", "站点", "上车人次"]
ROWS = [
    ("71路", "2026-03-02 08:00", "人民广场", "1532"),
    ("71路", "2026-03-02 09:00", "人民广场", "1210"),
    ("49路", "2026-03-02 08:00", "徐家汇", "987"),
    ("927路", "2026-03-02 08:00", "虹桥枢纽", "640"),
]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    # two rows per chunk: the file has several chunks to prove
    made = Console(tmp_path_factory.mktemp("exchange"), DATABOURSE_COMMITMENT_CHUNK_ROWS="2")
    with seeded(made) as c:
        yield c


def test_supply_side_through_the_console(cli: Console) -> None:
    # the merchant drafts an asset, submits it; the exchange registers it
    created = cli(
        "asset", "create", "--as", MERCHANT, "--file", cli.write("a.json", factories.asset())
    )
    asset_id = one_id("ast", created.stdout)
    assert "draft" in created.stdout
    assert "submitted" in cli("asset", "submit", asset_id, "--as", MERCHANT).stdout
    assert (
        "registered" in cli("asset", "register", asset_id, "--reason", "documents checked").stdout
    )
    assert asset_id in cli("asset", "list", "--status", "registered").stdout

    # its certificate verifies offline with the exchange's key
    receipt = cli.dir / "receipt.json"
    cli("asset", "certificate", asset_id, "-o", str(receipt))
    key = cli("ledger", "key").stdout.strip()
    verified = cli("receipt", "verify", str(receipt), "--key", key).stdout
    assert "VALID" in verified and f"asset.registered of {asset_id}" in verified

    # a GBK-encoded CSV is uploaded, decoded and committed
    csv = cli.dir / "ridership.csv"
    csv.write_bytes(
        ("\n".join([",".join(COLUMNS), *(",".join(r) for r in ROWS)]) + "\n").encode("gbk")
    )
    facts = cli("asset", "upload", asset_id, str(csv), "--as", MERCHANT, "--encoding", "gbk").stdout
    file_id = one_id("fil", facts)
    assert re.search(r"\brows\s+4\s", facts) and "gb18030" in facts and "2 chunks of" in facts
    assert file_id in cli("asset", "files", asset_id).stdout

    # a dataset product from it passes the checklist and is listed
    body = factories.product([asset_id], COLUMNS, title="沪上公交客流 Shanghai tram-bus ridership")
    product_id = one_id(
        "prd",
        cli("product", "create", "--as", MERCHANT, "--file", cli.write("p.json", body)).stdout,
    )
    checklist = cli("product", "checklist", product_id).stdout
    assert "✓" in checklist and "✗" not in checklist
    cli("product", "submit", product_id, "--as", MERCHANT)
    assert "listed" in cli("product", "approve", product_id, "--reason", "checklist passed").stdout
    assert "¥0.50" in cli("product", "show", product_id).stdout
    assert json.loads(cli("product", "policy", product_id).stdout)["@type"] == "Offer"

    # buyers find it in Chinese and in English
    for query in ("公交客流", "bus ridership"):
        assert product_id in cli("catalog", "search", query, "--kind", "dataset").stdout, query
    assert re.search(r"\b\d+ listings indexed in \d+ ms", cli("catalog", "reindex").stdout)

    # a buyer's demand matches it, and the merchant is told
    demand = {
        "title": "公交客流数据",
        "need": "需要上海公交线路的小时客流，用于交通规划研究",
        "purpose": "research",
        "required_fields": ["线路", "上车人次"],
    }
    posted = cli("demand", "post", "--as", BUYER, "--file", cli.write("d.json", demand)).stdout
    demand_id = one_id("dmd", posted)
    assert product_id in posted and "fields" in posted
    assert product_id in cli("demand", "matches", demand_id).stdout
    assert product_id in cli("demand", "notices", "--as", MERCHANT).stdout
    assert demand_id in cli("demand", "board", "--as", MERCHANT).stdout

    # a chunk of rows is proven to belong to the registered file, offline
    proof = cli.dir / "proof.json"
    cli("asset", "prove", file_id, "1", "-o", str(proof))
    assert "VALID" in cli("asset", "verify-chunk", str(proof)).stdout
    doc = json.loads(proof.read_text(encoding="utf-8"))
    assert doc["rows"] == [list(r) for r in ROWS[2:]]
    doc["rows"][0][3] = "9870"
    proof.write_text(json.dumps(doc), encoding="utf-8")
    tampered = cli("asset", "verify-chunk", str(proof), ok=False)
    assert tampered.exit_code == 1 and "INVALID" in tampered.output

    # the regulator suspends it: it is gone from search at once
    cli("product", "suspend", product_id, "--reason", "complaint under review")
    assert product_id not in cli("catalog", "search", "公交客流").stdout
    assert "withdrawn" in cli("demand", "withdraw", demand_id, "--as", BUYER).stdout


def listed_product(cli: Console) -> str:
    """A merchant's dataset product, registered, uploaded and approved through the console."""
    body = cli.write("a.json", factories.asset())
    asset_id = one_id("ast", cli("asset", "create", "--as", MERCHANT, "--file", body).stdout)
    cli("asset", "submit", asset_id, "--as", MERCHANT)
    cli("asset", "register", asset_id)
    csv = cli.dir / "plain.csv"
    csv.write_text("\n".join([",".join(COLUMNS), *(",".join(r) for r in ROWS)]), encoding="utf-8")
    cli("asset", "upload", asset_id, str(csv), "--as", MERCHANT)
    body = cli.write("p.json", factories.product([asset_id], COLUMNS))
    product_id = one_id("prd", cli("product", "create", "--as", MERCHANT, "--file", body).stdout)
    cli("product", "submit", product_id, "--as", MERCHANT)
    cli("product", "approve", product_id)
    return product_id


def test_dcat_export_lists_the_catalog(cli: Console) -> None:
    product_id = listed_product(cli)
    out = cli.dir / "catalog.jsonld"
    result = cli("catalog", "dcat", "-o", str(out), ok=False)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not a refusal
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert product_id in [d["dct:identifier"] for d in doc["dcat:dataset"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("asset", "show", "ast_00000000000000000000"), "asset ast_00000000000000000000 not found"),
        (("product", "approve", "prd_00000000000000000000"), "not found"),
        (("demand", "matches", "dmd_00000000000000000000"), "not found"),
        (("asset", "create", "--as", "nobody@databourse.example", "--file", "{ok}"), "no active"),
        (("asset", "create", "--as", MERCHANT, "--file", "{bad}"), "Invalid JSON"),
        (("asset", "create", "--as", MERCHANT, "--file", "{core}"), "core data"),
        (("asset", "register", "{draft}"), "cannot register an asset that is draft"),
        (("demand", "post", "--as", MERCHANT, "--file", "{demand}"), "forbidden"),
        (("catalog", "search", "x", "--sort", "cheapest"), "sort must be one of"),
    ],
)
def test_bad_input_is_one_clear_line(cli: Console, args: tuple[str, ...], message: str) -> None:
    (cli.dir / "bad.json").write_text("{not json", encoding="utf-8")
    files = {
        "{ok}": cli.write("ok.json", factories.asset()),
        "{core}": cli.write("core.json", factories.asset(grade="core", sub_grade=None)),
        "{bad}": str(cli.dir / "bad.json"),
        "{demand}": cli.write("demand.json", {"title": "t", "need": "n", "purpose": "research"}),
    }
    if "{draft}" in args:
        made = cli("asset", "create", "--as", MERCHANT, "--file", files["{ok}"])
        files["{draft}"] = one_id("ast", made.stdout)
    result = cli(*(files.get(a, a) for a in args), ok=False)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
