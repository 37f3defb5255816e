"""search: catalog search latency in process (tantivy) against the databases' own full text.

100,000 synthetic listings (``_catalog_data``) are indexed by :class:`CatalogIndex`, then
about 2,000 buyer queries (one to three words in Chinese, English or both; a third with
filters; half with facets; some other sorts and later pages) are timed one by one through
``CatalogIndex.search`` — query analysis, hits, total and facets included.

Baseline, in the same run: the same listings, with exactly the analysed text the index
holds, in the database's own full-text search — SQLite FTS5 (``unicode61`` splits the
analysed text on spaces; ``MATCH`` of the quoted terms joined by ``OR``, ``bm25()`` with
the same field weights) and PostgreSQL (a weighted ``tsvector`` over the ``simple``
configuration with a GIN index; ``to_tsquery`` of the terms joined by ``|``,
``ts_rank``). Each database answers a query in one statement that returns the page, the
total and every facet's counts (``GROUP BY``; a filtered dimension is counted without its
own filter, as the index does), so both sides do the same work. Query analysis is timed on
both sides. A database gets a time budget; its queries are a prefix of the same shuffled
list. Totals are compared query by query as a check that both sides match the same sets.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import Outcome, Row, register
from benchmarks._catalog_data import generate_listings, generate_queries
from benchmarks._stores import StoreUnavailable, store
from databourse.catalog.facts import ListingFacts
from databourse.catalog.search import (
    BOOSTS,
    FACETS,
    CatalogIndex,
    SearchQuery,
    index_text,
    price_band,
)
from databourse.catalog.text import analyze, warm_up

LISTINGS = 100_000
QUERIES = 2_000
WARMUP = 200  # queries run before measuring (tantivy); a tenth of it for the databases
GOAL_MS = 20.0
DB_BUDGET = 120.0  # seconds of measuring per database
FILTERS = {"kind": "kinds", "industry": "industries", "category": "categories",
           "grade": "grades", "update_frequency": "update_frequencies",
           "merchant": "merchants"}  # fmt: skip
ORDER = {
    "relevance": "score DESC, id",
    "newest": "listed_at DESC, id",
    "price_asc": "price, id",
    "price_desc": "price DESC, id",
    "title": "title_key, id",
}
COLUMNS = ("id", "kind", "industry", "category", "grade", "update_frequency", "merchant",
           "has_sample", "price", "price_band", "listed_at", "title_key")  # fmt: skip
TEXTS = tuple(BOOSTS)  # title, tags, fields, description, other


def _row(d: ListingFacts) -> tuple[Any, ...]:
    return (d.id, d.kind, d.industry, d.category, d.grade, d.update_frequency, d.org_id,
            d.has_sample, d.min_price_fen, price_band(d.min_price_fen),
            int(d.listed_at.timestamp()), d.title.casefold())  # fmt: skip


def _percentile(ms: list[float], p: float) -> float:
    s = sorted(ms)
    return s[min(len(s) - 1, int(p * len(s)))]


class SqlSearch:
    """One statement per query: the page, the total and the facet counts of a search."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def _ph(self, name: str) -> str:
        return f":{name}" if self.dialect == "sqlite" else f"%({name})s"

    def _where(self, q: SearchQuery, params: dict[str, Any], without: str | None) -> str:
        conds = ["TRUE"]
        for col, attr in FILTERS.items():
            values = getattr(q, attr)
            if values and col != without:
                names = [f"{col}{i}" for i in range(len(values))]
                params.update(zip(names, values, strict=True))
                conds.append(f"{col} IN ({', '.join(self._ph(n) for n in names)})")
        if q.has_sample is not None and without != "has_sample":
            params["has_sample"] = q.has_sample
            conds.append(f"has_sample = {self._ph('has_sample')}")
        if without != "price_band":
            for name, op in (("price_min_fen", ">="), ("price_max_fen", "<=")):
                if getattr(q, name) is not None:
                    params[name] = getattr(q, name)
                    conds.append(f"price {op} {self._ph(name)}")
        return " AND ".join(conds)

    def _matches(self, terms: list[str], params: dict[str, Any]) -> str:
        if not terms:
            return "SELECT *, 0.0 AS score FROM bench_listing"
        if self.dialect == "sqlite":
            params["match"] = " OR ".join(f'"{t}"' for t in terms)
            weights = ", ".join(str(w) for w in BOOSTS.values())
            return (
                f"SELECT l.*, -bm25(bench_fts, {weights}) AS score FROM bench_fts "
                "JOIN bench_listing l ON l.rid = bench_fts.rowid WHERE bench_fts MATCH :match"
            )
        params["tsq"] = " | ".join(f"'{t}'" for t in terms)
        return (
            "SELECT l.*, ts_rank('{0.25, 0.375, 0.625, 1.0}', l.tsv, q.q) AS score "
            "FROM bench_listing l, to_tsquery('simple', %(tsq)s) AS q(q) WHERE l.tsv @@ q.q"
        )

    def statement(self, q: SearchQuery) -> tuple[str, dict[str, Any]]:
        terms = list(dict.fromkeys(analyze(q.text)))
        params: dict[str, Any] = {"limit": q.limit, "offset": q.offset}
        sort = q.sort if terms or q.sort != "relevance" else "newest"
        mat = "AS MATERIALIZED" if terms else "AS"
        parts = [
            f"SELECT * FROM (SELECT 'hit' AS k, id AS v, score AS n FROM f "
            f"ORDER BY {ORDER[sort]} LIMIT {self._ph('limit')} OFFSET {self._ph('offset')}) h",
            "SELECT 'total', NULL, count(*) FROM f",
        ]
        if q.facets:
            active = {
                name
                for name in FACETS
                if (name in FILTERS and getattr(q, FILTERS[name]))
                or (name == "has_sample" and q.has_sample is not None)
                or (name == "price_band" and (q.price_min_fen, q.price_max_fen) != (None, None))
            }
            for name in FACETS:
                col = "CAST(has_sample AS TEXT)" if name == "has_sample" else name
                src = f"m WHERE {self._where(q, params, name)}" if name in active else "f"
                parts.append(f"SELECT '{name}', {col}, count(*) FROM {src} GROUP BY {col}")
        sql = (
            f"WITH m {mat} ({self._matches(terms, params)}), "
            f"f {mat} (SELECT * FROM m WHERE {self._where(q, params, None)}) "
            + " UNION ALL ".join(parts)
        )
        return sql, params


