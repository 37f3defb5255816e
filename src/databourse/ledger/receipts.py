"""Receipts (登记凭证): an entry, its inclusion proof and a signed checkpoint. Pure.

A receipt proves, to anyone holding the exchange's public key and nothing else, that the
entry is leaf ``seq`` of the log whose root the exchange signed at ``size``. The steps
are documented in docs/ledger.md so a third party can re-implement ``verify``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from databourse.ledger import merkle
from databourse.ledger.note import Checkpoint, NoteError, Verifier, count_valid, open_note

FORMAT = "databourse-receipt/v1"


class ReceiptError(ValueError):
    """The receipt does not verify; the message says which step failed."""


def build(
    entry: bytes, seq: int, proof: list[bytes], signed_checkpoint: str, log_key: str
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "log_key": log_key,
        "seq": seq,
        "entry": base64.b64encode(entry).decode(),
        "entry_json": json.loads(entry),
        "inclusion_proof": [base64.b64encode(h).decode() for h in proof],
        "checkpoint": signed_checkpoint,
    }


@dataclass(frozen=True)
class Verified:
    seq: int
    size: int
    origin: str
    entry: dict[str, Any]
    witnesses: int


def verify(
    receipt: dict[str, Any],
    log_key: Verifier,
    witnesses: list[Verifier] | None = None,
    min_witnesses: int = 0,
) -> Verified:
    """Check a receipt offline; raise ``ReceiptError`` naming the failed step."""
    if not isinstance(receipt, dict) or receipt.get("format") != FORMAT:
        raise ReceiptError(f"not a {FORMAT} receipt")
    if not isinstance(receipt.get("checkpoint"), str):
        raise ReceiptError("the receipt's checkpoint is not a signed note")
    try:
        # 1. The checkpoint is signed by the exchange's key.
        body, _ = open_note(receipt["checkpoint"], [log_key])
        cp = Checkpoint.parse(body)
    except (NoteError, KeyError, TypeError) as exc:
        raise ReceiptError(f"checkpoint signature: {exc}") from exc
    if cp.origin != log_key.name:
        raise ReceiptError(f"checkpoint origin {cp.origin!r} is not the key's {log_key.name!r}")
    # 2. Enough witnesses cosigned the same checkpoint.
    cosigned = count_valid(receipt["checkpoint"], witnesses) if witnesses else 0
    if cosigned < min_witnesses:
        raise ReceiptError(f"{cosigned} witness cosignatures, {min_witnesses} required")
    try:
        entry = base64.b64decode(receipt["entry"], validate=True)
        proof = [base64.b64decode(h, validate=True) for h in receipt["inclusion_proof"]]
        seq = receipt["seq"]
        doc = json.loads(entry)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReceiptError(f"malformed receipt: {exc}") from exc
    if not isinstance(doc, dict):
        raise ReceiptError("the entry is not a JSON object")
    if "entry_json" in receipt and receipt["entry_json"] != doc:
        raise ReceiptError("entry_json differs from the signed entry bytes")
    # 3. The entry names its own position, so it cannot be presented as another leaf.
    if not isinstance(seq, int) or doc.get("seq") != seq:
        raise ReceiptError("the entry's seq does not match the receipt's")
    # 4. The entry is leaf `seq` of the tree whose root the checkpoint signs.
    try:
        merkle.verify_inclusion(merkle.leaf_hash(entry), seq, cp.size, proof, cp.root)
    except (merkle.ProofError, ValueError) as exc:
        raise ReceiptError(f"inclusion proof: {exc}") from exc
    return Verified(seq, cp.size, cp.origin, doc, cosigned)
