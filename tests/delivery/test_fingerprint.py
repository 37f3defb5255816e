"""Tests for databourse.delivery.fingerprint: utility of the marked copies, determinism, and
leak tracing under attacks — the guilty named, no innocent ever accused."""

from __future__ import annotations

import json
import math
import random
import re
from decimal import Decimal
from fractions import Fraction
from functools import cache

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databourse.delivery.fingerprint import (
    MarkColumn,
    Scheme,
    Tracer,
    TraceResult,
    binomial_tail,
    check_scheme,
    default_scheme,
    embed,
)

SECRET = bytes(range(32))
RECIPIENTS = tuple(f"ctr_01J{i:02d}BUYER" for i in range(10))
COLUMNS = [
    ("line", "string"),
    ("date", "date"),
    ("hour", "integer"),
    ("stop", "string"),
    ("boardings", "integer"),
    ("alightings", "integer"),
    ("fare_yuan", "number"),
]
NAMES = [n for n, _ in COLUMNS]
SCHEME = default_scheme(COLUMNS)
MARKS = ("boardings", "alightings", "fare_yuan")


# --- a realistic table ------------------------------------------------------------------


def bus_rows(lines: int = 4, days: int = 10, stops: int = 6, seed: int = 11) -> list[list[str]]:
    """Hourly boardings per line, date, hour and stop; a few keys appear twice (a feed that
    reported one hour twice), with other counts."""
    rng = random.Random(seed)
    rows = []
    for line in range(1, lines + 1):
        for day in range(1, days + 1):
            for hour in range(6, 22):
                peak = 3.0 if hour in (7, 8, 17, 18) else 1.0
                for stop in range(stops):
                    on = min(1800, max(20, int(rng.gauss(250, 120) * peak)))
                    off = min(1800, max(0, int(on * rng.uniform(0.5, 1.3))))
                    fare = rng.randint(200, 1000)
                    rows.append(
                        [
                            f"L{line}",
                            f"2024-05-{day:02d}",
                            str(hour),
                            f"S{line}{stop:02d}",
                            str(on),
                            str(off),
                            f"{fare // 100}.{fare % 100:02d}",
                        ]
                    )
    for row in rng.sample(rows, 40):
        dup = list(row)
        dup[4] = str(rng.randint(20, 1800))
        dup[5] = str(rng.randint(0, 1800))
        rows.append(dup)
    rows[5][6] = None  # type: ignore[call-overload]  # a missing fare
    rows[9][4] = "n/a"  # an unparsable count
    return rows


def to_table(rows: list[list[str]], names: list[str] = NAMES) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    return pa.table({n: pa.array(list(c), pa.string()) for n, c in zip(names, cols, strict=True)})


def to_rows(table: pa.Table) -> list[list[str]]:
    return [list(r) for r in zip(*(table[n].to_pylist() for n in table.column_names), strict=True)]


@cache
def original(lines: int = 4) -> pa.Table:
    return to_table(bus_rows(lines))


@cache
def copy_of(recipient: str, lines: int = 4) -> pa.Table:
    batches = [embed(b, SCHEME, SECRET, recipient) for b in original(lines).to_batches(1000)]
    return pa.Table.from_batches(batches)


def trace(suspect: pa.Table, lines: int = 4) -> TraceResult:
    tracer = Tracer(SCHEME, SECRET, RECIPIENTS, suspect)
    for batch in original(lines).to_batches(700):
        tracer.feed(batch)
    return tracer.result()


def accused(result: TraceResult) -> set[str]:
    return {s.recipient for s in result.ranking if s.accused}


# --- attacks ---------------------------------------------------------------------------


def subset(rows: list[list[str]], keep: float | int, rng: random.Random) -> list[list[str]]:
    n = keep if isinstance(keep, int) else max(1, round(len(rows) * keep))
    return rng.sample(rows, n)  # a sample is also in random order


def round_values(rows: list[list[str]]) -> list[list[str]]:
    """Counts to tens, fares to one decimal (Python's rounding: half to even)."""
    out = []
    for row in rows:
        row = list(row)
        for i in (4, 5):
            if row[i] is not None and row[i].isdigit():
                row[i] = str(round(int(row[i]), -1))
        if row[6] is not None:
            row[6] = f"{round(float(row[6]), 1):.1f}"
        out.append(row)
    return out


