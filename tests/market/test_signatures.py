"""Contract signatures: client-side Ed25519 signing, refusals of wrong keys, and contracts
altered after signing caught by offline verification and by the ledger's audit."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from databourse.ledger import audit
from databourse.ledger.note import Verifier
from databourse.market import signing
from databourse.market.models import Contract
from databourse.market.signing import ContractReceiptError, verify_filing
from tests.conftest import Exchange
from tests.market import world
from tests.market.world import bought, ok

PROBLEM = "urn:databourse:problem:"
PRICE = 66_000


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign_bytes(key: Ed25519PrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data)).decode()


def refused(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == PROBLEM + slug, r.text


@dataclass
class Side:
    org: world.Org
    c: httpx.Client


@dataclass
class Desk:
    ex: Exchange
    merchant: Side
    product: str
    log_key: Verifier  # what an offline verifier holds: the exchange's published key

    def side(self, roles: list[str]) -> Side:
        org = world.party(self.ex, roles)
        return Side(org, world.client(self.ex, org))


@pytest.fixture(scope="module")
def desk(exchange: Exchange) -> Iterator[Desk]:
    merchant = world.party(exchange, ["merchant"])
    product = world.list_fixed_product(exchange.ctx, merchant, PRICE)
    with world.client(exchange, merchant) as m:
        r = m.get("/ledger/key")
        assert r.status_code == 200, r.text
        yield Desk(exchange, Side(merchant, m), product, Verifier.from_key(r.text.strip()))


def register(c: httpx.Client, key: Ed25519PrivateKey) -> str:
    """Register the organisation's own public key; its id."""
    out = ok(c.post("/signing-keys", json={"public_key": public_b64(key)}), 201)
    assert out["custodial"] is False and out["active"] is True
    return str(out["id"])


def document(c: httpx.Client, contract_id: str) -> bytes:
    """The exact bytes to sign, checked against the hash the exchange announces."""
    r = c.get(f"/contracts/{contract_id}/document")
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == r.headers["x-document-sha256"]
    return r.content


def file_signature(c: httpx.Client, contract_id: str, key_id: str, sig: str) -> httpx.Response:
    return c.post(f"/contracts/{contract_id}/signatures", json={"key_id": key_id, "signature": sig})


@pytest.fixture(scope="module")
def filed(desk: Desk) -> Iterator[dict[str, Any]]:
    """A contract the buyer signed client-side with its registered key and the merchant
    custodially; its receipt (the trade filing) as downloaded by the buyer."""
    buyer = desk.side(["buyer"])
    key = Ed25519PrivateKey.generate()
    key_id = register(buyer.c, key)
    c = bought(buyer.c, desk.product)
    raw = document(buyer.c, c["id"])
    out = ok(file_signature(buyer.c, c["id"], key_id, sign_bytes(key, raw)))
    assert out["status"] == "awaiting_signatures"
    out = ok(desk.merchant.c.post(f"/contracts/{c['id']}/sign"))
    assert out["status"] == "signed"
    sides = {s["side"]: s for s in out["signatures"]}
    assert sides["buyer"]["key_id"] == key_id and sides["buyer"]["custodial"] is False
    assert sides["merchant"]["custodial"] is True
    receipt = ok(buyer.c.get(f"/contracts/{c['id']}/receipt"))
    yield {"id": c["id"], "raw": raw, "receipt": receipt, "buyer": buyer, "key": key}
    buyer.c.close()


# ---------------------------------------------------------------- a correct signature


def test_a_client_side_signature_is_accepted_and_the_filing_verifies_offline(
    desk: Desk, filed: dict[str, Any]
) -> None:
    doc = verify_filing(filed["receipt"], desk.log_key)
    assert signing.document_bytes(doc) == filed["raw"]
    assert (doc["id"], doc["price"]["amount_fen"]) == (filed["id"], PRICE)
    sigs = {s["side"]: s for s in filed["receipt"]["contract"]["signatures"]}
    assert sigs["buyer"]["public_key"] == public_b64(filed["key"])
    checks = signing.verify_contract(
        doc, {side: (s["public_key"], s["signature"]) for side, s in sigs.items()}
    )
    assert [(c.side, c.valid) for c in checks] == [("buyer", True), ("merchant", True)]


# ---------------------------------------------------------------- altered after signing


def _recanonical(raw: bytes, change: Any) -> str:
    doc = json.loads(raw)
    change(doc)
    return signing.document_bytes(doc).decode()


