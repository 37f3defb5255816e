"""Fingerprints of buyers' copies of data files, and tracing of leaked copies (pure).

The scheme follows Agrawal and Kiernan (VLDB 2002) and Li, Swarup and Jajodia (IEEE TDSC
2005): a keyed pseudo-random function of each row's key decides which cells carry a mark
and which way each marked value moves, always within the tolerance the merchant declared.
Unlike those papers, every cell gets its *own* mark bit (no short fingerprint reused
across rows), so under the hypothesis that a buyer is innocent each informative cell of a
suspect file agrees with that buyer's bits with probability exactly ½, independently. The
accusation rule is then an exact binomial tail, corrected for the number of buyers.

Keys. ``secret`` is the data file's key. A buyer's key is HMAC-SHA256(secret, tag ‖
recipient): the standard PRF for deriving one key from another, computed once per buyer.
Each row is then hashed once with keyed BLAKE2b over its key columns' text (8 bytes for up
to 32 mark columns, 16 for up to 96, …): BLAKE2b's keyed mode is itself a PRF, needs no
HMAC nesting and is about three times faster per short input in CPython, and this hash is
the cost every row pays. The digest's low 32 bits choose the row (``gamma``); bit 32 + j
is the mark bit of mark column j.

Marks. A marked cell moves up by ``delta`` (bit 1) or down by ``delta`` (bit 0), where
``delta`` is the largest change the tolerance allows for that cell, in units of the cell's
last decimal place. A non-negative value moves down at most to zero. Numbers are parsed
from their text and written back in the same style, so ``"12.50"`` becomes ``"12.51"`` and
``"437"`` becomes ``"438"``; cells that are null or not plain decimal text are left alone.

Tracing is non-blind: the tracer reads the original file, matches suspect rows to original
rows, and for each matched cell asks whether the suspect value can only have come from the
value moved up, or only from the value moved down, allowing for rounding to the suspect's
granularity. Cells that fit both, or neither, are no evidence either way.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "MarkColumn",
    "Scheme",
    "Suspicion",
    "TraceResult",
    "Tracer",
    "binomial_tail",
    "check_scheme",
    "default_scheme",
    "embed",
]

VERSION = 1  # of the scheme's algorithm; goes on the ledger with the scheme
KINDS = ("integer", "number")
NUMERIC = ("integer", "number")
DEFAULT_THRESHOLD = 1e-9
SELECT_BITS = 32  # digest bits that choose the row when gamma > 1
MAX_MARKS = 64 * 8 - SELECT_BITS  # BLAKE2b's longest digest is 64 bytes
MAX_CANDIDATES = 64  # original rows sharing one match key beyond which the key is dropped
MAX_TEXT = 16  # longest numeric text that is marked: at most 16 digits, exact in int64
_PPM = 10**6  # relative bounds are applied in millionths, rounded down
_RECIPIENT_TAG = b"databourse/fingerprint/v1/recipient\x00"
_PERSON = b"databourse-fp-v1"  # BLAKE2b personalisation: 16 bytes
_INTEGER = r"^(0|-?[1-9][0-9]*)$"
_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
_LENIENT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_POW10 = pa.array([10**i for i in range(MAX_TEXT + 1)], pa.int64())
_POW10_F = pa.array([float(10**i) for i in range(MAX_TEXT + 1)], pa.float64())
_NO_GRAIN = -99  # a suspect column with no detectable rounding
_SEP = "\x1f"  # between key cells; a cell is "\x01" + text, or "\x00" when null


@dataclass(frozen=True)
class MarkColumn:
    """A column that may carry marks, and how far any of its values may move."""

    name: str
    kind: str  # "integer" | "number"
    tolerance: float  # the largest absolute change allowed to a value of this column
    relative: float | None = None  # optionally also at most this fraction of |value|


@dataclass(frozen=True)
class Scheme:
    """What is marked and how; recorded with each copy so the marks can be recomputed.

    ``gamma``: about one row in ``gamma`` carries marks (1 = every row). ``threshold``:
    a buyer is accused when the probability that an innocent buyer scores as high
    (corrected for the number of buyers) is below it.
    """

    key_columns: tuple[str, ...]  # columns that identify a row; never modified
    marks: tuple[MarkColumn, ...]  # columns that may carry the mark
    gamma: int = 1
    threshold: float = DEFAULT_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "key_columns": list(self.key_columns),
            "marks": [
                {"name": m.name, "kind": m.kind, "tolerance": m.tolerance, "relative": m.relative}
                for m in self.marks
            ],
            "gamma": self.gamma,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scheme:
        if d.get("version") != VERSION:
            raise ValueError(f"unknown fingerprint scheme version {d.get('version')!r}")
        try:
            marks = tuple(
                MarkColumn(
                    str(m["name"]),
                    str(m["kind"]),
                    float(m["tolerance"]),
                    None if m.get("relative") is None else float(m["relative"]),
                )
                for m in d["marks"]
            )
            return cls(
                key_columns=tuple(str(k) for k in d["key_columns"]),
                marks=marks,
                gamma=int(d.get("gamma", 1)),
                threshold=float(d.get("threshold", DEFAULT_THRESHOLD)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a fingerprint scheme: {exc}") from exc


# Column names that say "identifier or calendar part": such integer columns are keys, not
# marks (moving an hour from 23 to 24, or a stop id by one, would break the data).
_ID_WORDS = frozenset({
    "id", "ids", "uuid", "code", "key", "no", "seq", "index", "rank", "version",
    "year", "month", "day", "week", "weekday", "hour", "minute", "second", "quarter", "zip",
    "postcode", "phone", "lat", "lon", "lng", "latitude", "longitude",
})  # fmt: skip
_ID_CJK = (
    "编号", "代码", "编码", "序号", "年份", "月份", "日期", "小时", "时段", "邮编", "电话", "经度",
    "纬度",
)  # fmt: skip


def _identifier_like(name: str) -> bool:
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+", name)
    return bool({w.lower() for w in words} & _ID_WORDS) or any(t in name for t in _ID_CJK)


def default_scheme(columns: Sequence[tuple[str, str]]) -> Scheme:
    """From (name, logical type) pairs: integer and number columns become marks, the rest
    key columns. Integers move by at most 1 and 5 % (so values below 20 stay as they are);
    numbers by at most 1 and 0.5 %. Numeric columns whose name says identifier, calendar
    part or coordinate (``stop_id``, ``hour``, ``lat`` …) are keys. Without any other
    column, the first one is the key. A starting point: the merchant should review it."""
    keys: list[str] = []
    marks: list[MarkColumn] = []
    for name, logical in columns:
        if logical == "integer" and not _identifier_like(name):
            marks.append(MarkColumn(name, "integer", 1.0, 0.05))
        elif logical == "number" and not _identifier_like(name):
            marks.append(MarkColumn(name, "number", 1.0, 0.005))
        else:
            keys.append(name)
    if not keys and marks:
        keys.append(marks.pop(0).name)
    return Scheme(tuple(keys), tuple(marks))


def _problems(scheme: Scheme) -> list[str]:
    """What is wrong with a scheme whatever the file's columns."""
    out: list[str] = []
    if not scheme.key_columns:
        out.append("no key column: rows could not be matched or told apart")
    names = [*scheme.key_columns, *(m.name for m in scheme.marks)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        out.append(f"column(s) named more than once: {', '.join(twice)}")
    if len(scheme.marks) > MAX_MARKS:
        out.append(f"{len(scheme.marks)} mark columns; at most {MAX_MARKS}")
    for m in scheme.marks:
        if m.kind not in KINDS:
            out.append(f"mark column {m.name!r}: kind {m.kind!r} is not one of {KINDS}")
        tol = m.tolerance
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol > 0:
            out.append(f"mark column {m.name!r}: tolerance must be a positive number")
        elif not math.isfinite(tol):
            out.append(f"mark column {m.name!r}: tolerance must be finite")
        rel = m.relative
        if rel is not None and (
            isinstance(rel, bool) or not isinstance(rel, int | float) or not 0 < rel <= 1
        ):
            out.append(f"mark column {m.name!r}: relative must be in (0, 1]")
    g = scheme.gamma
    if isinstance(g, bool) or not isinstance(g, int) or not 1 <= g <= 2**SELECT_BITS:
        out.append("gamma must be an integer of at least 1")
    t = scheme.threshold
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < 1:
        out.append("threshold must be in (0, 1)")
    return out


def check_scheme(scheme: Scheme, columns: Sequence[tuple[str, str]]) -> list[str]:
    """Problems (empty when fine): unknown columns, a mark column that is not numeric,
    no key column, a non-positive tolerance, …"""
    out = _problems(scheme)
    types = dict(columns)
    for k in scheme.key_columns:
        if k not in types:
            out.append(f"key column {k!r} is not a column of the file")
    for m in scheme.marks:
        logical = types.get(m.name)
        if logical is None:
            out.append(f"mark column {m.name!r} is not a column of the file")
        elif logical not in NUMERIC:
            out.append(f"mark column {m.name!r} is {logical}, not integer or number")
        elif m.kind == "integer" and logical == "number":
            out.append(f"mark column {m.name!r} holds numbers; mark it as kind 'number'")
    return out


def _require(scheme: Scheme) -> None:
    problems = _problems(scheme)
    if problems:
        raise ValueError("invalid fingerprint scheme: " + "; ".join(problems))


# --- text, keys and hashes ------------------------------------------------------------

Data: TypeAlias = pa.RecordBatch | pa.Table


def _text(data: Data, name: str) -> pa.Array:
    """A column as one string array (tables' chunks combined; other types cast to text)."""
    col = data.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if col.offset:  # a slice: copied, as pyarrow 23's if_else misreads sliced strings
        col = pa.concat_arrays([col])
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _row_keys(data: Data, names: Sequence[str]) -> pa.Array:
    """Each row's key cells as bytes: null distinct from "", cells kept apart."""
    parts = [
        pc.fill_null(pc.binary_join_element_wise("\x01", _text(data, n), ""), "\x00") for n in names
    ]
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, _SEP)
    return pc.cast(joined, pa.binary())


