"""Receipts (登记凭证) verified offline, by a separate process that has only the log's key.

The done-when scenario: the operator admits a merchant, the merchant downloads the receipt
of its admission entry and ``databourse receipt verify`` says VALID in a fresh process with
no database; any altered byte makes it INVALID.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from databourse.ledger import merkle, receipts
from databourse.ledger.note import (
    Checkpoint,
    Signer,
    Verifier,
    generate_signer,
    parse_note,
    sign_note,
)
from tests import factories
from tests.conftest import Exchange, Party, new_party, quick_party
from tests.ledger.conftest import (
    PROBLEM,
    b64d,
    b64e,
    cli_env,
    demo_client,
    entry_doc,
    flip,
    head_size,
    list_entries,
    log_verifier,
    open_checkpoint,
    run_cli,
)


def _admit_merchant(ex: Exchange) -> Party:
    """A merchant applies over HTTP; the operator reviews and admits it over HTTP."""
    merchant = new_party(ex, ["merchant"], admit=False)
    assert merchant.org["status"] == "applied"
    with demo_client(ex, "operator") as op:
        assert op.post(f"/organisations/{merchant.id}/review", json={}).status_code == 200
        r = op.post(f"/organisations/{merchant.id}/admit", json={"kyb": factories.KYB})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "admitted"
    return merchant


def _admission_seq(entries: list[dict[str, Any]], org_id: str) -> int:
    [seq] = [e["seq"] for e in entries if (e["kind"], e["subject"]) == ("org.admit", org_id)]
    return int(seq)


def _offline_env(tmp: Path) -> tuple[dict[str, str], list[Path]]:
    """Settings pointing at a database and data directory that do not exist."""
    absent = [tmp / "no-such-dir" / "databourse.sqlite3", tmp / "no-such-data"]
    env = cli_env(database_url=f"sqlite:///{absent[0]}", data_dir=absent[1])
    return env, absent


def _verify_offline(
    tmp: Path, receipt: dict[str, Any] | str, key: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    path = tmp / f"receipt-{secrets.token_hex(6)}.json"
    path.write_text(receipt if isinstance(receipt, str) else json.dumps(receipt))
    env, absent = _offline_env(tmp)
    out = run_cli(["receipt", "verify", str(path), "--key", key, *extra], env, cwd=tmp)
    for p in absent:
        assert not p.exists(), f"receipt verification created {p}"
    assert not absent[0].parent.exists(), "receipt verification created a database directory"
    assert not (tmp / "var").exists(), "receipt verification created a data directory"
    return out


def _assert_valid(out: subprocess.CompletedProcess[str], seq: int, subject: str) -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    assert "VALID" in out.stdout and "INVALID" not in out.stdout + out.stderr
    assert f"entry {seq} " in out.stdout and subject in out.stdout


@pytest.fixture
def admission_receipt(exchange: Exchange) -> tuple[Party, int, dict[str, Any]]:
    """A merchant admitted by the operator, its admission entry, and the receipt of that
    entry as the merchant downloads it (finding the entry among its own)."""
    merchant = _admit_merchant(exchange)
    with merchant.client() as c:
        seq = _admission_seq(list_entries(c, exchange), merchant.id)
        r = c.get(f"/ledger/entries/{seq}/receipt")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return merchant, seq, dict(r.json())


def test_merchant_verifies_its_admission_receipt_offline(
    exchange: Exchange, admission_receipt: tuple[Party, int, dict[str, Any]], tmp_path: Path
) -> None:
    merchant, seq, receipt = admission_receipt
    key = log_verifier(exchange).key  # the only thing the verifier needs from the exchange
    _assert_valid(_verify_offline(tmp_path, receipt, key), seq, merchant.id)


def test_a_receipt_is_self_contained(
    exchange: Exchange, admission_receipt: tuple[Party, int, dict[str, Any]]
) -> None:
    merchant, seq, receipt = admission_receipt
    verifier = log_verifier(exchange)
    assert receipt["format"] == receipts.FORMAT
    assert receipt["log_key"] == verifier.key
    assert receipt["seq"] == seq
    doc = json.loads(b64d(receipt["entry"]))
    assert (doc["kind"], doc["subject"], doc["seq"]) == ("org.admit", merchant.id, seq)
    assert receipt["entry_json"] == doc  # the readable copy of the signed bytes
    cp = open_checkpoint(receipt["checkpoint"], verifier)
    assert cp.size > seq  # a checkpoint covering the entry was published for it
    verified = receipts.verify(receipt, verifier)
    assert (verified.seq, verified.size, verified.entry) == (seq, cp.size, doc)
    with demo_client(exchange, "regulator") as reg:
        assert entry_doc(reg.get(f"/ledger/entries/{seq}").json()) == doc


def _variants(receipt: dict[str, Any], key: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Receipts with one thing altered each, and the key to check them with."""
    entry = b64d(receipt["entry"])
    at = entry.index(b'"state_hash":"') + len(b'"state_hash":"') + 5  # a hex digit
    proof = [b64d(h) for h in receipt["inclusion_proof"]]
    text, [sig] = parse_note(receipt["checkpoint"])
    raw = sig.key_id.to_bytes(4, "big") + sig.raw
    bad_sig = text + "\n" + f"\u2014 {sig.name} {b64e(flip(raw, 20))}\n"
    lines = receipt["checkpoint"].split("\n")
    lines[2] = b64e(flip(b64d(lines[2]), 0))  # the signed root
    other_entry = entry.replace(b'"kind":"org.admit"', b'"kind":"org.reject"')
    _, wrong_key = generate_signer(Verifier.from_key(key).name)
    return {
        "a byte of the entry": ({**receipt, "entry": b64e(flip(entry, at))}, key),
        "the entry's kind": ({**receipt, "entry": b64e(other_entry)}, key),
        "the last byte of the entry": (
            {**receipt, "entry": b64e(flip(entry, len(entry) - 2))},
            key,
        ),
        "a byte of the proof": (
            {
                **receipt,
                "inclusion_proof": [
                    b64e(flip(h, 7)) if i == len(proof) // 2 else b64e(h)
                    for i, h in enumerate(proof)
                ],
            },
            key,
        ),
        "a proof hash dropped": (
            {**receipt, "inclusion_proof": receipt["inclusion_proof"][1:]},
            key,
        ),
        "a byte of the checkpoint signature": ({**receipt, "checkpoint": bad_sig}, key),
        "the checkpoint's root": ({**receipt, "checkpoint": "\n".join(lines)}, key),
        "the receipt's seq": ({**receipt, "seq": receipt["seq"] + 1}, key),
        "the key (same name, other key)": (receipt, wrong_key),
    }


