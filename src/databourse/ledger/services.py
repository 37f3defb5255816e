"""Commands and queries of the ledger: checkpoints, proofs, receipts, witnesses, gossip."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.db import new_id, utcnow
from databourse.ledger import merkle, receipts
from databourse.ledger.errors import (
    BadCheckpointSignature,
    BadProofRequest,
    CheckpointNotFound,
    DuplicateWitness,
    EntryNotFound,
    InvalidWitnessKey,
    WitnessNotFound,
)
from databourse.ledger.models import (
    Checkpoint,
    Cosignature,
    LedgerAlert,
    LedgerEntry,
    LedgerEntryParty,
    LedgerHead,
    Witness,
)
from databourse.ledger.note import Checkpoint as CheckpointBody
from databourse.ledger.note import NoteError, Signer, Verifier, open_note, sign_note
from databourse.ledger.witness import format_request
from databourse.ledger.writer import HEAD_ID, fetch_nodes
from databourse.uow import UnitOfWork

log = logging.getLogger("databourse.ledger")


@dataclass(frozen=True)
class LogKey:
    """The exchange's checkpoint signer; the key name is the log's origin."""

    signer: Signer

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey, origin: str) -> LogKey:
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(Signer(origin, seed))

    @property
    def origin(self) -> str:
        return self.signer.name

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()


def head(session: Session) -> LedgerHead:
    h = session.get(LedgerHead, HEAD_ID)
    assert h is not None, "the ledger head row is missing"
    return h


def _getter(session: Session, coords: list[tuple[int, int]]) -> merkle.GetNode:
    nodes = fetch_nodes(session, coords)
    return lambda level, index: nodes[(level, index)]


def root_at(session: Session, size: int) -> bytes:
    return merkle.root(size, _getter(session, merkle.root_nodes(size)))


# Checkpoints -----------------------------------------------------------------------------


def publish_checkpoint(uow: UnitOfWork, key: LogKey) -> Checkpoint:
    """Sign the current tree head, unless a checkpoint of this size already exists."""
    h = head(uow.session)
    existing = uow.session.scalar(select(Checkpoint).where(Checkpoint.size == h.size))
    if existing is not None:
        return existing
    body = CheckpointBody(key.origin, h.size, h.root).body()
    cp = Checkpoint(size=h.size, root=h.root, note=sign_note(body, key.signer), created_at=utcnow())
    uow.session.add(cp)
    try:
        uow.session.flush()
    except IntegrityError:  # another process published this size first
        uow.rollback()
        with uow.sessions() as s:
            return s.scalars(select(Checkpoint).where(Checkpoint.size == h.size)).one()
    return cp


def latest_checkpoint(session: Session) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).order_by(Checkpoint.size.desc()).limit(1))


def checkpoint_of_size(session: Session, size: int) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.size == size))


def cosigned_note(session: Session, cp: Checkpoint) -> str:
    """The checkpoint's signed note with every stored witness cosignature appended."""
    lines = session.scalars(
        select(Cosignature.line).where(Cosignature.checkpoint_id == cp.id).order_by(Cosignature.id)
    ).all()
    return cp.note + "".join(lines)


# Proofs and entries ----------------------------------------------------------------------


def inclusion_proof(session: Session, seq: int, size: int) -> list[bytes]:
    if not 0 <= seq < size <= head(session).size:
        raise BadProofRequest(f"no leaf {seq} in a tree of size {size}")
    coords = merkle.inclusion_proof_nodes(seq, size)
    return merkle.inclusion_proof(seq, size, _getter(session, coords))


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    if not 0 < old <= new <= head(session).size:
        raise BadProofRequest(f"no consistency proof from {old} to {new}")
    coords = merkle.consistency_proof_nodes(old, new)
    return merkle.consistency_proof(old, new, _getter(session, coords))


def entry(session: Session, seq: int) -> LedgerEntry:
    e = session.get(LedgerEntry, seq)
    if e is None:
        raise EntryNotFound(f"no entry {seq}")
    return e


