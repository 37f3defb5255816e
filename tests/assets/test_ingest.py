"""Receiving and describing real CSV and Parquet files, as a merchant uploads them."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from databourse.assets.commitment import chunk_proof, unpack_leaves, verify_chunk
from databourse.assets.errors import (
    DecompressionBomb,
    FileTooLarge,
    MalformedFile,
    UnsupportedEncoding,
    UnsupportedFormat,
)
from databourse.assets.ingest import (
    BLOCK_BYTES,
    ColumnFacts,
    FileFacts,
    IngestLimits,
    chunk_leaves,
    format_of,
    ingest,
    read_chunk,
    receive,
    schema_drift,
)
from databourse.assets.store import ObjectStore
from databourse.ledger.merkle import root_from_leaves
from tests.assets.test_commitment import _verifier_leaves

Rows = list[list[str | None]]
LIMITS = IngestLimits(
    max_bytes=20_000_000, max_decoded_bytes=50_000_000, max_columns=12, chunk_rows=4, sample_rows=3
)
HEADER = ["名称", "数量", "单价", "日期", "时间", "有效", "编码", "备注"]
ROWS: Rows = [
    ["苹果", "12", "3.5", "2024-01-02", "2024-01-02 08:00:00", "true", "000123", "产地：烟台"],
    ["香蕉, 进口", "-7", "12", "2024-02-29", "2024-02-29T23:59:59", "FALSE", "000124", ""],
    ["橙子", None, "1e3", None, "2024-03-01 00:00:00", "true", "000125", "多行\n备注"],
    ['引号"测试"', "0", "-0.25", "2024-12-31", None, "false", "000126", "NULL"],
    ["data market", "42", "7", "2025-06-30", "2025-06-30 12:30:00", None, "000127", None],
]


def csv_text(header: list[str], rows: Rows) -> str:
    """RFC 4180 text: null as an empty cell, "" as a quoted empty string."""

    def cell(v: str | None) -> str:
        if v is None:
            return ""
        if v == "" or any(c in v for c in ',"\n\r'):
            return '"' + v.replace('"', '""') + '"'
        return v

    lines: Rows = [list(header), *rows]
    return "".join(",".join(cell(v) for v in r) + "\r\n" for r in lines)


def verifier_root(rows: Rows, chunk_rows: int) -> str:
    """The root a third party computes from plain rows (hashlib, struct, RFC 9162)."""
    return root_from_leaves(_verifier_leaves(rows, chunk_rows) if rows else []).hex()


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield ObjectStore((tmp_path / "objects").as_uri())
    else:
        s = ObjectStore(f"memory://ingest-{uuid.uuid4().hex}")
        yield s
        if s.fs.exists(s.root):
            s.fs.rm(s.root, recursive=True)


def upload(
    store: ObjectStore,
    path: Path,
    fmt: str,
    limits: IngestLimits = LIMITS,
    encoding: str | None = None,
) -> tuple[str, FileFacts]:
    with path.open("rb") as source:
        return ingest(store, source, fmt, limits, encoding=encoding)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def leftovers(store: ObjectStore) -> list[str]:
    return list(store.fs.find(store.root)) if store.fs.exists(store.root) else []


# ---------------------------------------------------------------- CSV that is accepted


def test_utf8_csv_with_chinese_text(store: ObjectStore, tmp_path: Path) -> None:
    data = csv_text(HEADER, ROWS).encode()
    key, facts = upload(store, write(tmp_path, "水果.csv", data), "csv")

    assert key.startswith("tmp/") and store.size(key) == len(data)
    assert (facts.format, facts.encoding, facts.byte_size) == ("csv", "utf-8", len(data))
    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    assert facts.row_count == 5
    assert facts.columns == (
        ColumnFacts("名称", "string", False, 0),
        ColumnFacts("数量", "integer", True, 1),
        ColumnFacts("单价", "number", False, 0),
        ColumnFacts("日期", "date", True, 1),
        ColumnFacts("时间", "timestamp", True, 1),
        ColumnFacts("有效", "boolean", True, 1),
        ColumnFacts("编码", "string", False, 0),  # leading zeros: a code, not a number
        ColumnFacts("备注", "string", True, 1),  # "" and "NULL" are text, not null
    )
    assert facts.sample == tuple(tuple(r) for r in ROWS[:3])
    assert (facts.chunk_rows, facts.chunk_count) == (4, 2)
    assert facts.chunk_root == verifier_root(ROWS, 4)


def test_gbk_and_bom_csv_commit_to_the_same_rows(store: ObjectStore, tmp_path: Path) -> None:
    text = csv_text(HEADER, ROWS)
    _, utf8 = upload(store, write(tmp_path, "u.csv", text.encode()), "csv")
    _, gbk = upload(store, write(tmp_path, "g.csv", text.encode("gbk")), "csv")
    _, bom = upload(store, write(tmp_path, "b.csv", b"\xef\xbb\xbf" + text.encode()), "csv")
    _, declared = upload(store, write(tmp_path, "d.csv", text.encode("gbk")), "csv", encoding="GBK")

    assert gbk.encoding == declared.encoding == "gb18030"
    assert bom.encoding == "utf-8"
    assert bom.columns[0].name == "名称"  # the BOM is not part of the first name
    assert len({utf8.sha256, gbk.sha256, bom.sha256}) == 3  # different bytes ...
    assert utf8.chunk_root == gbk.chunk_root == bom.chunk_root == declared.chunk_root  # same rows
    assert utf8.columns == gbk.columns == bom.columns


def test_header_only_file_has_no_rows(store: ObjectStore, tmp_path: Path) -> None:
    _, facts = upload(store, write(tmp_path, "h.csv", "名称,数量".encode()), "csv")
    assert facts.row_count == facts.chunk_count == 0
    assert facts.chunk_root == hashlib.sha256(b"").hexdigest()  # RFC 9162: MTH({}) = HASH()
    assert [c.type for c in facts.columns] == ["string", "string"]


def test_multibyte_characters_across_block_boundaries(store: ObjectStore, tmp_path: Path) -> None:
    """Rows beyond several 1 MiB receive blocks and 4 MiB parse blocks, chunks across them."""
    rows: Rows = [[str(i), "数据交易所" * (i % 7), f"{i / 3:.3f}"] for i in range(120_000)]
    data = csv_text(["id", "文本", "值"], rows).encode()
    assert len(data) > 5 * 2**20
    limits = IngestLimits(max_bytes=len(data), max_decoded_bytes=10**9, max_columns=5)
    key, facts = upload(store, write(tmp_path, "big.csv", data), "csv", limits)
    assert facts.row_count == 120_000
    assert [c.type for c in facts.columns] == ["integer", "string", "number"]
    assert facts.chunk_root == verifier_root(rows, 1024)
    assert unpack_leaves(facts.chunk_leaves) == chunk_leaves(store, key, "csv", "utf-8", 1024)
    gbk = csv_text(["id", "文本", "值"], rows).encode("gbk")  # transcoded across 4 MiB blocks
    assert len(gbk) > 4 * 2**20
    key, facts = upload(store, write(tmp_path, "big-gbk.csv", gbk), "csv", limits)
    assert facts.encoding == "gb18030" and facts.chunk_root == verifier_root(rows, 1024)
    assert read_chunk(store, key, "csv", "gb18030", 1024, 100) == rows[102_400:103_424]


def test_read_chunk_and_prove_it(store: ObjectStore, tmp_path: Path) -> None:
    rows: Rows = [[f"行{i}", str(i), None if i % 4 else ""] for i in range(30)]
    key, facts = upload(
        store, write(tmp_path, "r.csv", csv_text(["a", "b", "c"], rows).encode()), "csv"
    )
    leaves = unpack_leaves(facts.chunk_leaves)
    assert facts.chunk_count == len(leaves) == 8
    for i in range(facts.chunk_count):
        chunk = read_chunk(store, key, "csv", facts.encoding, facts.chunk_rows, i)
        assert chunk == rows[i * 4 : (i + 1) * 4]
        verify_chunk(chunk, i, facts.chunk_count, chunk_proof(leaves, i), facts.chunk_root)
    with pytest.raises(IndexError):
        read_chunk(store, key, "csv", facts.encoding, facts.chunk_rows, 8)


# ---------------------------------------------------------------- encodings refused


def test_receive_checks_utf8_across_blocks() -> None:
    """A character split by the 1 MiB block boundary is fine; a bad byte is found exactly."""
    split = b"a" * (BLOCK_BYTES - 1) + "中文".encode()  # 中 = e4 | b8 ad across the boundary
    sink = io.BytesIO()
    got = receive(io.BytesIO(split), sink, LIMITS)
    assert sink.getvalue() == split and got.byte_size == len(split)
    assert got.utf8_error_at is None and not got.ascii
    bad = split + b"x" * BLOCK_BYTES + b"\xe4\xb8" + b"y"
    got = receive(io.BytesIO(bad), io.BytesIO(), LIMITS)
    assert got.utf8_error_at == len(split) + BLOCK_BYTES
    cut = split + "文".encode()[:2]
    got = receive(io.BytesIO(cut), io.BytesIO(), LIMITS)
    assert got.utf8_truncated and got.utf8_error_at == len(split)


def test_declared_utf8_but_gbk(store: ObjectStore, tmp_path: Path) -> None:
    data = "name,city\nA,北京\n".encode("gbk")
    with pytest.raises(UnsupportedEncoding) as exc:
        upload(store, write(tmp_path, "x.csv", data), "csv", encoding="utf-8")
    assert str(exc.value) == (
        "The file is not valid UTF-8 at byte 12; it looks like GB18030 (GBK): declare that "
        "encoding or save the file as UTF-8."
    )
    assert exc.value.extra == {"byte": 12}
    assert leftovers(store) == []  # nothing half-stored


def test_declared_gbk_but_utf8(store: ObjectStore, tmp_path: Path) -> None:
    data = "name,city\nA,北京\n".encode()
    with pytest.raises(UnsupportedEncoding, match="almost certainly UTF-8"):
        upload(store, write(tmp_path, "x.csv", data), "csv", encoding="gbk")


def test_neither_utf8_nor_gb18030(store: ObjectStore, tmp_path: Path) -> None:
    data = b"name,city\nA,\xff\xfe\xff\n"
    message = (
        "The file is neither UTF-8 (invalid at byte 12) nor GB18030 (GBK) (invalid at byte 12)."
    )
    for declared in (None, "gb18030"):
        with pytest.raises(UnsupportedEncoding) as exc:
            upload(store, write(tmp_path, "x.csv", data), "csv", encoding=declared)
        assert str(exc.value) == message


def test_unknown_declared_encoding(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedEncoding, match="'big5' is not accepted"):
        upload(store, write(tmp_path, "x.csv", b"a\n1\n"), "csv", encoding="big5")


def test_cut_inside_a_utf8_character(store: ObjectStore, tmp_path: Path) -> None:
    data = "name,city\nA,北京\n".encode()[:-2]
    with pytest.raises(MalformedFile, match="middle of a UTF-8 character"):
        upload(store, write(tmp_path, "x.csv", data), "csv")


# ---------------------------------------------------------------- malformed CSV


@pytest.mark.parametrize(
    ("data", "message", "extra"),
    [
        (b"a,b\n1,2\n3,4\n5\n6,7\n", "Row 3 has 1 fields but the header has 2.", {"row": 3}),
        (b"a,b\n1,2\n3,4,5\n", "Row 2 has 3 fields but the header has 2.", {"row": 2}),
        (b'a,b\n1,2\n3,"unterminated\n4,5\n', "ends inside a quoted field", {}),
        (b"", "The file is empty.", {}),
        (b"\n\n\r\n", "no header row", {}),
        (b"a,a\n1,2\n", "The column names 'a' occur more than once.", {}),
        (b"a,,c\n1,2,3\n", "Column 2 has no name.", {"column": 2}),
        (b"a," + b",".join(b"c%d" % i for i in range(12)) + b"\n", "at most 12 are accepted", {}),
        (b"PAR1....", "a Parquet file, not CSV", {}),
    ],
)
def test_malformed_csv(
    store: ObjectStore, tmp_path: Path, data: bytes, message: str, extra: dict[str, object]
) -> None:
    with pytest.raises(MalformedFile) as exc:
        upload(store, write(tmp_path, "bad.csv", data), "csv")
    assert message in str(exc.value)
    assert extra.items() <= exc.value.extra.items()
    assert exc.value.status == 422
    assert leftovers(store) == []


def test_truncated_mid_row_and_mid_quote(store: ObjectStore, tmp_path: Path) -> None:
    data = csv_text(HEADER, ROWS).encode()
    mid_row = data[: data.index("香蕉".encode()) + 20]  # the second row stops after 2 fields
    with pytest.raises(MalformedFile, match="Row 2 has"):
        upload(store, write(tmp_path, "cut.csv", mid_row), "csv")
    mid_quote = data[: data.index("多行".encode()) + 6]  # inside the quoted multi-line note
    with pytest.raises(MalformedFile, match="ends inside a quoted field"):
        upload(store, write(tmp_path, "cut.csv", mid_quote), "csv")


def test_too_large_is_refused_at_once(store: ObjectStore, tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", b"a\n" + b"1\n" * 3_000_000)
    limits = IngestLimits(max_bytes=2_000_000, max_decoded_bytes=10**9, max_columns=5)
    with pytest.raises(FileTooLarge) as exc:
        upload(store, path, "csv", limits)
    assert exc.value.status == 413 and exc.value.extra == {"max_bytes": 2_000_000}
    assert leftovers(store) == []


def test_declared_digest_mismatch(store: ObjectStore, tmp_path: Path) -> None:
    with (tmp_path / "a.csv").open("wb") as f:
        f.write(b"a\n1\n")
    with (tmp_path / "a.csv").open("rb") as src, pytest.raises(MalformedFile, match="truncated"):
        ingest(store, src, "csv", LIMITS, expected_sha256="00" * 32)


@pytest.mark.parametrize(
    ("data", "match"),
    [(b"PK\x03\x04rest", "Excel workbook"), (b"\x1f\x8b\x08rest", "gzip-compressed")],
)
def test_not_tabular(store: ObjectStore, tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(UnsupportedFormat, match=match):
        upload(store, write(tmp_path, "x.csv", data), "csv")


def test_format_of() -> None:
    assert format_of("销售.CSV") == "csv" and format_of("a.b.parquet") == "parquet"
    for name in ("a.xlsx", "README"):
        with pytest.raises(UnsupportedFormat):
            format_of(name)


# ---------------------------------------------------------------- Parquet


def _typed_table(n: int = 23) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "城市": pa.array([None if i % 5 == 0 else f"城市{i % 3}" for i in range(n)]),
            "price": pa.array([None if i % 7 == 0 else i * 1.25 for i in range(n)]),
            "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)]),
            "at": pa.array(
                [dt.datetime(2024, 1, 1, 8) + dt.timedelta(minutes=i) for i in range(n)],
                pa.timestamp("s"),
            ),
            "ok": pa.array([i % 2 == 0 for i in range(n)]),
            "raw": pa.array([bytes([i, 255]) for i in range(n)]),
            "grade": pa.array(["A", "B", "C"] * (n // 3) + ["A"] * (n % 3)).dictionary_encode(),
            "fee": pa.array([Decimal(i) / 4 for i in range(n)], pa.decimal128(9, 2)),
        }
    )


def _text_rows(table: pa.Table) -> Rows:
    """Cells as Arrow casts them to text (binary as hex): the verifier's view of Parquet."""
    cols = []
    for col in table.columns:
        if pa.types.is_binary(col.type):
            cols.append([None if v is None else v.hex() for v in col.to_pylist()])
        else:
            cols.append(pc.cast(col, pa.string()).to_pylist())
    return [list(r) for r in zip(*cols, strict=True)]


