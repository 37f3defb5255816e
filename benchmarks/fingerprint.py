"""fingerprint: marking buyers' copies and tracing leaks, against a keyed SHA-256 per row.

Speed. A 1,000,000-row text table of hourly bus boardings (line, date, hour, stop as keys;
boardings, alightings as integers, fare_yuan with two decimals) is built with vectorised
pyarrow and cut into 65,536-row batches. Rounds alternate ``baseline, embed, baseline,
trace, baseline, …``:

- **baseline**: every row's cells joined into one byte string (vectorised) and
  ``hmac.digest(secret, row, "sha256")`` over each: the least a keyed per-row mark costs.
- **embed**: ``fingerprint.embed`` of every batch for one buyer.
- **trace**: a ``Tracer`` for 10 buyers over a suspect made of 20 % of one buyer's copy,
  shuffled, counts rounded to tens and fares to one decimal; the whole original is fed
  and the result computed. Its rate is original rows per second.

A round's ratio is its rate over the mean of the baseline rates just before and after it;
the reported ratio is the median over rounds.

Attribution. A 5,000-row table of the same kind and 10 buyers' copies; each scenario runs
``TRIALS`` trials with fresh random choices of the guilty buyers and of the attack, and
counts the guilty buyers accused (detection) and the innocent ones accused (false
accusations) at the default threshold.
"""

from __future__ import annotations

import hmac
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console

from benchmarks import Outcome, Row, register
from databourse.delivery import fingerprint

GOAL = 0.5
ROWS = 1_000_000
BATCH = 65_536
ROUNDS = 3
RECIPIENTS = [f"ctr_01JBENCH{i:02d}" for i in range(10)]
SECRET = bytes(range(100, 132))
SMALL = 5_000
TRIALS = 20
COLUMNS = [
    ("line", "string"),
    ("date", "date"),
    ("hour", "integer"),
    ("stop", "string"),
    ("boardings", "integer"),
    ("alightings", "integer"),
    ("fare_yuan", "number"),
]
SCHEME = fingerprint.default_scheme(COLUMNS)
COUNTS = ("boardings", "alightings")
TOLERANCES = ", ".join(
    f"{m.name} ± min({m.tolerance:g}, {m.relative or 0:.1%})" for m in SCHEME.marks
)


def _mod(a: pa.Array, m: int) -> pa.Array:
    return pc.subtract(a, pc.multiply(pc.divide(a, m), m))


def _prefixed(prefix: str, a: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(a, pa.string()), "")


def _ints(n: int, seed: int, low: int, high: int) -> pa.Array:
    return pc.cast(
        pc.floor(pc.add(pc.multiply(pc.random(n, initializer=seed), high - low), low)), pa.int64()
    )


def _cents_text(cents: pa.Array) -> pa.Array:
    frac = pc.utf8_slice_codeunits(pc.cast(pc.add(_mod(cents, 100), 100), pa.string()), 1)
    return pc.binary_join_element_wise(pc.cast(pc.divide(cents, 100), pa.string()), frac, ".")


def _table(n: int, seed: int) -> pa.Table:
    """Unique keys (40 lines × 25 stops × 20 hours × days), random counts and fares."""
    i = pa.array(range(n), pa.int64())
    day = pc.cast(pc.add(pc.divide(i, 20_000), 19_844), pa.int32())  # from 2024-05-01
    return pa.table(
        {
            "line": _prefixed("L", pc.add(_mod(i, 40), 1)),
            "date": pc.cast(pc.cast(day, pa.date32()), pa.string()),
            "hour": pc.cast(pc.add(_mod(pc.divide(i, 1000), 20), 4), pa.string()),
            "stop": _prefixed("S", _mod(pc.divide(i, 40), 25)),
            "boardings": pc.cast(_ints(n, seed, 20, 1800), pa.string()),
            "alightings": pc.cast(_ints(n, seed + 1, 0, 1800), pa.string()),
            "fare_yuan": _cents_text(_ints(n, seed + 2, 200, 1000)),
        }
    )