#: Alterations also run through the command line (the rest are checked in-process).
CLI_VARIANTS = (
    "a byte of the entry",
    "a byte of the proof",
    "a byte of the checkpoint signature",
    "the key (same name, other key)",
)


def test_receipt_verify_in_a_fresh_process_without_database(
    exchange: Exchange, admission_receipt: tuple[Party, int, dict[str, Any]], tmp_path: Path
) -> None:
    merchant, seq, receipt = admission_receipt
    key = log_verifier(exchange).key
    key_file = tmp_path / "exchange.pub"
    key_file.write_text(key + "\n")
    variants = _variants(receipt, key)
    for what, (altered, k) in variants.items():
        assert altered != receipt or k != key, what
        with pytest.raises(receipts.ReceiptError):
            receipts.verify(altered, Verifier.from_key(k))
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "valid, key in a file": (receipt, str(key_file)),
        **{what: variants[what] for what in CLI_VARIANTS},
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = dict(
            zip(
                cases,
                pool.map(lambda c: _verify_offline(tmp_path, *c), cases.values()),
                strict=True,
            )
        )
    _assert_valid(runs["valid, key in a file"], seq, merchant.id)
    for what in CLI_VARIANTS:
        out = runs[what]
        assert out.returncode == 1, f"{what}: {out.stdout}{out.stderr}"
        assert "INVALID" in out.stderr, what
        assert "VALID:" not in out.stdout, what


