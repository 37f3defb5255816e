"""Every domain's tables, imported in one place for migrations and ``alembic check``."""

from databourse.assets.models import DataAsset, DataFile
from databourse.auth.models import ApiKey, WebSession
from databourse.catalog.models import Product, ProductAsset
from databourse.db import Base
from databourse.demands.models import Demand, MatchNotice
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
    "DataAsset",
    "DataFile",
    "Demand",
    "IdempotencyRecord",
    "LedgerAlert",
    "LedgerEntry",
    "LedgerEntryParty",
    "LedgerHead",
    "LedgerNode",
    "MatchNotice",
    "Organisation",
    "OrganisationRole",
    "Product",
    "ProductAsset",
    "User",
    "WebSession",
    "Witness",
    "metadata",
]