# --- attacks, vectorised ----------------------------------------------------------------


def _keep(t: pa.Table, share: float, seed: int) -> pa.Table:
    """A random share of the rows, in random order."""
    chosen = t.filter(pc.less(pc.random(t.num_rows, initializer=seed), share))
    order = pc.sort_indices(pc.random(chosen.num_rows, initializer=seed + 1))
    return chosen.take(order)


def _rounded(t: pa.Table, counts: int = -1, fares: int = 1) -> pa.Table:
    """Counts to tens, fares to one decimal (or to other numbers of digits)."""
    for name in COUNTS:
        value = pc.cast(t[name], pa.float64())
        t = t.set_column(
            t.schema.get_field_index(name),
            name,
            pc.cast(pc.cast(pc.round(value, counts), pa.int64()), pa.string()),
        )
    fare = pc.round(pc.cast(t["fare_yuan"], pa.float64()), fares)
    return t.set_column(
        t.schema.get_field_index("fare_yuan"), "fare_yuan", pc.cast(fare, pa.string())
    )


def _perturbed(t: pa.Table, share: float, seed: int) -> pa.Table:
    """A share of each mark column's values times 1 ± up to 10 %."""
    for k, name in enumerate((*COUNTS, "fare_yuan")):
        value = pc.cast(t[name], pa.float64())
        factor = pc.add(pc.multiply(pc.random(t.num_rows, initializer=seed + 2 * k), 0.2), 0.9)
        noisy = pc.multiply(value, factor)
        text = (
            pc.cast(pc.cast(pc.round(noisy), pa.int64()), pa.string())
            if name in COUNTS
            else pc.cast(pc.round(noisy, 2), pa.string())
        )
        hit = pc.less(pc.random(t.num_rows, initializer=seed + 2 * k + 1), share)
        t = t.set_column(t.schema.get_field_index(name), name, pc.if_else(hit, text, t[name]))
    return t


def _mixed(copies: list[pa.Table], seed: int) -> pa.Table:
    """Each row taken from one of the colluders' copies at random."""
    n = copies[0].num_rows
    pick = pc.cast(pc.floor(pc.multiply(pc.random(n, initializer=seed), len(copies))), pa.int64())
    rows = pc.add(pc.multiply(pick, n), pa.array(range(n), pa.int64()))
    return pa.concat_tables(copies).take(rows)


# --- speed -----------------------------------------------------------------------------


def _baseline(batches: list[pa.RecordBatch]) -> float:
    t0 = time.perf_counter()
    for b in batches:
        cells = [
            pc.fill_null(pc.binary_join_element_wise("\x01", b.column(i), ""), "\x00")
            for i in range(b.num_columns)
        ]
        rows = pc.cast(pc.binary_join_element_wise(*cells, "\x1f"), pa.binary()).to_pylist()
        for r in rows:
            hmac.digest(SECRET, r, "sha256")
    return time.perf_counter() - t0


def _embed(batches: list[pa.RecordBatch]) -> tuple[float, list[pa.RecordBatch]]:
    t0 = time.perf_counter()
    out = [fingerprint.embed(b, SCHEME, SECRET, RECIPIENTS[3]) for b in batches]
    return time.perf_counter() - t0, out


def _trace(
    batches: list[pa.RecordBatch], suspect: pa.Table
) -> tuple[float, fingerprint.TraceResult]:
    t0 = time.perf_counter()
    tracer = fingerprint.Tracer(SCHEME, SECRET, RECIPIENTS, suspect)
    for b in batches:
        tracer.feed(b)
    result = tracer.result()
    return time.perf_counter() - t0, result


