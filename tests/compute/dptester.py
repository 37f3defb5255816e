"""A statistical tester of differential privacy, after Google's DP Stochastic Tester.

The method is the one described in section 5.3 of Wilson et al., "Differentially Private
SQL with Bounded User Contribution" (PoPETs 2020, arXiv:1909.01917), whose tester ships
with Google's differential-privacy library: run the mechanism many times on two
neighbouring datasets D and D′ (here: D′ has one more privacy unit), histogram the outputs
into buckets, and look for an output set S with P[M(D) ∈ S] > e^ε · P[M(D′) ∈ S] + δ (or
the same with D and D′ swapped). Such a set falsifies the claim; not finding one is
evidence, not proof.

Google's tester sizes equal-width bins by the Freedman–Diaconis rule, pads each
comparison with the histogram's approximation error (after Wasserman, *All of
Nonparametric Statistics*) and tolerates up to 5 % of failed comparisons over many
datasets. This one makes each comparison an exact test instead: a bucket is a violation
only when the one-sided Clopper–Pearson lower bound of its probability under one dataset
exceeds e^ε times the upper bound under the other, plus δ. With a Bonferroni correction
over buckets and directions, a mechanism that does satisfy ε-DP is accused with
probability at most ``alpha`` (1e-9 by default), whatever the noise happened to be; that
is what keeps the tests deterministic in effect, since OpenDP's noise cannot be seeded.
For δ > 0 the worst set (the union of the buckets where one side is heavier) is chosen on
one half of the samples and tested on the other.

Buckets: outputs with at most ``max_buckets`` distinct values are bucketed by value, and
otherwise by quantiles of the pooled samples, so every bucket holds a useful share of
both. A bucket with few samples cannot show a violation, so the rare tails cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

Sampler = Callable[[int], np.ndarray]  # n -> n independent outputs of the mechanism


@dataclass(frozen=True)
class Verdict:
    """The tester's finding for one pair of neighbouring datasets."""

    epsilon: float
    delta: float
    samples: int  # per dataset
    buckets: int
    violated: bool
    worst_excess: float  # largest lower bound of P(S) - e^ε Q(S) - δ found (> 0: violated)
    worst_ratio: float  # observed frequency ratio of the bucket behind worst_excess
    detail: str

    def __str__(self) -> str:
        verdict = "VIOLATION" if self.violated else "no violation"
        return (
            f"{verdict} at ε {self.epsilon:g}, δ {self.delta:g}: {self.samples:,} samples per "
            f"dataset, {self.buckets} buckets; worst excess {self.worst_excess:.4g}, observed "
            f"ratio {self.worst_ratio:.3f} vs e^ε {math.exp(self.epsilon):.3f}; {self.detail}"
        )


def _edges(a: np.ndarray, b: np.ndarray, max_buckets: int) -> np.ndarray:
    pooled = np.concatenate([a, b])
    values = np.unique(pooled)
    if len(values) <= max_buckets:
        mids = (values[:-1] + values[1:]) / 2.0
        return mids
    qs = np.quantile(pooled, np.linspace(0, 1, max_buckets + 1)[1:-1])
    return np.unique(qs)


def _counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)


def _lower(k: np.ndarray, n: int, a: float) -> np.ndarray:
    """One-sided Clopper–Pearson lower bounds of binomial proportions."""
    out = np.zeros(len(k), dtype=float)
    pos = k > 0
    out[pos] = beta.ppf(a, k[pos], n - k[pos] + 1)
    return out


def _upper(k: np.ndarray, n: int, a: float) -> np.ndarray:
    out = np.ones(len(k), dtype=float)
    below = k < n
    out[below] = beta.ppf(1 - a, k[below] + 1, n - k[below])
    return out


def compare(
    a: np.ndarray,
    b: np.ndarray,
    epsilon: float,
    delta: float = 0.0,
    *,
    max_buckets: int = 40,
    alpha: float = 1e-9,
    seed: int = 0,
) -> Verdict:
    """Test samples ``a`` ~ M(D) against ``b`` ~ M(D′) (same count) for (ε, δ)-DP."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("give the same number (at least 2) of samples for both datasets")
    n = len(a)
    if delta > 0:  # choose the worst sets on one half, test them on the other
        rng = np.random.default_rng(seed)
        ia, ib = rng.permutation(n), rng.permutation(n)
        half = n // 2
        choose_a, choose_b = a[ia[:half]], b[ib[:half]]
        a, b = a[ia[half : 2 * half]], b[ib[half : 2 * half]]
        n = half
    else:
        choose_a, choose_b = a, b
    edges = _edges(choose_a, choose_b, max_buckets)
    ca, cb = _counts(a, edges), _counts(b, edges)
    k = len(ca)
    tests = 2 * k + (2 if delta > 0 else 0)
    per = alpha / tests
    e = math.exp(epsilon)
    worst, ratio, detail = -math.inf, 0.0, "no bucket"
    for name, p, q in (("D over D′", ca, cb), ("D′ over D", cb, ca)):
        excess = _lower(p, n, per) - e * _upper(q, n, per) - delta
        i = int(np.argmax(excess))
        if excess[i] > worst:
            worst = float(excess[i])
            ratio = p[i] / q[i] if q[i] else (math.inf if p[i] else 1.0)
            detail = f"bucket {i} ({name}: {p[i]:,} vs {q[i]:,} samples)"
    if delta > 0:
        sa, sb = _counts(choose_a, edges), _counts(choose_b, edges)
        for name, p, q, sp, sq in (("D", ca, cb, sa, sb), ("D′", cb, ca, sb, sa)):
            heavier = sp > e * sq
            if not heavier.any():
                continue
            ps, qs = np.array([p[heavier].sum()]), np.array([q[heavier].sum()])
            excess_s = float(_lower(ps, n, per)[0] - e * _upper(qs, n, per)[0] - delta)
            if excess_s > worst:
                worst = excess_s
                ratio = ps[0] / qs[0] if qs[0] else (math.inf if ps[0] else 1.0)
                detail = f"union of {int(heavier.sum())} buckets heavier under {name}"
    return Verdict(epsilon, delta, n, k, worst > 0, worst, float(ratio), detail)


def check(
    sample_d: Sampler,
    sample_d2: Sampler,
    epsilon: float,
    delta: float = 0.0,
    *,
    samples: int = 100_000,
    max_buckets: int = 40,
    alpha: float = 1e-9,
) -> Verdict:
    """Sample a mechanism on D and on D′ and compare the output distributions."""
    return compare(
        sample_d(samples),
        sample_d2(samples),
        epsilon,
        delta,
        max_buckets=max_buckets,
        alpha=alpha,
    )
