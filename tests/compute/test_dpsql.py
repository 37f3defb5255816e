"""DP SQL as a buyer meets it: the queries accepted and their answers (checked against the
exact answer computed separately with DuckDB, at an ε so large the noise vanishes),
contribution bounds, clamping, the declared group domain, post-processing, every refusal
with its reason, the threshold mode, and the runner's handling of files and bad data."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from databourse.compute import dprun, dpsql
from databourse.compute.errors import InvalidPrivacyParameter, QueryNotPrivate

BIG = 1000.0  # ε at which every count's noise is zero with overwhelming probability
REGIONS = ["north", "south", "east", "west"]
N = 3000

SCHEMA_DICT: dict[str, Any] = {
    "privacy_unit": "pid",
    "max_contributions": 2,
    "tables": [
        {
            "name": "people",
            "columns": [
                {"name": "pid", "type": "integer"},
                {"name": "region", "type": "string", "categories": REGIONS},
                {"name": "age", "type": "integer", "lower": 0, "upper": 100},
                {"name": "income", "type": "float", "lower": 0, "upper": 1000},
                {"name": "member", "type": "boolean", "categories": ["true", "false"]},
                {"name": "joined", "type": "date"},
                {"name": "name", "type": "string"},
                {"name": "score", "type": "float"},
            ],
        },
        {
            "name": "visits",
            "columns": [
                {"name": "pid", "type": "integer"},
                {"name": "clinic", "type": "string", "categories": ["a", "b", "c"]},
                {"name": "cost", "type": "float", "lower": 0, "upper": 50},
            ],
        },
    ],
}
SCHEMA = dpsql.Schema.from_dict(SCHEMA_DICT)


def _people(n: int = N, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", "elsewhere"], n, p=[0.4, 0.3, 0.2, 0.1])
    region = region.astype(object)
    region[rng.random(n) < 0.05] = None
    return pa.table(
        {
            "pid": np.arange(n),
            "region": pa.array(region, pa.string()),
            "age": rng.integers(0, 101, n),
            "income": np.round(rng.uniform(0, 1000, n), 2),
            "member": rng.random(n) < 0.3,
            "joined": pa.array(
                [date(2020 + int(i % 4), 1 + int(i % 12), 1) for i in range(n)], pa.date32()
            ),
            "name": pa.array([f"p{i:05d}" for i in range(n)]),
            "score": rng.normal(0, 1, n),
        }
    )


def _visits(n: int = N, seed: int = 2) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "pid": np.arange(n),
            "clinic": rng.choice(["a", "b", "c"], n),
            "cost": np.round(rng.uniform(0, 50, n), 2),
        }
    )


PEOPLE = _people()
VISITS = _visits()
TABLES = {"people": PEOPLE, "visits": VISITS}


def exact(sql: str, **tables: pa.Table) -> list[tuple[Any, ...]]:
    """The plain answer, computed by DuckDB over the same Arrow tables."""
    con = duckdb.connect()
    for name, t in (tables or TABLES).items():
        con.register(name, t)
    return con.execute(sql).fetchall()


def answer(sql: str, epsilon: float = BIG, tables: dict[str, Any] | None = None, **kw: Any):
    return dprun.run(dpsql.plan(sql, SCHEMA, epsilon=epsilon), tables or TABLES, **kw)


def refused(sql: str, schema: dpsql.Schema = SCHEMA) -> str:
    with pytest.raises(QueryNotPrivate) as info:
        dpsql.plan(sql, schema, epsilon=1.0)
    assert info.value.detail  # a reason in plain words
    return info.value.extra["reason"]


# --- the schema -------------------------------------------------------------------------


def test_a_schema_round_trips_through_its_json_shape() -> None:
    again = dpsql.Schema.from_dict(json.loads(json.dumps(SCHEMA.to_dict())))
    assert again == SCHEMA
    assert SCHEMA.table("PEOPLE").column("Income").upper == 1000  # type: ignore[union-attr]


def _with(column: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "privacy_unit": "pid",
        "tables": [{"name": "t", "columns": [{"name": "pid", "type": "integer"}, column]}],
        **top,
    }


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        (_with({"name": "x", "type": "text"}), "type must be one of"),
        (_with({"name": "x", "type": "string", "lower": 0, "upper": 1}), "only numeric"),
        (_with({"name": "x", "type": "float", "lower": 0}), "both lower and upper"),
        (_with({"name": "x", "type": "float", "lower": 5, "upper": 1}), "lower is above"),
        (_with({"name": "x", "type": "float", "lower": 0, "upper": float("inf")}), "finite"),
        (_with({"name": "x", "type": "integer", "lower": 0.5, "upper": 2}), "are integers"),
        (_with({"name": "x", "type": "integer", "categories": ["1", "x"]}), "is not a integer"),
        (_with({"name": "x", "type": "string", "categories": ["a", "a"]}), "declared twice"),
        (_with({"name": "x", "type": "string", "categories": []}), "non-empty"),
        (_with({"name": "x", "type": "string", "categories": "ab"}), "must be a list"),
        (_with({"name": "x", "type": "date", "categories": ["2024-13-01"]}), "is not a date"),
        (_with({"name": "x", "type": "string", "categorys": ["a"]}), "unknown keys"),
        (_with({"name": "PID", "type": "string"}), "declared twice"),
        (_with({"name": "_dp_x", "type": "string"}), "reserved"),
        (_with({"name": "x", "type": "string"}, max_contributions=0), "max_contributions"),
        (_with({"name": "x", "type": "string"}, privacy_unit="who"), "privacy unit"),
        ({"privacy_unit": "pid", "tables": []}, "non-empty list 'tables'"),
    ],
)
def test_bad_declarations_are_refused_with_a_clear_message(
    declaration: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dpsql.Schema.from_dict(declaration)


# --- accepted queries --------------------------------------------------------------------


def test_count_sum_and_mean_per_group_match_the_exact_answer() -> None:
    result = answer(
        "SELECT region, COUNT(*) AS n, SUM(income) AS total, AVG(age) AS mean_age, "
        "COUNT(income) FROM people GROUP BY region"
    )
    truth = {
        r[0]: r[1:]
        for r in exact(
            "SELECT region, COUNT(*), SUM(income), AVG(age), COUNT(income) FROM people "
            "GROUP BY region"
        )
    }
    assert result.columns == ["region", "n", "total", "mean_age", "COUNT(income)"]
    assert [r[0] for r in result.rows] == REGIONS  # the declared domain, in declared order
    for region, n, total, mean_age, count_income in result.rows:
        t_n, t_total, t_mean, t_count = truth.get(region, (0, 0.0, None, 0))
        assert n == t_n and count_income == t_count
        assert isinstance(n, int)
        assert abs(total - t_total) <= 5 * result.error["total"]
        if t_mean is None:
            assert mean_age is None or 0 <= mean_age <= 100
        else:
            assert abs(mean_age - t_mean) <= 5 * result.error["mean_age"]
    assert result.error["region"] is None
    assert result.error["n"] == 0  # no noise that could move a count at ε 1000
    assert 0 < result.error["total"] < 100
    assert result.epsilon == BIG and result.delta == 0.0


def test_a_global_aggregate_is_one_row() -> None:
    result = answer("SELECT COUNT(*) AS n, SUM(age) AS years FROM people")
    ((n, years),) = exact("SELECT COUNT(*), SUM(age) FROM people")
    assert result.rows[0][0] == n
    assert abs(result.rows[0][1] - years) <= 5 * result.error["years"]
    assert isinstance(result.rows[0][1], int)  # the sum of an integer column is whole


@pytest.mark.parametrize(
    "where",
    [
        "age >= 30 AND age < 60",
        "region = 'north' OR income > 900",
        "NOT member",
        "age IN (1, 2, 3, 50) AND region IS NOT NULL",
        "income BETWEEN 100 AND 200",
        "name LIKE 'p001%' OR name ILIKE 'P02%'",
        "region IS NULL",
        "joined >= DATE '2022-01-01' AND EXTRACT(year FROM joined) < 2023",
        "lower(name) <> 'p00001' AND abs(score) < 1.5 AND CAST(age AS DOUBLE) / 2 > 10",
        "CASE WHEN age > 50 THEN income ELSE 0 END > 500",
        "coalesce(region, 'none') = 'none' OR name NOT LIKE '%7'",
        "length(trim(name)) = 6 AND substring(name, 2, 2) = '00' AND round(income) > floor(2.5)",
        "ceil(score) > 0 AND quarter(joined) = 1 AND dayofweek(joined) IN (1, 2, 3)",
        "date_trunc('year', joined) = DATE '2021-01-01' OR regexp_matches(name, '^p01')",
        "starts_with(name, 'p02') OR year(joined) = 2020 AND month(joined) < 6 AND day(joined) = 1",
    ],
)
def test_filters_on_any_declared_column(where: str) -> None:
    result = answer(f"SELECT member, COUNT(*) AS n FROM people WHERE {where} GROUP BY member")
    truth = dict(exact(f"SELECT member, COUNT(*) FROM people WHERE {where} GROUP BY member"))
    assert result.rows == [[True, truth.get(True, 0)], [False, truth.get(False, 0)]]


def test_joins_on_the_privacy_unit() -> None:
    sql = (
        "SELECT p.region, v.clinic, COUNT(*) AS n, SUM(v.cost) AS cost FROM people p "
        "JOIN visits v ON p.pid = v.pid WHERE p.age > 20 GROUP BY p.region, v.clinic"
    )
    result = answer(sql)
    truth = {(r[0], r[1]): r[2:] for r in exact(sql)}
    assert len(result.rows) == len(REGIONS) * 3
    for region, clinic, n, cost in result.rows:
        t_n, t_cost = truth.get((region, clinic), (0, 0.0))
        assert n == t_n
        assert abs(cost - t_cost) <= 5 * result.error["cost"]
    using = answer(
        "SELECT COUNT(*) AS n FROM people LEFT JOIN visits USING (pid) WHERE clinic = 'a'"
    )
    assert using.rows == [[exact("SELECT COUNT(*) FROM visits WHERE clinic = 'a'")[0][0]]]


def test_a_unit_counts_at_most_max_contributions_rows() -> None:
    n = 1002
    many = pa.table(
        {
            "pid": [7] * 1000 + [8, 9],
            "region": ["north", "south"] * 500 + ["north", "north"],
            "age": [*range(1000), 1, 1],
            "income": [10.0] * n,
            "member": [True] * n,
            "joined": pa.array([date(2024, 1, 1)] * n, pa.date32()),
            "name": ["x"] * n,
            "score": [0.0] * n,
        }
    )
    tables = {"people": many, "visits": VISITS}
    sql = "SELECT region, COUNT(*) AS n, SUM(income) AS s FROM people GROUP BY region"
    result = answer(sql, tables=tables)
    counts = {r[0]: r[1] for r in result.rows}
    assert counts["north"] + counts["south"] == 2 + 2  # 2 of unit 7's 1,000 rows, 8 and 9
    total = sum(r[2] for r in result.rows)
    assert abs(total - 40.0) <= 4 * 5 * result.error["s"]
    # the rows kept are chosen by a keyed hash of their values: the seed is the key
    norths = [answer(sql, tables=tables, seed=s).rows[0][1] for s in range(12)]
    assert set(norths) <= {2, 3, 4} and len(set(norths)) > 1
    assert answer(sql, tables=tables, seed=3).rows[0][1] == norths[3]


def test_values_are_clamped_to_their_declared_bounds() -> None:
    wild = PEOPLE.set_column(
        PEOPLE.schema.get_field_index("age"),
        "age",
        pa.array([500 if i % 2 else -40 for i in range(N)], pa.int64()),
    )
    result = answer(
        "SELECT SUM(age) AS s, AVG(age) AS a FROM people WHERE pid < 100",
        tables={"people": wild, "visits": VISITS},
    )
    assert abs(result.rows[0][0] - 50 * 100) <= 5 * result.error["s"]  # 500 → 100, -40 → 0
    assert abs(result.rows[0][1] - 50.0) <= 5 * result.error["a"]


def test_groups_follow_the_declared_domain_not_the_data() -> None:
    result = answer("SELECT region, COUNT(*) AS n FROM people GROUP BY region")
    by_region = dict(result.rows)
    assert list(by_region) == REGIONS
    assert by_region["west"] == 0  # declared, absent from the data: still there
    assert "elsewhere" not in by_region and None not in by_region  # present, undeclared: dropped
    total = exact("SELECT COUNT(*) FROM people WHERE region IN ('north', 'south', 'east')")
    assert sum(by_region.values()) == total[0][0]


def test_keys_keep_their_types_and_may_stay_hidden() -> None:
    result = answer("SELECT member, region, COUNT(*) FROM people GROUP BY region, member")
    assert len(result.rows) == 8
    assert {type(r[0]) for r in result.rows} == {bool}
    hidden = answer("SELECT COUNT(*) AS n FROM people GROUP BY region")
    assert hidden.columns == ["n"] and len(hidden.rows) == 4
    dated = dpsql.Schema.from_dict(
        {
            "privacy_unit": "pid",
            "tables": [
                {
                    "name": "people",
                    "columns": [
                        {"name": "pid", "type": "integer"},
                        {"name": "joined", "type": "date", "categories": ["2021-02-01"]},
                        {"name": "age", "type": "integer", "categories": ["7", "8"]},
                    ],
                }
            ],
        }
    )
    plan = dpsql.plan("SELECT joined, age, COUNT(*) FROM people GROUP BY 1, 2", dated, epsilon=BIG)
    rows = dprun.run(plan, {"people": PEOPLE}).rows
    t = exact("SELECT count(*) FROM people WHERE joined = DATE '2021-02-01' AND age = 7")
    assert rows[0] == [date(2021, 2, 1), 7, t[0][0]]


def test_having_order_by_and_limit_apply_to_the_noisy_rows() -> None:
    result = answer(
        "SELECT region, COUNT(*) AS n, AVG(income) FROM people GROUP BY region "
        "HAVING COUNT(*) > 100 AND n < 100000 ORDER BY n DESC, region LIMIT 2"
    )
    truth = sorted(
        exact(
            "SELECT region, COUNT(*) FROM people WHERE region IN ('north', 'south', "
            "'east', 'west') GROUP BY region"
        ),
        key=lambda r: -r[1],
    )
    assert [r[:2] for r in result.rows] == [list(t) for t in truth[:2]]
    ordinal = answer("SELECT region, COUNT(*) FROM people GROUP BY region ORDER BY 1 LIMIT 1")
    assert ordinal.rows[0][0] == "east"
    offset = answer(
        "SELECT region, COUNT(*) AS n FROM people GROUP BY region ORDER BY region LIMIT 1 OFFSET 3"
    )
    assert offset.rows[0][0] == "west"


def test_the_plan_spends_exactly_the_epsilon_asked() -> None:
    plan = dpsql.plan(
        "SELECT region, COUNT(*), SUM(income), AVG(age) FROM people GROUP BY region",
        SCHEMA,
        epsilon=0.7,
        delta=1e-6,
    )
    assert plan.mode == "dp" and plan.epsilon == 0.7
    assert plan.delta == 0.0 and plan.requested_delta == 1e-6  # pure ε-DP spends no δ
    assert plan.columns == ("region", "COUNT(*)", "SUM(income)", "AVG(age)")
    assert sum(a.epsilon for a in plan.aggregates) <= 0.7
    assert sum(a.epsilon for a in plan.aggregates) == pytest.approx(0.7)
    avg = plan.aggregates[2]
    assert avg.count_epsilon == avg.sum_epsilon  # AVG: half on its sum, half on its count
    assert '"people"' in plan.sql and "$salt" in plan.sql
    assert json.dumps(plan.to_dict())


def test_identifiers_are_quoted() -> None:
    odd = dpsql.Schema.from_dict(
        {
            "privacy_unit": "user id",
            "tables": [
                {
                    "name": "my table",
                    "columns": [
                        {"name": "user id", "type": "integer"},
                        {"name": "select", "type": "string", "categories": ["a", "b"]},
                        {"name": 'we"ird', "type": "integer", "lower": 0, "upper": 9},
                    ],
                }
            ],
        }
    )
    data = pa.table({"user id": [1, 2, 3], "select": ["a", "a", "b"], 'we"ird': [1, 2, 3]})
    plan = dpsql.plan(
        'SELECT "select", COUNT(*), SUM("we""ird") FROM "my table" GROUP BY "select"',
        odd,
        epsilon=BIG,
    )
    rows = dprun.run(plan, {"my table": data}).rows
    assert [r[:2] for r in rows] == [["a", 2], ["b", 1]]


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM people", "raw-rows"),
        ("SELECT pid FROM people", "raw-rows"),
        ("SELECT name, COUNT(*) FROM people GROUP BY region", "raw-rows"),
        ("SELECT p.* FROM people p", "raw-rows"),
        ("SELECT age + 1 FROM people", "raw-rows"),
        ("SELECT region FROM people GROUP BY region", "no-aggregate"),
        ("SELECT name, COUNT(*) FROM people GROUP BY name", "group-key-not-public"),
        ("SELECT COUNT(*) FROM people GROUP BY age + 1", "group-key-not-public"),
        ("SELECT COUNT(*) FROM people GROUP BY ALL", "unsupported-group-by"),
        ("SELECT COUNT(*) FROM people GROUP BY ROLLUP (region)", "unsupported-group-by"),
        ("SELECT SUM(score) FROM people", "unbounded-column"),
        ("SELECT AVG(score) FROM people", "unbounded-column"),
        ("SELECT SUM(name) FROM people", "not-numeric"),
        ("SELECT SUM(age * 2) FROM people", "aggregate-argument"),
        ("SELECT MAX(age) FROM people", "unsupported-aggregate"),
        ("SELECT quantile_cont(age, 0.5) FROM people", "unsupported-aggregate"),
        ("SELECT MEDIAN(age) FROM people", "unsupported-aggregate"),
        ("SELECT COUNT(DISTINCT region) FROM people", "unsupported-aggregate"),
        ("SELECT STDDEV(age) FROM people", "unsupported-aggregate"),
        ("SELECT COUNT(*) / 2 FROM people", "unsupported-expression"),
        ("SELECT 1 FROM people", "unsupported-expression"),
        ("SELECT COUNT(*), ROW_NUMBER() OVER () FROM people", "window-function"),
        ("SELECT COUNT(*) FROM people QUALIFY 1 = 1", "window-function"),
        ("SELECT COUNT(*) FROM (SELECT * FROM people)", "subquery"),
        ("SELECT COUNT(*) FROM people WHERE pid IN (SELECT pid FROM visits)", "subquery"),
        ("SELECT COUNT(*) FROM people WHERE EXISTS (SELECT 1)", "subquery"),
        ("WITH x AS (SELECT * FROM people) SELECT COUNT(*) FROM x", "subquery"),
        ("SELECT COUNT(*) FROM people UNION SELECT COUNT(*) FROM visits", "set-operation"),
        ("SELECT COUNT(*) FROM people; SELECT COUNT(*) FROM visits", "several-statements"),
        ("DROP TABLE people", "not-a-select"),
        ("INSERT INTO people VALUES (1)", "not-a-select"),
        ("CREATE TABLE x AS SELECT 1", "not-a-select"),
        ("UPDATE people SET age = 1", "not-a-select"),
        ("SELEC COUNT(*) FROM people", "syntax"),
        ("SELECT COUNT(* FROM people", "syntax"),
        ("", "syntax"),
        ("SELECT COUNT(*)", "no-table"),
        ("SELECT COUNT(*) FROM secrets", "unknown-table"),
        ("SELECT COUNT(*) FROM read_csv('/etc/passwd')", "unknown-table"),
        ("SELECT COUNT(*) FROM 'people.parquet'", "unknown-table"),
        ("SELECT COUNT(*) FROM main.people", "unknown-table"),
        ("SELECT COUNT(salary) FROM people", "unknown-column"),
        ("SELECT COUNT(*) FROM people WHERE salary > 1", "unknown-column"),
        ("SELECT COUNT(*) FROM people p WHERE q.age > 1", "unknown-table"),
        (
            "SELECT COUNT(*) FROM people JOIN visits ON people.age = visits.cost",
            "join-not-on-privacy-unit",
        ),
        ("SELECT COUNT(*) FROM people JOIN visits ON true", "join-not-on-privacy-unit"),
        ("SELECT COUNT(*) FROM people, visits", "join-not-on-privacy-unit"),
        ("SELECT COUNT(*) FROM people CROSS JOIN visits", "unsupported-join"),
        ("SELECT COUNT(*) FROM people FULL JOIN visits USING (pid)", "unsupported-join"),
        ("SELECT COUNT(*) FROM people RIGHT JOIN visits USING (pid)", "unsupported-join"),
        ("SELECT COUNT(*) FROM people NATURAL JOIN visits", "unsupported-join"),
        ("SELECT COUNT(*) FROM people JOIN visits USING (pid, pid)", "join-not-on-privacy-unit"),
        (
            "SELECT COUNT(*) FROM people p JOIN visits v ON p.pid = v.pid AND v.cost > 1 "
            "JOIN visits w ON p.age = w.pid",
            "join-not-on-privacy-unit",
        ),
        ("SELECT COUNT(*) FROM people JOIN secrets USING (pid)", "unknown-table"),
        (
            "SELECT region, COUNT(*) FROM people GROUP BY region HAVING SUM(age) > 1",
            "having-aggregate-not-selected",
        ),
        ("SELECT COUNT(*) FROM people WHERE COUNT(*) > 1", "aggregate-in-where"),
        ("SELECT COUNT(*) FROM people WHERE random() < 0.5", "unsupported-expression"),
        ("SELECT COUNT(*) FROM people WHERE name = getenv('HOME')", "unsupported-expression"),
        ("SELECT COUNT(*) FROM people WHERE age = ?", "unsupported-expression"),
        ("SELECT COUNT(*) FROM people WHERE joined > now()", "unsupported-expression"),
        ("SELECT DISTINCT region FROM people", "distinct"),
        ("SELECT COUNT(*) FROM people TABLESAMPLE 10%", "unsupported-clause"),
        ("SELECT COUNT(*) FILTER (WHERE age > 1) FROM people", "unsupported-aggregate"),
        ("SELECT COUNT(*) FROM people LIMIT age", "unsupported-clause"),
        ("SELECT COUNT(*) AS _dp_rows FROM people", "reserved-name"),
        ("SELECT COUNT(*) AS n, SUM(age) AS n FROM people", "duplicate-column"),
        ("SELECT region, region AS r, COUNT(*) FROM people GROUP BY region", "duplicate-column"),
        ("SELECT COUNT(*) FROM people p JOIN people p USING (pid)", "duplicate-alias"),
        ("SELECT COUNT(*) FROM people ORDER BY age", "raw-rows"),
        (
            "SELECT region, COUNT(*) FROM people GROUP BY region ORDER BY SUM(age)",
            "having-aggregate-not-selected",
        ),
        ("SELECT region, COUNT(*) FROM people GROUP BY region ORDER BY 9", "syntax"),
        ("SELECT region, COUNT(*) FROM people GROUP BY 3", "syntax"),
        (
            "SELECT COUNT(*) FROM people a JOIN people b USING (pid) WHERE age > 1",
            "ambiguous-column",
        ),
        ("SELECT region, COUNT(*) FROM people GROUP BY region HAVING name = 'x'", "raw-rows"),
        (
            "SELECT COUNT(*) FROM people GROUP BY region HAVING random() > 0.5",
            "unsupported-expression",
        ),
    ],
)
def test_what_cannot_be_private_is_refused_with_its_reason(sql: str, reason: str) -> None:
    assert refused(sql) == reason


def test_an_ambiguous_unit_resolves_to_the_first_table() -> None:
    """The privacy unit is in every table and joined equal, so plain ``pid`` is fine."""
    result = answer("SELECT COUNT(*) FROM people p JOIN visits v USING (pid) WHERE pid < 10")
    assert result.rows == [[10]]


def test_refusals_name_the_problem_type() -> None:
    with pytest.raises(QueryNotPrivate) as info:
        dpsql.plan("SELECT * FROM people", SCHEMA, epsilon=1.0)
    assert info.value.slug == "query-not-private"
    assert "reveal rows" in info.value.detail


@pytest.mark.parametrize(
    "epsilon", [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"), "1", None, True]
)
def test_invalid_epsilon_is_refused(epsilon: Any) -> None:
    with pytest.raises(InvalidPrivacyParameter):
        dpsql.plan("SELECT COUNT(*) FROM people", SCHEMA, epsilon=epsilon)


@pytest.mark.parametrize("delta", [-1e-9, 1.0, float("nan"), float("inf"), "0"])
def test_invalid_delta_is_refused(delta: Any) -> None:
    with pytest.raises(InvalidPrivacyParameter):
        dpsql.plan("SELECT COUNT(*) FROM people", SCHEMA, epsilon=1.0, delta=delta)


@pytest.mark.parametrize("k", [0, -3, 1.5, None, True])
def test_invalid_group_size_is_refused(k: Any) -> None:
    with pytest.raises(InvalidPrivacyParameter):
        dpsql.plan_threshold("SELECT COUNT(*) FROM people", SCHEMA, min_group_size=k)


# --- threshold mode ----------------------------------------------------------------------


def test_threshold_mode_suppresses_small_groups_and_answers_exactly() -> None:
    sql = (
        "SELECT age, COUNT(*) AS n, SUM(score) AS s, AVG(income) AS a FROM people "
        "WHERE age < 50 GROUP BY age"
    )
    plan = dpsql.plan_threshold(sql, SCHEMA, min_group_size=31)
    assert plan.mode == "threshold" and plan.epsilon == 0.0
    result = dprun.run(plan, TABLES)
    truth = exact(
        "SELECT age, COUNT(*), SUM(score), AVG(income) FROM people WHERE age < 50 GROUP BY age "
        "ORDER BY age"
    )
    kept = [list(r) for r in truth if r[1] >= 31]
    assert len(kept) not in (0, len(truth))
    assert [r[:2] for r in result.rows] == [r[:2] for r in kept]
    for got, want in zip(result.rows, kept, strict=True):
        assert got[2] == pytest.approx(want[2]) and got[3] == pytest.approx(want[3])
    assert result.suppressed_groups == len(truth) - len(kept)
    assert result.error == {"age": None, "n": None, "s": None, "a": None}


def test_threshold_mode_counts_distinct_units_and_post_processes() -> None:
    many = pa.table(
        {
            "pid": [1] * 50 + [2, 3, 4],
            "region": ["north"] * 50 + ["south"] * 3,
            "age": [1] * 53,
            "income": [1.0] * 53,
            "member": [True] * 53,
            "joined": pa.array([date(2024, 1, 1)] * 53, pa.date32()),
            "name": ["x"] * 53,
            "score": [0.0] * 53,
        }
    )
    plan = dpsql.plan_threshold(
        "SELECT region, COUNT(*) AS n FROM people GROUP BY region ORDER BY n DESC",
        SCHEMA,
        min_group_size=2,
    )
    result = dprun.run(plan, {"people": many})
    assert result.rows == [["south", 3]]  # fifty rows, but one person: suppressed
    assert result.suppressed_groups == 1
    with pytest.raises(QueryNotPrivate):
        dpsql.plan_threshold("SELECT name FROM people", SCHEMA, min_group_size=2)
    (row,) = dprun.run(
        dpsql.plan_threshold("SELECT COUNT(*) FROM people", SCHEMA, min_group_size=5),
        {"people": many},
    ).rows or [None]
    assert row is None  # four people in all: the one group is suppressed


# --- the runner --------------------------------------------------------------------------


def test_tables_can_be_parquet_or_csv_files(tmp_path: Path) -> None:
    pq.write_table(PEOPLE, tmp_path / "people.parquet")
    pacsv.write_csv(VISITS, tmp_path / "visits.csv")
    sql = (
        "SELECT clinic, COUNT(*) AS n FROM people JOIN visits USING (pid) "
        "WHERE region = 'north' GROUP BY clinic"
    )
    result = answer(
        sql,
        tables={"people": str(tmp_path / "people.parquet"), "visits": tmp_path / "visits.csv"},
    )
    assert result.rows == answer(sql).rows
    with pytest.raises(ValueError, match=r"only \.csv and \.parquet"):
        answer(sql, tables={"people": str(tmp_path / "people.json"), "visits": VISITS})


def test_missing_data_is_an_error() -> None:
    with pytest.raises(ValueError, match="no data was given for table 'visits'"):
        answer("SELECT COUNT(*) FROM people JOIN visits USING (pid)", tables={"people": PEOPLE})
    with pytest.raises(ValueError, match="has no column 'score'"):
        answer("SELECT COUNT(*) FROM people", tables={"people": PEOPLE.drop(["score"])})


def test_cells_that_do_not_fit_their_type_are_null() -> None:
    text = PEOPLE.set_column(
        PEOPLE.schema.get_field_index("age"),
        "age",
        pa.array(["12", "abc"] * (N // 2), pa.string()),
    )
    result = answer("SELECT COUNT(age) AS n, SUM(age) AS s FROM people", tables={"people": text})
    assert result.rows[0][0] == N // 2
    assert abs(result.rows[0][1] - 12 * N // 2) <= 5 * result.error["s"]


def test_the_engine_cannot_reach_files_or_other_data() -> None:
    """Even SQL that bypassed the planner could not read the file system."""
    plan = dpsql.plan("SELECT COUNT(*) FROM people", SCHEMA, epsilon=1.0)
    forged = dataclasses.replace(
        plan, sql="SELECT COUNT(*) AS \"_dp_rows\" FROM read_csv('/etc/hostname')"
    )
    with pytest.raises(RuntimeError) as info:
        dprun.run(forged, TABLES)
    assert "disabled by configuration" in str(info.value.__cause__)


def test_a_result_is_json() -> None:
    result = answer("SELECT member, COUNT(*) FROM people GROUP BY member")
    assert json.loads(json.dumps(result.to_dict()))["columns"] == ["member", "COUNT(*)"]
    dated = dpsql.plan_threshold(
        "SELECT joined, COUNT(*) FROM people GROUP BY joined", SCHEMA, min_group_size=1
    )
    body = dprun.run(dated, TABLES).to_dict()
    assert json.dumps(body) and body["rows"][0][0] == "2020-01-01"
