"""``databourse ledger monitor`` follows the exchange's checkpoints from another process.

The monitor needs no account and no database: the exchange's URL and its public key. It
proves each new checkpoint consistent with the one it saw before, and raises an alert (exit
2) on a signature it cannot verify or a second root for a size it already saw.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path

from databourse.ledger.note import generate_signer
from tests.conftest import Exchange, quick_party
from tests.ledger.conftest import cli_args, cli_env, log_verifier, open_checkpoint, publish


def _grow_and_publish(ex: Exchange) -> int:
    party = quick_party(ex, ["buyer"])
    with party.client() as c:
        assert c.post(f"/organisations/{party.id}/api-keys", json={"name": "m"}).status_code == 201
    return int(publish(ex)["size"])


def _monitor(ex: Exchange, tmp: Path, key: str, *extra: str) -> subprocess.Popen[str]:
    env = cli_env(database_url=f"sqlite:///{tmp}/absent/db.sqlite3", data_dir=tmp / "absent")
    return subprocess.Popen(
        cli_args(["ledger", "monitor", ex.base_url, "--key", key, *extra]),
        env=env,
        cwd=tmp,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_the_monitor_proves_the_growing_log_consistent(exchange: Exchange, tmp_path: Path) -> None:
    verifier = log_verifier(exchange)
    seen = open_checkpoint(publish(exchange)["note"], verifier)
    # The monitor remembers the checkpoint it saw last time (its state file) ...
    state = tmp_path / "monitor-state.json"
    state.write_text(json.dumps({str(seen.size): seen.root.hex()}))
    # ... the log grows and a new checkpoint is published before it runs again ...
    grown = _grow_and_publish(exchange)
    proc = _monitor(
        exchange, tmp_path, verifier.key, "--count", "2", "--interval", "0.2", "--state", str(state)
    )
    # ... and, while it runs, the log keeps growing.
    _grow_and_publish(exchange)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    # The first observation is the newest checkpoint: the one published before it started
    # or, if the log grew fast enough, the next one; either way it is proved consistent.
    first = re.search(rf"size {seen.size} → (\d+): consistent", out)
    assert first is not None, out
    assert int(first.group(1)) >= grown
    assert "ALERT" not in out + err
    remembered = {int(k): v for k, v in json.loads(state.read_text()).items()}
    assert seen.size in remembered and max(remembered) >= grown
    assert not (tmp_path / "absent").exists()


def test_the_monitor_alerts_on_a_second_root_for_a_size(exchange: Exchange, tmp_path: Path) -> None:
    verifier = log_verifier(exchange)
    current = open_checkpoint(publish(exchange)["note"], verifier)
    state = tmp_path / "monitor-state.json"
    state.write_text(json.dumps({str(current.size): secrets.token_bytes(32).hex()}))
    proc = _monitor(exchange, tmp_path, verifier.key, "--count", "1", "--state", str(state))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    assert "split view" in err


def test_the_monitor_alerts_on_a_checkpoint_it_cannot_verify(
    exchange: Exchange, tmp_path: Path
) -> None:
    _, wrong = generate_signer(exchange.ctx.settings.ledger_origin)
    proc = _monitor(exchange, tmp_path, wrong, "--count", "1")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    assert "ALERT" in err and "signature" in err
