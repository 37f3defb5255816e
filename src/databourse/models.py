"""Every domain's tables, imported in one place for migrations and ``alembic check``."""

from databourse.auth.models import ApiKey, WebSession
from databourse.db import Base
from databourse.idempotency import IdempotencyRecord
from databourse.ledger.models import (
    Checkpoint,
    Cosignature,
    LedgerAlert,
    LedgerEntry,
    LedgerEntryParty,
    LedgerHead,
    LedgerNode,
    Witness,
)
from databourse.participants.models import (
    AdmissionDecision,
    Organisation,
    OrganisationRole,
    User,
)

metadata = Base.metadata

__all__ = [
    "AdmissionDecision",
    "ApiKey",
    "Checkpoint",
    "Cosignature",
    "IdempotencyRecord",
    "LedgerAlert",
    "LedgerEntry",
    "LedgerEntryParty",
    "LedgerHead",
    "LedgerNode",
    "Organisation",
    "OrganisationRole",
    "User",
    "WebSession",
    "Witness",
    "metadata",
]
