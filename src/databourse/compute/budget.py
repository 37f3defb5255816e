"""Privacy budget arithmetic in integers (pure).

ε is kept in millionths (``epsilon_micro``) and δ in 10⁻¹² (``delta_pico``), as the usage
policy states them, so a budget is charged and compared exactly — no floating point can
let a thousand small charges add up to slightly less than they are. A requested ε or δ is
converted by rounding *up* to the next unit: a charge is never smaller than what the
mechanism spends. Negative, NaN, infinite and non-numeric values are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from databourse.compute.errors import InvalidPrivacyParameter

EPSILON_UNIT = 10**6  # epsilon_micro per 1 ε
DELTA_UNIT = 10**12  # delta_pico per 1 δ
MAX_EPSILON_MICRO = 10**9  # ε 1000: the policy's own bound
MAX_DELTA_PICO = 10**12 - 1  # δ < 1


def _units(value: object, unit: int, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidPrivacyParameter(f"{name} must be a number", parameter=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidPrivacyParameter(f"{name} must be finite, not {value}", parameter=name)
    try:
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidPrivacyParameter(f"{name} must be a number", parameter=name) from None
    if not d.is_finite():
        raise InvalidPrivacyParameter(f"{name} must be finite, not {value}", parameter=name)
    if d < 0:
        raise InvalidPrivacyParameter(f"{name} must not be negative", parameter=name)
    units = int((d * unit).to_integral_value(rounding=ROUND_CEILING))
    if units > limit:
        raise InvalidPrivacyParameter(f"{name} is larger than the exchange accepts", parameter=name)
    return units


def epsilon_micro(value: object) -> int:
    """ε in millionths, rounded up."""
    return _units(value, EPSILON_UNIT, "epsilon", MAX_EPSILON_MICRO)


def delta_pico(value: object) -> int:
    """δ in 10⁻¹², rounded up."""
    return _units(value, DELTA_UNIT, "delta", MAX_DELTA_PICO)


@dataclass(frozen=True)
class Budget:
    """A budget's totals and what has been spent, in integer units."""

    epsilon_micro: int
    delta_pico: int
    spent_epsilon_micro: int = 0
    spent_delta_pico: int = 0

    @property
    def remaining_epsilon_micro(self) -> int:
        return self.epsilon_micro - self.spent_epsilon_micro

    @property
    def remaining_delta_pico(self) -> int:
        return self.delta_pico - self.spent_delta_pico

    def affords(self, eps: int, delta: int) -> bool:
        return eps <= self.remaining_epsilon_micro and delta <= self.remaining_delta_pico

    def remaining(self) -> dict[str, float | int]:
        """What is left, in units and in ε and δ, for a refusal's body."""
        return {
            "epsilon_micro": self.remaining_epsilon_micro,
            "delta_pico": self.remaining_delta_pico,
            "epsilon": self.remaining_epsilon_micro / EPSILON_UNIT,
            "delta": self.remaining_delta_pico / DELTA_UNIT,
        }
