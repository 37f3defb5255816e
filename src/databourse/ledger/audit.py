"""``databourse ledger verify``: replay the whole log and hold the database to it.

Three checks, each finding named with the entry and the row:
1. the log itself — every entry's bytes hash to its stored leaf, name their own position,
   chain to the subject's previous state; the stored nodes, the head and every signed
   checkpoint agree with the tree rebuilt from the leaves;
2. covered rows — the state hash of each subject's last entry equals the hash of the row
   as it is now (an edit outside the service changes it; a deleted row has no state);
3. uncovered rows — a covered table's row that no entry mentions was inserted outside the
   service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from databourse.hashing import state_hash
from databourse.ledger import merkle
from databourse.ledger.models import Checkpoint, LedgerEntry, LedgerHead, LedgerNode
from databourse.ledger.note import Checkpoint as CheckpointBody
from databourse.ledger.note import NoteError, Verifier, open_note
from databourse.ledger.writer import HEAD_ID

#: Covered tables: subject-id prefix → (model, function giving a row's ledger state).
Coverage = dict[str, tuple[type[Any], Callable[[Any], dict[str, Any]]]]


def default_coverage() -> Coverage:
    from databourse.assets.models import DataAsset, DataFile
    from databourse.assets.services import asset_state
    from databourse.assets.uploads import file_state
    from databourse.auth.models import ApiKey
    from databourse.auth.services import apikey_state
    from databourse.catalog.models import Product, ProductAsset
    from databourse.catalog.services import product_state
    from databourse.demands.models import Demand
    from databourse.demands.services import demand_state
    from databourse.ledger.models import Witness
    from databourse.market.contracts import contract_state
    from databourse.market.keys import key_state
    from databourse.market.models import Contract, Negotiation, Offer, SigningKey
    from databourse.market.negotiation import negotiation_state, offer_state
    from databourse.participants.models import Organisation, User
    from databourse.participants.services import org_state, user_state
    from databourse.settlement.fees import agency_state, commission_state
    from databourse.settlement.models import AgencyContract, Bill, Commission, Journal, Transfer
    from databourse.settlement.rails import transfer_state

    def witness_state(w: Witness) -> dict[str, Any]:
        return {"id": w.id, "org_id": w.org_id, "verifier_key": w.verifier_key, "url": w.url}

    coverage: Coverage = {
        "org": (Organisation, org_state),
        "usr": (User, user_state),
        "key": (ApiKey, apikey_state),
        "wit": (Witness, witness_state),
        "ast": (DataAsset, asset_state),
        "fil": (DataFile, file_state),
        "prd": (Product, lambda p: product_state(p, _links(p, ProductAsset))),
        "dmd": (Demand, demand_state),
        "sgk": (SigningKey, key_state),
        "neg": (Negotiation, negotiation_state),
        "ofr": (Offer, offer_state),
        "ctr": (Contract, contract_state),
        "jnl": (Journal, _journal_state),
        "trf": (Transfer, transfer_state),
        "agy": (AgencyContract, agency_state),
        "bil": (Bill, _bill_state),
        "com": (Commission, commission_state),
    }
    return coverage | _auction_coverage() | _delivery_coverage() | _compute_coverage()


def _journal_state(journal: Any) -> dict[str, Any]:
    from sqlalchemy.orm import object_session

    from databourse.settlement.services import journal_states

    session = object_session(journal)
    assert session is not None
    return journal_states(session, [journal.id])[journal.id]


def _bill_state(bill: Any) -> dict[str, Any]:
    from databourse.market.billing import bill_state

    return bill_state(bill)


def _delivery_coverage() -> Coverage:
    from databourse.delivery.copies import copy_state
    from databourse.delivery.files import download_state
    from databourse.delivery.gateway import upstream_state
    from databourse.delivery.models import (
        Copy,
        Download,
        FingerprintScheme,
        Recipient,
        Trace,
        Upstream,
    )
    from databourse.delivery.schemes import state as scheme_state
    from databourse.delivery.sharing import recipient_state
    from databourse.delivery.tracing import trace_state

    return {
        "cpy": (Copy, copy_state),
        "dl": (Download, download_state),
        "trc": (Trace, trace_state),
        "rcp": (Recipient, recipient_state),
        "upstream": (Upstream, upstream_state),
        "fingerprint": (FingerprintScheme, scheme_state),
    }


def _compute_coverage() -> Coverage:
    from databourse.compute.budgets import state as budget_state
    from databourse.compute.jobs import state as job_state
    from databourse.compute.models import ComputeService, Job, Node, PrivacyBudget
    from databourse.compute.services import node_state, service_state

    return {
        "budget": (PrivacyBudget, budget_state),
        "nod": (Node, node_state),
        "compute": (ComputeService, service_state),
        "job": (Job, job_state),
    }


def _auction_coverage() -> Coverage:
    from databourse.market import bidding
    from databourse.market.models import Auction, Bid

    return {"auc": (Auction, bidding.auction_state), "bid": (Bid, bidding.bid_state)}


def _links(product: Any, link: type[Any]) -> list[str]:
    """A product's asset ids, read in the session its row came from."""
    from sqlalchemy.orm import object_session

    session = object_session(product)
    assert session is not None
    return list(session.scalars(select(link.asset_id).where(link.product_id == product.id)))