def _speed(console: Console) -> list[Row]:
    console.print(f"[bold]fingerprint[/bold]: generating {ROWS:,} rows …")
    batches = _table(ROWS, 1).to_batches(BATCH)
    _, copy = _embed(batches[:2])  # warm-up
    _baseline(batches[:2])
    before = ROWS / _baseline(batches)
    bases = [before]
    rates: dict[str, list[float]] = {"embed": [], "trace": []}
    ratios: dict[str, list[float]] = {"embed": [], "trace": []}
    suspect: pa.Table | None = None
    result: fingerprint.TraceResult | None = None
    for r in range(ROUNDS):
        for kind in ("embed", "trace"):
            if kind == "embed":
                seconds, copy = _embed(batches)
                if suspect is None:
                    suspect = _rounded(_keep(pa.Table.from_batches(copy), 0.2, 7))
            else:
                assert suspect is not None
                seconds, result = _trace(batches, suspect)
            after = ROWS / _baseline(batches)
            rate = ROWS / seconds
            rates[kind].append(rate)
            ratios[kind].append(rate / ((before + after) / 2))
            bases.append(after)
            console.print(
                f"  [dim]round {r + 1}/{ROUNDS}: {kind} {rate:,.0f} rows/s, "
                f"hmac-sha256 {after:,.0f} rows/s[/dim]"
            )
            before = after
    assert suspect is not None and result is not None
    top = result.ranking[0]
    if top.recipient != RECIPIENTS[3] or sum(s.accused for s in result.ranking) != 1:
        raise AssertionError(f"the benchmark's trace named the wrong buyer: {result.ranking[:2]}")
    base = statistics.median(bases)
    embed_rate = statistics.median(rates["embed"])
    return [
        Row(
            f"embed: {ROWS:,} rows × 7 columns (3 marked), one buyer",
            embed_rate,
            "rows/s",
            base,
            goal=GOAL,
            ratio_override=statistics.median(ratios["embed"]),
            extra={"detail": f"{BATCH:,}-row batches; {1e6 / embed_rate:.2f} µs per row"},
        ),
        Row(
            f"trace: {ROWS:,} original rows, 10 buyers",
            statistics.median(rates["trace"]),
            "rows/s",
            base,
            goal=GOAL,
            ratio_override=statistics.median(ratios["trace"]),
            extra={
                "detail": f"suspect {suspect.num_rows:,} rows (20 %, shuffled, rounded); "
                f"{result.rows_matched:,} matched; guilty p_false "
                f"10^{top.log10_p_false:,.0f}",
            },
        ),
    ]


# --- attribution -----------------------------------------------------------------------


Attack = Callable[[list[pa.Table], random.Random, int], tuple[pa.Table, set[int]]]


def _single(change: Callable[[pa.Table, int], pa.Table]) -> Attack:
    def attack(copies: list[pa.Table], rng: random.Random, seed: int) -> tuple[pa.Table, set[int]]:
        g = rng.randrange(len(copies))
        return change(copies[g], seed), {g}

    return attack


def _colluders(k: int, keep: float = 1.0) -> Attack:
    def attack(copies: list[pa.Table], rng: random.Random, seed: int) -> tuple[pa.Table, set[int]]:
        guilty = rng.sample(range(len(copies)), k)
        mixed = _mixed([copies[g] for g in guilty], seed)
        return (_keep(mixed, keep, seed + 5) if keep < 1 else mixed), set(guilty)

    return attack


def _deleted(t: pa.Table, seed: int, share: float) -> pa.Table:
    return _keep(t, 1 - share, seed)


def _changed(t: pa.Table, seed: int, share: float) -> pa.Table:
    return _perturbed(t, share, seed)


SCENARIOS: list[tuple[str, Attack]] = [
    *(
        (f"rows deleted {100 * p:g}%", _single(partial(_deleted, share=p)))
        for p in (0.1, 0.5, 0.9, 0.99, 0.998)
    ),
    *(
        (f"values changed {p:.0%}", _single(partial(_changed, share=p)))
        for p in (0.01, 0.1, 0.3, 1.0)
    ),
    ("rounded (tens; 1 decimal)", _single(lambda t, s: _rounded(t))),
    ("rounded (hundreds; whole yuan)", _single(lambda t, s: _rounded(t, -2, 0))),
    ("rows deleted 80%, shuffled, rounded", _single(lambda t, s: _rounded(_keep(t, 0.2, s)))),
    *((f"{k} colluders mixing rows", _colluders(k)) for k in (2, 3, 4, 5)),
    ("5 colluders, rows deleted 50%", _colluders(5, 0.5)),
    ("5 colluders, rows deleted 95%", _colluders(5, 0.05)),
]


