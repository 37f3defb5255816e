"""Every domain's tables, imported in one place for migrations and ``alembic check``."""

from databourse.assets.models import DataAsset, DataFile
from databourse.auth.models import ApiKey, WebSession
from databourse.catalog.models import Product, ProductAsset
from databourse.compute.models import ComputeService, Job, Node, PrivacyBudget
from databourse.db import Base
from databourse.delivery.models import (
    Copy,
    Download,
    FingerprintScheme,
    Recipient,
    Trace,
    Upstream,
)
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
from databourse.market.models import (
    Auction,
    Bid,
    Contract,
    Negotiation,
    Offer,
    Signature,
    SigningKey,
)
from databourse.participants.models import (
    AdmissionDecision,
    Organisation,
    OrganisationRole,
    User,
)
from databourse.settlement.models import (
    Account,
    AgencyContract,
    Bill,
    Commission,
    FeeRule,
    Journal,
    ParticipantTier,
    Posting,
    Transfer,
    UsageRecord,
)

metadata = Base.metadata

__all__ = [
    "Account",
    "AdmissionDecision",
    "AgencyContract",
    "ApiKey",
    "Auction",
    "Bid",
    "Bill",
    "Checkpoint",
    "Commission",
    "ComputeService",
    "Contract",
    "Copy",
    "Cosignature",
    "DataAsset",
    "DataFile",
    "Demand",
    "Download",
    "FeeRule",
    "FingerprintScheme",
    "IdempotencyRecord",
    "Job",
    "Journal",
    "LedgerAlert",
    "LedgerEntry",
    "LedgerEntryParty",
    "LedgerHead",
    "LedgerNode",
    "MatchNotice",
    "Negotiation",
    "Node",
    "Offer",
    "Organisation",
    "OrganisationRole",
    "ParticipantTier",
    "Posting",
    "PrivacyBudget",
    "Product",
    "ProductAsset",
    "Recipient",
    "Signature",
    "SigningKey",
    "Trace",
    "Transfer",
    "Upstream",
    "UsageRecord",
    "User",
    "WebSession",
    "Witness",
    "metadata",
]
