"""Errors of compute, each a stable problem type."""

from __future__ import annotations

from databourse.errors import Conflict, ValidationFailed


class InvalidPrivacyParameter(ValidationFailed):
    slug = "invalid-privacy-parameter"
    title = "The privacy parameter is not valid"


class BudgetExhausted(Conflict):
    slug = "privacy-budget-exhausted"
    title = "The contract's privacy budget does not cover this query"


class NoPrivacyBudget(Conflict):
    slug = "no-privacy-budget"
    title = "The contract's policy grants no privacy budget"


class QueryNotPrivate(ValidationFailed):
    """The SQL cannot be answered with differential privacy (or the threshold rule)."""

    slug = "query-not-private"
    title = "The query cannot be answered without revealing rows"


class InvalidPSIInput(ValidationFailed):
    slug = "invalid-psi-input"
    title = "The set given for private set intersection is not valid"


class InvalidTrainingSpec(ValidationFailed):
    slug = "invalid-training-spec"
    title = "The federated training request is not valid"
