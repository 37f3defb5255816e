"""Data-file uploads over multipart HTTP: what is accepted, what is refused, and that a
refused upload leaves nothing behind (no row in ``data_files``, no object in the store, not
even in its temporary area). Also the chunk proof a verifier checks against the ledger."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from databourse.api.app import create_app
from databourse.assets.commitment import verify_chunk
from databourse.assets.models import DataFile
from databourse.assets.store import TEMP_PREFIX
from databourse.ledger.merkle import ProofError
from databourse.ledger.models import LedgerEntry
from tests.assets.test_asset_api import COLUMNS, Demo, Member, create_asset, ok, refused
from tests.catalog.test_listing_flow import ROWS, gbk_csv, upload
from tests.conftest import Exchange, make_settings, serve_in_thread

UTF8_CSV = (
    "城市,区县,常住人口,增长率\n北京市,朝阳区,3452000,1.5\n上海市,浦东新区,5681000,2.25\n".encode()
)


# ---------------------------------------------------------------- what is stored


def objects(ex: Exchange) -> set[str]:
    """Every object in the exchange's store, the temporary area included."""
    store = ex.ctx.store
    return set(store.fs.find(store.root))


def data_file_rows(ex: Exchange) -> int:
    with ex.ctx.reads() as s:
        return int(s.scalar(select(func.count()).select_from(DataFile)) or 0)


@contextmanager
def nothing_stored(ex: Exchange) -> Iterator[None]:
    rows, before = data_file_rows(ex), objects(ex)
    yield
    after = objects(ex)
    temp = ex.ctx.store.path(TEMP_PREFIX.rstrip("/"))
    assert sorted(after - before) == [], "objects left behind"
    assert not [p for p in after if p.startswith(temp + "/")], "temporary objects left behind"
    assert data_file_rows(ex) == rows, "a data_files row was written"


def send(c: httpx.Client, asset_id: str, data: bytes, name: str, **form: str) -> httpx.Response:
    kind = "application/vnd.apache.parquet" if name.endswith(".parquet") else "text/csv"
    return c.post(
        f"/assets/{asset_id}/files", files={"file": (name, data, kind)}, data=form or None
    )


def refused_upload(
    ex: Exchange,
    c: httpx.Client,
    asset_id: str,
    data: bytes,
    name: str,
    status: int,
    slug: str,
    **form: str,
) -> dict[str, Any]:
    with nothing_stored(ex):
        return refused(send(c, asset_id, data, name, **form), status, slug)