@dataclass(frozen=True)
class Finding:
    problem: str  # "entry" | "tree" | "checkpoint" | "edited" | "deleted" | "inserted"
    seq: int | None
    subject: str | None
    detail: str


@dataclass
class Report:
    entries: int = 0
    rows: int = 0
    checkpoints: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _entries(session: Session, batch: int = 5000) -> Iterator[Row[Any]]:
    """Every entry in order, as plain rows (no ORM objects: replay cost is per entry)."""
    cols = [
        getattr(LedgerEntry, c)
        for c in ("seq", "kind", "subject", "actor", "at", "state_hash", "entry", "leaf_hash")
    ]
    last = -1
    while True:
        rows = session.execute(
            select(*cols).where(LedgerEntry.seq > last).order_by(LedgerEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(
    session: Session,
    log_key: Verifier | None = None,
    coverage: Coverage | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    report = Report()
    coverage = default_coverage() if coverage is None else coverage
    head = session.get(LedgerHead, HEAD_ID)
    assert head is not None
    frontier = merkle.Frontier()
    roots: dict[int, bytes] = {}
    wanted = set(session.scalars(select(Checkpoint.size)))
    stored_nodes: dict[tuple[int, int], bytes] = {}
    last_state: dict[str, str | None] = {}
    last_seq: dict[str, int] = {}
    for e in _entries(session):
        report.entries += 1
        if e.seq != frontier.size:
            report.findings.append(
                Finding("entry", e.seq, e.subject, f"expected entry {frontier.size} next (gap)")
            )
        leaf = merkle.leaf_hash(e.entry)
        if leaf != e.leaf_hash:
            report.findings.append(
                Finding("entry", e.seq, e.subject, "the entry's bytes do not hash to its leaf")
            )
        try:
            doc = json.loads(e.entry)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            report.findings.append(Finding("entry", e.seq, e.subject, "the entry is not JSON"))
            doc = {}
        at = e.at.isoformat().replace("+00:00", "Z")
        signed = (
            doc.get("seq"),
            doc.get("subject"),
            doc.get("state_hash"),
            doc.get("kind"),
            doc.get("actor"),
            doc.get("at"),
        )
        if signed != (e.seq, e.subject, e.state_hash, e.kind, e.actor, at):
            report.findings.append(
                Finding(
                    "entry", e.seq, e.subject, "the entry's columns differ from its signed bytes"
                )
            )
        if doc.get("prev_state_hash") != last_state.get(e.subject):
            report.findings.append(
                Finding(
                    "entry", e.seq, e.subject, "prev_state_hash does not chain to the last entry"
                )
            )
        last_state[e.subject] = doc.get("state_hash")
        last_seq[e.subject] = e.seq
        for level, index, h in frontier.append(e.leaf_hash):
            stored_nodes[(level, index)] = h
        if frontier.size in wanted:
            roots[frontier.size] = frontier.root()
        if progress:
            progress(report.entries)
    _check_tree(session, report, frontier, head, stored_nodes)
    _check_checkpoints(session, report, roots, log_key)
    _check_rows(session, report, coverage, last_state, last_seq)
    _check_balances(session, report)
    return report


def _check_balances(session: Session, report: Report) -> None:
    """Balances are the sum of their journals' postings, and all of them sum to zero: an
    edited balance, or money created or destroyed outside a journal, is found here."""
    from databourse.settlement.services import balance_findings

    for subject, problem in balance_findings(session):
        report.findings.append(Finding("edited", None, subject, problem))


def _check_tree(
    session: Session,
    report: Report,
    frontier: merkle.Frontier,
    head: LedgerHead,
    expected: dict[tuple[int, int], bytes],
) -> None:
    if (head.size, head.root, head.frontier) != (
        frontier.size,
        frontier.root(),
        frontier.to_bytes(),
    ):
        report.findings.append(
            Finding("tree", None, None, f"the head (size {head.size}) is not the replayed tree")
        )
    for level, index, h in session.execute(
        select(LedgerNode.level, LedgerNode.index, LedgerNode.hash)
    ):
        if expected.pop((level, index), None) != h:
            report.findings.append(
                Finding("tree", None, None, f"stored node ({level}, {index}) is wrong")
            )
    for level, index in expected:
        report.findings.append(Finding("tree", None, None, f"node ({level}, {index}) missing"))


def _check_checkpoints(
    session: Session, report: Report, roots: dict[int, bytes], log_key: Verifier | None
) -> None:
    for cp in session.scalars(select(Checkpoint).order_by(Checkpoint.size)):
        report.checkpoints += 1
        try:
            body = open_note(cp.note, [log_key])[0] if log_key else cp.note.split("\n\n")[0]
            signed = CheckpointBody.parse(body if body.endswith("\n") else body + "\n")
        except NoteError as exc:
            report.findings.append(
                Finding("checkpoint", None, None, f"checkpoint {cp.size}: {exc}")
            )
            continue
        if (signed.size, signed.root) != (cp.size, cp.root):
            report.findings.append(
                Finding(
                    "checkpoint",
                    None,
                    None,
                    f"checkpoint {cp.size}: its columns differ from its signed note",
                )
            )
        if cp.size > 0 and roots.get(cp.size) != signed.root:
            report.findings.append(
                Finding(
                    "checkpoint",
                    None,
                    None,
                    f"checkpoint {cp.size} signs a root the log does not have",
                )
            )


def _check_rows(
    session: Session,
    report: Report,
    coverage: Coverage,
    last_state: dict[str, str | None],
    last_seq: dict[str, int],
) -> None:
    seen: set[str] = set()
    for prefix, (model, state_of) in coverage.items():
        for row in session.scalars(select(model)):
            report.rows += 1
            # a row's subject is its id, or (for rows keyed by another object's id, such as
            # a product's upstream) the ``ledger_subject`` its model names
            subject = getattr(row, "ledger_subject", None) or row.id
            seen.add(subject)
            if subject not in last_state:
                report.findings.append(
                    Finding(
                        "inserted",
                        None,
                        subject,
                        f"{model.__tablename__} row {subject} has no ledger entry",
                    )
                )
            elif state_hash(state_of(row)) != last_state[subject]:
                report.findings.append(
                    Finding(
                        "edited",
                        last_seq[subject],
                        subject,
                        f"{model.__tablename__} row {subject} differs from entry "
                        f"{last_seq[subject]}",
                    )
                )
        session.expunge_all()
        for subject, seq in last_seq.items():
            if subject.startswith((prefix + "_", prefix + ":")) and subject not in seen:
                report.findings.append(
                    Finding(
                        "deleted",
                        seq,
                        subject,
                        f"{model.__tablename__} row {subject} of entry {seq} is missing",
                    )
                )
