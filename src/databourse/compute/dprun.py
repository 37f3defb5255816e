"""Run a DP SQL plan on DuckDB over the given tables and release its answer.

Each run opens a fresh in-memory DuckDB connection that sees only the plan's tables: each
is a view exposing exactly the declared columns, cast to their declared types (a value
that does not fit becomes NULL rather than an error that could quote it). Once the views
exist the connection loses access to the file system (only the given files stay readable)
and its configuration is locked, so nothing in a query could reach other data.

The plan's SQL computes exact statistics per observed group. In dp mode the runner then
lays them over every group of the declared domain (empty ones count zero), adds OpenDP's
discrete Laplace noise (``mechanisms``) and applies the plan's HAVING, ORDER BY and LIMIT
to the noisy rows. In threshold mode groups with fewer than ``k`` distinct units are
dropped and counted, and the rest are returned exactly.

``seed`` keys the choice of the rows each privacy unit keeps, so the same seed gives the
same choice; the noise itself always comes from OpenDP's secure generator.
"""

from __future__ import annotations

import itertools
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from databourse.compute import mechanisms
from databourse.compute.dpsql import DIALECT, NOISY_TABLE, RESERVED, SQL_TYPES, Plan, Table

__all__ = ["Result", "run"]

_INT64 = (-(2**63), 2**63 - 1)
# no Python variables, no extensions fetched or loaded behind our back
_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "python_enable_replacements": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


@dataclass(frozen=True)
class Result:
    """A released answer. ``error`` holds, per aggregate column, the 95 % half-width of
    its noise (for AVG the largest over the rows, approximate); None for keys and in
    threshold mode."""

    mode: str
    columns: list[str]
    rows: list[list[Any]]
    epsilon: float
    delta: float
    error: dict[str, float | None] = field(default_factory=dict)
    suppressed_groups: int = 0  # threshold mode: groups dropped for too few units

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "columns": list(self.columns),
            "rows": [[_json(v) for v in row] for row in self.rows],
            "epsilon": self.epsilon,
            "delta": self.delta,
            "error": dict(self.error),
            "suppressed_groups": self.suppressed_groups,
        }


def _json(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date) else v


def rows_per_unit(table: pa.Table, unit: str) -> int:
    """The most rows any one privacy unit has in ``table`` (0 if it is empty). A node
    learns it once per version of its data; when it is within ``max_contributions`` the
    contribution bound of every query over that table keeps every row and can be skipped
    (``run``'s ``rows_per_unit``) — the same answer, without partitioning every row by its
    unit."""
    con = duckdb.connect(":memory:", config=_CONFIG)
    try:
        con.register("t", table)
        counts = exp.select(exp.Count(this=exp.Star()).as_("c")).from_("t")
        counts = counts.group_by(exp.column(unit, quoted=True))
        top = exp.select(exp.Max(this=exp.column("c"))).from_(counts.subquery("g"))
        found = con.execute(top.sql(DIALECT)).fetchone()
    finally:
        con.close()
    return int(found[0] or 0) if found else 0


def run(
    plan: Plan,
    tables: Mapping[str, pa.Table | str | os.PathLike[str]],
    *,
    seed: int | None = None,
    rows_per_unit: Mapping[str, int] | None = None,
) -> Result:
    """Answer ``plan`` over ``tables`` (schema table name → Arrow table or .csv/.parquet path).

    ``rows_per_unit`` (schema table name → the most rows one unit has there, as measured by
    :func:`rows_per_unit`) lets a query skip the contribution bound when every unit is
    already within it: a unit's rows after joining on the unit are at most the product of
    its rows in each table."""
    sql = plan.sql
    if plan.mode == "dp" and plan.sql_unbounded is not None and rows_per_unit is not None:
        known = [rows_per_unit.get(t) for t in plan.tables]
        if all(n is not None for n in known) and math.prod(n or 0 for n in known) <= (
            plan.max_contributions
        ):
            sql = plan.sql_unbounded
    con = duckdb.connect(":memory:", config=_CONFIG)
    try:
        _load(con, plan, tables)
        salt = secrets.randbits(63) if seed is None else int(seed) % 2**63
        try:
            cur = con.execute(sql, {"salt": salt} if "$salt" in sql else None)
            names = [d[0] for d in cur.description]
            found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except duckdb.Error as exc:
            raise RuntimeError("the query could not be run over the data") from exc
        if plan.mode == "dp":
            names_out, cols, error = _release(plan, found)
            suppressed = 0
        else:
            names_out, cols, suppressed = _threshold(plan, found)
            error = {}
        rows = _post(con, plan, names_out, cols)
    finally:
        con.close()
    agg_names = {a.name for a in plan.aggregates}
    return Result(
        mode=plan.mode,
        columns=list(plan.columns),
        rows=rows,
        epsilon=plan.epsilon,
        delta=plan.delta,
        error={c: (error.get(c) if c in agg_names else None) for c in plan.columns},
        suppressed_groups=suppressed,
    )