def test_parquet_with_row_groups(store: ObjectStore, tmp_path: Path) -> None:
    table = _typed_table()
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=5)
    assert pq.ParquetFile(tmp_path / "t.parquet").num_row_groups == 5
    key, facts = upload(store, tmp_path / "t.parquet", "parquet")

    assert (facts.format, facts.encoding, facts.row_count) == ("parquet", None, 23)
    assert [(c.name, c.type, c.null_count) for c in facts.columns] == [
        ("id", "integer", 0),
        ("城市", "string", 5),
        ("price", "number", 4),
        ("day", "date", 0),
        ("at", "timestamp", 0),
        ("ok", "boolean", 0),
        ("raw", "binary", 0),
        ("grade", "string", 0),
        ("fee", "number", 0),
    ]
    rows = _text_rows(pq.read_table(tmp_path / "t.parquet"))  # Parquet stores seconds as ms
    assert facts.sample[1] == (
        "1",
        "城市1",
        "1.25",
        "2024-01-02",
        "2024-01-01 08:01:00.000",
        "false",
        "01ff",
        "B",
        "0.25",
    )
    assert facts.chunk_count == 6
    assert facts.chunk_root == verifier_root(rows, 4)
    leaves = unpack_leaves(facts.chunk_leaves)
    for i in (0, 2, 5):  # chunk 2 spans two row groups
        chunk = read_chunk(store, key, "parquet", None, 4, i)
        assert chunk == rows[i * 4 : (i + 1) * 4]
        verify_chunk(chunk, i, facts.chunk_count, chunk_proof(leaves, i), facts.chunk_root)