def _recipient_key(secret: bytes, recipient: str) -> bytes:
    return hmac.digest(secret, _RECIPIENT_TAG + recipient.encode(), "sha256")


def _digest_size(marks: int) -> int:
    return 8 * ((SELECT_BITS + marks + 63) // 64)


def _words(keys: pa.Array, key: bytes, size: int) -> pa.FixedSizeListArray:
    """One keyed BLAKE2b per row, read as little-endian 64-bit words."""
    base = hashlib.blake2b(key=key, digest_size=size, person=_PERSON)
    digests = []
    for k in keys.to_pylist():
        h = base.copy()
        h.update(k)
        digests.append(h.digest())
    if sys.byteorder != "little":  # the words are defined as little-endian everywhere
        digests = [b"".join(d[i : i + 8][::-1] for i in range(0, size, 8)) for d in digests]
    width = size // 8
    flat = pa.Array.from_buffers(
        pa.uint64(), len(digests) * width, [None, pa.py_buffer(b"".join(digests))]
    )
    return pa.FixedSizeListArray.from_arrays(flat, width)


def _u64(x: int) -> pa.Scalar:
    return pa.scalar(x, pa.uint64())


def _bit(words: pa.FixedSizeListArray, j: int) -> pa.Array:
    """Mark column j's bit of each row (True: move up)."""
    pos = SELECT_BITS + j
    word = pc.list_element(words, pos // 64)
    return pc.equal(pc.bit_wise_and(pc.shift_right(word, _u64(pos % 64)), _u64(1)), _u64(1))


def _selected(words: pa.FixedSizeListArray, gamma: int) -> pa.Array | None:
    """Rows that carry marks: about one in gamma (None: all of them)."""
    if gamma == 1:
        return None
    low = pc.bit_wise_and(pc.list_element(words, 0), _u64(2**SELECT_BITS - 1))
    return pc.less(low, _u64(2**SELECT_BITS // gamma))


# --- parsing and rendering numbers ------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What a column's cells allow: value in units of its last decimal place, the number
    of decimals, and how many units it may move up and down (0: the cell is not marked)."""

    units: pa.Array  # int64; null for null or non-plain text
    decimals: pa.Array  # int32
    up: pa.Array  # int64 ≥ 0, never null
    down: pa.Array  # int64 ≥ 0, never null


def _tolerance_units(tolerance: float) -> pa.Array:
    """floor(tolerance × 10^d) for d = 0…16, exactly (from the tolerance's decimal text)."""
    tol = Decimal(repr(float(tolerance)))
    return pa.array(
        [min(int(tol.scaleb(d)), 10**MAX_TEXT) for d in range(MAX_TEXT + 1)], pa.int64()
    )


def _plan(text: pa.Array, mark: MarkColumn) -> _Plan:
    plain = pc.and_(
        pc.match_substring_regex(text, _INTEGER if mark.kind == "integer" else _NUMBER),
        pc.less_equal(pc.utf8_length(text), MAX_TEXT),
    )
    clean = pc.if_else(pc.fill_null(plain, False), text, pa.nulls(len(text), pa.string()))
    if mark.kind == "integer":
        units = pc.cast(clean, pa.int64())
        decimals = pc.if_else(
            pc.is_valid(clean), pa.scalar(0, pa.int32()), pa.nulls(len(clean), pa.int32())
        )
    else:
        units = pc.cast(pc.replace_substring(clean, ".", ""), pa.int64())
        dot = pc.find_substring(clean, ".")
        after = pc.subtract(pc.subtract(pc.utf8_length(clean), dot), 1)
        decimals = pc.if_else(pc.less(dot, 0), 0, after)
    limit = pc.take(_tolerance_units(mark.tolerance), decimals)
    if mark.relative is not None:  # floor(|units| × ppm / 10^6) without overflow
        ppm = int(Decimal(repr(float(mark.relative))).scaleb(6))
        size = pc.abs(units)
        whole = pc.divide(size, _PPM)
        rest = pc.subtract(size, pc.multiply(whole, _PPM))
        share = pc.add(pc.multiply(whole, ppm), pc.divide(pc.multiply(rest, ppm), _PPM))
        limit = pc.min_element_wise(limit, share)
    up = pc.fill_null(limit, 0)
    down = pc.if_else(pc.greater_equal(units, 0), pc.min_element_wise(up, units), up)
    return _Plan(units, decimals, up, pc.fill_null(down, 0))


def _render(units: pa.Array, decimals: pa.Array, kind: str) -> pa.Array:
    """Units of the last decimal place back to text with that many decimals."""
    if kind == "integer":
        return pc.cast(units, pa.string())
    scale = pc.take(_POW10, decimals)
    size = pc.abs(units)
    whole = pc.divide(size, scale)
    frac = pc.subtract(size, pc.multiply(whole, scale))
    padded = pc.utf8_slice_codeunits(pc.cast(pc.add(frac, scale), pa.string()), 1)  # "1" + digits
    whole_text = pc.cast(whole, pa.string())
    body = pc.if_else(
        pc.greater(decimals, 0), pc.binary_join_element_wise(whole_text, padded, "."), whole_text
    )
    return pc.if_else(pc.less(units, 0), pc.binary_join_element_wise("-", body, ""), body)


def embed(batch: pa.RecordBatch, scheme: Scheme, secret: bytes, recipient: str) -> pa.RecordBatch:
    """The recipient's copy of the batch: same schema, same row order, marked cells changed
    within tolerance. Deterministic, and a row's marks depend only on the row (never on its
    position), so a file can be streamed batch by batch."""
    _require(scheme)
    names = batch.schema.names
    missing = [c for c in (*scheme.key_columns, *(m.name for m in scheme.marks)) if c not in names]
    if missing:
        raise ValueError(f"the batch lacks the scheme's column(s): {', '.join(missing)}")
    if batch.num_rows == 0 or not scheme.marks:
        return batch
    keys = _row_keys(batch, scheme.key_columns)
    words = _words(keys, _recipient_key(secret, recipient), _digest_size(len(scheme.marks)))
    chosen = _selected(words, scheme.gamma)
    arrays = list(batch.columns)
    for j, mark in enumerate(scheme.marks):
        i = names.index(mark.name)
        text = _text(batch, mark.name)
        plan = _plan(text, mark)
        delta = pc.if_else(_bit(words, j), plan.up, pc.negate(plan.down))
        if chosen is not None:
            delta = pc.if_else(chosen, delta, 0)
        changed = pc.not_equal(delta, 0)
        if not pc.any(changed).as_py():
            continue
        new = _render(pc.add(plan.units, delta), plan.decimals, mark.kind)
        out = pc.if_else(changed, new, text)
        field_type = batch.schema.field(i).type
        arrays[i] = out if out.type == field_type else pc.cast(out, field_type)
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


# --- tracing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Suspicion:
    """One recipient's standing: ``p_false`` is the probability that an innocent recipient
    agrees this often, times the number of recipients (Bonferroni), capped at 1."""

    recipient: str
    score: float  # z-score of the agreements against Binomial(evidence, ½)
    matched: int  # informative cells agreeing with this recipient's marks
    evidence: int  # informative cells examined for this recipient
    p_false: float
    accused: bool  # p_false below the threshold
    log10_p_false: float = 0.0  # the same, in log10, when p_false underflows to 0


@dataclass(frozen=True)
class TraceResult:
    ranking: tuple[Suspicion, ...]  # all recipients, most suspect first
    rows_suspect: int
    rows_matched: int  # suspect rows matched to exactly one original row
    threshold: float
    columns_used: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranking": [
                {
                    "recipient": s.recipient,
                    "score": s.score,
                    "matched": s.matched,
                    "evidence": s.evidence,
                    "p_false": s.p_false,
                    "log10_p_false": s.log10_p_false,
                    "accused": s.accused,
                }
                for s in self.ranking
            ],
            "rows_suspect": self.rows_suspect,
            "rows_matched": self.rows_matched,
            "threshold": self.threshold,
            "columns_used": list(self.columns_used),
        }


def _log_upper(n: int, k: int) -> float:
    """ln P(Bin(n, ½) ≥ k) for 2k > n: sum the falling terms until what is left (bounded
    by a geometric series, the ratios only fall) is below 1e-17 of the sum."""
    head = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
    total, term, j = 1.0, 1.0, k
    while j < n:
        ratio = (n - j) / (j + 1)
        term *= ratio
        total += term
        j += 1
        nxt = (n - j) / (j + 1)
        if term * nxt < total * 1e-17 * (1 - nxt):
            break
    return head + math.log(total)


def binomial_tail(n: int, k: int) -> float:
    """ln P(X ≥ k) for X ~ Binomial(n, ½): the exact sum (no bound or approximation),
    evaluated in floating point with ``math.lgamma``; its absolute error in ln P is about
    1e-16 × n log n (2e-9 at a million cells), far below what an accusation turns on."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    if 2 * k > n:
        return _log_upper(n, k)
    return math.log1p(-math.exp(_log_upper(n, n - k + 1)))  # 1 − P(X ≤ k − 1), by symmetry


def _lenient(text: pa.Array) -> pa.Array:
    """Any decimal text (suspects come from anywhere) as float64; null when not a number."""
    trimmed = pc.utf8_trim_whitespace(text)
    ok = pc.fill_null(pc.match_substring_regex(trimmed, _LENIENT), False)
    return pc.cast(pc.if_else(ok, trimmed, pa.nulls(len(trimmed), pa.string())), pa.float64())


def _scaled(x: pa.Array, e: int) -> pa.Array:
    return pc.multiply(x, float(10**-e)) if e < 0 else pc.divide(x, float(10**e))


def _unscaled(t: pa.Array, e: int) -> pa.Array:
    return pc.divide(t, float(10**-e)) if e < 0 else pc.multiply(t, float(10**e))


def _grain(text: pa.Array) -> int:
    """The coarsest power of ten (its exponent) that at least half of a suspect column's
    non-zero values are multiples of: how far the column was rounded, if at all."""
    values = pc.drop_null(_lenient(text))
    values = values.filter(pc.not_equal(values, 0.0))
    if len(values) == 0:
        return _NO_GRAIN
    for e in range(9, -MAX_TEXT, -1):
        t = _scaled(values, e)
        near = pc.round(t)
        whole = pc.and_(
            pc.less(pc.abs(pc.subtract(t, near)), 1e-6), pc.greater_equal(pc.abs(near), 1.0)
        )
        if pc.sum(pc.cast(whole, pa.int64())).as_py() * 2 >= len(values):
            return e
    return _NO_GRAIN


def _bounds(x: pa.Array, e: int) -> tuple[pa.Array, pa.Array]:
    """Lowest and highest value x may become when rounded to 10^e (a tie either way)."""
    t = _scaled(x, e)
    low = pc.floor(t)
    tie = pc.less(pc.abs(pc.subtract(pc.subtract(t, low), 0.5)), 1e-6)
    nearest = pc.round(t)
    return (
        _unscaled(pc.if_else(tie, low, nearest), e),
        _unscaled(pc.if_else(tie, pc.add(low, 1.0), nearest), e),
    )


def _sides(original: pa.Array, suspect: pa.Array, mark: MarkColumn, grain: int) -> pa.Array:
    """Per cell: True if the suspect value can only come from the original moved up, False
    if only from it moved down, null if it says nothing. Never depends on any recipient."""
    plan = _plan(original, mark)
    scale = pc.take(_POW10_F, plan.decimals)
    hi = pc.divide(pc.cast(pc.add(plan.units, plan.up), pa.float64()), scale)
    lo = pc.divide(pc.cast(pc.subtract(plan.units, plan.down), pa.float64()), scale)
    hi_min, hi_max, lo_min, lo_max = hi, hi, lo, lo
    if grain != _NO_GRAIN:
        coarse = pc.greater(pc.add(plan.decimals, grain), 0)  # 10^grain above the last place
        (h0, h1), (l0, l1) = _bounds(hi, grain), _bounds(lo, grain)
        hi_min, hi_max = pc.if_else(coarse, h0, hi), pc.if_else(coarse, h1, hi)
        lo_min, lo_max = pc.if_else(coarse, l0, lo), pc.if_else(coarse, l1, lo)
    value = pc.abs(pc.divide(pc.cast(plan.units, pa.float64()), scale))
    eps = pc.max_element_wise(pc.divide(1e-3, scale), pc.multiply(value, 1e-12))
    s = _lenient(suspect)
    up = pc.and_(pc.greater(s, pc.add(lo_max, eps)), pc.greater_equal(s, pc.subtract(hi_min, eps)))
    down = pc.and_(pc.less(s, pc.subtract(hi_min, eps)), pc.less_equal(s, pc.add(lo_max, eps)))
    # a value further from both than they are apart was changed by something else: noise
    spread = pc.add(pc.subtract(hi_max, lo_min), eps)
    near = pc.and_(
        pc.greater_equal(s, pc.subtract(lo_min, spread)),
        pc.less_equal(s, pc.add(hi_max, spread)),
    )
    markable = pc.greater(pc.add(plan.up, plan.down), 0)
    informative = pc.fill_null(pc.and_(pc.and_(markable, near), pc.xor(up, down)), False)
    return pc.if_else(informative, up, pa.nulls(len(up), pa.bool_()))


class Tracer:
    """Streaming leak tracing. The suspect fits in memory (it is an uploaded file); the
    original data file may be large and is fed batch by batch, in any batches.

    Suspect rows are matched to original rows on the scheme's key columns present in the
    suspect (without any, on the other non-mark columns present in both). A suspect row is
    used only if exactly one original row can be its source: when several originals share
    its match key (duplicate keys, or key columns dropped), the one nearest in the mark
    columns is taken if it is clearly nearest, else the row is skipped; keys shared by more
    than ``MAX_CANDIDATES`` original rows are skipped. Each original key is used once, so
    no mark bit is counted twice.
    """

    def __init__(
        self,
        scheme: Scheme,
        secret: bytes,
        recipients: Sequence[str],
        suspect: pa.Table,
        *,
        threshold: float | None = None,
    ) -> None:
        _require(scheme)
        self.scheme = scheme
        self.threshold = scheme.threshold if threshold is None else float(threshold)
        self._secret = secret
        self._recipients = tuple(dict.fromkeys(recipients))
        if isinstance(suspect, pa.RecordBatch):
            suspect = pa.Table.from_batches([suspect])
        self._suspect = suspect
        names = set(suspect.column_names)
        self._marks = [(j, m) for j, m in enumerate(scheme.marks) if m.name in names]
        self._grains = {m.name: _grain(_text(suspect, m.name)) for _, m in self._marks}
        self._match: list[str] | None = None  # decided by the first original batch
        self._groups: pa.Array | None = None
        self._suspect_group = pa.array([], pa.int32())
        self._found: list[pa.RecordBatch] = []
        self._found_rows = 0
        self._limit = 4 * suspect.num_rows + 65_536
        self._crowded: set[int] = set()

    def _start(self, names: Sequence[str]) -> None:
        missing = [k for k in self.scheme.key_columns if k not in names]
        if missing:
            raise ValueError(f"the original lacks key column(s): {', '.join(missing)}")
        suspect = self._suspect
        mark_names = {m.name for m in self.scheme.marks}
        match = [k for k in self.scheme.key_columns if k in suspect.column_names]
        if not match:
            match = [c for c in suspect.column_names if c in names and c not in mark_names]
        self._match = match
        self._marks = [(j, m) for j, m in self._marks if m.name in names]
        if match and suspect.num_rows:
            keys = _row_keys(suspect, match)
            self._groups = pc.unique(keys)
            self._suspect_group = pc.index_in(keys, value_set=self._groups)

    def feed(self, original: pa.RecordBatch) -> None:
        if self._match is None:
            self._start(original.schema.names)
        if self._groups is None or original.num_rows == 0:
            return
        assert self._match is not None
        group = pc.index_in(_row_keys(original, self._match), value_set=self._groups)
        keep = pc.is_valid(group)
        if self._crowded:
            crowded = pa.array(sorted(self._crowded), group.type)
            keep = pc.and_(keep, pc.invert(pc.fill_null(pc.is_in(group, crowded), False)))
        if not pc.any(keep).as_py():
            return
        rows = original.filter(keep)
        arrays = [group.filter(keep), _row_keys(rows, self.scheme.key_columns)]
        arrays += [_text(rows, m.name) for _, m in self._marks]
        names = ["group", "key", *(m.name for _, m in self._marks)]
        self._found.append(pa.RecordBatch.from_arrays(arrays, names=names))
        self._found_rows += rows.num_rows
        if self._found_rows > self._limit:
            self._compact()

    def _compact(self) -> pa.Table:
        """Drop match keys with too many original rows; the rows kept, as one table."""
        table = pa.Table.from_batches(self._found).combine_chunks()
        counts = pc.value_counts(table["group"])
        many = [
            g
            for g, c in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            )
            if c > MAX_CANDIDATES
        ]
        if many:
            self._crowded.update(many)
            crowded = pa.array(many, table["group"].type)
            table = table.filter(pc.invert(pc.is_in(table["group"], crowded))).combine_chunks()
        self._found = table.to_batches()
        self._found_rows = table.num_rows
        self._limit = max(self._limit, 2 * table.num_rows)
        return table

    def _pairs(self, found: pa.Table) -> tuple[pa.Array, pa.Array]:
        """(suspect row, original row) pairs, in suspect order, each original key once."""
        found_rows = pa.table(
            {"group": found["group"], "r": pa.array(range(found.num_rows), pa.int64())}
        )
        per_group = found_rows.group_by("group").aggregate([("r", "min"), ("r", "count")])
        groups = self._suspect_group
        suspect_rows = pa.table(
            {"i": pa.array(range(len(groups)), pa.int64()), "group": groups}
        ).filter(pc.is_valid(groups))
        joined = suspect_rows.join(per_group, "group", join_type="inner")
        single = joined.filter(pc.equal(joined["r_count"], 1))
        pairs = pa.table({"i": single["i"], "r": single["r_min"]})
        several = joined.filter(pc.greater(joined["r_count"], 1))
        if several.num_rows:
            wanted = found_rows.filter(pc.is_in(found_rows["group"], several["group"]))
            members: dict[int, list[int]] = {}
            for g, r in zip(wanted["group"].to_pylist(), wanted["r"].to_pylist(), strict=True):
                members.setdefault(g, []).append(r)
            unclear = [
                (i, members[g])
                for i, g in zip(several["i"].to_pylist(), several["group"].to_pylist(), strict=True)
            ]
            chosen = self._nearest(unclear, found)
            if chosen:
                near = pa.table(
                    {
                        "i": pa.array([i for i, _ in chosen], pa.int64()),
                        "r": pa.array([r for _, r in chosen], pa.int64()),
                    }
                )
                pairs = pa.concat_tables([pairs, near])
        pairs = pairs.append_column("key", pc.take(found["key"], pairs["r"]))
        first = pairs.group_by("key").aggregate([("i", "min")])["i_min"]
        pairs = pairs.filter(pc.is_in(pairs["i"], first)).sort_by("i")
        return pairs["i"].combine_chunks(), pairs["r"].combine_chunks()

    def _nearest(
        self, unclear: list[tuple[int, list[int]]], found: pa.Table
    ) -> list[tuple[int, int]]:
        """For suspect rows with several candidate originals: the clearly nearest one in
        the mark columns (distance in units of each cell's tolerance plus rounding)."""
        if not self._marks:
            return []
        s_rows = sorted({i for i, _ in unclear})
        o_rows = sorted({r for _, cands in unclear for r in cands})
        s_take, o_take = pa.array(s_rows, pa.int64()), pa.array(o_rows, pa.int64())
        cols = []
        for _, m in self._marks:
            text = pc.take(_text(found, m.name), o_take)
            plan = _plan(text, m)
            step = pc.divide(
                pc.cast(
                    pc.max_element_wise(pc.max_element_wise(plan.up, plan.down), 1), pa.float64()
                ),
                pc.take(_POW10_F, plan.decimals),
            )
            grain = self._grains[m.name]
            width = pc.add(step, 10.0**grain if grain != _NO_GRAIN else 0.0)
            s_vals = _lenient(pc.take(_text(self._suspect, m.name), s_take)).to_pylist()
            o_vals = _lenient(text).to_pylist()
            widths = pc.fill_null(width, 1.0).to_pylist()
            cols.append(
                (
                    dict(zip(s_rows, s_vals, strict=True)),
                    dict(zip(o_rows, o_vals, strict=True)),
                    dict(zip(o_rows, widths, strict=True)),
                )
            )
        out = []
        for i, cands in unclear:
            scored = []
            for r in cands:
                total = 0.0
                for s_vals, o_vals, widths in cols:
                    s, o = s_vals[i], o_vals[r]
                    if s is None or o is None:
                        total += 0.0 if s is None and o is None else 4.0
                    else:
                        total += min(abs(s - o) / widths[r], 4.0)
                scored.append((total / len(cols), r))
            scored.sort()
            best, r = scored[0]
            if best <= 1.5 and scored[1][0] - best >= 1.0:
                out.append((i, r))
        return out

    def result(self) -> TraceResult:
        marks = self._marks
        found = self._compact() if self._found else None
        empty = pa.array([], pa.int64())
        s_idx, o_idx = self._pairs(found) if found is not None else (empty, empty)
        counts = {r: [0, 0] for r in self._recipients}  # agreeing, informative
        if len(s_idx) and marks:
            assert found is not None
            sides = [
                _sides(
                    pc.take(_text(found, m.name), o_idx),
                    pc.take(_text(self._suspect, m.name), s_idx),
                    m,
                    self._grains[m.name],
                )
                for _, m in marks
            ]
            telling = sides[0].is_valid()
            for side in sides[1:]:
                telling = pc.or_(telling, side.is_valid())
            sides = [side.filter(telling) for side in sides]
            keys = pc.take(found["key"], o_idx).filter(telling)
            size = _digest_size(len(self.scheme.marks))
            for recipient in self._recipients if len(keys) else ():
                words = _words(keys, _recipient_key(self._secret, recipient), size)
                chosen = _selected(words, self.scheme.gamma)
                for (j, _), side in zip(marks, sides, strict=True):
                    valid = side.is_valid()
                    if chosen is not None:
                        valid = pc.and_(valid, chosen)
                    agree = pc.and_(valid, pc.equal(_bit(words, j), side))
                    counts[recipient][0] += pc.sum(pc.cast(agree, pa.int64())).as_py() or 0
                    counts[recipient][1] += pc.sum(pc.cast(valid, pa.int64())).as_py() or 0
        ranking = sorted(
            (self._suspicion(r, k, n) for r, (k, n) in counts.items()),
            key=lambda s: (s.log10_p_false, -s.score, s.recipient),
        )
        return TraceResult(
            ranking=tuple(ranking),
            rows_suspect=self._suspect.num_rows,
            rows_matched=len(s_idx),
            threshold=self.threshold,
            columns_used=tuple(m.name for _, m in marks),
        )

    def _suspicion(self, recipient: str, k: int, n: int) -> Suspicion:
        log_p = binomial_tail(n, k) + math.log(max(len(self._recipients), 1))
        log_p = min(log_p, 0.0)
        p_false = math.exp(log_p)
        score = (k - n / 2) / math.sqrt(n / 4) if n else 0.0
        return Suspicion(
            recipient=recipient,
            score=score,
            matched=k,
            evidence=n,
            p_false=p_false,
            accused=n > 0 and p_false < self.threshold,
            log10_p_false=log_p / math.log(10),
        )