def perturb(rows: list[list[str]], share: float, rng: random.Random) -> list[list[str]]:
    """A share of the mark cells replaced by the value times 1 ± up to 10 %."""
    out = []
    for row in rows:
        row = list(row)
        for i in (4, 5, 6):
            v = row[i]
            if v is not None and v[0].isdigit() and rng.random() < share:
                x = float(v) * (1 + rng.uniform(-0.1, 0.1))
                row[i] = f"{x:.2f}" if "." in v else str(round(x))
        out.append(row)
    return out


@cache
def rows_of(recipient: str, lines: int = 4) -> list[list[str]]:
    return to_rows(copy_of(recipient, lines))


def mix(colluders: list[str], rng: random.Random, lines: int = 4) -> list[list[str]]:
    """Each row taken from one of the colluders' copies at random."""
    copies = [rows_of(c, lines) for c in colluders]
    return [rng.choice(copies)[i] for i in range(len(copies[0]))]


def drop(table: pa.Table, *names: str) -> pa.Table:
    return table.drop_columns(list(names))


# --- utility ---------------------------------------------------------------------------


def _within(old: str, new: str, mark: MarkColumn) -> bool:
    a, b = Decimal(old), Decimal(new)
    change = abs(b - a)
    limit = Decimal(repr(mark.tolerance))
    if mark.relative is not None:
        limit = min(limit, Decimal(repr(mark.relative)) * abs(a))
    return change <= limit


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def test_every_cell_stays_within_tolerance_and_style() -> None:
    orig = to_rows(original())
    marks = {m.name: m for m in SCHEME.marks}
    for recipient in RECIPIENTS[:3]:
        changed = 0
        for old_row, new_row in zip(orig, to_rows(copy_of(recipient)), strict=True):
            for name, old, new in zip(NAMES, old_row, new_row, strict=True):
                if name not in marks or old is None or old == "n/a":
                    assert new == old  # keys, nulls and unparsable cells never change
                    continue
                assert _within(old, new, marks[name]), (name, old, new)
                assert _decimals(new) == _decimals(old)
                assert not new.startswith("-")
                changed += new != old
        assert changed > 0.95 * 3 * len(orig)  # nearly every mark cell carries a mark


@st.composite
def column_cases(draw: st.DrawFn) -> tuple[MarkColumn, list[str | None]]:
    kind = draw(st.sampled_from(["integer", "number"]))
    tolerance = draw(st.floats(1e-4, 1e4, allow_nan=False, allow_infinity=False))
    relative = draw(st.none() | st.floats(1e-5, 1.0))
    plain = st.integers(-(10**12), 10**12).map(str)
    if kind == "number":
        plain = st.decimals(-(10**9), 10**9, places=draw(st.integers(0, 6))).map(
            lambda d: format(d, "f")
        )
    odd = st.sampled_from(["", "n/a", "007", "-0", "1e5", " 12", "+3", "12.", ".5", "9" * 20])
    cells = draw(st.lists(st.none() | plain | odd, min_size=1, max_size=40))
    return MarkColumn("v", kind, tolerance, relative), cells


@settings(max_examples=150, deadline=None)
@given(column_cases(), st.binary(min_size=32, max_size=32), st.text(max_size=12))
def test_property_changes_stay_within_tolerance(
    case: tuple[MarkColumn, list[str | None]], secret: bytes, recipient: str
) -> None:
    mark, cells = case
    scheme = Scheme(("k",), (mark,))
    batch = pa.record_batch(
        {"k": pa.array([str(i) for i in range(len(cells))]), "v": pa.array(cells, pa.string())}
    )
    out = embed(batch, scheme, secret, recipient)
    assert out.schema == batch.schema
    pattern = r"(0|-?[1-9][0-9]*)" if mark.kind == "integer" else r"-?(0|[1-9][0-9]*)(\.[0-9]+)?"
    for old, new in zip(cells, out.column("v").to_pylist(), strict=True):
        if old is None or not re.fullmatch(pattern, old) or len(old) > 16:
            assert new == old
            continue
        assert new is not None and re.fullmatch(pattern, new)
        assert _within(old, new, mark), (old, new)
        assert _decimals(new) == _decimals(old)
        if Decimal(old) >= 0:
            assert Decimal(new) >= 0