def test_csv_and_parquet_of_the_same_text_agree(store: ObjectStore, tmp_path: Path) -> None:
    """By design: text cells, nulls and order are what is committed, not the file format."""
    rows: Rows = [
        [f"客户{i}", None if i % 3 == 0 else f"{i}号", "" if i % 4 == 0 else "x"] for i in range(9)
    ]
    names = ["客户", "地址", "标记"]
    pq.write_table(
        pa.table({n: pa.array([r[c] for r in rows], pa.string()) for c, n in enumerate(names)}),
        tmp_path / "s.parquet",
        row_group_size=2,
    )
    _, from_parquet = upload(store, tmp_path / "s.parquet", "parquet")
    _, from_csv = upload(store, write(tmp_path, "s.csv", csv_text(names, rows).encode()), "csv")
    assert from_csv.chunk_root == from_parquet.chunk_root == verifier_root(rows, 4)
    assert from_csv.sha256 != from_parquet.sha256


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-100], "footer cannot be read"),
        (lambda b: b[: len(b) // 2], "footer cannot be read"),
        (lambda b: b"PAR1" + bytes(range(256)) * 40, "footer cannot be read"),
        (lambda b: bytes(range(256)) * 40, "does not begin with the bytes PAR1"),
        (lambda b: b"a,b\n1,2\n", "does not begin with the bytes PAR1"),
    ],
)
def test_broken_parquet(store: ObjectStore, tmp_path: Path, mangle: object, message: str) -> None:
    pq.write_table(_typed_table(), tmp_path / "ok.parquet")
    data = mangle((tmp_path / "ok.parquet").read_bytes())  # type: ignore[operator]
    with pytest.raises(MalformedFile, match=message):
        upload(store, write(tmp_path, "bad.parquet", data), "parquet")
    assert leftovers(store) == []


