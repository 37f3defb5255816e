"""Errors of the auth domain."""

from __future__ import annotations

from databourse.errors import Unauthenticated


class BadCredentials(Unauthenticated):
    slug = "bad-credentials"
    title = "E-mail address or password is wrong"


class InvalidToken(Unauthenticated):
    slug = "invalid-token"
    title = "The token or API key is missing, malformed, expired or revoked"
