"""A witness's decision (C2SP tlog-witness ``add-checkpoint``), as a pure function.

The witness remembers, per log origin, the size and root it last cosigned. It cosigns a
new checkpoint only if the log's signature verifies and a consistency proof from exactly
that size leads to the new root, so no two parties can be shown diverging histories that
both carry its cosignature.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from databourse.ledger import merkle
from databourse.ledger.note import (
    Checkpoint,
    NoteError,
    Signature,
    Signer,
    Verifier,
    open_note,
)


@dataclass(frozen=True)
class Refusal(Exception):
    """``status`` is the HTTP code the spec assigns; ``body`` the response text."""

    status: int
    reason: str
    body: str = ""


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: list[bytes]
    note: str


def format_request(old_size: int, proof: list[bytes], note: str) -> str:
    # "old <size>" line, one base64 proof hash per line, an empty line, then the note.
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return "\n".join(lines) + "\n\n" + note


def parse_request(text: str) -> AddCheckpoint:
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise Refusal(400, "the request has no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old ") or not lines[0][4:].isdigit():
        raise Refusal(400, "the first line must be 'old <size>'")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    except (binascii.Error, ValueError):
        raise Refusal(400, "a proof line is not base64") from None
    if len(proof) > 63:
        raise Refusal(400, "the consistency proof has too many lines")
    return AddCheckpoint(int(lines[0][4:]), proof, note)


def add_checkpoint(
    state: dict[str, tuple[int, bytes]],
    logs: dict[str, Verifier],
    request: AddCheckpoint,
    cosigner: Signer,
    now: int,
) -> tuple[tuple[int, bytes], str]:
    """Decide one request. Returns the new (size, root) for the log and the cosignature line.

    Raises ``Refusal`` with the status C2SP tlog-witness specifies.
    """
    first_line = request.note.split("\n", 1)[0]
    log = logs.get(first_line)
    if log is None:
        raise Refusal(404, f"unknown log origin {first_line!r}")
    try:
        body, _ = open_note(request.note, [log])
        cp = Checkpoint.parse(body)
    except NoteError as exc:
        raise Refusal(403, f"checkpoint signature: {exc}") from exc
    last_size, last_root = state.get(cp.origin, (0, merkle.EMPTY_ROOT))
    if request.old_size != last_size:
        # "If the old size does not match ... the witness MUST respond with 409 Conflict"
        raise Refusal(409, f"old size {request.old_size} is not {last_size}", f"{last_size}\n")
    if cp.size < last_size:
        raise Refusal(400, "the checkpoint is smaller than the old size")
    try:
        if last_size == 0:
            if request.proof:
                raise merkle.ProofError("a proof from size 0 must be empty")
        else:
            merkle.verify_consistency(last_size, cp.size, last_root, cp.root, request.proof)
    except merkle.ProofError as exc:
        raise Refusal(422, f"consistency proof: {exc}") from exc
    raw = cosigner.sign(body, timestamp=now)
    return (cp.size, cp.root), Signature(cosigner.name, cosigner.key_id, raw).line()