def test_a_receipt_with_an_edited_readable_entry_is_invalid(
    exchange: Exchange, admission_receipt: tuple[Party, int, dict[str, Any]]
) -> None:
    _, _, receipt = admission_receipt
    forged = {
        **receipt,
        "entry_json": {
            **receipt["entry_json"],
            "kind": "org.reject",
            "body": {"status": "rejected"},
        },
    }
    with pytest.raises(receipts.ReceiptError):
        receipts.verify(forged, log_verifier(exchange))


def _signed_receipt(entry: bytes) -> tuple[dict[str, Any], Verifier]:
    signer_key, verifier_key = generate_signer("example.org/ledger")
    signer = Signer.from_key(signer_key)
    leaf = merkle.leaf_hash(entry)
    note = sign_note(Checkpoint(signer.name, 1, leaf).body(), signer)
    return receipts.build(entry, 0, [], note, verifier_key), Verifier.from_key(verifier_key)


def test_a_well_formed_receipt_of_ones_own_log_verifies() -> None:
    receipt, verifier = _signed_receipt(b'{"seq":0}')
    assert receipts.verify(receipt, verifier).entry == {"seq": 0}


@pytest.mark.parametrize(
    "malformed", ["not an object", "checkpoint not text", "entry not an object"]
)
def test_malformed_receipts_fail_with_a_receipt_error(malformed: str) -> None:
    receipt, verifier = _signed_receipt(b"[0]")
    bad: Any = {
        "not an object": [receipt],
        "checkpoint not text": {**receipt, "checkpoint": 5},
        "entry not an object": receipt,
    }[malformed]
    with pytest.raises(receipts.ReceiptError):
        receipts.verify(bad, verifier)


def test_not_a_receipt_is_invalid(exchange: Exchange, tmp_path: Path) -> None:
    out = _verify_offline(tmp_path, "{not json", log_verifier(exchange).key)
    assert out.returncode == 1 and "INVALID" in out.stderr
    with pytest.raises(receipts.ReceiptError):
        receipts.verify({"format": "something-else/v1"}, log_verifier(exchange))


def test_another_organisation_cannot_download_the_receipt(
    exchange: Exchange, admission_receipt: tuple[Party, int, dict[str, Any]]
) -> None:
    _, seq, _ = admission_receipt
    other = quick_party(exchange, ["buyer"])
    with other.client() as c:
        r = c.get(f"/ledger/entries/{seq}/receipt")
    assert r.status_code == 404
    assert r.json()["type"] == PROBLEM + "ledger-entry-not-found"
    with exchange.client() as anonymous:
        assert anonymous.get(f"/ledger/entries/{seq}/receipt").status_code == 401


def test_a_receipt_of_the_newest_entry_gets_a_checkpoint_covering_it(exchange: Exchange) -> None:
    party = quick_party(exchange, ["buyer"])
    with party.client() as c:
        assert c.post(f"/organisations/{party.id}/api-keys", json={"name": "k"}).status_code == 201
    newest = head_size(exchange) - 1
    with demo_client(exchange, "operator") as op:
        r = op.get(f"/ledger/entries/{newest}/receipt")
    assert r.status_code == 200, r.text
    verifier = log_verifier(exchange)
    verified = receipts.verify(r.json(), verifier)
    assert verified.seq == newest and verified.size == newest + 1
    with exchange.client() as anonymous:
        latest = anonymous.get("/ledger/checkpoint").text
    assert open_checkpoint(latest, verifier).size >= newest + 1
