"""Noise for DP SQL from OpenDP's vetted mechanisms, and its error bars (pure).

Every statistic the engine releases is an integer vector — counts, or sums of values put
on an integer grid — so one mechanism serves them all: OpenDP's ``make_laplace`` on
``vector_domain(atom_domain(T="i64"))`` with the ``l1_distance``, which samples the
discrete Laplace distribution exactly (Canonne, Kamath and Steinke 2020, as OpenDP cites
it) with no floating-point noise of our own. A scale is accepted only when OpenDP's own
privacy map, applied to the statistic's L1 sensitivity, returns at most the ε share it is
meant to spend; :func:`calibrate` finds the smallest such scale.

The noise comes from OpenDP's cryptographically secure generator and cannot be seeded.
What follows the noise — rounding, clamping counts at zero and means to the declared
bounds, dividing a noisy sum by a noisy count — is post-processing and spends nothing.

Error bars are 95 % half-widths of the noise: for the discrete Laplace with scale ``b``,
``P(|X| > h) = 2 r^(h+1) / (1 + r)`` with ``r = exp(-1/b)``, and the half-width is the
smallest whole ``h`` where that is at most 5 % (close to ``b · ln 20``, the continuous
Laplace's). A mean's half-width is a first-order approximation (see :func:`release_mean`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import opendp.prelude as dp

__all__ = [
    "LEVEL",
    "Laplace",
    "calibrate",
    "halfwidth",
    "laplace",
    "release_count",
    "release_mean",
    "release_sum",
]

LEVEL = 0.95  # of the error bars
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
_CALIBRATION_STEPS = 64

dp.enable_features("contrib")


@lru_cache(maxsize=256)
def _measurement(scale: float) -> dp.Measurement:
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    return dp.m.make_laplace(*space, scale=scale)


@dataclass(frozen=True)
class Laplace:
    """Discrete Laplace noise of ``scale`` on integer vectors whose L1 sensitivity is
    ``sensitivity``; ``epsilon`` is what OpenDP's privacy map says one release spends."""

    sensitivity: int
    scale: float
    epsilon: float

    def __call__(self, values: Sequence[int]) -> list[int]:
        """Each value plus independent noise (inputs beyond int64 are saturated first)."""
        exact = [min(max(int(v), I64_MIN), I64_MAX) for v in values]
        if self.scale == 0 or not exact:
            return exact
        return list(_measurement(self.scale)(exact))

    def halfwidth(self, level: float = LEVEL) -> int:
        return halfwidth(self.scale, level)


def _spent(sensitivity: int, scale: float) -> float:
    return float(_measurement(scale).map(sensitivity))


def calibrate(sensitivity: int, epsilon: float) -> float:
    """The smallest scale, from ``sensitivity / epsilon`` up, whose privacy map at
    ``sensitivity`` is at most ``epsilon`` (OpenDP rounds its map conservatively)."""
    if sensitivity < 0 or not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError("sensitivity and epsilon must not be negative")
    if sensitivity == 0:
        return 0.0
    if epsilon == 0:
        raise ValueError("a positive sensitivity needs a positive epsilon")
    scale = sensitivity / epsilon
    for _ in range(_CALIBRATION_STEPS):
        if _spent(sensitivity, scale) <= epsilon:
            return scale
        scale = math.nextafter(scale, math.inf) * (1 + 1e-15)
    raise ArithmeticError(f"no scale found for sensitivity {sensitivity} at ε {epsilon}")


def laplace(sensitivity: int, scale: float, epsilon: float) -> Laplace:
    """The mechanism for a planned release, checked against its ε share by OpenDP's map.

    Raises ValueError when the scale would spend more than ``epsilon``.
    """
    if sensitivity == 0:
        return Laplace(0, 0.0, 0.0)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError("a positive sensitivity needs a positive, finite scale")
    spent = _spent(sensitivity, scale)
    if spent > epsilon:
        raise ValueError(f"the noise would spend ε {spent!r}, more than its share {epsilon!r}")
    return Laplace(sensitivity, scale, spent)


def halfwidth(scale: float, level: float = LEVEL) -> int:
    """The smallest whole h with P(|X| > h) <= 1 - level for discrete Laplace(scale)."""
    if scale <= 0:
        return 0
    r = math.exp(-1.0 / scale)

    def beyond(h: int) -> float:  # P(|X| > h)
        return 2.0 * math.exp(-(h + 1) / scale) / (1.0 + r)

    h = max(math.ceil(-scale * math.log((1.0 - level) * (1.0 + r) / 2.0)) - 1, 0)
    while h > 0 and beyond(h - 1) <= 1 - level:
        h -= 1
    while beyond(h) > 1 - level:
        h += 1
    return h


def release_count(
    exact: Sequence[int], *, sensitivity: int, scale: float, epsilon: float
) -> tuple[list[int], float]:
    """Noisy counts, never below zero, and their 95 % half-width."""
    mech = laplace(sensitivity, scale, epsilon)
    return [max(0, v) for v in mech(exact)], float(mech.halfwidth())


def release_sum(
    exact_grid: Sequence[int],
    *,
    sensitivity: int,
    scale: float,
    epsilon: float,
    quantum: float,
    lower: float,
    upper: float,
    integer: bool,
) -> tuple[list[Any], float]:
    """Noisy sums of values on a grid of step ``quantum``, in the values' units.

    A sum whose values cannot be negative is never released below zero (and one whose
    values cannot be positive never above); sums of integer columns are whole numbers.
    """
    mech = laplace(sensitivity, scale, epsilon)
    out: list[Any] = []
    for g in mech(exact_grid):
        v = g * quantum
        if lower >= 0:
            v = max(v, 0.0)
        if upper <= 0:
            v = min(v, 0.0)
        out.append(round(v) if integer else float(v))
    return out, mech.halfwidth() * quantum


def release_mean(
    exact_grid: Sequence[int],
    exact_counts: Sequence[int],
    *,
    sum_sensitivity: int,
    sum_scale: float,
    sum_epsilon: float,
    count_sensitivity: int,
    count_scale: float,
    count_epsilon: float,
    quantum: float,
    lower: float,
    upper: float,
) -> tuple[list[float | None], list[float | None]]:
    """Noisy means: a noisy sum over a noisy count, each with its own ε, clamped to
    [lower, upper]. Groups whose noisy count is below 1 get None (SQL's AVG of nothing).

    The half-width of a mean ``s/n`` is approximated to first order as
    ``(h_s + |s/n| · h_n) / n``, where ``h_s`` and ``h_n`` are the half-widths of the sum's
    and the count's noise, and is capped at the width of the bounds.
    """
    sums = laplace(sum_sensitivity, sum_scale, sum_epsilon)
    counts = laplace(count_sensitivity, count_scale, count_epsilon)
    noisy_s, noisy_n = sums(exact_grid), counts(exact_counts)
    h_s, h_n = sums.halfwidth() * quantum, float(counts.halfwidth())
    values: list[float | None] = []
    errors: list[float | None] = []
    for s_grid, n in zip(noisy_s, noisy_n, strict=True):
        if n < 1:
            values.append(None)
            errors.append(None)
            continue
        mean = s_grid * quantum / n
        values.append(min(max(mean, lower), upper))
        errors.append(min((h_s + abs(mean) * h_n) / n, upper - lower))
    return values, errors