ALTERATIONS = {
    "price": lambda d: d["price"].update(amount_fen=d["price"]["amount_fen"] - 1),
    "purpose": lambda d: d.update(purpose="marketing"),
    "term": lambda d: d["term"].update(days=d["term"]["days"] * 10),
    "merchant": lambda d: d["merchant"].update(name="Someone Else Ltd."),
}


@pytest.mark.parametrize("what", sorted(ALTERATIONS))
def test_a_document_altered_after_signing_fails_verification(
    desk: Desk, filed: dict[str, Any], what: str
) -> None:
    receipt = json.loads(json.dumps(filed["receipt"]))
    altered = _recanonical(filed["raw"], ALTERATIONS[what])
    receipt["contract"]["document"] = altered
    with pytest.raises(ContractReceiptError, match="hash"):
        verify_filing(receipt, desk.log_key)
    for s in receipt["contract"]["signatures"]:  # neither signature covers the new terms
        assert not signing.verify(s["public_key"], json.loads(altered), s["signature"])


def test_a_forged_filing_of_the_altered_document_fails_verification(
    desk: Desk, filed: dict[str, Any]
) -> None:
    """Swapping in the altered document's hash breaks the ledger receipt instead."""
    receipt = json.loads(json.dumps(filed["receipt"]))
    altered = _recanonical(filed["raw"], ALTERATIONS["price"])
    receipt["contract"]["document"] = altered
    entry = json.loads(base64.b64decode(receipt["entry"]))
    entry["body"]["document_hash"] = hashlib.sha256(altered.encode()).hexdigest()
    receipt["entry"] = base64.b64encode(signing.document_bytes(entry)).decode()
    receipt["entry_json"] = entry
    with pytest.raises(ContractReceiptError, match="ledger receipt"):
        verify_filing(receipt, desk.log_key)


@pytest.fixture
def edited_in_the_database(desk: Desk, filed: dict[str, Any]) -> Iterator[str]:
    """The contract's signed document rewritten behind the exchange's back (its hash
    column left alone), then put back so the shared database audits clean again."""
    altered = _recanonical(filed["raw"], ALTERATIONS["price"])
    with desk.ex.ctx.writes() as s, s.begin():
        s.execute(update(Contract).where(Contract.id == filed["id"]).values(document=altered))
    try:
        yield altered
    finally:
        with desk.ex.ctx.writes() as s, s.begin():
            s.execute(
                update(Contract)
                .where(Contract.id == filed["id"])
                .values(document=filed["raw"].decode())
            )


def test_a_document_edited_in_the_database_fails_offline_verification(
    desk: Desk, filed: dict[str, Any], edited_in_the_database: str
) -> None:
    buyer: Side = filed["buyer"]
    receipt = ok(buyer.c.get(f"/contracts/{filed['id']}/receipt"))
    assert receipt["contract"]["document"] == edited_in_the_database
    with pytest.raises(ContractReceiptError, match="hash"):
        verify_filing(receipt, desk.log_key)


def test_a_document_edited_in_the_database_is_found_by_the_ledger_audit(
    desk: Desk, filed: dict[str, Any], edited_in_the_database: str
) -> None:
    """``databourse ledger verify`` holds each contract row to its last ledger state; the
    signed document is what the contract is, so an edit of it must be a finding."""
    with desk.ex.ctx.reads() as s:
        report = audit.verify(s, desk.ex.ctx.log_key.verifier)
    assert any(f.subject == filed["id"] for f in report.findings), (
        "the audit does not notice that the signed document no longer hashes to the "
        "filed document_hash"
    )


# ---------------------------------------------------------------- wrong keys


@pytest.fixture
def unsigned(desk: Desk) -> Iterator[dict[str, Any]]:
    """A buyer with a registered key and a contract awaiting both signatures."""
    buyer = desk.side(["buyer"])
    key = Ed25519PrivateKey.generate()
    key_id = register(buyer.c, key)
    c = bought(buyer.c, desk.product)
    yield {"buyer": buyer, "key": key, "key_id": key_id, "id": c["id"]}
    buyer.c.close()


def _unsigned_still(desk: Desk, contract_id: str) -> None:
    with world.client(desk.ex, desk.merchant.org) as m:
        c = ok(m.get(f"/contracts/{contract_id}"))
    assert (c["status"], c["signatures"]) == ("awaiting_signatures", [])


