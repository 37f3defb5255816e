"""Errors of delivery, each a stable problem type.

A refused use names the policy constraint it violates in ``constraint`` (one of
``rules.CONSTRAINTS``), so a client can tell a purpose it may not declare from a count it
has used up without parsing the detail.
"""

from __future__ import annotations

from typing import Any

from databourse.errors import (
    Conflict,
    DataBourseError,
    Forbidden,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)


class UsageRefused(Forbidden):
    slug = "usage-refused"
    title = "The contract's usage policy does not allow this use"

    def __init__(self, detail: str, *, constraint: str, **extra: Any) -> None:
        super().__init__(detail, constraint=constraint, **extra)
        self.constraint = constraint


class RateLimited(UsageRefused):
    slug = "rate-limited"
    status = 429
    title = "The contract's rate limit is reached"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, constraint="rate", retry_after=retry_after, **extra)
        self.headers = {"Retry-After": str(retry_after)}


class NoUsableContract(UsageRefused):
    slug = "no-usable-contract"
    title = "No active contract of the caller covers this product"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, constraint="contract", **extra)


class UpstreamFailed(DataBourseError):
    slug = "upstream-error"
    status = 502
    title = "The merchant's service failed to answer"


class UpstreamTimeout(UpstreamFailed):
    slug = "upstream-timeout"
    status = 504
    title = "The merchant's service did not answer in time"


class UpstreamNotConfigured(Conflict):
    slug = "upstream-not-configured"
    title = "The merchant has not registered the API's upstream yet"


class InvalidUpstream(ValidationFailed):
    slug = "invalid-upstream"
    title = "The upstream registration is not valid"


class InvalidSignedUrl(Forbidden):
    slug = "invalid-signed-url"
    title = "The link is not valid or has expired"


class InvalidShareToken(Unauthenticated):
    slug = "invalid-share-token"
    title = "The Delta Sharing bearer token is not valid"


class NotShared(NotFound):
    slug = "not-shared"
    title = "No such share, schema or table for this recipient"


class InvalidSuspect(ValidationFailed):
    slug = "invalid-suspect-file"
    title = "The suspected file cannot be traced"


class NotDeliverable(Conflict):
    slug = "not-deliverable"
    title = "The product has nothing to deliver this way"


class InvalidScheme(ValidationFailed):
    slug = "invalid-fingerprint-scheme"
    title = "The fingerprint scheme does not fit the data"