# --- loading -----------------------------------------------------------------------------


def _load(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    tables: Mapping[str, pa.Table | str | os.PathLike[str]],
) -> None:
    given = {str(k).lower(): v for k, v in tables.items()}
    paths: list[str] = []
    for i, name in enumerate(plan.tables):
        table = plan.schema.table(name)
        assert table is not None
        if table.name.lower() not in given:
            raise ValueError(f"no data was given for table {table.name!r}")
        data = given[table.name.lower()]
        source = f"{RESERVED}src{i}"
        if isinstance(data, pa.Table):
            con.register(source, data)
        elif isinstance(data, str | os.PathLike):
            path = os.path.abspath(os.fspath(data))
            reader = _reader(path)
            scan = exp.select(exp.Star()).from_(
                exp.Anonymous(this=reader, expressions=[exp.Literal.string(path)])
            )
            view = exp.Create(this=exp.table_(source, quoted=True), kind="VIEW", expression=scan)
            con.execute(view.sql(DIALECT))
            paths.append(path)
        else:
            raise TypeError(f"table {table.name!r}: give a pyarrow.Table or a file path")
        present = {r[0]: r[1] for r in con.execute(f'DESCRIBE "{source}"').fetchall()}
        con.execute(_typed_view(table, source, present).sql(DIALECT))
    if paths:
        allowed = exp.Array(expressions=[exp.Literal.string(p) for p in paths])
        con.execute(f"SET allowed_paths = {allowed.sql(DIALECT)}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _reader(path: str) -> str:
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        return "read_parquet"
    if low.endswith((".csv", ".csv.gz", ".tsv")):
        return "read_csv"
    raise ValueError(f"{os.path.basename(path)}: only .csv and .parquet files can be read")


def _typed_view(table: Table, source: str, present: Mapping[str, str]) -> exp.Create:
    """The declared columns of ``table`` from ``source`` (column name → DuckDB type), cast
    to their declared types where they differ."""
    actual = {n.lower(): n for n in present}
    cols = []
    for c in table.columns:
        if c.name.lower() not in actual:
            raise ValueError(f"the data of table {table.name!r} has no column {c.name!r}")
        name = actual[c.name.lower()]
        value: exp.Expression = exp.column(name, quoted=True)
        if present[name].upper() != SQL_TYPES[c.type]:
            value = exp.TryCast(this=value, to=exp.DataType.build(SQL_TYPES[c.type]))
        cols.append(exp.alias_(value, c.name, quoted=True))
    select = exp.select(*cols).from_(exp.table_(source, quoted=True))
    return exp.Create(this=exp.table_(table.name, quoted=True), kind="VIEW", expression=select)


# --- releasing ---------------------------------------------------------------------------


def _release(
    plan: Plan, found: list[dict[str, Any]]
) -> tuple[list[str], list[list[Any]], dict[str, float | None]]:
    """Every cell of the declared domain, with noisy aggregates; and the error bars."""
    domains = [k.domain or () for k in plan.keys]
    cells = list(itertools.product(*domains))
    index = {cell: i for i, cell in enumerate(cells)}
    stats: dict[str, list[int]] = {}
    for a in plan.aggregates:
        for col in (a.count_column, a.sum_column):
            if col is not None:
                stats.setdefault(col, [0] * len(cells))
    for row in found:
        i = index.get(tuple(row[k.column] for k in plan.keys))
        if i is None:  # cannot happen: the SQL keeps declared keys only
            continue
        for col, values in stats.items():
            values[i] = int(row[col] or 0)
    names = [k.name for k in plan.keys]
    cols: list[list[Any]] = [[cell[j] for cell in cells] for j in range(len(plan.keys))]
    error: dict[str, float | None] = {}
    for a in plan.aggregates:
        if a.kind == "count":
            assert a.count_column is not None
            values, hw = mechanisms.release_count(
                stats[a.count_column],
                sensitivity=a.count_sensitivity,
                scale=a.count_scale,
                epsilon=a.count_epsilon,
            )
            cols.append(list(values))
            error[a.name] = hw
        elif a.kind == "sum":
            assert a.sum_column is not None and a.lower is not None and a.upper is not None
            values_s, hw = mechanisms.release_sum(
                stats[a.sum_column],
                sensitivity=a.sum_sensitivity,
                scale=a.sum_scale,
                epsilon=a.sum_epsilon,
                quantum=a.quantum,
                lower=a.lower,
                upper=a.upper,
                integer=a.integer,
            )
            cols.append(values_s)
            error[a.name] = hw
        else:
            assert a.sum_column is not None and a.count_column is not None
            assert a.lower is not None and a.upper is not None
            means, errs = mechanisms.release_mean(
                stats[a.sum_column],
                stats[a.count_column],
                sum_sensitivity=a.sum_sensitivity,
                sum_scale=a.sum_scale,
                sum_epsilon=a.sum_epsilon,
                count_sensitivity=a.count_sensitivity,
                count_scale=a.count_scale,
                count_epsilon=a.count_epsilon,
                quantum=a.quantum,
                lower=a.lower,
                upper=a.upper,
            )
            cols.append(means)
            known = [e for e in errs if e is not None]
            error[a.name] = max(known) if known else None
        names.append(a.name)
    return names, cols, error


def _threshold(plan: Plan, found: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]], int]:
    """The groups with at least k distinct units, exactly; and how many were dropped."""
    k = plan.min_group_size or 1
    units = plan.units_column or ""
    kept = [r for r in found if (r[units] or 0) >= k]
    suppressed = len(found) - len(kept)
    kept.sort(key=lambda r: tuple((r[c.column] is None, r[c.column]) for c in plan.keys))
    names = [k.name for k in plan.keys]
    cols: list[list[Any]] = [[r[c.column] for r in kept] for c in plan.keys]
    for a in plan.aggregates:
        n, s = a.count_column or "", a.sum_column or ""
        values: list[Any]
        if a.kind == "count":
            values = [int(r[n]) for r in kept]
        elif a.kind == "sum":
            values = [_number(r[s], a.integer) for r in kept]
        else:
            values = [float(r[s]) / r[n] if r[n] else None for r in kept]
        cols.append(values)
        names.append(a.name)
    return names, cols, suppressed


def _number(v: Any, integer: bool) -> Any:
    if v is None:
        return None
    return int(v) if integer else float(v)


def _post(
    con: duckdb.DuckDBPyConnection, plan: Plan, names: list[str], cols: list[list[Any]]
) -> list[list[Any]]:
    """The plan's HAVING, ORDER BY and LIMIT applied to the released rows."""
    if plan.post_sql is None:
        at = {n: i for i, n in enumerate(names)}
        picked = [cols[at[c]] for c in plan.columns]
        return [list(r) for r in zip(*picked, strict=True)] if picked else []
    arrays = {n: pa.array([_arrow_safe(v) for v in c]) for n, c in zip(names, cols, strict=True)}
    con.register(NOISY_TABLE, pa.table(arrays))
    try:
        return [list(r) for r in con.execute(plan.post_sql).fetchall()]
    except duckdb.Error as exc:
        raise RuntimeError("the query's HAVING, ORDER BY or LIMIT could not be applied") from exc


def _arrow_safe(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
        return float(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
