"""Errors of the ledger domain (C2SP tlog-witness status codes where they apply)."""

from __future__ import annotations

from databourse.errors import Conflict, Forbidden, NotFound, ValidationFailed


class EntryNotFound(NotFound):
    slug = "ledger-entry-not-found"
    title = "No such ledger entry"


class BadProofRequest(ValidationFailed):
    slug = "bad-proof-request"
    title = "The requested proof does not exist for these sizes"


class OldSizeMismatch(Conflict):
    slug = "witness-old-size-mismatch"
    title = "The witness last cosigned a different size than the request's old size"


class InvalidConsistencyProof(ValidationFailed):
    slug = "invalid-consistency-proof"
    title = "The consistency proof does not verify"


class BadCheckpointSignature(Forbidden):
    slug = "bad-checkpoint-signature"
    title = "The checkpoint is not signed by the log's key"


class InvalidWitnessKey(ValidationFailed):
    slug = "invalid-witness-key"
    title = "The witness key is not a valid tlog-cosignature verifier key"