def parquet(table: pa.Table, **kw: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def merchant(exchange: Exchange) -> Member:
    return Member(exchange, ["merchant"])


@pytest.fixture
def asset_id(merchant: Member) -> str:
    """A fresh draft asset (drafts accept files: the data is registered with the asset)."""
    return create_asset(merchant.c)


SMALL_LIMIT = 200_000


@pytest.fixture(scope="module")
def small(
    exchange: Exchange, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exchange]:
    """A second exchange over the same database and keys, with small upload limits."""
    s = exchange.ctx.settings
    settings = make_settings(
        tmp_path_factory.mktemp("small-exchange"),
        store_url,
        max_body_bytes=64_000,
        upload_max_bytes=SMALL_LIMIT,
        upload_max_decoded_bytes=1_000_000,
        signing_key_path=s.signing_key_file,
        token_secret_path=s.token_secret_file,
        checkpoint_interval_seconds=0,
    )
    app = create_app(settings, configure_logging=False)
    server, thread, base = serve_in_thread(app)
    yield Exchange(base, app.state.ctx, exchange.world, exchange.store)
    server.should_exit = True
    thread.join(timeout=15)


# ---------------------------------------------------------------- accepted files


def test_utf8_csv_with_chinese_is_described_and_stored(
    exchange: Exchange, merchant: Member, asset_id: str
) -> None:
    rows, before = data_file_rows(exchange), objects(exchange)
    f = ok(send(merchant.c, asset_id, UTF8_CSV, "人口.csv"), 201)
    assert (f["asset_id"], f["version"], f["format"], f["encoding"]) == (
        asset_id,
        1,
        "csv",
        "utf-8",
    )
    assert (f["filename"], f["row_count"], f["byte_size"]) == ("人口.csv", 2, len(UTF8_CSV))
    assert f["sha256"] == hashlib.sha256(UTF8_CSV).hexdigest()
    assert [(c["name"], c["type"]) for c in f["columns"]] == [
        ("城市", "string"),
        ("区县", "string"),
        ("常住人口", "integer"),
        ("增长率", "number"),
    ]
    assert data_file_rows(exchange) == rows + 1
    added = objects(exchange) - before
    assert len(added) == 2 and all(f"/assets/{asset_id}/{f['id']}" in p for p in added), added
    assert ok(merchant.c.get(f"/assets/{asset_id}/files")) == [f]


def test_gbk_csv_is_detected_as_gb18030(merchant: Member, asset_id: str) -> None:
    f = ok(upload(merchant.c, asset_id, gbk_csv()), 201)
    assert (f["encoding"], f["row_count"]) == ("gb18030", len(ROWS))
    assert [c["name"] for c in f["columns"]] == COLUMNS
    assert f["columns"][3]["type"] == "integer"
    declared = ok(send(merchant.c, asset_id, gbk_csv(), "again.csv", encoding="GBK"), 201)
    assert (declared["encoding"], declared["version"]) == ("gb18030", 2)


def test_parquet_rows_and_types(merchant: Member, asset_id: str) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "城市": ["北京", "上海", "深圳"],
            "score": [0.5, 1.25, 3.0],
            "active": [True, False, True],
            "day": pa.array([date(2026, 3, 1)] * 3, pa.date32()),
            "at": pa.array([datetime(2026, 3, 1, 8)] * 3, pa.timestamp("us")),
            "note": ["a", None, "c"],
        }
    )
    data = parquet(table)
    f = ok(send(merchant.c, asset_id, data, "cities.parquet"), 201)
    assert (f["format"], f["encoding"], f["row_count"]) == ("parquet", None, 3)
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert [(c["name"], c["type"]) for c in f["columns"]] == [
        ("id", "integer"),
        ("城市", "string"),
        ("score", "number"),
        ("active", "boolean"),
        ("day", "date"),
        ("at", "timestamp"),
        ("note", "string"),
    ]
    assert [c["null_count"] for c in f["columns"]] == [0, 0, 0, 0, 0, 0, 1]


# ---------------------------------------------------------------- refused files


ENCODING_CASES = [
    pytest.param(UTF8_CSV, {"encoding": "gbk"}, id="utf8-declared-gbk"),
    pytest.param(gbk_csv(), {"encoding": "utf-8"}, id="gbk-declared-utf8"),
    pytest.param(UTF8_CSV, {"encoding": "latin-1"}, id="encoding-not-accepted"),
    pytest.param(b"a,b\n\xff\xfe,1\n", {}, id="neither-utf8-nor-gb18030"),
]


@pytest.mark.parametrize(("data", "form"), ENCODING_CASES)
def test_an_encoding_that_does_not_fit_is_refused(
    data: bytes, form: dict[str, str], exchange: Exchange, merchant: Member, asset_id: str
) -> None:
    refused_upload(
        exchange, merchant.c, asset_id, data, "x.csv", 422, "unsupported-encoding", **form
    )


def test_a_ragged_csv_is_refused_naming_the_row(
    exchange: Exchange, merchant: Member, asset_id: str
) -> None:
    data = "编号,名称,数量\n1,苹果,3\n2,香蕉\n3,橙子,5\n".encode()
    body = refused_upload(exchange, merchant.c, asset_id, data, "x.csv", 422, "malformed-file")
    assert body["row"] == 2
    assert "Row 2" in body["detail"]


