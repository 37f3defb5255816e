"""Differentially private SQL: schema declarations, validation and rewriting (pure).

A buyer sees the schema a merchant declares — types, value bounds, the public domain of
grouping columns — and submits SQL. :func:`plan` accepts the aggregate queries that can be
answered with differential privacy and rewrites them with sqlglot into one DuckDB query
that computes the *exact* statistics the noise is then added to (see ``dprun``):

1. the rows that pass the ``WHERE`` clause and whose grouping keys lie in the declared
   domains are kept; rows with no privacy unit are dropped;
2. each privacy unit keeps at most ``max_contributions`` of those rows, chosen by a keyed
   hash of the row's own values, so what one unit contributes never depends on another's;
3. numeric values are clamped to their declared bounds and, for sums, put on an integer
   grid (step 1 for integer columns, a power of two for floats) so that sums are exact
   integers and their sensitivity is an exact integer too;
4. counts and grid sums are computed per group with ``GROUP BY``.

The runner then fills in every group of the declared domain (empty ones included), adds
discrete Laplace noise from OpenDP and applies ``HAVING``, ``ORDER BY`` and ``LIMIT`` to
the noisy rows, which is post-processing and costs no privacy.

Neighbouring datasets differ in all the rows of one privacy unit (added or removed). With
at most ``m`` rows per unit and disjoint groups, a count changes by at most ``m`` in L1
over all groups, and a clamped sum by at most ``m · max(|lower|, |upper|)``. ε is split
evenly over the query's aggregates (sequential composition); an ``AVG`` spends half of its
share on a sum and half on a count.

:func:`plan_threshold` validates the same way but answers exactly, suppressing groups with
fewer than ``k`` distinct units: an aggregation threshold, not differential privacy.

Nothing here reads data: every identifier in the rewritten SQL comes from the schema and
is quoted, and user text reaches DuckDB only as sqlglot expressions that passed a
whitelist of node types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, TypeAlias

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from databourse.compute import mechanisms
from databourse.compute.errors import InvalidPrivacyParameter, QueryNotPrivate

__all__ = [
    "NOISY_TABLE",
    "Aggregate",
    "Column",
    "Key",
    "Plan",
    "Schema",
    "Table",
    "plan",
    "plan_threshold",
]

ColumnType: TypeAlias = Literal["integer", "float", "string", "boolean", "date"]
TYPES: tuple[str, ...] = ("integer", "float", "string", "boolean", "date")
NUMERIC = ("integer", "float")
SQL_TYPES = {
    "integer": "BIGINT",
    "float": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "date": "DATE",
}
DIALECT = "duckdb"
RESERVED = "_dp_"  # prefix of the names the rewrite introduces
NOISY_TABLE = "_dp_noisy"  # the table of noisy rows that post-processing reads
SALT = "salt"  # the parameter of the rewritten SQL that keys the row choice
MAX_GROUPS = 100_000  # cells of the declared group domain one query may release
MAX_CATEGORIES = 10_000  # declared categories of one column
MAX_BOUND = 1e15  # |lower|, |upper| of a declared column
MAX_CONTRIBUTIONS = 1_000_000
GRID_BITS = 24  # a float column's bound spans 2^24 grid steps: error 2^-25 of it per row
INTEGER_GRID_LIMIT = 2**31  # integer columns with larger bounds go on a coarser grid
MAX_SQL = 100_000  # characters of SQL accepted


# --- the schema --------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A declared column. Bounds and categories are public: the buyer sees them."""

    name: str
    type: ColumnType
    lower: float | None = None  # declared bounds (numeric columns)
    upper: float | None = None
    categories: tuple[str, ...] | None = None  # the public domain; only these may be keys

    def __post_init__(self) -> None:
        _check_column(self)

    @property
    def bounded(self) -> bool:
        return self.lower is not None and self.upper is not None

    def domain(self) -> tuple[Any, ...]:
        """The declared categories as values of the column's type."""
        return tuple(_category_value(self.type, c) for c in self.categories or ())


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        _check_name(self.name, "table")
        if not self.columns:
            raise ValueError(f"table {self.name!r} declares no column")
        _check_unique([c.name for c in self.columns], f"column of table {self.name!r}")

    def column(self, name: str) -> Column | None:
        """The column of that name; SQL identifiers are matched without regard to case."""
        low = name.lower()
        return next((c for c in self.columns if c.name.lower() == low), None)


@dataclass(frozen=True)
class Schema:
    """What the merchant declares: tables, the privacy unit and the contribution bound."""

    tables: tuple[Table, ...]
    privacy_unit: str  # a column every table has, identifying whom the privacy protects
    max_contributions: int = 1  # rows per privacy unit kept (contribution bound), >= 1

    def __post_init__(self) -> None:
        if not self.tables:
            raise ValueError("the schema declares no table")
        _check_unique([t.name for t in self.tables], "table")
        if not isinstance(self.privacy_unit, str) or not self.privacy_unit:
            raise ValueError("privacy_unit must name a column")
        for t in self.tables:
            if t.column(self.privacy_unit) is None:
                raise ValueError(
                    f"table {t.name!r} has no column {self.privacy_unit!r}, the privacy unit"
                )
        m = self.max_contributions
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= MAX_CONTRIBUTIONS:
            raise ValueError(
                f"max_contributions must be a whole number from 1 to {MAX_CONTRIBUTIONS:,}"
            )

    def table(self, name: str) -> Table | None:
        low = name.lower()
        return next((t for t in self.tables if t.name.lower() == low), None)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        """A schema from its JSON shape; ValueError names the first bad declaration."""
        if not isinstance(d, Mapping):
            raise ValueError("a schema is a JSON object")
        _only(d, {"tables", "privacy_unit", "max_contributions"}, "the schema")
        tables = d.get("tables")
        if not isinstance(tables, list) or not tables:
            raise ValueError("the schema needs a non-empty list 'tables'")
        return cls(
            tables=tuple(_table_from_dict(t) for t in tables),
            privacy_unit=d.get("privacy_unit"),  # type: ignore[arg-type]
            max_contributions=d.get("max_contributions", 1),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "privacy_unit": self.privacy_unit,
            "max_contributions": self.max_contributions,
            "tables": [
                {"name": t.name, "columns": [_column_to_dict(c) for c in t.columns]}
                for t in self.tables
            ],
        }