def test_a_signature_by_another_key_is_refused(desk: Desk, unsigned: dict[str, Any]) -> None:
    buyer: Side = unsigned["buyer"]
    raw = document(buyer.c, unsigned["id"])
    stranger = Ed25519PrivateKey.generate()
    r = file_signature(buyer.c, unsigned["id"], unsigned["key_id"], sign_bytes(stranger, raw))
    refused(r, 422, "invalid-signature")
    _unsigned_still(desk, unsigned["id"])


def test_a_signature_over_other_bytes_is_refused(desk: Desk, unsigned: dict[str, Any]) -> None:
    buyer: Side = unsigned["buyer"]
    raw = document(buyer.c, unsigned["id"])
    altered = _recanonical(raw, ALTERATIONS["price"]).encode()
    for other in (altered, raw + b"\n", json.dumps(json.loads(raw), indent=1).encode()):
        r = file_signature(
            buyer.c, unsigned["id"], unsigned["key_id"], sign_bytes(unsigned["key"], other)
        )
        refused(r, 422, "invalid-signature")
    _unsigned_still(desk, unsigned["id"])


def test_a_key_that_is_not_the_signers_is_refused(desk: Desk, unsigned: dict[str, Any]) -> None:
    buyer: Side = unsigned["buyer"]
    raw = document(buyer.c, unsigned["id"])
    # a key never registered, with a signature that is valid for it
    stranger = Ed25519PrivateKey.generate()
    stranger_id = signing.key_id(public_b64(stranger))
    r = file_signature(buyer.c, unsigned["id"], stranger_id, sign_bytes(stranger, raw))
    refused(r, 422, "invalid-signing-key")
    # another organisation's registered key, signing these very bytes
    other = desk.side(["buyer"])
    other_key = Ed25519PrivateKey.generate()
    other_id = register(other.c, other_key)
    r = file_signature(buyer.c, unsigned["id"], other_id, sign_bytes(other_key, raw))
    refused(r, 422, "invalid-signing-key")
    other.c.close()
    _unsigned_still(desk, unsigned["id"])


def test_a_replaced_or_revoked_key_is_refused(desk: Desk, unsigned: dict[str, Any]) -> None:
    buyer: Side = unsigned["buyer"]
    raw = document(buyer.c, unsigned["id"])
    newer = Ed25519PrivateKey.generate()
    newer_id = register(buyer.c, newer)  # retires the first key
    old = sign_bytes(unsigned["key"], raw)
    r = file_signature(buyer.c, unsigned["id"], unsigned["key_id"], old)
    refused(r, 422, "invalid-signing-key")
    # with its own key registered, the exchange does not sign for the organisation
    refused(buyer.c.post(f"/contracts/{unsigned['id']}/sign"), 422, "invalid-signing-key")
    ok(buyer.c.post(f"/signing-keys/{newer_id}/revoke"))
    r = file_signature(buyer.c, unsigned["id"], newer_id, sign_bytes(newer, raw))
    refused(r, 422, "invalid-signing-key")
    _unsigned_still(desk, unsigned["id"])


# ---------------------------------------------------------------- custodial keys under load


def test_concurrent_first_signatures_make_one_custodial_key(exchange: Exchange) -> None:
    """An organisation has at most one active signing key, however many contracts it signs
    at once the first time; once it registers its own, the exchange cannot sign for it."""
    merchant = world.party(exchange, ["merchant"])
    product = world.list_fixed_product(exchange.ctx, merchant, PRICE)
    buyer = world.party(exchange, ["buyer"])
    with world.client(exchange, buyer) as b:
        contracts = [bought(b, product)["id"] for _ in range(9)]
    gate = threading.Barrier(8)

    def sign(contract_id: str) -> httpx.Response:
        with world.client(exchange, merchant, timeout=60) as m:
            gate.wait()
            return m.post(f"/contracts/{contract_id}/sign")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(sign, contracts[:8]))
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    problems = []
    with world.client(exchange, merchant) as m:
        active = [k for k in ok(m.get("/signing-keys")) if k["active"]]
        if len(active) != 1:
            problems.append(f"{len(active)} active custodial keys after 8 concurrent signatures")
        register(m, Ed25519PrivateKey.generate())
        r = m.post(f"/contracts/{contracts[8]}/sign")
        if r.status_code != 422:
            problems.append(
                f"after registering its own key the exchange still signed for it: "
                f"{r.status_code} {r.text[:200]}"
            )
    assert not problems, problems
