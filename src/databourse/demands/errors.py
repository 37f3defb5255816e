"""Errors of the demands domain."""

from __future__ import annotations

from databourse.errors import ValidationFailed


class InvalidDemand(ValidationFailed):
    slug = "invalid-demand"
    title = "The demand is not valid"