def _only(d: Mapping[str, Any], allowed: set[str], what: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise ValueError(f"{what} has unknown keys: {', '.join(map(str, extra))}")


def _table_from_dict(t: Any) -> Table:
    if not isinstance(t, Mapping):
        raise ValueError("each table is a JSON object with 'name' and 'columns'")
    _only(t, {"name", "columns"}, f"table {t.get('name')!r}")
    cols = t.get("columns")
    if not isinstance(cols, list) or not cols:
        raise ValueError(f"table {t.get('name')!r} needs a non-empty list 'columns'")
    return Table(name=t.get("name"), columns=tuple(_column_from_dict(c) for c in cols))  # type: ignore[arg-type]


def _column_from_dict(c: Any) -> Column:
    if not isinstance(c, Mapping):
        raise ValueError("each column is a JSON object with 'name' and 'type'")
    _only(c, {"name", "type", "lower", "upper", "categories"}, f"column {c.get('name')!r}")
    cats = c.get("categories")
    if cats is not None:
        if not isinstance(cats, list):
            raise ValueError(f"column {c.get('name')!r}: categories must be a list")
        cats = tuple(cats)
    return Column(
        name=c.get("name"),  # type: ignore[arg-type]
        type=c.get("type"),  # type: ignore[arg-type]
        lower=c.get("lower"),
        upper=c.get("upper"),
        categories=cats,
    )


def _column_to_dict(c: Column) -> dict[str, Any]:
    d: dict[str, Any] = {"name": c.name, "type": c.type}
    if c.bounded:
        d["lower"], d["upper"] = c.lower, c.upper
    if c.categories is not None:
        d["categories"] = list(c.categories)
    return d


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a {what} needs a non-empty name")
    if name.lower().startswith(RESERVED):
        raise ValueError(f"{what} {name!r}: names starting with {RESERVED!r} are reserved")


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n.lower() in seen:
            raise ValueError(f"{what} {n!r} is declared twice (names ignore case)")
        seen.add(n.lower())


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_column(c: Column) -> None:
    _check_name(c.name, "column")
    if c.type not in TYPES:
        raise ValueError(f"column {c.name!r}: type must be one of {', '.join(TYPES)}")
    if (c.lower is None) != (c.upper is None):
        raise ValueError(f"column {c.name!r}: declare both lower and upper, or neither")
    if c.lower is not None:
        if c.type not in NUMERIC:
            raise ValueError(f"column {c.name!r}: only numeric columns have bounds")
        for v in (c.lower, c.upper):
            if not _is_number(v) or abs(v) > MAX_BOUND:  # type: ignore[arg-type]
                raise ValueError(
                    f"column {c.name!r}: bounds must be finite numbers within ±{MAX_BOUND:g}"
                )
            if c.type == "integer" and not float(v).is_integer():  # type: ignore[arg-type]
                raise ValueError(f"column {c.name!r}: an integer column's bounds are integers")
        if c.lower > c.upper:  # type: ignore[operator]
            raise ValueError(f"column {c.name!r}: lower is above upper")
    if c.categories is not None:
        if not isinstance(c.categories, tuple) or not c.categories:
            raise ValueError(f"column {c.name!r}: categories must be a non-empty list")
        if len(c.categories) > MAX_CATEGORIES:
            raise ValueError(f"column {c.name!r}: at most {MAX_CATEGORIES:,} categories")
        if not all(isinstance(v, str) for v in c.categories):
            raise ValueError(f"column {c.name!r}: categories are written as strings")
        values = [_category_value(c.type, v, c.name) for v in c.categories]
        if len(set(values)) != len(values):
            raise ValueError(f"column {c.name!r}: a category is declared twice")


def _category_value(kind: str, text: str, name: str = "") -> Any:
    """A category's text as a value of the column's type."""
    try:
        if kind == "integer":
            if not re.fullmatch(r"-?[0-9]+", text.strip()):
                raise ValueError
            return int(text)
        if kind == "float":
            v = float(text)
            if not math.isfinite(v):
                raise ValueError
            return v
        if kind == "boolean":
            low = text.strip().lower()
            if low not in ("true", "false"):
                raise ValueError
            return low == "true"
        if kind == "date":
            return date.fromisoformat(text.strip())
        return text
    except ValueError:
        raise ValueError(f"column {name!r}: category {text!r} is not a {kind}") from None


# --- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A grouping key: its output name, its column in the SQL result and its domain."""

    name: str  # output name (hidden keys carry an internal name)
    column: str  # column of the SQL result
    type: str
    visible: bool  # selected by the query (a key may be grouped by without being shown)
    domain: tuple[Any, ...] | None = None  # declared domain, dp mode


@dataclass(frozen=True)
class Aggregate:
    """One aggregate output and how it is released.

    ``count_column`` and ``sum_column`` name the exact statistics in the SQL result. In dp
    mode a count is released with discrete Laplace noise of scale ``count_scale`` and a
    sum, in grid units of ``quantum``, with scale ``sum_scale``; their privacy maps at
    the sensitivities must not exceed ``count_epsilon`` and ``sum_epsilon``.
    """

    name: str
    kind: Literal["count", "sum", "avg"]
    count_column: str | None = None
    sum_column: str | None = None
    integer: bool = True  # the released value is a whole number
    lower: float | None = None
    upper: float | None = None
    quantum: float = 1.0
    count_sensitivity: int = 0
    sum_sensitivity: int = 0
    count_epsilon: float = 0.0
    sum_epsilon: float = 0.0
    count_scale: float = 0.0
    sum_scale: float = 0.0

    @property
    def epsilon(self) -> float:
        return self.count_epsilon + self.sum_epsilon


@dataclass(frozen=True)
class Plan:
    """A validated query, rewritten for DuckDB, and what the runner needs to release it."""

    mode: Literal["dp", "threshold"]
    epsilon: float  # what the query spends (dp); 0 in threshold mode
    delta: float  # what it spends: the mechanisms are pure ε-DP, so 0
    columns: tuple[str, ...]  # output column names, in order
    sql: str  # the exact statistics per observed group; takes the parameter $salt (dp)
    schema: Schema
    tables: tuple[str, ...]  # the schema tables the query reads
    keys: tuple[Key, ...]
    aggregates: tuple[Aggregate, ...]
    post_sql: str | None = None  # HAVING, ORDER BY, LIMIT over the table NOISY_TABLE
    max_contributions: int = 1
    min_group_size: int | None = None  # threshold mode: k
    units_column: str | None = None  # threshold mode: distinct units per group
    requested_delta: float = 0.0  # the δ the buyer allowed (unused by pure ε-DP)
    # dp: ``sql`` without the contribution bound, for data with at most m rows per unit
    sql_unbounded: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What was planned, for a job's record (the schema is recorded separately)."""
        return {
            "mode": self.mode,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "columns": list(self.columns),
            "sql": self.sql,
            "post_sql": self.post_sql,
            "max_contributions": self.max_contributions,
            "min_group_size": self.min_group_size,
            "groups": math.prod(len(k.domain) for k in self.keys if k.domain is not None)
            if self.mode == "dp"
            else None,
            "aggregates": [
                {
                    "name": a.name,
                    "kind": a.kind,
                    "epsilon": a.epsilon,
                    "count_scale": a.count_scale,
                    "sum_scale": a.sum_scale * a.quantum,
                }
                for a in self.aggregates
            ],
        }


def plan(sql: str, schema: Schema, *, epsilon: float, delta: float = 0.0) -> Plan:
    """Validate ``sql`` against ``schema`` and plan its differentially private answer.

    Raises QueryNotPrivate (with a stable ``reason``) for anything that cannot be answered
    with differential privacy and InvalidPrivacyParameter for a bad ε or δ.
    """
    eps = _epsilon(epsilon)
    dlt = _delta(delta)
    return _Planner(sql, schema, "dp").build(eps, dlt, None)


def plan_threshold(sql: str, schema: Schema, *, min_group_size: int) -> Plan:
    """Plan an exact answer whose groups each hold at least ``min_group_size`` units."""
    k = min_group_size
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidPrivacyParameter(
            "min_group_size must be a whole number of at least 1", parameter="min_group_size"
        )
    return _Planner(sql, schema, "threshold").build(0.0, 0.0, k)


def _epsilon(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPrivacyParameter("epsilon must be a number", parameter="epsilon")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise InvalidPrivacyParameter(
            f"epsilon must be a finite number above 0, not {value}", parameter="epsilon"
        )
    return v


def _delta(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPrivacyParameter("delta must be a number", parameter="delta")
    v = float(value)
    if not math.isfinite(v) or not 0 <= v < 1:
        raise InvalidPrivacyParameter(
            f"delta must be at least 0 and below 1, not {value}", parameter="delta"
        )
    return v


# --- validation and rewriting ------------------------------------------------------------


def _refuse(reason: str, detail: str) -> QueryNotPrivate:
    return QueryNotPrivate(detail, reason=reason)


# Row-level expressions allowed in WHERE, JOIN … ON and HAVING: deterministic functions of
# one row. Anything else (subqueries, windows, table functions, volatile or unknown
# functions, parameters) is refused.
_ROW_NODES: tuple[type[exp.Expression], ...] = (
    exp.And, exp.Or, exp.Not, exp.Paren, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
    exp.NullSafeEQ, exp.NullSafeNEQ, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike,
    exp.Escape, exp.Null, exp.Boolean, exp.Literal, exp.Column, exp.Identifier, exp.Neg,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.Cast, exp.TryCast,
    exp.DataType, exp.Lower, exp.Upper, exp.Length, exp.Abs, exp.Year, exp.Month, exp.Day,
    exp.Quarter, exp.DayOfWeek, exp.Extract, exp.Var, exp.Coalesce, exp.Trim, exp.Substring,
    exp.Round, exp.Floor, exp.Ceil, exp.DPipe, exp.Concat, exp.RegexpLike, exp.StartsWith,
    exp.Case, exp.If, exp.Tuple, exp.Interval, exp.DateTrunc, exp.TimestampTrunc, exp.Xor,
    exp.BitwiseAnd,
)  # fmt: skip
_QUANTILES = (exp.PercentileCont, exp.PercentileDisc, exp.Median, exp.Quantile)
_KNOWN_AGGS = (exp.Count, exp.Sum, exp.Avg)
_SELECT_ARGS = {"expressions", "from_", "joins", "where", "group", "having", "order", "limit"}
_SELECT_ARGS |= {"offset"}


@dataclass
class _Scope:
    """The tables a query reads, under the aliases the rewrite gives them."""

    tables: list[tuple[str, Table, str]]  # (name or alias the query uses, table, our alias)

    def resolve(self, col: exp.Column, unit: str) -> tuple[str, Column]:
        """(our table alias, declared column) for a column reference of the query."""
        if col.args.get("db") or col.args.get("catalog"):
            raise _refuse("unknown-column", f"unknown column {col.sql(DIALECT)}")
        if isinstance(col.this, exp.Star):
            raise _refuse("raw-rows", "SELECT * would reveal rows; select aggregates")
        name = col.name
        if col.table:
            low = col.table.lower()
            hits = [(t, a) for q, t, a in self.tables if q.lower() == low]
            if not hits:
                raise _refuse("unknown-table", f"unknown table or alias {col.table!r}")
            table, alias = hits[0]
            c = table.column(name)
            if c is None:
                raise _refuse("unknown-column", f"table {table.name!r} has no column {name!r}")
            return alias, c
        found = [(a, t.column(name)) for _, t, a in self.tables if t.column(name) is not None]
        if not found:
            raise _refuse("unknown-column", f"unknown column {name!r}")
        if len(found) > 1 and name.lower() != unit.lower():
            raise _refuse("ambiguous-column", f"column {name!r} is in several tables; qualify it")
        alias, c = found[0]
        assert c is not None
        return alias, c


def _ref(alias: str, column: str) -> exp.Column:
    return exp.column(column, table=alias, quoted=True)


def _name(column: str) -> exp.Column:
    return exp.column(column, quoted=True)


def _table(name: str, quoted: bool = True) -> exp.Table:
    return exp.table_(name, quoted=quoted)


def _lit(value: Any) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float):
        return exp.cast(exp.Literal.string(repr(value)), exp.DataType.build("DOUBLE"))
    if isinstance(value, date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    return exp.Literal.string(str(value))


@dataclass
class _Stat:
    """An exact statistic computed by the SQL: rows, non-null values or a grid sum."""

    column: str
    expression: exp.Expression


class _Planner:
    def __init__(self, sql: str, schema: Schema, mode: Literal["dp", "threshold"]) -> None:
        if not isinstance(schema, Schema):
            raise TypeError("schema must be a dpsql.Schema")
        self.schema = schema
        self.mode = mode
        self.unit = schema.privacy_unit
        self.tree = _parse(sql)
        self.scope = _Scope([])
        self.values: dict[tuple[str, str], str] = {}  # (alias, column) -> _dp_v{i}
        self.value_exprs: list[tuple[str, exp.Expression]] = []
        self.stats: dict[str, _Stat] = {}
        self.joins: list[tuple[Table, str, str, exp.Expression]] = []
        self.key_refs: list[tuple[str, str]] = []  # (our alias, column) of each key

    # -- the pieces --

    def build(self, epsilon: float, delta: float, k: int | None) -> Plan:
        sel = self.tree
        self._check_clauses(sel)
        self._from(sel)
        where = sel.args.get("where")
        cond = self._row_expr(where.this, "WHERE") if where is not None else None
        keys = self._group(sel)
        outputs = self._select(sel, keys)
        aggs = [o for o in outputs if isinstance(o, _AggOut)]
        if not aggs:
            raise _refuse("no-aggregate", "the query computes no aggregate: add COUNT, SUM or AVG")
        names = [o.name for o in outputs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise _refuse("duplicate-column", f"output column {dup!r} appears twice; alias it")
        key_specs = self._key_specs(keys, outputs)
        agg_specs = self._aggregates(aggs, epsilon)
        post = self._post(sel, outputs, key_specs)
        sql, unbounded = self._sql(cond, keys, k)
        return Plan(
            mode=self.mode,
            epsilon=epsilon,
            delta=0.0,
            requested_delta=delta,
            columns=tuple(names),
            sql=sql,
            sql_unbounded=unbounded,
            schema=self.schema,
            tables=tuple(dict.fromkeys(t.name for _, t, _ in self.scope.tables)),
            keys=key_specs,
            aggregates=agg_specs,
            post_sql=post,
            max_contributions=self.schema.max_contributions,
            min_group_size=k,
            units_column="_dp_units" if self.mode == "threshold" else None,
        )

    def _check_clauses(self, sel: exp.Select) -> None:
        if sel.args.get("with_"):
            raise _refuse("subquery", "WITH clauses (common table expressions) are not accepted")
        if sel.args.get("distinct"):
            raise _refuse("distinct", "SELECT DISTINCT would reveal which values occur")
        if sel.args.get("qualify") or sel.args.get("windows"):
            raise _refuse("window-function", "window functions are not accepted")
        for key, value in sel.args.items():
            if key not in _SELECT_ARGS and value not in (None, [], False):
                raise _refuse(
                    "unsupported-clause", f"the {key.upper().rstrip('_')} clause is not accepted"
                )
        for node in sel.walk():
            if node is sel:
                continue
            if isinstance(node, exp.Subquery | exp.Select | exp.Exists | exp.SetOperation):
                raise _refuse("subquery", "subqueries are not accepted")
            if isinstance(node, exp.Window):
                raise _refuse("window-function", "window functions are not accepted")
            if isinstance(node, exp.Placeholder | exp.Parameter):
                raise _refuse("unsupported-expression", "query parameters are not accepted")

    def _from(self, sel: exp.Select) -> None:
        src = sel.args.get("from_")
        if src is None:
            raise _refuse("no-table", "the query reads no table")
        self._add_table(src.this)
        for join in sel.args.get("joins") or []:
            self._join(join)

    def _add_table(self, node: exp.Expression) -> tuple[str, Table, str]:
        if isinstance(node, exp.Subquery):
            raise _refuse("subquery", "subqueries in FROM are not accepted")
        if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
            raise _refuse("unknown-table", "only the product's tables can be read")
        for arg in ("db", "catalog", "version"):
            if node.args.get(arg):
                raise _refuse("unknown-table", f"unknown table {node.sql(DIALECT)}")
        for arg in ("laterals", "joins", "pivots", "sample"):
            if node.args.get(arg):
                raise _refuse("unsupported-clause", f"{arg.upper()} is not accepted")
        table = self.schema.table(node.name)
        if table is None:
            raise _refuse("unknown-table", f"unknown table {node.name!r}")
        used = node.alias or node.name
        if any(q.lower() == used.lower() for q, _, _ in self.scope.tables):
            raise _refuse("duplicate-alias", f"table name or alias {used!r} is used twice")
        entry = (used, table, f"{RESERVED}t{len(self.scope.tables)}")
        self.scope.tables.append(entry)
        return entry

    def _join(self, join: exp.Join) -> None:
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        method = join.args.get("method")
        inner = side == "" and kind in ("", "INNER")
        left = side == "LEFT" and kind in ("", "OUTER")
        if method or not (inner or left):
            what = " ".join(str(x) for x in (method, side, kind) if x)
            raise _refuse("unsupported-join", f"{what} JOIN is not accepted: use JOIN or LEFT JOIN")
        earlier = list(self.scope.tables)
        used, table, alias = self._add_table(join.this)
        unit_here = _ref(alias, table.column(self.unit).name)  # type: ignore[union-attr]
        using = join.args.get("using")
        if using:
            names = [u.name.lower() for u in using]
            if names != [self.unit.lower()]:
                raise _refuse(
                    "join-not-on-privacy-unit",
                    f"tables are joined only on the privacy unit {self.unit!r}",
                )
            _, first, first_alias = earlier[0]
            on: exp.Expression = exp.EQ(
                this=_ref(first_alias, first.column(self.unit).name),  # type: ignore[union-attr]
                expression=unit_here,
            )
        else:
            cond = join.args.get("on")
            if cond is None:
                raise _refuse(
                    "join-not-on-privacy-unit",
                    f"a join needs ON <table>.{self.unit} = <other>.{self.unit}",
                )
            on = self._row_expr(cond, "JOIN … ON")
            if not any(self._unit_equality(c, alias) for c in _conjuncts(on)):
                raise _refuse(
                    "join-not-on-privacy-unit",
                    f"tables are joined only on the privacy unit: ON needs "
                    f"{used}.{self.unit} = <earlier table>.{self.unit}",
                )
        self.joins.append((table, alias, "LEFT" if side == "LEFT" else "INNER", on))

    def _unit_equality(self, cond: exp.Expr, alias: str) -> bool:
        """Whether ``cond`` equates the new table's unit with an earlier table's."""
        if not isinstance(cond, exp.EQ):
            return False
        sides = [cond.this, cond.expression]
        if not all(isinstance(s, exp.Column) for s in sides):
            return False
        units = [s for s in sides if s.name.lower() == self.unit.lower()]
        if len(units) != 2:
            return False
        tables = {s.table for s in units}
        return alias in tables and len(tables) == 2

    def _row_expr(self, node: exp.Expression, where: str) -> exp.Expression:
        """A validated copy of a row-level expression with resolved, quoted columns."""
        for n in node.walk():
            if isinstance(n, exp.AggFunc):
                raise _refuse("aggregate-in-where", f"aggregates are not allowed in {where}")
            if not isinstance(n, _ROW_NODES):
                raise _refuse(
                    "unsupported-expression",
                    f"{n.sql(DIALECT)!r} is not accepted in {where}",
                )
            if isinstance(n, exp.In) and n.args.get("query") is not None:
                raise _refuse("subquery", "subqueries are not accepted")

        def fix(n: exp.Expression) -> exp.Expression:
            if isinstance(n, exp.Column):
                alias, c = self.scope.resolve(n, self.unit)
                return _ref(alias, c.name)
            return n

        return node.copy().transform(fix)

    def _group(self, sel: exp.Select) -> list[tuple[str, Column]]:
        group = sel.args.get("group")
        if group is None:
            return []
        for arg in ("all", "rollup", "cube", "grouping_sets", "totals"):
            if group.args.get(arg):
                raise _refuse(
                    "unsupported-group-by",
                    "GROUP BY ALL, ROLLUP, CUBE and "
                    "GROUPING SETS are not accepted; list the key columns",
                )
        keys: list[tuple[str, Column]] = []
        items = sel.expressions
        for e in group.expressions:
            if isinstance(e, exp.Rollup | exp.Cube | exp.GroupingSets):
                raise _refuse("unsupported-group-by", "list the key columns in GROUP BY")
            if isinstance(e, exp.Literal) and not e.is_string:
                pos = int(e.this)
                if not 1 <= pos <= len(items):
                    raise _refuse("syntax", f"GROUP BY {pos}: there is no such output column")
                e = items[pos - 1].unalias()
            if not isinstance(e, exp.Column):
                raise _refuse(
                    "group-key-not-public" if self.mode == "dp" else "unsupported-group-by",
                    f"GROUP BY {e.sql(DIALECT)}: only declared columns can be grouping keys",
                )
            alias, c = self.scope.resolve(e, self.unit)
            if self.mode == "dp" and c.categories is None:
                raise _refuse(
                    "group-key-not-public",
                    f"column {c.name!r} has no declared categories, so it cannot be a "
                    "grouping key: the groups that exist would be revealed",
                )
            if (alias, c) not in keys:
                keys.append((alias, c))
        if self.mode == "dp":
            cells = math.prod(len(c.categories or ()) for _, c in keys)
            if cells > MAX_GROUPS:
                raise _refuse(
                    "too-many-groups",
                    f"the declared keys span {cells:,} groups; at most {MAX_GROUPS:,}",
                )
        self.key_refs = [(a, c.name) for a, c in keys]
        return keys

    def _select(self, sel: exp.Select, keys: list[tuple[str, Column]]) -> list[_Out]:
        outs: list[_Out] = []
        for item in sel.expressions:
            alias = item.alias if isinstance(item, exp.Alias) else None
            inner = item.unalias()
            if alias is not None and alias.lower().startswith(RESERVED):
                raise _refuse("reserved-name", f"names starting with {RESERVED!r} are reserved")
            if isinstance(inner, exp.Star) or (
                isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star)
            ):
                raise _refuse("raw-rows", "SELECT * would reveal rows; select aggregates")
            if isinstance(inner, exp.Column):
                ref = self.scope.resolve(inner, self.unit)
                pos = next((i for i, k in enumerate(keys) if k == ref), None)
                if any(isinstance(o, _KeyOut) and o.position == pos for o in outs):
                    raise _refuse("duplicate-column", f"key {inner.sql(DIALECT)} is selected twice")
                if pos is None:
                    raise _refuse(
                        "raw-rows",
                        f"column {inner.sql(DIALECT)} is neither grouped by nor aggregated: "
                        "selecting it would reveal rows",
                    )
                outs.append(_KeyOut(alias or ref[1].name, pos))
                continue
            if isinstance(inner, exp.Filter):
                raise _refuse(
                    "unsupported-aggregate", "FILTER (WHERE …) is not supported: use WHERE"
                )
            if isinstance(inner, exp.AggFunc):
                outs.append(self._aggregate(inner, alias or inner.sql(DIALECT)))
                continue
            if any(isinstance(n, exp.AggFunc) for n in inner.walk()):
                raise _refuse(
                    "unsupported-expression",
                    f"{inner.sql(DIALECT)}: select plain aggregates and compute with their "
                    "released values",
                )
            if any(isinstance(n, exp.Column) for n in inner.walk()):
                raise _refuse("raw-rows", f"{inner.sql(DIALECT)} would reveal rows")
            raise _refuse("unsupported-expression", f"{inner.sql(DIALECT)} is not an aggregate")
        return outs

    def _aggregate(self, agg: exp.AggFunc, name: str) -> _AggOut:
        if isinstance(agg, _QUANTILES) or agg.key in ("quantile", "approxquantile"):
            raise _refuse(
                "unsupported-aggregate",
                "quantiles and medians are not supported: use COUNT, SUM or AVG (for example "
                "counts per declared range)",
            )
        if not isinstance(agg, _KNOWN_AGGS):
            raise _refuse(
                "unsupported-aggregate",
                f"{agg.sql(DIALECT)}: only COUNT, SUM and AVG are accepted",
            )
        arg = agg.this
        if isinstance(arg, exp.Distinct):
            raise _refuse("unsupported-aggregate", "COUNT(DISTINCT …) is not supported")
        if isinstance(agg, exp.Count):
            if (
                arg is None
                or isinstance(arg, exp.Star)
                or (isinstance(arg, exp.Literal) and not isinstance(arg, exp.Null))
            ):
                return _AggOut(name, "count", None)
            if not isinstance(arg, exp.Column):
                raise _refuse("aggregate-argument", f"{agg.sql(DIALECT)}: count a column or *")
            alias, c = self.scope.resolve(arg, self.unit)
            return _AggOut(name, "count", (alias, c))
        kind = "sum" if isinstance(agg, exp.Sum) else "avg"
        if not isinstance(arg, exp.Column):
            raise _refuse(
                "aggregate-argument", f"{agg.sql(DIALECT)}: the argument must be a declared column"
            )
        alias, c = self.scope.resolve(arg, self.unit)
        if c.type not in NUMERIC:
            raise _refuse("not-numeric", f"{agg.sql(DIALECT)}: column {c.name!r} is not numeric")
        if self.mode == "dp" and not c.bounded:
            raise _refuse(
                "unbounded-column",
                f"{agg.sql(DIALECT)}: column {c.name!r} has no declared bounds, so one "
                "person's share of the result cannot be limited",
            )
        return _AggOut(name, kind, (alias, c))  # type: ignore[arg-type]

    def _value(self, alias: str, c: Column) -> str:
        key = (alias, c.name)
        if key not in self.values:
            name = f"{RESERVED}v{len(self.values)}"
            self.values[key] = name
            self.value_exprs.append((name, _ref(alias, c.name)))
        return self.values[key]

    def _stat(self, column: str, expression: exp.Expression) -> str:
        if column not in self.stats:
            self.stats[column] = _Stat(column, expression)
        return column

    def _key_specs(self, keys: list[tuple[str, Column]], outs: list[_Out]) -> tuple[Key, ...]:
        shown = {o.position: o.name for o in outs if isinstance(o, _KeyOut)}
        specs = []
        for i, (_, c) in enumerate(keys):
            specs.append(
                Key(
                    name=shown.get(i, f"{RESERVED}k{i}"),
                    column=f"{RESERVED}k{i}",
                    type=c.type,
                    visible=i in shown,
                    domain=c.domain() if self.mode == "dp" else None,
                )
            )
        return tuple(specs)

    def _aggregates(self, aggs: list[_AggOut], epsilon: float) -> tuple[Aggregate, ...]:
        share = _share(epsilon, len(aggs)) if self.mode == "dp" else 0.0
        m = self.schema.max_contributions
        out = []
        for a in aggs:
            count = ""
            if a.column is None:
                count = self._stat(f"{RESERVED}rows", exp.Count(this=exp.Star()))
            elif a.kind != "sum" or self.mode == "threshold":
                v = self._value(*a.column)
                count = self._stat(f"{v}_n", exp.Count(this=_name(v)))
            if a.kind == "count":
                spec = Aggregate(name=a.name, kind="count", count_column=count)
                if self.mode == "dp":
                    scale = mechanisms.calibrate(m, share)
                    spec = Aggregate(
                        name=a.name,
                        kind="count",
                        count_column=count,
                        count_sensitivity=m,
                        count_epsilon=share,
                        count_scale=scale,
                    )
                out.append(spec)
                continue
            assert a.column is not None
            c = a.column[1]
            v = self._value(*a.column)
            if self.mode == "threshold":
                total = self._stat(f"{v}_sum", exp.Sum(this=_name(v)))
                out.append(
                    Aggregate(
                        name=a.name,
                        kind=a.kind,
                        count_column=count,
                        sum_column=total,
                        integer=a.kind == "sum" and c.type == "integer",
                    )
                )
                continue
            assert c.lower is not None and c.upper is not None
            quantum, bound = _grid(c)
            grid = self._stat(f"{v}_grid", exp.Sum(this=_on_grid(v, c, quantum)))
            sum_eps = share if a.kind == "sum" else share / 2
            count_eps = 0.0 if a.kind == "sum" else share / 2
            out.append(
                Aggregate(
                    name=a.name,
                    kind=a.kind,
                    count_column=count if a.kind == "avg" else None,
                    sum_column=grid,
                    integer=a.kind == "sum" and c.type == "integer" and quantum >= 1,
                    lower=float(c.lower),
                    upper=float(c.upper),
                    quantum=quantum,
                    count_sensitivity=m if a.kind == "avg" else 0,
                    sum_sensitivity=m * bound,
                    count_epsilon=count_eps,
                    sum_epsilon=sum_eps,
                    count_scale=mechanisms.calibrate(m, count_eps) if count_eps else 0.0,
                    sum_scale=mechanisms.calibrate(m * bound, sum_eps),
                )
            )
        return tuple(out)

    def _post(self, sel: exp.Select, outs: list[_Out], keys: tuple[Key, ...]) -> str | None:
        """HAVING, ORDER BY and LIMIT over the released rows (post-processing)."""
        having, order = sel.args.get("having"), sel.args.get("order")
        limit, offset = sel.args.get("limit"), sel.args.get("offset")
        if having is None and order is None and limit is None and offset is None:
            return None
        by_alias: dict[str, str] = {}
        by_sql: dict[str, str] = {}
        for item, o in zip(sel.expressions, outs, strict=True):
            col = o.name if isinstance(o, _AggOut) else keys[o.position].name
            by_alias.setdefault(o.name.lower(), col)
            by_sql.setdefault(item.unalias().sql(DIALECT), col)
        for k in keys:
            by_alias.setdefault(k.name.lower(), k.name)

        def column_of(n: exp.Expression, clause: str) -> str:
            if isinstance(n, exp.Column) and not n.table and n.name.lower() in by_alias:
                return by_alias[n.name.lower()]
            text = n.sql(DIALECT)
            if text in by_sql:
                return by_sql[text]
            if isinstance(n, exp.Column):
                alias, c = self.scope.resolve(n, self.unit)
                for i, kk in enumerate(keys):
                    if self.key_refs[i] == (alias, c.name):
                        return kk.name
                raise _refuse("raw-rows", f"{clause} {text}: the column is not a grouping key")
            if isinstance(n, exp.AggFunc):
                raise _refuse(
                    "having-aggregate-not-selected",
                    f"{clause} {text}: select that aggregate to filter or sort on its noisy value",
                )
            raise _refuse("unsupported-expression", f"{text} is not accepted in {clause}")

        def fix(clause: str) -> Callable[[exp.Expression], exp.Expression]:
            def f(n: exp.Expression) -> exp.Expression:
                if isinstance(n, exp.Column | exp.AggFunc):
                    return _name(column_of(n, clause))
                return n

            return f

        visible = [_name(o.name if isinstance(o, _AggOut) else keys[o.position].name) for o in outs]
        post = exp.select(*visible).from_(_table(NOISY_TABLE, quoted=True))
        if having is not None:
            cond = having.this
            for n in cond.walk():
                if isinstance(n, exp.AggFunc | exp.Column):
                    continue
                if any(isinstance(p, exp.AggFunc) for p in _parents(n, cond)):
                    continue
                if not isinstance(n, _ROW_NODES):
                    raise _refuse("unsupported-expression", f"{n.sql(DIALECT)!r} in HAVING")
            post = post.where(cond.copy().transform(fix("HAVING")))
        if order is not None:
            terms = []
            for o in order.expressions:
                term = o.this
                if isinstance(term, exp.Literal) and not term.is_string:
                    pos = int(term.this)
                    if not 1 <= pos <= len(outs):
                        raise _refuse("syntax", f"ORDER BY {pos}: there is no such output column")
                    term = visible[pos - 1]
                else:
                    term = _name(column_of(term, "ORDER BY"))
                desc, nulls_first = o.args.get("desc"), o.args.get("nulls_first")
                terms.append(exp.Ordered(this=term, desc=desc, nulls_first=nulls_first))
            post = post.order_by(*terms)
        for clause, node in (("LIMIT", limit), ("OFFSET", offset)):
            if node is None:
                continue
            value = node.expression if isinstance(node, exp.Limit | exp.Offset) else node
            if not (isinstance(value, exp.Literal) and not value.is_string and value.is_int):
                raise _refuse("unsupported-clause", f"{clause} takes a whole number")
            n = int(value.this)
            post = post.limit(n) if clause == "LIMIT" else post.offset(n)
        return post.sql(DIALECT)

    def _sql(
        self, cond: exp.Expression | None, keys: list[tuple[str, Column]], k: int | None
    ) -> tuple[str, str | None]:
        """The statistics query, and (dp mode) the same without the contribution bound —
        for data already known to hold at most ``max_contributions`` rows per unit, where
        the bound would keep every row anyway."""
        _, first, first_alias = self.scope.tables[0]
        unit = _ref(first_alias, first.column(self.unit).name)  # type: ignore[union-attr]
        src_cols: list[exp.Expr] = [exp.alias_(unit, f"{RESERVED}u", quoted=True)]
        for i, (alias, c) in enumerate(keys):
            src_cols.append(exp.alias_(_ref(alias, c.name), f"{RESERVED}k{i}", quoted=True))
        for name, e in self.value_exprs:
            src_cols.append(exp.alias_(e, name, quoted=True))
        src = exp.select(*src_cols).from_(
            exp.alias_(_table(first.name, quoted=True), first_alias, table=True, quoted=True)
        )
        for table, alias, side, on in self.joins:
            src = src.join(
                exp.alias_(_table(table.name, quoted=True), alias, table=True, quoted=True),
                on=on,
                join_type=side,
            )
        filters: list[exp.Expression] = [
            exp.Not(this=exp.Is(this=unit.copy(), expression=exp.Null()))
        ]
        if cond is not None:
            filters.insert(0, exp.Paren(this=cond))
        if self.mode == "dp":
            for alias, c in keys:
                values = [_lit(v) for v in c.domain()]
                filters.append(exp.In(this=_ref(alias, c.name), expressions=values))
        src = src.where(exp.and_(*filters))
        key_cols = [_name(f"{RESERVED}k{i}") for i in range(len(keys))]
        stats = [exp.alias_(s.expression, s.column, quoted=True) for s in self.stats.values()]
        if self.mode == "threshold":
            units = exp.Count(this=exp.Distinct(expressions=[_name(f"{RESERVED}u")]))
            stats.append(exp.alias_(units, "_dp_units", quoted=True))
            rows_from: exp.Expr = _table(f"{RESERVED}src", quoted=True)
        else:
            hashed = [_name(f"{RESERVED}u"), *key_cols]
            hashed += [_name(name) for name, _ in self.value_exprs]
            order = exp.Anonymous(this="hash", expressions=[*hashed, exp.Placeholder(this=SALT)])
            window = exp.Window(
                this=exp.RowNumber(),
                partition_by=[_name(f"{RESERVED}u")],
                order=exp.Order(expressions=[exp.Ordered(this=order)]),
            )
            m = exp.Literal.number(self.schema.max_contributions)
            bounded = (
                exp.select(exp.Star())
                .from_(_table(f"{RESERVED}src", quoted=True))
                .qualify(exp.LTE(this=window, expression=m))
            )
            rows_from = exp.alias_(
                exp.Subquery(this=bounded), f"{RESERVED}bounded", table=True, quoted=True
            )

        def statistics(rows: exp.Expr) -> str:
            final = exp.select(*[c.copy() for c in key_cols], *[x.copy() for x in stats])
            final = final.from_(rows)
            if key_cols:
                final = final.group_by(*[c.copy() for c in key_cols])
            final = final.with_(exp.to_identifier(f"{RESERVED}src", quoted=True), as_=src)
            return final.sql(DIALECT)

        if self.mode == "threshold":
            return statistics(rows_from), None
        whole = _table(f"{RESERVED}src", quoted=True)
        return statistics(rows_from), statistics(whole)


@dataclass
class _KeyOut:
    name: str
    position: int  # index into the grouping keys


@dataclass
class _AggOut:
    name: str
    kind: Literal["count", "sum", "avg"]
    column: tuple[str, Column] | None  # None: COUNT(*)


_Out: TypeAlias = _KeyOut | _AggOut


def _parse(sql: str) -> exp.Select:
    if not isinstance(sql, str) or not sql.strip():
        raise _refuse("syntax", "the query is empty")
    if len(sql) > MAX_SQL:
        raise _refuse("syntax", f"the query is longer than {MAX_SQL:,} characters")
    try:
        trees = [t for t in sqlglot.parse(sql, read=DIALECT) if t is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "cannot parse"
        raise _refuse("syntax", f"the query is not valid SQL: {first}") from None
    if len(trees) != 1:
        if not trees:
            raise _refuse("syntax", "the query is empty")
        raise _refuse("several-statements", "send one SELECT statement at a time")
    tree = trees[0]
    if isinstance(tree, exp.SetOperation):
        raise _refuse("set-operation", "UNION, INTERSECT and EXCEPT are not accepted")
    if isinstance(tree, exp.Subquery):
        raise _refuse("subquery", "subqueries are not accepted")
    if not isinstance(tree, exp.Select):
        raise _refuse("not-a-select", "only SELECT queries are accepted")
    return tree


def _conjuncts(e: exp.Expr) -> Iterable[exp.Expr]:
    if isinstance(e, exp.And):
        yield from _conjuncts(e.this)
        yield from _conjuncts(e.expression)
    elif isinstance(e, exp.Paren):
        yield from _conjuncts(e.this)
    else:
        yield e


def _parents(n: exp.Expr, root: exp.Expr) -> Iterable[exp.Expr]:
    p = n.parent
    while p is not None and p is not root:
        yield p
        p = p.parent


def _share(epsilon: float, parts: int) -> float:
    """ε/parts, rounded down until ``parts`` shares add up to no more than ε."""
    share = epsilon / parts
    while math.fsum([share] * parts) > epsilon:
        share = math.nextafter(share, 0.0)
    return share


def _grid(c: Column) -> tuple[float, int]:
    """The grid step of a column's sums and the largest |value| on the grid.

    Integer columns with modest bounds keep step 1, so their sums are exact. Other columns
    get a power-of-two step that divides the larger bound into at most 2^GRID_BITS steps.
    """
    assert c.lower is not None and c.upper is not None
    b = max(abs(c.lower), abs(c.upper))
    if b == 0:
        return 1.0, 0
    if c.type == "integer" and b <= INTEGER_GRID_LIMIT:
        return 1.0, int(b)
    k = math.ceil(math.log2(b)) - GRID_BITS
    quantum = math.ldexp(1.0, k)
    return quantum, math.ceil(b / quantum)


def _on_grid(value: str, c: Column, quantum: float) -> exp.Expression:
    """The value clamped to its bounds and rounded to the grid, as a BIGINT."""
    assert c.lower is not None and c.upper is not None
    lo, hi = (int(c.lower), int(c.upper)) if c.type == "integer" else (c.lower, c.upper)
    # DuckDB's GREATEST and LEAST skip NULLs; a NULL value must stay NULL, not become a bound
    clamped: exp.Expression = exp.Least(
        this=exp.Greatest(this=_name(value), expressions=[_lit(lo)], ignore_nulls=True),
        expressions=[_lit(hi)],
        ignore_nulls=True,
    )
    if not (quantum == 1.0 and c.type == "integer"):
        scaled = exp.Mul(this=clamped, expression=_lit(1.0 / quantum))
        clamped = exp.cast(exp.Round(this=scaled), exp.DataType.build("BIGINT"))
    is_null = exp.Is(this=_name(value), expression=exp.Null())
    return exp.If(this=is_null, true=exp.Null(), false=clamped)