def entry_by_leaf(session: Session, leaf: bytes) -> LedgerEntry:
    e = session.scalar(select(LedgerEntry).where(LedgerEntry.leaf_hash == leaf))
    if e is None:
        raise EntryNotFound("no entry has this leaf hash")
    return e


def authorize_entry(session: Session, principal: Principal, seq: int) -> LedgerEntry:
    """Entry bodies are for the parties of the record (and the operator and regulators)."""
    e = entry(session, seq)
    if authorize(principal, "ledger.entry.read") is Reach.ANY:
        return e
    party = session.scalar(
        select(
            exists().where(LedgerEntryParty.seq == seq, LedgerEntryParty.org_id == principal.org_id)
        )
    )
    if not party:
        raise EntryNotFound(f"no entry {seq}")
    return e


def entries(session: Session, principal: Principal, start: int, end: int) -> list[LedgerEntry]:
    q = select(LedgerEntry).where(LedgerEntry.seq >= start, LedgerEntry.seq < end)
    if authorize(principal, "ledger.entry.read") is Reach.OWN:
        q = q.where(
            LedgerEntry.seq.in_(
                select(LedgerEntryParty.seq).where(LedgerEntryParty.org_id == principal.org_id)
            )
        )
    return list(session.scalars(q.order_by(LedgerEntry.seq)))


def receipt(uow: UnitOfWork, principal: Principal, key: LogKey, seq: int) -> dict[str, Any]:
    """The entry with its inclusion proof in the newest checkpoint (published if needed)."""
    e = authorize_entry(uow.session, principal, seq)
    cp = latest_checkpoint(uow.session)
    if cp is None or cp.size <= seq:
        cp = publish_checkpoint(uow, key)
    proof = inclusion_proof(uow.session, seq, cp.size)
    return receipts.build(e.entry, seq, proof, cosigned_note(uow.session, cp), key.verifier.key)


# Witnesses -------------------------------------------------------------------------------


def register_witness(
    uow: UnitOfWork, principal: Principal, verifier_key: str, url: str | None
) -> Witness:
    authorize(principal, "ledger.witness.register", principal.org_id)
    try:
        verifier = Verifier.from_key(verifier_key)
    except NoteError as exc:
        raise InvalidWitnessKey(str(exc)) from exc
    if verifier.sig_type != 0x04:
        raise InvalidWitnessKey("a witness key must be a tlog-cosignature (type 0x04) key")
    w = Witness(
        id=new_id("wit"),
        org_id=principal.org_id,
        name=verifier.name,
        verifier_key=verifier_key,
        url=url,
        last_size=0,
        active=True,
    )
    if uow.session.scalar(select(Witness.id).where(Witness.name == w.name)):
        raise DuplicateWitness(f"a witness named {w.name!r} is already registered")
    uow.session.add(w)
    try:
        uow.session.flush()
    except IntegrityError as exc:  # registered concurrently
        raise DuplicateWitness(f"a witness named {w.name!r} is already registered") from exc
    uow.record(
        "ledger.witness_registered",
        w.id,
        {"org_id": w.org_id, "name": w.name},
        {"id": w.id, "org_id": w.org_id, "verifier_key": w.verifier_key, "url": w.url},
        (w.org_id,),
    )
    return w


def store_cosignature(session: Session, witness: Witness, cp: Checkpoint, line: str) -> None:
    """Keep a witness's cosignature line after checking it against the witness's key."""
    verifier = Verifier.from_key(witness.verifier_key)
    open_note(cp.note.split("\n\n", 1)[0] + "\n\n" + line, [verifier])
    if session.scalar(
        select(Cosignature.id).where(
            Cosignature.checkpoint_id == cp.id, Cosignature.witness_id == witness.id
        )
    ):
        return
    session.add(Cosignature(checkpoint_id=cp.id, witness_id=witness.id, line=line))
    witness.last_size = max(witness.last_size, cp.size)


