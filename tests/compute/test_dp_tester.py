"""The statistical DP tester against every mechanism DP SQL uses — counts, sums, means and
the whole run on DuckDB — and against planted faults it must catch: noise at half the
scale (twice the ε claimed) and a run that forgets to bound contributions.

Each mechanism is sampled on neighbouring datasets: D′ is D plus one privacy unit that
contributes as much as the engine lets it (``max_contributions`` rows at the upper bound).
A vector mechanism adds independent noise to each cell, so releasing N copies of one exact
statistic in one call gives N independent samples of its output."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pytest

from databourse.compute import dprun, dpsql, mechanisms
from tests.compute.dptester import check, compare

EPSILON = 0.5
M = 3  # max_contributions
SAMPLES = 60_000
BUCKETS = 12  # for continuous outputs: wide tail buckets, where a shift shows

SCHEMA = dpsql.Schema.from_dict(
    {
        "privacy_unit": "pid",
        "max_contributions": M,
        "tables": [
            {
                "name": "t",
                "columns": [
                    {"name": "pid", "type": "integer"},
                    {"name": "region", "type": "string", "categories": ["n", "s", "e"]},
                    {"name": "income", "type": "float", "lower": -50.0, "upper": 1000.0},
                ],
            }
        ],
    }
)


def _aggregate(sql: str) -> dpsql.Aggregate:
    (agg,) = dpsql.plan(sql, SCHEMA, epsilon=EPSILON).aggregates
    return agg


def test_count_has_no_violation() -> None:
    a = _aggregate("SELECT COUNT(*) FROM t")
    assert a.count_sensitivity == M

    def sampler(exact: int):
        def draw(n: int) -> np.ndarray:
            noisy, _ = mechanisms.release_count(
                [exact] * n,
                sensitivity=a.count_sensitivity,
                scale=a.count_scale,
                epsilon=a.count_epsilon,
            )
            return np.array(noisy)

        return draw

    verdict = check(sampler(2), sampler(2 + M), EPSILON, samples=SAMPLES)  # near the 0 clamp
    assert not verdict.violated, str(verdict)


def test_half_the_noise_is_caught() -> None:
    """A planted count with half the scale spends 2ε while claiming ε."""
    a = _aggregate("SELECT COUNT(*) FROM t")
    planted = mechanisms.Laplace(a.count_sensitivity, a.count_scale / 2, a.count_epsilon)
    assert planted.scale * 2 == a.count_scale

    def draw(exact: int):
        return lambda n: np.array(planted([exact] * n))

    verdict = check(draw(100), draw(100 + M), EPSILON, samples=SAMPLES // 2)
    assert verdict.violated, str(verdict)
    assert verdict.worst_ratio > math.exp(EPSILON)
    # and the same samples are consistent with the ε the planted noise really spends
    assert not check(draw(100), draw(100 + M), 2 * EPSILON, samples=SAMPLES // 2).violated


def test_sum_has_no_violation() -> None:
    a = _aggregate("SELECT SUM(income) FROM t")
    assert a.sum_sensitivity == M * math.ceil(1000.0 / a.quantum)

    def sampler(exact_grid: int):
        def draw(n: int) -> np.ndarray:
            noisy, _ = mechanisms.release_sum(
                [exact_grid] * n,
                sensitivity=a.sum_sensitivity,
                scale=a.sum_scale,
                epsilon=a.sum_epsilon,
                quantum=a.quantum,
                lower=-50.0,
                upper=1000.0,
                integer=False,
            )
            return np.array(noisy)

        return draw

    base = round(12_345.0 / a.quantum)
    d, d2 = sampler(base), sampler(base + a.sum_sensitivity)
    verdict = check(d, d2, EPSILON, samples=SAMPLES, max_buckets=BUCKETS)
    assert not verdict.violated, str(verdict)


def test_half_the_noise_on_a_sum_is_caught() -> None:
    a = _aggregate("SELECT SUM(income) FROM t")
    planted = mechanisms.Laplace(a.sum_sensitivity, a.sum_scale / 2, a.sum_epsilon)

    def draw(exact: int):
        return lambda n: np.array(planted([exact] * n))

    verdict = check(draw(0), draw(a.sum_sensitivity), EPSILON, samples=SAMPLES // 2,
                    max_buckets=BUCKETS)  # fmt: skip
    assert verdict.violated, str(verdict)


def test_mean_has_no_violation() -> None:
    a = _aggregate("SELECT AVG(income) FROM t")
    assert math.isclose(a.count_epsilon + a.sum_epsilon, EPSILON)

    def sampler(exact_grid: int, exact_count: int):
        def draw(n: int) -> np.ndarray:
            means, _ = mechanisms.release_mean(
                [exact_grid] * n,
                [exact_count] * n,
                sum_sensitivity=a.sum_sensitivity,
                sum_scale=a.sum_scale,
                sum_epsilon=a.sum_epsilon,
                count_sensitivity=a.count_sensitivity,
                count_scale=a.count_scale,
                count_epsilon=a.count_epsilon,
                quantum=a.quantum,
                lower=-50.0,
                upper=1000.0,
            )
            return np.array([-1e9 if v is None else v for v in means])  # None is an output too

        return draw

    grid_bound = a.sum_sensitivity // M
    d = sampler(round(20 * 100.0 / a.quantum), 20)  # 20 rows averaging 100
    d2 = sampler(round(20 * 100.0 / a.quantum) + M * grid_bound, 20 + M)
    verdict = check(d, d2, EPSILON, samples=SAMPLES // 2, max_buckets=BUCKETS)
    assert not verdict.violated, str(verdict)


# --- the whole pipeline: SQL rewrite, DuckDB, noise ----------------------------------------


def _tables(extra_rows: int) -> dict[str, pa.Table]:
    pids = [i for i in range(60) for _ in range(1 + i % 3)]  # 1–3 rows each
    regions = [("n", "s", "e")[(i * 7) % 3] for i in range(len(pids))]
    pids += [999] * extra_rows  # one more unit, in the north: it may count at most M rows
    regions += ["n"] * extra_rows
    return {"t": pa.table({"pid": pids, "region": regions, "income": [100.0] * len(pids)})}


def _north(sql_plan: dpsql.Plan, extra_rows: int):
    tables = _tables(extra_rows)

    def draw(n: int) -> np.ndarray:
        return np.array(
            [dprun.run(sql_plan, tables, seed=i).rows[0][1] for i in range(n)], dtype=float
        )

    return draw


QUERY = "SELECT region, COUNT(*) AS n FROM t GROUP BY region"


def test_the_run_has_no_violation() -> None:
    """COUNT(*) GROUP BY region through plan, DuckDB and noise; the northern count on
    tables without and with a unit that has 40 northern rows. Each run is a fresh DuckDB
    connection, so this takes few samples and has little power: the mechanisms' own tests
    above carry the weight, this one checks the pipeline around them."""
    p = dpsql.plan(QUERY, SCHEMA, epsilon=1.0)
    verdict = check(_north(p, 0), _north(p, 40), 1.0, samples=100, max_buckets=6, alpha=1e-6)
    assert not verdict.violated, str(verdict)


def test_a_run_without_contribution_bounds_is_caught() -> None:
    """The same query with the contribution bound stripped from its SQL: all 40 rows of
    the extra unit count, and the tester sees it at the ε claimed."""
    p = dpsql.plan(QUERY, SCHEMA, epsilon=1.0)
    unbounded = p.sql.replace(f"<= {M}", "<= 1000000")
    assert unbounded != p.sql
    broken = dataclasses.replace(p, sql=unbounded)
    verdict = check(
        _north(broken, 0), _north(broken, 40), 1.0, samples=60, max_buckets=2, alpha=1e-6
    )
    assert verdict.violated, str(verdict)


# --- the tester itself ------------------------------------------------------------------


def test_identical_distributions_pass_and_delta_is_honoured() -> None:
    """With probability 0.05 a planted mechanism publishes the exact answer: that breaks
    pure ε-DP but satisfies (ε, 0.05)-DP, and the tester says so."""
    rng = np.random.default_rng(7)

    def leaky(exact: float):
        def draw(n: int) -> np.ndarray:
            noisy = exact + np.round(rng.laplace(0.0, 1.0 / EPSILON, n))
            return np.where(rng.random(n) < 0.05, 1000.0 if exact == 0 else -1000.0, noisy)

        return draw

    assert not check(leaky(0), leaky(0), EPSILON, samples=50_000).violated
    assert check(leaky(0), leaky(1), EPSILON, samples=50_000).violated
    assert not check(leaky(0), leaky(1), EPSILON, 0.05, samples=50_000).violated


def test_the_tester_rejects_unequal_samples() -> None:
    with pytest.raises(ValueError):
        compare(np.zeros(3), np.zeros(4), 1.0)