def _load_sqlite(path: str, listings: list[ListingFacts], texts: list[dict[str, str]]) -> Any:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.executescript(
        "CREATE TABLE bench_listing (rid INTEGER PRIMARY KEY, id TEXT NOT NULL, kind TEXT, "
        "industry TEXT, category TEXT, grade TEXT, update_frequency TEXT, merchant TEXT, "
        "has_sample INTEGER, price INTEGER, price_band TEXT, listed_at INTEGER, title_key TEXT);"
        f"CREATE VIRTUAL TABLE bench_fts USING fts5({', '.join(TEXTS)}, content='', "
        "tokenize=\"unicode61 remove_diacritics 0 tokenchars '_'\");"
    )
    con.execute("BEGIN")
    con.executemany(
        f"INSERT INTO bench_listing VALUES (?, {', '.join('?' * len(COLUMNS))})",
        ((i, *_row(d)) for i, d in enumerate(listings, 1)),
    )
    con.executemany(
        f"INSERT INTO bench_fts (rowid, {', '.join(TEXTS)}) VALUES (?, ?, ?, ?, ?, ?)",
        ((i, *(t[c] for c in TEXTS)) for i, t in enumerate(texts, 1)),
    )
    for col in ("listed_at", "price", "title_key", "kind", "industry", "merchant"):
        con.execute(f"CREATE INDEX bench_listing_{col} ON bench_listing ({col})")
    con.execute("COMMIT")
    con.execute("ANALYZE")
    return con


def _load_pg(url: str, listings: list[ListingFacts], texts: list[dict[str, str]]) -> Any:
    import psycopg

    con = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))
    con.autocommit = True
    con.execute(
        "CREATE UNLOGGED TABLE bench_stage (id text, kind text, industry text, category text, "
        "grade text, update_frequency text, merchant text, has_sample boolean, price bigint, "
        "price_band text, listed_at bigint, title_key text, "
        f"{', '.join(f'{c} text' for c in TEXTS)})"
    )
    with con.cursor() as cur, cur.copy("COPY bench_stage FROM STDIN") as copy:
        for d, t in zip(listings, texts, strict=True):
            copy.write_row((*_row(d), *(t[c] for c in TEXTS)))
    con.execute(
        f"CREATE TABLE bench_listing AS SELECT {', '.join(COLUMNS)}, "
        "setweight(to_tsvector('simple', title), 'A') || "
        "setweight(to_tsvector('simple', tags), 'B') || "
        "setweight(to_tsvector('simple', fields), 'C') || "
        "setweight(to_tsvector('simple', description || ' ' || other), 'D') AS tsv "
        "FROM bench_stage"
    )
    con.execute("CREATE INDEX bench_listing_tsv ON bench_listing USING gin (tsv)")
    for col in ("id", "listed_at", "price", "title_key", "kind", "industry", "merchant"):
        con.execute(f"CREATE INDEX bench_listing_{col} ON bench_listing ({col})")
    con.execute("DROP TABLE bench_stage")
    con.execute("VACUUM ANALYZE bench_listing")
    return con


