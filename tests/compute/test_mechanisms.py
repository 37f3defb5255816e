"""The noise of DP SQL: OpenDP's discrete Laplace, calibrated by OpenDP's own privacy map,
its error bars, and the post-processing of counts, sums and means."""

from __future__ import annotations

import math

import numpy as np
import pytest

from databourse.compute import mechanisms


@pytest.mark.parametrize(
    ("sensitivity", "epsilon"), [(1, 1.0), (1, 0.3), (3, 0.1), (7, 1e-4), (2**24 * 5, 0.7)]
)
def test_calibration_spends_at_most_the_share(sensitivity: int, epsilon: float) -> None:
    scale = mechanisms.calibrate(sensitivity, epsilon)
    mech = mechanisms.laplace(sensitivity, scale, epsilon)
    assert mech.epsilon <= epsilon
    assert scale >= sensitivity / epsilon
    assert scale <= sensitivity / epsilon * (1 + 1e-9)  # and no more noise than needed


def test_a_scale_that_overspends_is_refused() -> None:
    scale = mechanisms.calibrate(2, 0.5)
    with pytest.raises(ValueError, match="more than its share"):
        mechanisms.laplace(2, scale / 2, 0.5)
    with pytest.raises(ValueError):
        mechanisms.laplace(2, 0.0, 0.5)


def test_zero_sensitivity_needs_no_noise() -> None:
    assert mechanisms.calibrate(0, 1.0) == 0.0
    mech = mechanisms.laplace(0, 0.0, 1.0)
    assert mech([5, 6]) == [5, 6]
    assert mech.epsilon == 0.0


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.0, 10.0, 123.4])
def test_the_halfwidth_is_the_95_percent_point_of_the_discrete_laplace(scale: float) -> None:
    h = mechanisms.halfwidth(scale)
    r = math.exp(-1 / scale)

    def beyond(t: int) -> float:  # P(|X| > t), summed term by term
        inside = sum((1 - r) / (1 + r) * r ** abs(k) for k in range(-t, t + 1))
        return 1 - inside

    assert beyond(h) <= 0.05 + 1e-12
    assert h == 0 or beyond(h - 1) > 0.05
    assert abs(h - scale * math.log(20)) <= 1.5  # close to the continuous Laplace's


def test_the_noise_has_the_discrete_laplace_spread() -> None:
    scale = mechanisms.calibrate(1, 0.5)  # 2
    mech = mechanisms.laplace(1, scale, 0.5)
    noise = np.array(mech([1000] * 50_000)) - 1000
    r = math.exp(-1 / scale)
    variance = 2 * r / (1 - r) ** 2
    assert abs(noise.mean()) < 0.1
    assert noise.var() == pytest.approx(variance, rel=0.05)
    inside = np.mean(np.abs(noise) <= mech.halfwidth())
    assert 0.95 <= inside < 0.975


def test_values_beyond_int64_saturate() -> None:
    mech = mechanisms.Laplace(1, 1.0, 1.0)
    (v,) = mech([2**70])
    assert v <= mechanisms.I64_MAX
    assert v > 2**62


def test_counts_are_never_negative() -> None:
    values, hw = mechanisms.release_count([0] * 2000, sensitivity=1, scale=5.0, epsilon=0.2)
    assert min(values) == 0
    assert max(values) > 0
    assert hw == mechanisms.halfwidth(5.0)


def test_sums_are_in_units_rounded_and_signed_by_their_bounds() -> None:
    exact = [1000, 2000]
    ints, _ = mechanisms.release_sum(
        exact, sensitivity=10, scale=1e-3, epsilon=1e4, quantum=1.0, lower=0, upper=10,
        integer=True,
    )  # fmt: skip
    assert ints == [1000, 2000] and all(isinstance(v, int) for v in ints)
    floats, hw = mechanisms.release_sum(
        [3, -5], sensitivity=4, scale=1e-3, epsilon=1e4, quantum=0.25, lower=0, upper=1.0,
        integer=False,
    )  # fmt: skip
    assert floats == [0.75, 0.0]  # -1.25 cannot be the sum of values that are never negative
    assert hw == 0.0
    negatives, _ = mechanisms.release_sum(
        [4], sensitivity=4, scale=1e-3, epsilon=1e4, quantum=1.0, lower=-5, upper=-1,
        integer=True,
    )  # fmt: skip
    assert negatives == [0]


def test_means_are_clamped_and_empty_groups_are_null() -> None:
    common = {
        "sum_sensitivity": 100,
        "sum_scale": 1e-3,
        "sum_epsilon": 1e5,
        "count_sensitivity": 1,
        "count_scale": 1e-3,
        "count_epsilon": 1e3,
        "quantum": 1.0,
        "lower": 0.0,
        "upper": 100.0,
    }
    means, errors = mechanisms.release_mean([500, 0, 5000], [10, 0, 10], **common)
    assert means == [50.0, None, 100.0]  # 5000/10 = 500 is beyond the bound
    assert errors[1] is None
    assert errors[0] == 0.0
