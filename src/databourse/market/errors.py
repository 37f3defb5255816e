"""Errors of the market, each a stable problem type."""

from __future__ import annotations

from databourse.errors import Conflict, ValidationFailed


class PreTradeCheckFailed(Conflict):
    slug = "pre-trade-check-failed"
    title = "The trade fails the exchange's pre-trade checks (DSL art. 33)"


class InvalidTerms(ValidationFailed):
    slug = "invalid-terms"
    title = "The proposed terms are not within what the listing allows"


class OfferExpired(Conflict):
    slug = "offer-expired"
    title = "The offer has expired"


class NotYourTurn(Conflict):
    slug = "not-your-turn"
    title = "Only the other side can accept or answer this offer"


class InvalidSignature(ValidationFailed):
    slug = "invalid-signature"
    title = "The signature does not verify against the contract and the signer's key"


class InvalidSigningKey(ValidationFailed):
    slug = "invalid-signing-key"
    title = "The signing key is not valid"


class ContractSuspended(Conflict):
    slug = "contract-suspended"
    title = "The contract is suspended"


class InvalidBid(ValidationFailed):
    slug = "invalid-bid"
    title = "The bid is not valid"


class AuctionClosed(Conflict):
    slug = "auction-phase"
    title = "The auction is not in the phase this action needs"


class CounterpartySuspended(Conflict):
    slug = "counterparty-suspended"
    title = "The merchant or its product is suspended: no money moves to or for it"
