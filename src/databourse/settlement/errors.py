"""Errors of settlement, each a stable problem type."""

from __future__ import annotations

from databourse.errors import Conflict, ValidationFailed


class InsufficientFunds(Conflict):
    slug = "insufficient-funds"
    title = "The account's balance does not cover the amount"


class CurrencyMismatch(ValidationFailed):
    slug = "currency-mismatch"
    title = "The amount's currency differs from the contract's or account's"


class InvalidAmount(ValidationFailed):
    slug = "invalid-amount"
    title = "The amount is not valid"


class UnknownRail(ValidationFailed):
    slug = "unknown-payment-rail"
    title = "No payment rail of that name is configured"


class InvalidFeeRule(ValidationFailed):
    slug = "invalid-fee-rule"
    title = "The fee rule is not valid"


class InvalidAgencyContract(ValidationFailed):
    slug = "invalid-agency-contract"
    title = "The agency contract is not valid"


class InvalidUsage(ValidationFailed):
    slug = "invalid-usage-record"
    title = "A usage record is not valid"
