"""Witnesses cosign only a consistent history, and split views are caught by gossip.

A real witness service (``witness_server.create_witness_app``) runs on its own port with its
own key, as a regulator would run it; the exchange reaches it over HTTP.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from databourse.ledger import merkle, receipts
from databourse.ledger.note import (
    Checkpoint,
    Signer,
    Verifier,
    count_valid,
    generate_signer,
    sign_note,
)
from databourse.ledger.witness import format_request
from databourse.ledger.witness_server import create_witness_app
from tests.conftest import Exchange, quick_party, serve_in_thread
from tests.ledger.conftest import (
    PROBLEM,
    b64d,
    cli_env,
    demo_client,
    head_size,
    list_entries,
    log_verifier,
    open_checkpoint,
    publish,
    run_cli,
)


@dataclass
class RunningWitness:
    url: str
    name: str
    verifier_key: str
    state_file: Path

    @property
    def verifier(self) -> Verifier:
        return Verifier.from_key(self.verifier_key)

    def state(self, origin: str) -> tuple[int, bytes]:
        v = json.loads(self.state_file.read_text())[origin]
        return int(v["size"]), bytes.fromhex(v["root"])

    def add_checkpoint(self, body: str) -> httpx.Response:
        with httpx.Client(timeout=10) as c:
            return c.post(f"{self.url}/add-checkpoint", content=body)


@pytest.fixture
def witness(exchange: Exchange, tmp_path: Path) -> Iterator[RunningWitness]:
    name = f"witness-{secrets.token_hex(4)}.regulator.example"
    signer_key, verifier_key = generate_signer(name, cosignature=True)
    state = tmp_path / "witness-state.json"
    app = create_witness_app(signer_key, [exchange.ctx.log_key.verifier], state)
    server, thread, url = serve_in_thread(app)
    yield RunningWitness(url, name, verifier_key, state)
    server.should_exit = True
    thread.join(timeout=15)


def _register(ex: Exchange, w: RunningWitness) -> dict[str, Any]:
    with demo_client(ex, "regulator") as reg:
        r = reg.post("/ledger/witnesses", json={"verifier_key": w.verifier_key, "url": w.url})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _round(ex: Exchange) -> dict[str, str]:
    with demo_client(ex, "operator") as op:
        r = op.post("/ledger/witnesses/round")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _current(ex: Exchange) -> str:
    with ex.client() as anonymous:
        r = anonymous.get("/ledger/checkpoint")
    assert r.status_code == 200, r.text
    return r.text


def _grow(ex: Exchange) -> None:
    party = quick_party(ex, ["buyer"])
    with party.client() as c:
        assert c.post(f"/organisations/{party.id}/api-keys", json={"name": "g"}).status_code == 201


def test_a_registered_witness_cosigns_and_receipts_carry_it(
    exchange: Exchange, witness: RunningWitness, tmp_path: Path
) -> None:
    registered = _register(exchange, witness)
    assert (registered["name"], registered["url"]) == (witness.name, witness.url)
    assert registered["org_id"] == exchange.world["regulator"]
    assert _round(exchange)[witness.name] == "cosigned"

    log_key = log_verifier(exchange)
    note = _current(exchange)
    cp = open_checkpoint(note, log_key)
    assert cp.size == head_size(exchange)
    assert count_valid(note, [witness.verifier]) == 1
    assert witness.state(cp.origin) == (cp.size, cp.root)

    # The log grows: the next round proves consistency from what the witness last signed.
    _grow(exchange)
    assert _round(exchange)[witness.name] == "cosigned"
    note = _current(exchange)
    newer = open_checkpoint(note, log_key)
    assert newer.size > cp.size
    assert count_valid(note, [witness.verifier]) == 1
    assert witness.state(cp.origin) == (newer.size, newer.root)
    with demo_client(exchange, "regulator") as reg:
        listed = {w["name"]: w for w in reg.get("/ledger/witnesses").json()}
    assert listed[witness.name]["last_size"] == newer.size

    # A receipt fetched now carries the cosignature: k-of-n witness policies can be checked.
    with demo_client(exchange, "regulator") as reg:
        r = reg.get(f"/ledger/entries/{newer.size - 1}/receipt")
    assert r.status_code == 200, r.text
    receipt = r.json()
    verified = receipts.verify(receipt, log_key, witnesses=[witness.verifier], min_witnesses=1)
    assert (verified.witnesses, verified.size) == (1, newer.size)
    with pytest.raises(receipts.ReceiptError, match="witness"):
        receipts.verify(receipt, log_key, witnesses=[witness.verifier], min_witnesses=2)
    _, stranger = generate_signer("stranger.example", cosignature=True)
    with pytest.raises(receipts.ReceiptError, match="witness"):
        receipts.verify(receipt, log_key, witnesses=[Verifier.from_key(stranger)], min_witnesses=1)
    # And offline, from the command line.
    path = tmp_path / "receipt.json"
    path.write_text(r.text)
    env = cli_env(
        database_url=f"sqlite:///{tmp_path}/absent/db.sqlite3", data_dir=tmp_path / "absent-data"
    )
    out = run_cli(
        [
            "receipt",
            "verify",
            str(path),
            "--key",
            log_key.key,
            "--witness",
            witness.verifier_key,
            "--min-witnesses",
            "1",
        ],
        env,
        tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "VALID" in out.stdout and "cosigned by 1 witness" in out.stdout


def _forge(signer: Signer, size: int, root: bytes) -> str:
    return sign_note(Checkpoint(signer.name, size, root).body(), signer)


def test_the_witness_refuses_what_would_fork_its_view(
    exchange: Exchange, witness: RunningWitness
) -> None:
    _register(exchange, witness)
    assert _round(exchange)[witness.name] == "cosigned"
    origin = exchange.ctx.settings.ledger_origin
    size, root = witness.state(origin)
    note = _current(exchange)
    log_signer = exchange.ctx.log_key.signer

    wrong_old = witness.add_checkpoint(format_request(size + 5, [], note))
    assert wrong_old.status_code == 409
    assert wrong_old.text.strip() == str(size)
    assert wrong_old.headers["content-type"].startswith("text/x.tlog.size")

    other_root = merkle.leaf_hash(secrets.token_bytes(16))
    bogus = [merkle.leaf_hash(secrets.token_bytes(8)) for _ in range(3)]
    larger = witness.add_checkpoint(
        format_request(size, bogus, _forge(log_signer, size + 3, other_root))
    )
    assert larger.status_code == 422, larger.text
    fork = witness.add_checkpoint(format_request(size, [], _forge(log_signer, size, other_root)))
    assert fork.status_code == 422, fork.text

    impostor = Signer.from_key(generate_signer(origin)[0])
    foreign = witness.add_checkpoint(format_request(size, [], _forge(impostor, size + 1, root)))
    assert foreign.status_code == 403, foreign.text
    unknown = Signer.from_key(generate_signer("other.example/log")[0])
    assert (
        witness.add_checkpoint(format_request(0, [], _forge(unknown, 1, root))).status_code == 404
    )
    assert witness.add_checkpoint("no blank line").status_code == 400

    # Nothing of that moved the witness; the true log still gets cosigned.
    assert witness.state(origin) == (size, root)
    _grow(exchange)
    assert _round(exchange)[witness.name] == "cosigned"
    assert witness.state(origin)[0] == head_size(exchange)


def _alerts(ex: Exchange) -> list[dict[str, Any]]:
    with demo_client(ex, "regulator") as reg:
        r = reg.get("/ledger/alerts")
    assert r.status_code == 200, r.text
    return list(r.json())


def _gossip(ex: Exchange, note: str) -> httpx.Response:
    with ex.client() as anonymous:
        return anonymous.post("/ledger/gossip", json={"note": note})


def test_gossip_of_true_checkpoints_is_consistent(exchange: Exchange) -> None:
    publish(exchange)
    true_note = _current(exchange)
    cp = open_checkpoint(true_note, exchange.ctx.log_key.verifier)
    before = _alerts(exchange)
    r = _gossip(exchange, true_note)
    assert r.status_code == 200, r.text
    assert r.json() == {"consistent": True, "size": cp.size}
    # A true checkpoint of a size the exchange never published is consistent too.
    with demo_client(exchange, "regulator") as reg:
        leaves = [b64d(e["leaf_hash"]) for e in list_entries(reg, exchange)][: cp.size - 1]
    truthful = _forge(exchange.ctx.log_key.signer, cp.size - 1, merkle.root_from_leaves(leaves))
    assert _gossip(exchange, truthful).json() == {"consistent": True, "size": cp.size - 1}
    assert _alerts(exchange) == before


def test_gossip_detects_a_split_view(exchange: Exchange) -> None:
    publish(exchange)
    cp = open_checkpoint(_current(exchange), exchange.ctx.log_key.verifier)
    before = _alerts(exchange)
    # The exchange's own key signed a second root for a size it has: a split view.
    forged_root = merkle.leaf_hash(secrets.token_bytes(16))
    forged = _forge(exchange.ctx.log_key.signer, cp.size, forged_root)
    r = _gossip(exchange, forged)
    assert r.status_code == 200, r.text
    assert r.json() == {"consistent": False, "size": cp.size, "alert": "split_view"}
    after = _alerts(exchange)
    assert len(after) == len(before) + 1
    alert = after[-1]
    assert (alert["kind"], alert["size"]) == ("split_view", cp.size)
    assert alert["detail"]["presented"] == forged
    assert alert["detail"]["presented_root"] == forged_root.hex()
    assert open_checkpoint(alert["detail"]["ours"], exchange.ctx.log_key.verifier) == cp


def test_gossip_of_a_checkpoint_the_exchange_never_signed_is_refused(exchange: Exchange) -> None:
    publish(exchange)
    cp = open_checkpoint(_current(exchange), exchange.ctx.log_key.verifier)
    before = _alerts(exchange)
    impostor = Signer.from_key(generate_signer(exchange.ctx.settings.ledger_origin)[0])
    r = _gossip(exchange, _forge(impostor, cp.size, merkle.leaf_hash(b"x")))
    assert r.status_code == 403
    assert r.json()["type"] == PROBLEM + "bad-checkpoint-signature"
    assert _alerts(exchange) == before


def test_alerts_are_for_the_operator_and_regulators(exchange: Exchange) -> None:
    party = quick_party(exchange, ["merchant"])
    with party.client() as c:
        assert c.get("/ledger/alerts").status_code == 403
    with exchange.client() as anonymous:
        assert anonymous.get("/ledger/alerts").status_code == 401
    with demo_client(exchange, "operator") as op:
        assert op.get("/ledger/alerts").status_code == 200