def _attribution(console: Console) -> list[Row]:
    original = _table(SMALL, 99)
    batches = original.to_batches(1024)
    copies = [
        pa.Table.from_batches([fingerprint.embed(b, SCHEME, SECRET, r) for b in batches])
        for r in RECIPIENTS
    ]
    rows = []

    def run(name: str, make: Callable[[random.Random, int], tuple[pa.Table, set[int]]]) -> None:
        rng = random.Random(name)
        hits = guilty_n = false = innocent_n = 0
        logs: list[float] = []
        t0 = time.perf_counter()
        for trial in range(TRIALS):
            suspect, guilty = make(rng, 1000 * trial + 1)
            tracer = fingerprint.Tracer(SCHEME, SECRET, RECIPIENTS, suspect)
            for b in batches:
                tracer.feed(b)
            result = tracer.result()
            for s in result.ranking:
                g = RECIPIENTS.index(s.recipient) in guilty
                if g:
                    guilty_n += 1
                    hits += s.accused
                    logs.append(s.log10_p_false)
                else:
                    innocent_n += 1
                    false += s.accused
        detected = 100 * hits / guilty_n if guilty_n else float("nan")
        console.print(
            f"  [dim]{name}: {detected:.0f} % detected, {false} false accusations "
            f"({time.perf_counter() - t0:.1f} s)[/dim]"
        )
        rows.append(
            Row(
                f"attribution: {name}",
                detected,
                "% detected",
                extra={
                    "trials": f"{TRIALS}",
                    "false accusations": f"{false} of {innocent_n}",
                    "guilty p_false (median)": (
                        f"10^{statistics.median(logs):,.0f}" if logs else "no guilty buyer"
                    ),
                },
            )
        )

    for name, attack in SCENARIOS:
        run(name, partial(attack, copies))
    run("unmarked original leaked", lambda rng, seed: (_keep(original, 0.5, seed), set()))
    return rows


@register(
    title="Fingerprinted copies and leak tracing",
    goal=f"embedding and tracing at ≥ {GOAL:.0%} of a plain keyed SHA-256's rows/s over the "
    "same rows; no innocent buyer accused",
)
def fingerprint_bench(console: Console) -> Outcome:
    rows = _speed(console)
    rows += _attribution(console)
    return Outcome(
        rows=rows,
        baseline="HMAC-SHA256 (`hmac.digest`) over each row's joined cells, the cells joined "
        "with pyarrow, in the same run, alternating with the measured rounds",
        method=[
            f"{ROWS:,} synthetic rows of hourly bus boardings as text (keys line, date, hour, "
            "stop; marks boardings and alightings 20–1,800, fare_yuan 2.00–10.00), default "
            f"scheme ({TOLERANCES})",
            f"one warm-up, then {ROUNDS} rounds of baseline, embed, baseline, trace, baseline; "
            "rates are medians over rounds; each ratio is the median of a round's rate over "
            "the mean of the baseline rates around it",
            f"attribution: {SMALL:,} rows, 10 buyers, {TRIALS} trials per scenario, threshold "
            f"{SCHEME.threshold:g}; 'values changed p' replaces a share p of each mark column's "
            "values with the value times 1 ± up to 10 %; colluders take each row from one of "
            "their copies at random; detection = guilty buyers accused / guilty buyers",
        ],
        notes=[
            "tracing's cost grows with the buyers: one keyed BLAKE2b per buyer for each "
            "suspect row that matched the original and carries evidence, on top of one pass "
            "over the original",
        ],
    )
