"""The exception tree every domain raises, and its mapping to RFC 9457 problems.

    DataBourseError            500 internal
    ├── ValidationFailed       422 validation
    ├── NotFound               404 not-found
    ├── Conflict               409 conflict
    │   └── InvalidTransition  409 invalid-transition
    ├── Unauthenticated        401 unauthenticated
    ├── Forbidden              403 forbidden
    │   └── OrganisationInactive 403 organisation-inactive
    └── ...                    each domain's errors subclass one of these

Each class carries a stable ``slug``; the problem ``type`` is ``urn:databourse:problem:<slug>``.
The HTTP edge translates them in one place (``databourse.api.problems``).
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "urn:databourse:problem:"


class DataBourseError(Exception):
    slug: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class ValidationFailed(DataBourseError):
    slug = "validation"
    status = 422
    title = "The request is not valid"


class NotFound(DataBourseError):
    slug = "not-found"
    status = 404
    title = "Not found"


class Conflict(DataBourseError):
    slug = "conflict"
    status = 409
    title = "Conflict with the current state"


class InvalidTransition(Conflict):
    slug = "invalid-transition"
    title = "This action is not allowed in the object's current state"


class Unauthenticated(DataBourseError):
    slug = "unauthenticated"
    status = 401
    title = "Authentication required"


class Forbidden(DataBourseError):
    slug = "forbidden"
    status = 403
    title = "Not allowed"


class OrganisationInactive(Forbidden):
    slug = "organisation-inactive"
    title = "The organisation may not act in its current state"