def witness_round(uow: UnitOfWork, client: httpx.Client) -> dict[str, str]:
    """Ask every active witness with a URL to cosign the latest checkpoint."""
    s = uow.session
    cp = latest_checkpoint(s)
    outcome: dict[str, str] = {}
    if cp is None:
        return outcome
    for w in s.scalars(select(Witness).where(Witness.active, Witness.url.is_not(None))):
        for _attempt in range(2):
            old = min(w.last_size, cp.size)
            proof = consistency_proof(s, old, cp.size) if 0 < old < cp.size else []
            try:
                r = client.post(
                    f"{w.url}/add-checkpoint", content=format_request(old, proof, cp.note)
                )
            except httpx.HTTPError as exc:
                outcome[w.name] = f"unreachable: {exc.__class__.__name__}"
                break
            if r.status_code == 409 and r.text.strip().isdigit():
                w.last_size = int(r.text.strip())  # the witness knows better: retry from there
                continue
            if r.status_code != 200:
                outcome[w.name] = f"refused {r.status_code}: {r.text.strip()[:200]}"
                log.warning("witness refused", extra={"witness": w.name, "status": r.status_code})
                break
            try:
                store_cosignature(s, w, cp, r.text)
            except NoteError as exc:
                outcome[w.name] = f"bad cosignature: {exc}"
                break
            outcome[w.name] = "cosigned"
            break
    return outcome


# Gossip and split views ------------------------------------------------------------------


def gossip(uow: UnitOfWork, key: LogKey, signed_note: str) -> dict[str, Any]:
    """Check a checkpoint someone received against this log's own history.

    A validly signed checkpoint whose root differs from the log's root at that size is a
    split view: the exchange signed two histories. It is stored as an alert with both notes.
    """
    try:
        body, _ = open_note(signed_note, [key.verifier])
        cp = CheckpointBody.parse(body)
    except NoteError as exc:
        raise BadCheckpointSignature(str(exc)) from exc
    s = uow.session
    if cp.size > head(s).size:
        kind = "unknown_size"
    elif root_at(s, cp.size) == cp.root:
        return {"consistent": True, "size": cp.size}
    else:
        kind = "split_view"
    ours = checkpoint_of_size(s, cp.size)
    alert = LedgerAlert(
        kind=kind,
        size=cp.size,
        detail={
            "presented": signed_note,
            "ours": ours.note if ours else None,
            "presented_root": cp.root.hex(),
        },
    )
    s.add(alert)
    log.error("ledger alert", extra={"kind": kind, "size": cp.size})
    return {"consistent": False, "size": cp.size, "alert": kind}


def alerts(session: Session, principal: Principal) -> list[LedgerAlert]:
    authorize(principal, "ledger.alert.list")
    return list(session.scalars(select(LedgerAlert).order_by(LedgerAlert.id)))


def submit_cosignature(
    uow: UnitOfWork, principal: Principal, witness_id: str, size: int, line: str
) -> Checkpoint:
    """A witness that cosigns by pulling (it verified consistency itself) hands in its line."""
    w = uow.session.get(Witness, witness_id)
    if w is None:
        raise WitnessNotFound(f"no witness {witness_id}")
    authorize(principal, "ledger.witness.register", w.org_id)
    cp = checkpoint_of_size(uow.session, size)
    if cp is None:
        raise CheckpointNotFound(f"no checkpoint of size {size}")
    try:
        store_cosignature(uow.session, w, cp, line if line.endswith("\n") else line + "\n")
    except NoteError as exc:
        raise BadCheckpointSignature(f"the cosignature does not verify: {exc}") from exc
    return cp


def list_witnesses(session: Session, principal: Principal) -> list[Witness]:
    q = select(Witness).order_by(Witness.created_at)
    if authorize(principal, "ledger.witness.list", principal.org_id) is Reach.OWN:
        q = q.where(Witness.org_id == principal.org_id)
    return list(session.scalars(q))
