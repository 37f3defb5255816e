"""Every change files an entry on the ledger, and only changes do.

Through the running exchange over HTTP: an admission files its steps as canonical JSON
entries chained by state hash and free of personal data; role grants and API-key issue and
revocation file one entry each; a refused command files nothing; sequence numbers have no
gaps.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import rfc8785

from databourse.hashing import state_hash
from databourse.ledger import merkle
from databourse.participants.models import Organisation
from databourse.participants.services import org_state
from tests import factories
from tests.conftest import Exchange, new_party, quick_party
from tests.ledger.conftest import (
    PROBLEM,
    b64d,
    demo_client,
    demo_user_id,
    entry_doc,
    head_size,
    list_entries,
    publish,
)

ENTRY_KEYS = {"kind", "subject", "actor", "at", "body", "state_hash", "prev_state_hash", "seq"}


def _new_entries(ex: Exchange, before: int) -> list[dict[str, Any]]:
    """The entries appended since the log had ``before`` leaves (read as the regulator)."""
    with demo_client(ex, "regulator") as reg:
        r = reg.get("/ledger/entries", params={"start": before, "limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json())


def _private_application() -> tuple[dict[str, Any], list[str]]:
    """An application whose personal data is unique, and the strings that must not leak."""
    tag = secrets.token_hex(4)
    rep = {
        "name": f"Ouyang Xiuying {tag}",
        "id_type": "prc_resident_id",
        "id_number": f"11010519491231{tag[:4].upper()}",
    }
    contact = {
        "name": f"Shangguan Wan {tag}",
        "email": f"private.contact.{tag}@mail.example",
        "phone": f"+86 139 {secrets.randbelow(10**8):08d}",
    }
    admin_email = f"admin.{tag}@mail.example"
    body = factories.application(["merchant"], legal_representative=rep, contacts=[contact])
    body["admin"]["email"] = admin_email
    secrets_ = [
        rep["name"],
        rep["id_number"],
        contact["name"],
        contact["email"],
        contact["phone"],
        admin_email,
        body["admin"]["password"],
    ]
    return body, secrets_


def test_admission_files_canonical_entries_without_personal_data(exchange: Exchange) -> None:
    body, private = _private_application()
    with exchange.client() as c:
        r = c.post("/applications", json=body)
    assert r.status_code == 201, r.text
    org_id = r.json()["organisation"]["id"]
    before = head_size(exchange)
    with demo_client(exchange, "operator") as op:
        assert op.post(f"/organisations/{org_id}/review", json={}).status_code == 200
        r = op.post(f"/organisations/{org_id}/admit", json={"kyb": factories.KYB})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "admitted"

    new = _new_entries(exchange, before)
    assert [(e["kind"], e["subject"]) for e in new] == [
        ("org.start_review", org_id),
        ("org.admit", org_id),
    ]
    operator = f"user:{demo_user_id(exchange, 'operator')}"
    docs = [entry_doc(e) for e in new]
    for e, doc in zip(new, docs, strict=True):
        raw = b64d(e["entry"])
        assert set(doc) == ENTRY_KEYS
        assert rfc8785.dumps(doc) == raw, "the entry bytes are not RFC 8785 canonical JSON"
        assert b64d(e["leaf_hash"]) == merkle.leaf_hash(raw)
        assert (doc["seq"], doc["kind"], doc["subject"], doc["actor"], doc["state_hash"]) == (
            e["seq"],
            e["kind"],
            e["subject"],
            e["actor"],
            e["state_hash"],
        )
        assert doc["actor"] == operator
        assert doc["at"].endswith("Z")
    review, admit = docs
    assert review["body"] == {"status": "under_review", "from_status": "applied"}
    assert admit["body"] == {"status": "admitted", "from_status": "under_review"}
    # Each entry chains to the subject's previous state, and the last one is the row now.
    with demo_client(exchange, "regulator") as reg:
        history = [entry_doc(e) for e in list_entries(reg, exchange) if e["subject"] == org_id]
    assert [d["kind"] for d in history] == ["org.applied", "org.start_review", "org.admit"]
    assert history[0]["prev_state_hash"] is None
    assert review["prev_state_hash"] == history[0]["state_hash"]
    assert admit["prev_state_hash"] == review["state_hash"]
    with exchange.ctx.reads() as s:
        row = s.get(Organisation, org_id)
        assert row is not None
        assert admit["state_hash"] == state_hash(org_state(row))

    # No personal data in any entry of the log (it is public to auditors for ever).
    with demo_client(exchange, "regulator") as reg:
        everything = b"\n".join(b64d(e["entry"]) for e in list_entries(reg, exchange))
    for value in private:
        assert value.encode() not in everything, f"personal data {value!r} is on the ledger"
        assert value.lower().encode() not in everything.lower()


def _one_new_entry(ex: Exchange, before: int, kind: str, subject: str) -> dict[str, Any]:
    new = _new_entries(ex, before)
    assert [(e["kind"], e["subject"]) for e in new] == [(kind, subject)]
    assert new[0]["seq"] == before
    assert head_size(ex) == before + 1
    return entry_doc(new[0])


def test_role_grant_and_api_key_issue_and_revoke_each_file_one_entry(exchange: Exchange) -> None:
    party = quick_party(exchange, ["buyer"])
    before = head_size(exchange)
    with demo_client(exchange, "operator") as op:
        r = op.post(
            f"/organisations/{party.id}/roles", json={"role": "merchant", "reason": "asked for it"}
        )
    assert r.status_code == 200, r.text
    doc = _one_new_entry(exchange, before, "org.role_granted", party.id)
    assert doc["body"]["role"] == "merchant"

    before = head_size(exchange)
    with party.client() as c:
        r = c.post(f"/organisations/{party.id}/api-keys", json={"name": "ingest"})
    assert r.status_code == 201, r.text
    key = r.json()
    doc = _one_new_entry(exchange, before, "apikey.issued", key["id"])
    assert doc["body"]["org_id"] == party.id
    assert doc["actor"] == f"user:{party.user_id}"  # type: ignore[attr-defined]
    assert key["key"] not in str(doc)

    before = head_size(exchange)
    with party.client() as c:
        r = c.post(f"/api-keys/{key['id']}/revoke")
    assert r.status_code == 200, r.text
    doc = _one_new_entry(exchange, before, "apikey.revoked", key["id"])
    assert doc["prev_state_hash"] is not None

    # Revoking again changes nothing, so it files nothing.
    before = head_size(exchange)
    with party.client() as c:
        assert c.post(f"/api-keys/{key['id']}/revoke").status_code == 200
    assert head_size(exchange) == before


def _refused_commands(ex: Exchange) -> list[tuple[str, str, dict[str, Any], int, str]]:
    admitted = quick_party(ex, ["buyer"])
    reviewing = quick_party(ex, ["merchant"], status="under_review")
    no_kyb = {**factories.KYB, "legal_representative_verified": False}
    return [
        (
            "review an admitted organisation",
            f"/organisations/{admitted.id}/review",
            {},
            409,
            "invalid-transition",
        ),
        (
            "admit without verifying the representative",
            f"/organisations/{reviewing.id}/admit",
            {"kyb": no_kyb},
            422,
            "admission-incomplete",
        ),
        (
            "grant a role to an organisation under review",
            f"/organisations/{reviewing.id}/roles",
            {"role": "buyer", "reason": "x"},
            422,
            "role-not-grantable",
        ),
        (
            "revoke a role it does not hold",
            f"/organisations/{admitted.id}/roles/agent/revoke",
            {"reason": "x"},
            404,
            "not-found",
        ),
    ]


def test_a_refused_command_files_nothing(exchange: Exchange) -> None:
    for what, path, body, status, slug in _refused_commands(exchange):
        before = head_size(exchange)
        checkpoint = publish(exchange)
        assert checkpoint["size"] == before
        with demo_client(exchange, "operator") as op:
            r = op.post(path, json=body)
        assert r.status_code == status, (what, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == PROBLEM + slug, what
        assert head_size(exchange) == before, f"{what}: the refused command filed an entry"
        assert _new_entries(exchange, before) == [], what
        # Signing again finds nothing new: the published head did not move.
        assert publish(exchange) == checkpoint, what


def test_an_idempotent_retry_files_one_entry(exchange: Exchange) -> None:
    party = quick_party(exchange, ["buyer"])
    before = head_size(exchange)
    headers = {"Idempotency-Key": secrets.token_hex(8)}
    with party.client() as c:
        first = c.post(f"/organisations/{party.id}/api-keys", json={"name": "k"}, headers=headers)
        again = c.post(f"/organisations/{party.id}/api-keys", json={"name": "k"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    _one_new_entry(exchange, before, "apikey.issued", first.json()["id"])


def test_sequence_numbers_are_gap_free_and_the_head_counts_them(exchange: Exchange) -> None:
    new_party(exchange, ["buyer"])  # at least one admission through the API in this log
    with demo_client(exchange, "regulator") as reg:
        entries = list_entries(reg, exchange)
    size = head_size(exchange)
    assert [e["seq"] for e in entries] == list(range(size))
    assert [entry_doc(e)["seq"] for e in entries] == list(range(size))
    checkpoint = publish(exchange)
    assert checkpoint["size"] == size == len(entries)
    leaves = [b64d(e["leaf_hash"]) for e in entries]
    assert b64d(checkpoint["root"]) == merkle.root_from_leaves(leaves)


@pytest.mark.parametrize("kind", ["org.applied", "user.created"])
def test_applying_files_the_organisation_and_its_administrator(
    exchange: Exchange, kind: str
) -> None:
    before = head_size(exchange)
    body = factories.application(["buyer"])
    with exchange.client() as c:
        r = c.post("/applications", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    new = {e["kind"]: e for e in _new_entries(exchange, before)}
    assert set(new) == {"org.applied", "user.created"}
    subject = out["organisation"]["id"] if kind == "org.applied" else out["admin_user"]["id"]
    doc = entry_doc(new[kind])
    assert doc["subject"] == subject
    assert doc["actor"] == f"user:{out['admin_user']['id']}"
    assert body["admin"]["email"].encode() not in b64d(new[kind]["entry"])