def _run_db(con: Any, dialect: str, queries: list[SearchQuery]) -> tuple[list[float], list[int]]:
    """Latencies (ms) and totals, for the prefix of ``queries`` that fits the budget."""
    sql = SqlSearch(dialect)

    def execute(statement: str, params: dict[str, Any]) -> list[Any]:
        return list(con.execute(statement, params).fetchall())

    for q in queries[: WARMUP // 10]:
        execute(*sql.statement(q))
    ms: list[float] = []
    totals: list[int] = []
    start = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        rows = execute(*sql.statement(q))
        ms.append((time.perf_counter() - t0) * 1000)
        totals.append(next(int(n) for k, _, n in rows if k == "total"))
        if time.perf_counter() - start > DB_BUDGET:
            break
    return ms, totals


@register(
    title="Catalog search: tantivy in process vs the databases' full-text search",
    goal=f"p99 ≤ {GOAL_MS:.0f} ms per search over {LISTINGS:,} listings, in process",
)
def search(console: Console) -> Outcome:
    warm_up()
    listings = generate_listings(LISTINGS)
    queries = generate_queries(QUERIES)
    console.print(f"[bold]search[/bold]: indexing {LISTINGS:,} listings …")
    index = CatalogIndex()
    t0 = time.perf_counter()
    index.upsert(listings)
    build = time.perf_counter() - t0
    for q in queries[:WARMUP]:
        index.search(q)
    ms, totals = [], []
    for q in queries:
        t0 = time.perf_counter()
        totals.append(index.search(q).total)
        ms.append((time.perf_counter() - t0) * 1000)
    p50, p99 = statistics.median(ms), _percentile(ms, 0.99)
    faceted = [m for m, q in zip(ms, queries, strict=True) if q.facets]
    plain = [m for m, q in zip(ms, queries, strict=True) if not q.facets]
    console.print(f"  tantivy p50 {p50:.2f} ms, p99 {p99:.2f} ms; analysing for the databases …")
    t0 = time.perf_counter()
    texts = [index_text(d) for d in listings]
    analysis = time.perf_counter() - t0
    rows = [
        Row(
            f"tantivy · p99 per search @ {LISTINGS:,}",
            p99,
            "ms",
            GOAL_MS,
            goal=1.0,
            lower_is_better=True,
            extra={
                "p50": f"{p50:.2f} ms",
                "detail": f"{len(ms):,} queries; p99 with facets {_percentile(faceted, 0.99):.2f}"
                f" ms, without {_percentile(plain, 0.99):.2f} ms",
            },
        ),
        Row(
            f"tantivy · index build @ {LISTINGS:,}",
            LISTINGS / build,
            "docs/s",
            extra={"p50": "", "detail": f"{build:.1f} s; text analysis alone {analysis:.1f} s"},
        ),
    ]
    notes: list[str] = []
    for kind, label, dialect in (
        ("sqlite", "SQLite FTS5", "sqlite"),
        ("postgresql", "PostgreSQL tsvector", "pg"),
    ):
        console.print(f"  {label}: loading …")
        try:
            with (
                tempfile.TemporaryDirectory(prefix="databourse-bench-") as tmp,
                store(kind, Path(tmp)) as url,
            ):
                t0 = time.perf_counter()
                con = (
                    _load_sqlite(url.removeprefix("sqlite:///"), listings, texts)
                    if dialect == "sqlite"
                    else _load_pg(url, listings, texts)
                )
                load = time.perf_counter() - t0
                console.print(f"  {label}: loaded in {load:.0f} s; querying …")
                try:
                    db_ms, db_totals = _run_db(con, dialect, queries)
                finally:
                    con.close()
        except StoreUnavailable as exc:
            notes.append(f"{label} skipped: not reachable ({exc})")
            continue
        db_p50, db_p99 = statistics.median(db_ms), _percentile(db_ms, 0.99)
        same = sum(a == b for a, b in zip(db_totals, totals, strict=False))
        rows.append(
            Row(
                f"{label} · p99, ratio = its p99 / tantivy's",
                p99,
                "ms",
                db_p99,
                goal=1.0,
                ratio_override=db_p99 / p99,
                extra={
                    "p50": f"{p50:.2f} / {db_p50:.1f} ms",
                    "detail": f"{len(db_ms):,} queries; load {load:.0f} s; "
                    f"same total as tantivy for {same / len(db_totals):.0%}",
                },
            )
        )
    return Outcome(
        rows=rows,
        baseline="the same listings and analysed text in SQLite FTS5 (bm25) and PostgreSQL "
        "(weighted tsvector, `simple` config, GIN, ts_rank): one statement per query "
        "returning page, total and facet counts",
        method=[
            f"{LISTINGS:,} listings from `benchmarks._catalog_data.generate_listings` (seed "
            f"fixed; ~70% Chinese), {QUERIES:,} queries from `generate_queries`",
            f"tantivy: RAM index built by one `CatalogIndex.upsert` (text analysis included); "
            f"{WARMUP} warm-up queries, then every query timed singly in process",
            f"databases: {WARMUP // 10} warm-up queries, then queries in the same order until "
            f"all ran or {DB_BUDGET:.0f} s passed; analysis of the query text timed too",
            "p50 / p99: over single-query latencies; the database rows show tantivy's p99 "
            "as the result and the database's as the baseline",
        ],
        notes=notes,
    )
