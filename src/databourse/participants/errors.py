"""Errors of the participants domain, each with a stable problem type."""

from __future__ import annotations

from databourse.errors import Conflict, ValidationFailed


class DuplicateOrganisation(Conflict):
    slug = "duplicate-organisation"
    title = "An organisation with this registry identifier already exists"


class DuplicateEmail(Conflict):
    slug = "duplicate-email"
    title = "A user with this e-mail address already exists"


class AdmissionIncomplete(ValidationFailed):
    slug = "admission-incomplete"
    title = "The application lacks what admission requires"


class RoleNotGrantable(ValidationFailed):
    slug = "role-not-grantable"
    title = "This role cannot be granted to this organisation"
