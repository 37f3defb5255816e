"""Errors of the catalog domain, each a stable problem type."""

from __future__ import annotations

from databourse.errors import Conflict, ValidationFailed


class InvalidPolicy(ValidationFailed):
    slug = "invalid-policy"
    title = "The usage policy is not valid"


class InvalidPricing(ValidationFailed):
    slug = "invalid-pricing"
    title = "A pricing plan is not valid"


class AssetNotUsable(Conflict):
    slug = "asset-not-usable"
    title = "A product can only be built from the merchant's own registered assets"


class ListingChecksFailed(Conflict):
    slug = "listing-checks-failed"
    title = "The product does not pass the listing checklist"


class InvalidQuery(ValidationFailed):
    slug = "invalid-search-query"
    title = "The search query is not valid"