def test_parquet_decompression_bomb(store: ObjectStore, tmp_path: Path) -> None:
    """100 M identical values: a few hundred KB on disk, 800 MB decoded."""
    part = pa.table({"v": pa.nulls(10_000_000, pa.int64()).fill_null(0)})
    with pq.ParquetWriter(tmp_path / "bomb.parquet", part.schema, compression="zstd") as w:
        for _ in range(10):
            w.write_table(part)
    del part
    assert (tmp_path / "bomb.parquet").stat().st_size < 1_000_000
    with pytest.raises(DecompressionBomb) as exc:
        upload(store, tmp_path / "bomb.parquet", "parquet")
    assert exc.value.extra["decoded_bytes"] >= 800_000_000
    assert "limit is 50000000" in str(exc.value)


def test_parquet_bomb_caught_while_decoding(store: ObjectStore, tmp_path: Path) -> None:
    """The footer's sizes look harmless (one dictionary value); the decoded text does not."""
    pq.write_table(pa.table({"s": ["重复" * 50_000] * 300}), tmp_path / "b.parquet")
    assert (tmp_path / "b.parquet").stat().st_size < 200_000
    limits = IngestLimits(max_bytes=10**6, max_decoded_bytes=20_000_000, max_columns=5)
    with pytest.raises(DecompressionBomb, match="expands to at least"):
        upload(store, tmp_path / "b.parquet", "parquet", limits)


