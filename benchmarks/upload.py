"""upload: a data file's full ingest (receive + describe) against plain SHA-256 of its bytes.

A ~200 MB CSV is generated with pyarrow in a temp directory (1.75 M rows of mixed Chinese
and English text, integers, floats and dates, a few empty cells), and a Parquet file of the
same table (zstd, row groups of 128 Ki rows). For each file, rounds alternate
``sha256, ingest, sha256, ingest, …, sha256``:

- **sha256**: the file read in ``ingest.BLOCK_BYTES`` blocks and fed to ``hashlib.sha256``:
  the least any upload must do (and part of what ingest does).
- **ingest**: ``ingest.receive`` from the file into a temporary object of a ``file://``
  store in the temp directory, then ``ingest.describe`` of that object: UTF-8 check,
  parse, type inference, null counts, sample and the Merkle commitment over 1,024-row chunks.

Both rates are MB/s of the file's bytes (10^6 bytes). A round's ratio is the ingest rate
over the mean of the SHA-256 rates just before and after it; the reported ratio is the
median over rounds. The page cache holds both files, so neither side waits for the disk.
"""

from __future__ import annotations

import hashlib
import random
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console

from benchmarks import Outcome, Row, register
from databourse.assets import ingest
from databourse.assets.store import ObjectStore

GOAL = 0.5
ROWS = 1_750_000
ROUNDS = 3
WORDS = [
    "北京", "上海", "数据", "交易", "深圳", "杭州 西湖", "价格", "客户", "订单", "物流",
    "data", "market", "exchange", "order", "price", "customer", "shipment", "quality",
]  # fmt: skip


def _table(n: int) -> pa.Table:
    """Synthetic sales records, built with vectorized pyarrow (no per-row Python)."""
    rng = random.Random(7)
    phrases = pa.array(
        [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) + f" #{i}"
            for i in range(5000)
        ]
    )

    def pick(k: int, size: int) -> pa.Array:
        return pc.cast(pc.floor(pc.multiply(pc.random(n, initializer=k), size)), pa.int64())

    amount = pc.round(pc.multiply(pc.random(n, initializer=3), 100_000), 2)
    return pa.table(
        {
            "order_id": pa.array(range(10_000_000, 10_000_000 + n), pa.int64()),
            "customer": pc.take(phrases, pick(1, 5000)),
            "city": pc.take(pa.array(WORDS[:10]), pick(2, 10)),
            "amount": pc.if_else(pc.less(pc.random(n, initializer=9), 0.01), None, amount),
            "quantity": pick(4, 1000),
            "order_date": pc.cast(pc.cast(pc.add(pick(5, 3000), 17_000), pa.int32()), pa.date32()),
            "note": pc.take(phrases, pick(6, 5000)),
        }
    )


def _sha256(path: Path) -> float:
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        while block := f.read(ingest.BLOCK_BYTES):
            digest.update(block)
    digest.hexdigest()
    return time.perf_counter() - t0


def _ingest(path: Path, fmt: str, store: ObjectStore) -> tuple[float, float, ingest.FileFacts]:
    limits = ingest.IngestLimits(
        max_bytes=1 << 30, max_decoded_bytes=4 << 30, max_columns=1000, chunk_rows=1024
    )
    t0 = time.perf_counter()
    key, sink = store.create_temp()
    try:
        with path.open("rb") as source, sink:
            received = ingest.receive(source, sink, limits)
        t1 = time.perf_counter()
        facts = ingest.describe(store, key, fmt, received, limits)
        t2 = time.perf_counter()
    finally:
        store.delete(key)
    return t1 - t0, t2 - t1, facts


def _measure(path: Path, fmt: str, store: ObjectStore, console: Console) -> Row:
    size = path.stat().st_size / 1e6
    _sha256(path), _ingest(path, fmt, store)  # warm-up: page cache, imports
    before = size / _sha256(path)
    rates, ratios, bases, phases = [], [], [before], []
    facts = None
    for r in range(ROUNDS):
        recv, desc, facts = _ingest(path, fmt, store)
        after = size / _sha256(path)
        rate = size / (recv + desc)
        rates.append(rate)
        bases.append(after)
        ratios.append(rate / ((before + after) / 2))
        phases.append((recv, desc))
        console.print(
            f"  [dim]{fmt} round {r + 1}/{ROUNDS}: ingest {rate:,.0f} MB/s "
            f"(receive {recv:.2f} s, describe {desc:.2f} s), sha256 {after:,.0f} MB/s[/dim]"
        )
        before = after
    assert facts is not None
    recv, desc = (statistics.median(p[i] for p in phases) for i in (0, 1))
    return Row(
        f"{fmt.upper()} {size:,.0f} MB, {facts.row_count:,} rows × {len(facts.columns)} columns",
        statistics.median(rates),
        "MB/s",
        statistics.median(bases),
        goal=GOAL,
        ratio_override=statistics.median(ratios),
        extra={
            "rows/s": f"{facts.row_count / (recv + desc):,.0f}",
            "receive s": f"{recv:.2f}",
            "describe s": f"{desc:.2f}",
        },
    )


@register(
    title="Upload with commitment",
    goal=f"full ingest of a data file at ≥ {GOAL:.0%} of plain SHA-256's MB/s over the same file",
)
def upload(console: Console) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="databourse-bench-") as tmp:
        work = Path(tmp)
        console.print(f"[bold]upload[/bold]: generating {ROWS:,} rows …")
        table = _table(ROWS)
        csv_path, parquet_path = work / "orders.csv", work / "orders.parquet"
        pacsv.write_csv(table, csv_path)
        pq.write_table(table, parquet_path, row_group_size=128 * 1024, compression="zstd")
        del table
        store = ObjectStore((work / "objects").as_uri())
        rows = [_measure(csv_path, "csv", store, console)]
        rows.append(_measure(parquet_path, "parquet", store, console))
    return Outcome(
        rows=rows,
        baseline=f"`hashlib.sha256` over the same file read in {ingest.BLOCK_BYTES >> 20} MiB "
        "blocks, in the same run, alternating with the ingest rounds",
        method=[
            f"{ROWS:,} synthetic rows: integer id, Chinese/English text (two columns), city, "
            "float amount (1% empty), integer quantity, date; written by pyarrow as CSV "
            "(UTF-8, every text quoted) and as Parquet (zstd, 128 Ki-row row groups)",
            "ingest = `receive` into a `file://` object store in a temp directory + "
            "`describe` of the stored object (commitment chunks of 1,024 rows)",
            f"one warm-up round, then {ROUNDS} rounds alternating sha256 and ingest; MB/s are "
            "medians over rounds; the ratio is the median of each ingest round's rate over "
            "the mean of the two SHA-256 rates around it",
        ],
        notes=[
            "what bounds the ratio: ingest hashes the file once (receive) and every cell's "
            "bytes plus 4-byte lengths again (the commitment, about 1.2 times the CSV's "
            "bytes), so two SHA-256 passes alone cap it near 0.45 in one thread; on top come "
            "pyarrow's single-threaded streaming CSV parse (about 0.35 s of CPU per 200 MB), "
            "UTF-8 validation, type-inference casts and the write to the store. Hashing and "
            "type inference run in a second thread, which only helps with a free core",
            "Parquet is compressed (about a sixth of the CSV's bytes for the same rows) while "
            "ingest decodes and commits every row as text, so its MB/s of file bytes is "
            "far below the CSV's; rows/s compares the two formats",
        ],
    )
