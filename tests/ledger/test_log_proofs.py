"""Checkpoints and proofs over HTTP, checked with nothing but the log's public key.

Anyone (no credentials) can fetch the signed checkpoint, the key and RFC 9162 proofs and
verify them; entry bodies are for the parties of the entry and for auditors.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from databourse.ledger import merkle
from databourse.ledger.note import Verifier, count_valid, open_note
from tests.conftest import Exchange, Party, quick_party
from tests.ledger.conftest import (
    PROBLEM,
    b64d,
    demo_client,
    head_size,
    list_entries,
    log_verifier,
    open_checkpoint,
    publish,
)


def _grow(ex: Exchange, n: int = 1) -> None:
    """Append ``n`` entries to the log (an organisation issues API keys)."""
    party = quick_party(ex, ["buyer"])
    with party.client() as c:
        for i in range(n):
            assert (
                c.post(f"/organisations/{party.id}/api-keys", json={"name": f"k{i}"}).status_code
                == 201
            )


def test_the_published_checkpoint_is_public_and_signed_by_the_logs_key(exchange: Exchange) -> None:
    _grow(exchange)
    published = publish(exchange)
    with exchange.client() as anonymous:
        key = anonymous.get("/ledger/key")
        note = anonymous.get("/ledger/checkpoint")
    assert key.status_code == note.status_code == 200
    assert note.headers["content-type"].startswith("text/plain")
    verifier = Verifier.from_key(key.text.strip())
    assert verifier.key == exchange.ctx.log_key.verifier.key
    body, signatures = open_note(note.text, [verifier])
    assert [s.name for s in signatures] == [verifier.name]
    cp = open_checkpoint(note.text, verifier)
    assert cp.origin == verifier.name == exchange.ctx.settings.ledger_origin
    assert (cp.size, base64.b64encode(cp.root).decode()) == (published["size"], published["root"])
    assert published["note"].startswith(body)
    # The signed root is the Merkle tree head of the entries, rebuilt independently.
    with demo_client(exchange, "regulator") as reg:
        entries = list_entries(reg, exchange)[: cp.size]
    leaves = [merkle.leaf_hash(b64d(e["entry"])) for e in entries]
    assert merkle.root_from_leaves(leaves) == cp.root
    # Someone else's key does not verify it.
    from databourse.ledger.note import generate_signer

    _, other = generate_signer(verifier.name)
    assert count_valid(note.text, [Verifier.from_key(other)]) == 0


def _inclusion(ex: Exchange, **params: Any) -> dict[str, Any]:
    with ex.client() as anonymous:
        r = anonymous.get("/ledger/proofs/inclusion", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_inclusion_proofs_by_seq_and_by_leaf_hash_verify(exchange: Exchange) -> None:
    _grow(exchange, 3)
    verifier = log_verifier(exchange)
    cp = open_checkpoint(publish(exchange)["note"], verifier)
    with demo_client(exchange, "regulator") as reg:
        entries = list_entries(reg, exchange)[: cp.size]
    picks = sorted({0, 1, cp.size // 3, cp.size // 2, cp.size - 2, cp.size - 1})
    for seq in picks:
        leaf = merkle.leaf_hash(b64d(entries[seq]["entry"]))
        by_seq = _inclusion(exchange, seq=seq, size=cp.size)
        by_leaf = _inclusion(exchange, leaf_hash=base64.b64encode(leaf).decode(), size=cp.size)
        assert by_seq == by_leaf
        assert (by_seq["seq"], by_seq["size"], b64d(by_seq["leaf_hash"])) == (seq, cp.size, leaf)
        proof = [b64d(h) for h in by_seq["proof"]]
        merkle.verify_inclusion(leaf, seq, cp.size, proof, cp.root)
        # The proof is for this leaf only: another leaf, or another position, fails.
        other = merkle.leaf_hash(b64d(entries[(seq + 1) % cp.size]["entry"]))
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(other, seq, cp.size, proof, cp.root)
    # A proof in an older tree size verifies against the root of that size.
    old = cp.size // 2
    old_root = merkle.root_from_leaves([b64d(e["leaf_hash"]) for e in entries[:old]])
    proof = [b64d(h) for h in _inclusion(exchange, seq=old - 1, size=old)["proof"]]
    merkle.verify_inclusion(b64d(entries[old - 1]["leaf_hash"]), old - 1, old, proof, old_root)


def test_consistency_between_two_published_checkpoints_verifies(exchange: Exchange) -> None:
    verifier = log_verifier(exchange)
    _grow(exchange)
    first = open_checkpoint(publish(exchange)["note"], verifier)
    _grow(exchange, 3)
    second = open_checkpoint(publish(exchange)["note"], verifier)
    assert second.size > first.size
    with exchange.client() as anonymous:
        r = anonymous.get(
            "/ledger/proofs/consistency", params={"old": first.size, "new": second.size}
        )
        history = anonymous.get("/ledger/checkpoints", params={"after": first.size - 1})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["old_size"], out["size"]) == (first.size, second.size)
    proof = [b64d(h) for h in out["proof"]]
    merkle.verify_consistency(first.size, second.size, first.root, second.root, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(first.size, second.size, bytes(32), second.root, proof)
    # Both checkpoints are in the public history, each validly signed.
    assert history.status_code == 200
    sizes = {c["size"]: c for c in history.json()}
    for cp in (first, second):
        assert open_checkpoint(sizes[cp.size]["note"], verifier) == cp


@pytest.mark.parametrize(
    "path,params",
    [
        ("inclusion", {"seq": 5, "size": 3}),
        ("inclusion", {"seq": 3, "size": 3}),
        ("inclusion", {"seq": 0, "size": "HEAD+1"}),
        ("consistency", {"old": 5, "new": 3}),
        ("consistency", {"old": 1, "new": "HEAD+1"}),
    ],
)
def test_proofs_of_sizes_the_log_does_not_have_are_a_422(
    exchange: Exchange, path: str, params: dict[str, Any]
) -> None:
    size = head_size(exchange)
    params = {k: size + 1 if v == "HEAD+1" else v for k, v in params.items()}
    with exchange.client() as anonymous:
        r = anonymous.get(f"/ledger/proofs/{path}", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == PROBLEM + "bad-proof-request"


def test_an_unknown_leaf_hash_is_a_404(exchange: Exchange) -> None:
    with exchange.client() as anonymous:
        r = anonymous.get(
            "/ledger/proofs/inclusion",
            params={"leaf_hash": base64.b64encode(bytes(32)).decode(), "size": 1},
        )
    assert r.status_code == 404
    assert r.json()["type"] == PROBLEM + "ledger-entry-not-found"


def _party_with_a_key(ex: Exchange, roles: list[str]) -> tuple[Party, str]:
    party = quick_party(ex, roles)
    with party.client() as c:
        r = c.post(f"/organisations/{party.id}/api-keys", json={"name": "mine"})
    assert r.status_code == 201, r.text
    return party, r.json()["id"]


def _seqs_of(ex: Exchange, *subjects: str) -> list[int]:
    with demo_client(ex, "regulator") as reg:
        return [e["seq"] for e in list_entries(reg, ex) if e["subject"] in subjects]


def test_a_party_reads_its_own_entries(exchange: Exchange) -> None:
    party, key_id = _party_with_a_key(exchange, ["buyer"])
    with party.client() as c:
        own = list_entries(c, exchange)
        assert {e["kind"] for e in own} >= {
            "org.applied",
            "org.start_review",
            "org.admit",
            "user.created",
            "apikey.issued",
        }
        assert {e["subject"] for e in own} >= {party.id, key_id}
        for e in own:
            r = c.get(f"/ledger/entries/{e['seq']}")
            assert r.status_code == 200
            assert r.json() == e
    assert [e["seq"] for e in own] == _seqs_of(exchange, party.id, key_id, party.user_id)  # type: ignore[attr-defined]


def test_another_organisation_cannot_read_an_entry(exchange: Exchange) -> None:
    party, key_id = _party_with_a_key(exchange, ["buyer"])
    other = quick_party(exchange, ["merchant"])
    seqs = _seqs_of(exchange, party.id, key_id, party.user_id)  # type: ignore[attr-defined]
    assert len(seqs) == 5
    with other.client() as o:
        for seq in seqs:
            r = o.get(f"/ledger/entries/{seq}")
            assert r.status_code == 404, f"another organisation read entry {seq}"
            assert r.json()["type"] == PROBLEM + "ledger-entry-not-found"
        assert o.get(f"/ledger/entries/{head_size(exchange) + 10}").status_code == 404
        listed = {e["seq"] for e in list_entries(o, exchange)}
        listed_window = o.get("/ledger/entries", params={"start": seqs[0], "limit": 50})
    assert listed.isdisjoint(seqs)
    assert listed_window.status_code == 200
    assert {e["seq"] for e in listed_window.json()}.isdisjoint(seqs)
    with exchange.client() as anonymous:
        assert anonymous.get(f"/ledger/entries/{seqs[0]}").status_code == 401
        assert anonymous.get("/ledger/entries").status_code == 401


def test_the_regulator_and_the_operator_read_every_entry(exchange: Exchange) -> None:
    party, key_id = _party_with_a_key(exchange, ["buyer"])
    with demo_client(exchange, "regulator") as reg, demo_client(exchange, "operator") as op:
        everything = list_entries(reg, exchange)
        assert list_entries(op, exchange) == everything
        seqs = [e["seq"] for e in everything if e["subject"] in (party.id, key_id)]
        for seq in seqs:
            r = reg.get(f"/ledger/entries/{seq}")
            assert r.status_code == 200
            assert r.json() == everything[seq]
    assert [e["seq"] for e in everything] == list(range(head_size(exchange)))
    assert [everything[s]["kind"] for s in seqs] == [
        "org.applied",
        "org.start_review",
        "org.admit",
        "apikey.issued",
    ]