def test_parquet_text_that_is_not_utf8(store: ObjectStore, tmp_path: Path) -> None:
    raw = pa.array([b"ok", b"\xff\xfe"], pa.binary())
    text = pa.Array.from_buffers(pa.string(), 2, raw.buffers())  # pyarrow does not check
    pq.write_table(pa.table({"名称": text}), tmp_path / "bad.parquet")
    with pytest.raises(MalformedFile, match="Column '名称' holds text that is not UTF-8"):
        upload(store, tmp_path / "bad.parquet", "parquet")


def test_parquet_refusals(store: ObjectStore, tmp_path: Path) -> None:
    pq.write_table(pa.table({f"c{i}": [1] for i in range(13)}), tmp_path / "wide.parquet")
    with pytest.raises(MalformedFile, match="13 columns; at most 12"):
        upload(store, tmp_path / "wide.parquet", "parquet")
    pq.write_table(pa.table({"tags": [["a", "b"]]}), tmp_path / "nested.parquet")
    with pytest.raises(UnsupportedFormat, match="nested type"):
        upload(store, tmp_path / "nested.parquet", "parquet")
    with pytest.raises(UnsupportedFormat):
        upload(store, tmp_path / "wide.parquet", "xlsx")


# ---------------------------------------------------------------- schema drift


def _cols(*spec: str) -> list[ColumnFacts]:
    return [ColumnFacts(s.split(":")[0], s.split(":")[1], False, 0) for s in spec]


def test_schema_drift() -> None:
    base = _cols("id:integer", "name:string", "day:date")
    assert schema_drift(base, base) == []
    assert schema_drift(base, [ColumnFacts("id", "integer", True, 3), *base[1:]]) == []
    assert schema_drift(base, _cols("id:integer", "name:string")) == ["column 'day' was removed"]
    assert schema_drift(base, [*base, *_cols("新列:number")]) == ["column '新列' was added"]
    assert schema_drift(base, _cols("id:number", "name:string", "day:date")) == [
        "column 'id' changed type from integer to number"
    ]
    assert schema_drift(base, _cols("name:string", "id:integer", "day:timestamp")) == [
        "columns were reordered: id, name, day -> name, id, day",
        "column 'day' changed type from date to timestamp",
    ]