def test_embedding_is_deterministic_and_batch_boundaries_do_not_matter() -> None:
    whole = embed(original().combine_chunks().to_batches()[0], SCHEME, SECRET, RECIPIENTS[0])
    again = embed(original().combine_chunks().to_batches()[0], SCHEME, SECRET, RECIPIENTS[0])
    assert whole.equals(again)
    pieces = pa.Table.from_batches(
        [embed(b, SCHEME, SECRET, RECIPIENTS[0]) for b in original().to_batches(37)]
    )
    assert pieces.combine_chunks().to_batches()[0].equals(whole)
    # a row's mark depends on the row only: marking reordered rows reorders the marks
    order = list(range(original().num_rows))
    random.Random(3).shuffle(order)
    shuffled = original().take(order).combine_chunks().to_batches()[0]
    assert embed(shuffled, SCHEME, SECRET, RECIPIENTS[0]).equals(whole.take(order))


def test_recipients_and_files_get_different_copies() -> None:
    a = to_rows(copy_of(RECIPIENTS[0]))
    b = to_rows(copy_of(RECIPIENTS[1]))
    cells = [(x, y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
    differ = sum(x != y for x, y in cells)
    assert differ > 0.3 * len(a) * 3  # about half of the mark cells move the other way
    other = embed(original().to_batches()[0], SCHEME, bytes(32), RECIPIENTS[0])
    assert not other.equals(embed(original().to_batches()[0], SCHEME, SECRET, RECIPIENTS[0]))


def test_rows_with_the_same_key_get_the_same_mark_direction() -> None:
    orig = to_rows(original())
    marked = to_rows(copy_of(RECIPIENTS[2]))
    seen: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(orig):
        seen.setdefault(tuple(row[:4]), []).append(i)
    dups = [ix for ix in seen.values() if len(ix) > 1]
    assert len(dups) >= 30
    for ix in dups:
        for c in (4, 5):
            signs = {
                (Decimal(marked[i][c]) > Decimal(orig[i][c]))
                for i in ix
                if orig[i][c] not in (None, "n/a") and marked[i][c] != orig[i][c]
            }
            assert len(signs) <= 1


def test_gamma_marks_about_one_row_in_gamma_and_still_traces() -> None:
    scheme = Scheme(SCHEME.key_columns, SCHEME.marks, gamma=4)
    base = original().combine_chunks().to_batches()[0]
    out = embed(base, scheme, SECRET, RECIPIENTS[4])
    rows = to_rows(pa.Table.from_batches([base]))
    marked = to_rows(pa.Table.from_batches([out]))
    share = sum(a != b for a, b in zip(rows, marked, strict=True)) / len(rows)
    assert 0.18 < share < 0.32
    tracer = Tracer(scheme, SECRET, RECIPIENTS, pa.Table.from_batches([out]))
    tracer.feed(base)
    assert accused(tracer.result()) == {RECIPIENTS[4]}


# --- tracing ---------------------------------------------------------------------------


def _suspect(attack: str, guilty: str, rng: random.Random) -> pa.Table:
    copy = copy_of(guilty)
    rows = to_rows(copy)
    if attack == "whole copy":
        return copy
    if attack == "20% of rows":
        return to_table(subset(rows, 0.2, rng))
    if attack == "100 rows":
        return to_table(subset(rows, 100, rng))
    if attack == "reordered":
        rng.shuffle(rows)
        return to_table(rows)
    if attack == "mark and key columns dropped":
        return drop(copy, "alightings", "hour")
    if attack == "line dropped":
        return drop(copy, "line")
    if attack == "rounded":
        return to_table(round_values(rows))
    if attack == "30% of values perturbed":
        return to_table(perturb(rows, 0.3, rng))
    if attack == "20% shuffled and rounded":  # the demo scenario
        return to_table(round_values(subset(rows, 0.2, rng)))
    raise AssertionError(attack)


ATTACKS = [
    "whole copy",
    "20% of rows",
    "100 rows",
    "reordered",
    "mark and key columns dropped",
    "line dropped",
    "rounded",
    "30% of values perturbed",
    "20% shuffled and rounded",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_guilty_buyer_is_named(attack: str) -> None:
    rng = random.Random(attack)
    guilty = rng.choice(RECIPIENTS)
    suspect = _suspect(attack, guilty, rng)
    result = trace(suspect)
    assert accused(result) == {guilty}
    assert result.ranking[0].recipient == guilty
    top = result.ranking[0]
    assert top.p_false < 1e-9 and top.matched > top.evidence / 2
    assert all(s.p_false >= result.threshold for s in result.ranking[1:])
    assert result.rows_suspect == suspect.num_rows
    assert 0 < result.rows_matched <= suspect.num_rows
    assert set(result.columns_used) == set(MARKS) & set(suspect.column_names)


def test_innocent_scores_follow_the_null_distribution() -> None:
    result = trace(copy_of(RECIPIENTS[7]))
    innocents = [s for s in result.ranking if s.recipient != RECIPIENTS[7]]
    assert len(innocents) == 9
    for s in innocents:
        assert s.evidence > 5000 and abs(s.score) < 5
    share = sum(s.matched for s in innocents) / sum(s.evidence for s in innocents)
    assert abs(share - 0.5) < 0.01


@pytest.mark.parametrize("colluders", [2, 3])
def test_each_colluder_mixing_rows_is_accused(colluders: int) -> None:
    rng = random.Random(colluders)
    guilty = rng.sample(RECIPIENTS, colluders)
    suspect = to_table(mix(guilty, rng))
    result = trace(suspect)
    assert accused(result) == set(guilty)


def test_an_unmarked_leak_and_unrelated_data_accuse_nobody() -> None:
    assert accused(trace(original())) == set()
    rng = random.Random(5)
    rows = to_rows(original())
    noise = [[*r[:4], str(rng.randint(20, 1800)), str(rng.randint(0, 1800)), "3.50"] for r in rows]
    result = trace(to_table(noise))  # the same keys, other values
    assert accused(result) == set() and result.rows_matched > 3000
    strangers = [[f"X{i}", "2023-01-01", "1", "S1", "100", "90", "1.00"] for i in range(500)]
    result = trace(to_table(strangers))
    assert accused(result) == set() and result.rows_matched == 0


def test_empty_suspect_and_no_matching_rows_accuse_nobody() -> None:
    for suspect in (to_table([]), to_table([]).select(["line", "boardings"])):
        result = trace(suspect)
        assert result.rows_suspect == 0 and result.rows_matched == 0
        assert accused(result) == set()
        assert all(s.p_false == 1.0 and s.evidence == 0 for s in result.ranking)
        assert len(result.ranking) == len(RECIPIENTS)
    only_marks = drop(copy_of(RECIPIENTS[0]), "line", "date", "hour", "stop")
    assert accused(trace(only_marks)) == set()  # nothing left to match rows on


def test_no_innocent_is_ever_accused_over_many_trials() -> None:
    """200 trials on the 3,880-row table, 10 recipients, 0–3 guilty, attacks mixed at random;
    with nobody guilty the suspect is the unmarked original or unrelated values."""
    rng = random.Random(2024)
    base = to_rows(original())
    missed = 0
    for trial in range(200):
        k = rng.choice([0, 1, 1, 2, 3])
        guilty = rng.sample(RECIPIENTS, k)
        if k:
            rows = mix(guilty, rng)
        elif trial % 2:
            rows = base
        else:
            rows = [[*r[:4], str(rng.randint(20, 999)), "5", "1.00"] for r in base]
        rows = subset(rows, rng.choice([0.2, 0.5, 1.0]), rng)
        if rng.random() < 0.4:
            rows = round_values(rows)
        if rng.random() < 0.4:
            rows = perturb(rows, rng.uniform(0.01, 0.3), rng)
        suspect = to_table(rows)
        if rng.random() < 0.3:
            suspect = drop(suspect, rng.choice(["alightings", "fare_yuan", "line"]))
        found = accused(trace(suspect))
        assert found <= set(guilty), f"trial {trial}: accused {found - set(guilty)}"
        missed += found != set(guilty)
    assert missed <= 12  # the misses: a few hundred rows mixed from 3 copies, rounded


def test_trace_result_is_json() -> None:
    result = trace(to_table(subset(to_rows(copy_of(RECIPIENTS[1])), 50, random.Random(1))))
    d = json.loads(json.dumps(result.to_dict()))
    assert d["ranking"][0]["recipient"] == RECIPIENTS[1] and d["ranking"][0]["accused"]
    assert d["rows_suspect"] == 50 and d["threshold"] == 1e-9


# --- statistics ------------------------------------------------------------------------


@given(st.integers(0, 300), st.data())
def test_binomial_tail_is_exact(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(-2, n + 2))
    exact = Fraction(sum(math.comb(n, j) for j in range(max(k, 0), n + 1)), 2**n)
    got = binomial_tail(n, k)
    if exact == 0:
        assert got == -math.inf
    else:
        assert math.isclose(
            got,
            math.log(exact.numerator) - math.log(exact.denominator),
            rel_tol=1e-9,
            abs_tol=1e-12,
        )


def test_binomial_tail_far_out() -> None:
    assert binomial_tail(10**6, 10**6) == pytest.approx(-(10**6) * math.log(2))
    # P(X ≥ n/2) = ½ + ½·C(n, n/2)/2^n, and C(n, n/2)/2^n = √(2/(πn))·(1 − 1/(4n) + O(n⁻²))
    n = 10**6
    centre = math.sqrt(2 / (math.pi * n)) * (1 - 1 / (4 * n))
    assert binomial_tail(n, n // 2) == pytest.approx(math.log(0.5 + 0.5 * centre), abs=1e-8)
    assert binomial_tail(2_000_000, 1_010_000) < math.log(1e-40)


# --- schemes ---------------------------------------------------------------------------


def test_default_scheme_marks_counts_and_keeps_identifiers() -> None:
    assert SCHEME.key_columns == ("line", "date", "hour", "stop")
    assert [m.name for m in SCHEME.marks] == ["boardings", "alightings", "fare_yuan"]
    assert [m.kind for m in SCHEME.marks] == ["integer", "integer", "number"]
    s = default_scheme([("stopId", "integer"), ("经度", "number"), ("amount", "number")])
    assert s.key_columns == ("stopId", "经度") and s.marks[0].name == "amount"
    assert default_scheme([("a", "integer"), ("b", "number")]).key_columns == ("a",)
    assert check_scheme(SCHEME, COLUMNS) == []


def test_scheme_round_trips_through_json() -> None:
    scheme = Scheme(
        ("a", "b"),
        (MarkColumn("x", "integer", 2.0), MarkColumn("y", "number", 0.05, 0.01)),
        gamma=3,
        threshold=1e-12,
    )
    d = json.loads(json.dumps(scheme.to_dict()))
    assert Scheme.from_dict(d) == scheme
    assert Scheme.from_dict(d).to_dict() == scheme.to_dict()
    with pytest.raises(ValueError):
        Scheme.from_dict({**d, "version": 99})
    with pytest.raises(ValueError):
        Scheme.from_dict({"version": 1, "key_columns": ["a"]})


def test_check_scheme_reports_each_problem() -> None:
    bad = Scheme(
        (),
        (
            MarkColumn("line", "integer", 1.0),
            MarkColumn("nope", "number", 1.0),
            MarkColumn("boardings", "integer", 0.0),
            MarkColumn("fare_yuan", "integer", 1.0, relative=2.0),
            MarkColumn("alightings", "float", float("inf")),
        ),
        gamma=0,
        threshold=1.5,
    )
    problems = "\n".join(check_scheme(bad, COLUMNS))
    for needle in (
        "no key column",
        "'line' is string",
        "'nope' is not a column",
        "'boardings': tolerance must be a positive",
        "'fare_yuan': relative must be",
        "holds numbers",
        "kind 'float'",
        "must be finite",
        "gamma",
        "threshold",
    ):
        assert needle in problems, needle
    assert "'ghost' is not a column" in "\n".join(check_scheme(Scheme(("ghost",), ()), COLUMNS))
    assert "more than once" in "\n".join(
        check_scheme(Scheme(("line",), (MarkColumn("line", "integer", 1.0),)), COLUMNS)
    )
    with pytest.raises(ValueError, match="invalid fingerprint scheme"):
        embed(original().to_batches()[0], bad, SECRET, "x")
    with pytest.raises(ValueError, match="lacks"):
        embed(original().to_batches()[0].drop_columns(["stop"]), SCHEME, SECRET, "x")
