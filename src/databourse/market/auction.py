"""Sealed-bid second-price (Vickrey) auctions. Pure: no I/O.

Bidding is commit-then-reveal: during bidding a bidder files only
``commitment = SHA-256(JCS({"auction", "bidder", "amount_fen", "nonce"}))``; after bidding
closes it reveals the amount and nonce, which must hash to its commitment. Nobody, the
exchange included, learns an amount before bidding closes, and nobody can change one after.

The highest revealed bid at or above the reserve wins and pays the larger of the second
highest revealed bid and the reserve (Vickrey 1961), so bidding one's true value is a
dominant strategy. Equal top bids go to the earlier commitment; the price is then that
equal amount. Unrevealed bids do not count.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from databourse.hashing import canonical

NONCE = re.compile(r"^[0-9a-f]{32,128}$")


def commitment(auction_id: str, bidder_org_id: str, amount_fen: int, nonce: str) -> str:
    """The hex SHA-256 a bidder files while bidding (the nonce: ≥ 16 random bytes, hex)."""
    if not NONCE.match(nonce):
        raise ValueError("the nonce must be 32 to 128 lowercase hex digits (16+ random bytes)")
    body = {
        "auction": auction_id,
        "bidder": bidder_org_id,
        "amount_fen": amount_fen,
        "nonce": nonce,
    }
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True)
class SealedBid:
    bidder: str
    committed_at: datetime
    amount_fen: int | None  # None: never revealed


@dataclass(frozen=True)
class Outcome:
    winner: str | None
    price_fen: int | None
    ranking: tuple[tuple[str, int], ...]  # revealed bids at or above the reserve, best first


def outcome(bids: Sequence[SealedBid], reserve_fen: int) -> Outcome:
    valid = [b for b in bids if b.amount_fen is not None and b.amount_fen >= reserve_fen]
    ranked = sorted(valid, key=lambda b: (-(b.amount_fen or 0), b.committed_at, b.bidder))
    ranking = tuple((b.bidder, b.amount_fen or 0) for b in ranked)
    if not ranked:
        return Outcome(None, None, ranking)
    second = ranked[1].amount_fen if len(ranked) > 1 else None
    return Outcome(ranked[0].bidder, max(reserve_fen, second or 0), ranking)
