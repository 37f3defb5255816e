"""The contribution bound is skipped only where it would keep every row: the answer is
the same either way, and a unit with many rows is still bounded."""

from __future__ import annotations

import pyarrow as pa

from databourse.compute import dprun, dpsql

SCHEMA = dpsql.Schema.from_dict(
    {
        "privacy_unit": "pid",
        "max_contributions": 2,
        "tables": [
            {
                "name": "visits",
                "columns": [
                    {"name": "pid", "type": "string"},
                    {"name": "site", "type": "string", "categories": ["a", "b"]},
                ],
            }
        ],
    }
)
QUERY = "SELECT site, COUNT(*) AS n FROM visits GROUP BY site"
HUGE = 1e6  # noise far below one: the rounded counts are the exact ones


def counts(result: dprun.Result) -> dict[str, int]:
    return {row[0]: row[1] for row in result.rows}


def test_rows_per_unit_measures_the_busiest_unit() -> None:
    t = pa.table({"pid": ["x", "y", "y", "z", "z", "z"], "site": ["a"] * 6})
    assert dprun.rows_per_unit(t, "pid") == 3
    assert dprun.rows_per_unit(t.slice(0, 0), "pid") == 0


def test_a_unit_over_the_bound_is_still_bounded_when_its_count_is_given() -> None:
    busy = pa.table({"pid": ["p0"] * 1000 + ["p1"], "site": ["a"] * 1000 + ["b"]})
    plan = dpsql.plan(QUERY, SCHEMA, epsilon=HUGE)
    measured = {"visits": dprun.rows_per_unit(busy, "pid")}
    got = counts(dprun.run(plan, {"visits": busy}, rows_per_unit=measured))
    assert got == {"a": 2, "b": 1}  # p0 keeps 2 rows of its 1,000


def test_within_the_bound_the_shortcut_gives_the_same_answer() -> None:
    rows = [f"p{i // 2}" for i in range(400)]  # every unit has exactly 2 rows
    sites = ["a" if i % 3 else "b" for i in range(400)]
    t = pa.table({"pid": rows, "site": sites})
    plan = dpsql.plan(QUERY, SCHEMA, epsilon=HUGE)
    assert plan.sql_unbounded is not None and "ROW_NUMBER" not in plan.sql_unbounded
    bounded = counts(dprun.run(plan, {"visits": t}))
    fast = counts(dprun.run(plan, {"visits": t}, rows_per_unit={"visits": 2}))
    assert bounded == fast == {"a": sites.count("a"), "b": sites.count("b")}