def test_a_truncated_parquet_file_is_refused(
    exchange: Exchange, merchant: Member, asset_id: str
) -> None:
    data = parquet(pa.table({"n": list(range(1000)), "s": [f"row {i}" for i in range(1000)]}))
    cut = data[: len(data) // 2]
    refused_upload(exchange, merchant.c, asset_id, cut, "x.parquet", 422, "malformed-file")


@pytest.mark.parametrize(
    ("name", "data", "slug"),
    [
        ("book.xlsx", b"PK\x03\x04 a workbook", "unsupported-format"),
        ("data", UTF8_CSV, "unsupported-format"),
        ("zipped.csv", b"PK\x03\x04 an archive", "unsupported-format"),
        ("empty.csv", b"", "malformed-file"),
        ("table.parquet", UTF8_CSV, "malformed-file"),
    ],
)
def test_what_is_not_csv_or_parquet_is_refused(
    name: str, data: bytes, slug: str, exchange: Exchange, merchant: Member, asset_id: str
) -> None:
    refused_upload(exchange, merchant.c, asset_id, data, name, 422, slug)


def test_a_parquet_decompression_bomb_is_refused(
    small: Exchange, merchant: Member, asset_id: str
) -> None:
    table = pa.table({"text": ["这是一段重复的文字 repeated text " * 40] * 10_000})
    bomb = parquet(table, compression="zstd", use_dictionary=False)
    assert len(bomb) < 50_000  # some 10 MB once decoded; this exchange allows 1 MB
    with small.client(merchant.party.token) as c:
        body = refused_upload(small, c, asset_id, bomb, "x.parquet", 422, "decompression-bomb")
    assert body["decoded_bytes"] > body["max_decoded_bytes"] == 1_000_000
    with small.client(merchant.party.token) as c:  # the same rows, fewer of them, are fine
        ok(send(c, asset_id, parquet(table.slice(0, 50), compression="zstd"), "x.parquet"), 201)


def test_a_body_far_over_the_limit_is_refused_at_the_edge(
    small: Exchange, merchant: Member, asset_id: str
) -> None:
    data = b"n\n" + b"1\n" * (SMALL_LIMIT // 2 + 50_000)  # beyond the limit and the framing
    with small.client(merchant.party.token) as c:
        refused_upload(small, c, asset_id, data, "big.csv", 413, "payload-too-large")


def test_a_file_over_the_exchange_limit_is_refused_with_file_too_large(
    small: Exchange, merchant: Member, asset_id: str
) -> None:
    data = b"n\n" + b"1\n" * (SMALL_LIMIT // 2 + 1_000)  # over the limit, under the framing
    with small.client(merchant.party.token) as c:
        body = refused_upload(small, c, asset_id, data, "big.csv", 413, "file-too-large")
    assert body["max_bytes"] == SMALL_LIMIT


def test_a_dictionary_encoded_bomb_is_refused(
    small: Exchange, merchant: Member, asset_id: str
) -> None:
    values = pa.DictionaryArray.from_arrays(pa.array([0] * 5000, pa.int32()), ["x" * 10_000])
    data = parquet(pa.table({"s": values}))
    assert len(data) < 5_000  # 50 MB of text once decoded; this exchange allows 1 MB
    with small.client(merchant.party.token) as c:
        refused_upload(small, c, asset_id, data, "x.parquet", 422, "decompression-bomb")


# ---------------------------------------------------------------- versions


def test_schema_drift_is_refused_unless_declared(
    exchange: Exchange, merchant: Member, asset_id: str
) -> None:
    m = merchant.c
    v1 = ok(send(m, asset_id, b"code,name\n1,a\n", "v.csv"), 201)
    v2 = ok(send(m, asset_id, b"code,name\n2,b\n3,c\n", "v.csv"), 201)
    assert (v1["version"], v2["version"]) == (1, 2)
    added = b"code,name,extra\n4,d,x\n"
    body = refused_upload(exchange, m, asset_id, added, "v.csv", 409, "schema-drift")
    assert body["differences"] == ["column 'extra' was added"]
    retyped = b"code,name\nx,d\n"
    body = refused_upload(exchange, m, asset_id, retyped, "v.csv", 409, "schema-drift")
    assert body["differences"] == ["column 'code' changed type from integer to string"]
    v3 = ok(send(m, asset_id, added, "v.csv", schema_changed="true"), 201)
    assert v3["version"] == 3
    assert [c["name"] for c in v3["columns"]] == ["code", "name", "extra"]
    files = ok(m.get(f"/assets/{asset_id}/files"))
    assert [(f["version"], f["sha256"]) for f in files] == [
        (1, v1["sha256"]),
        (2, v2["sha256"]),
        (3, hashlib.sha256(added).hexdigest()),
    ]


# ---------------------------------------------------------------- chunk proofs


def _uploaded_entry(m: httpx.Client, since: int, file_id: str) -> dict[str, Any]:
    """The ``file.uploaded`` entry of the file, found through the ledger's entry list."""
    entries = ok(m.get("/ledger/entries", params={"start": since, "limit": 1000}))
    seqs = [e["seq"] for e in entries if (e["kind"], e["subject"]) == ("file.uploaded", file_id)]
    assert len(seqs) == 1, entries
    entry = ok(m.get(f"/ledger/entries/{seqs[0]}"))
    doc: dict[str, Any] = json.loads(base64.b64decode(entry["entry"]))
    assert (doc["kind"], doc["subject"]) == ("file.uploaded", file_id)
    return doc


def test_a_chunk_of_rows_is_proven_against_the_registered_root(
    exchange: Exchange, merchant: Member, asset_id: str
) -> None:
    m = merchant.c
    rows = [[str(i), f"城市{i % 7}", "" if i % 5 == 0 else f"备注 {i}"] for i in range(2500)]
    data = ("序号,城市,备注\n" + "".join(",".join(r) + "\n" for r in rows)).encode()
    with exchange.ctx.reads() as s:
        since = int(s.scalar(select(func.max(LedgerEntry.seq))) or 0)
    f = ok(send(m, asset_id, data, "rows.csv"), 201)
    registered = _uploaded_entry(m, since, f["id"])["body"]
    assert registered["sha256"] == hashlib.sha256(data).hexdigest()
    assert registered["row_count"] == len(rows)
    root, count, size = registered["chunk_root"], registered["chunk_count"], f["chunk_rows"]
    assert count == math.ceil(len(rows) / size) >= 2
    expected = [[None if cell == "" else cell for cell in r] for r in rows]

    proofs = {}
    for i in range(count):
        chunk = ok(m.get(f"/files/{f['id']}/chunks/{i}"))
        assert chunk["rows"] == expected[i * size : (i + 1) * size]
        verify_chunk(chunk["rows"], i, count, chunk["proof"], root)
        proofs[i] = chunk

    first = proofs[0]["rows"]
    tampered = [list(r) for r in first]
    tampered[10][1] = "城市X"
    nulled = [list(r) for r in first]
    nulled[0][2] = ""  # an empty string is not a null
    for bad_rows, index, proof in [
        (tampered, 0, proofs[0]["proof"]),
        (nulled, 0, proofs[0]["proof"]),
        (first[1:], 0, proofs[0]["proof"]),
        ([first[1], first[0], *first[2:]], 0, proofs[0]["proof"]),
        (first, 1, proofs[1]["proof"]),
    ]:
        with pytest.raises(ProofError):
            verify_chunk(bad_rows, index, count, proof, root)

    refused(m.get(f"/files/{f['id']}/chunks/{count}"), 404, "not-found")
    other = Demo(exchange, "merchant_b").c
    refused(other.get(f"/files/{f['id']}/chunks/0"), 404, "not-found")
    buyer = Demo(exchange, "buyer_b").c
    refused(buyer.get(f"/files/{f['id']}/chunks/0"), 403, "forbidden")
