"""Errors of the ledger domain (C2SP tlog-witness status codes where they apply)."""

from __future__ import annotations

from databourse.errors import Conflict, Forbidden, NotFound, ValidationFailed


class EntryNotFound(NotFound):
    slug = "ledger-entry-not-found"
    title = "No such ledger entry"


class BadProofRequest(ValidationFailed):
    slug = "bad-proof-request"
    title = "The requested proof does not exist for these sizes"


class BadCheckpointSignature(Forbidden):
    slug = "bad-checkpoint-signature"
    title = "The checkpoint is not signed by the log's key"


class WitnessNotFound(NotFound):
    slug = "witness-not-found"
    title = "No such witness"


class CheckpointNotFound(NotFound):
    slug = "checkpoint-not-found"
    title = "No checkpoint of this size was published"


class DuplicateWitness(Conflict):
    slug = "duplicate-witness"
    title = "A witness with this key name is already registered"


class InvalidWitnessKey(ValidationFailed):
    slug = "invalid-witness-key"
    title = "The witness key is not a valid tlog-cosignature verifier key"
