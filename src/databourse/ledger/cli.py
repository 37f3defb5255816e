"""``databourse ledger …``, ``databourse receipt …`` and ``databourse witness …``."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from databourse.ledger import merkle, receipts
from databourse.ledger.note import Checkpoint as CheckpointBody
from databourse.ledger.note import NoteError, Verifier, generate_signer, open_note

ledger_app = typer.Typer(help="The registration ledger.", no_args_is_help=True)
receipt_app = typer.Typer(help="Receipts (registration certificates).", no_args_is_help=True)
witness_app = typer.Typer(help="Act as a witness of an exchange's ledger.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def verifier_key(text: str) -> Verifier:
    """A verifier key given inline or as a file (the ``--key`` of offline checks)."""
    path = Path(text)
    raw = path.read_text().strip() if path.exists() else text.strip()
    try:
        return Verifier.from_key(raw)
    except NoteError as exc:
        raise typer.BadParameter(f"not a verifier key: {exc}") from exc


@ledger_app.command("verify")
def verify() -> None:
    """Replay the whole log and check it, and every covered row, against the database."""
    from databourse.api.context import AppContext
    from databourse.ledger import audit
    from databourse.ledger.models import LedgerHead
    from databourse.settings import get_settings

    ctx = AppContext.build(get_settings())
    try:
        with ctx.reads() as session:
            total = session.get(LedgerHead, 1).size  # type: ignore[union-attr]
            with Progress(
                TextColumn("replaying the log"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
                transient=True,
            ) as bar:
                task = bar.add_task("replay", total=total)
                report = audit.verify(
                    session,
                    ctx.log_key.verifier,
                    progress=lambda n: (
                        bar.update(task, completed=n) if n % 1000 == 0 or n == total else None
                    ),
                )
    finally:
        ctx.db.dispose()
    console.print(
        f"{report.entries} entries, {report.checkpoints} checkpoints, "
        f"{report.rows} covered rows checked"
    )
    if report.ok:
        console.print("[green]the ledger and the database agree[/green]")
        return
    table = Table("problem", "entry", "row", "detail", title="Findings")
    for f in report.findings:
        table.add_row(f.problem, "" if f.seq is None else str(f.seq), f.subject or "", f.detail)
    console.print(table)
    raise typer.Exit(1)


@ledger_app.command("checkpoint")
def checkpoint() -> None:
    """Sign and publish a checkpoint of the current tree now."""
    from databourse.api.context import AppContext
    from databourse.ledger.services import publish_checkpoint
    from databourse.settings import get_settings
    from databourse.uow import UnitOfWork

    ctx = AppContext.build(get_settings())
    try:
        with UnitOfWork(ctx.writes) as uow:
            cp = publish_checkpoint(uow, ctx.log_key)
            uow.commit()
    finally:
        ctx.db.dispose()
    print(cp.note, end="")


@ledger_app.command("key")
def key() -> None:
    """Print the exchange's verifier key (what receipt verification needs)."""
    from databourse.keys import load_signing_key
    from databourse.ledger.services import LogKey
    from databourse.settings import get_settings

    s = get_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    print(
        LogKey.from_private_key(load_signing_key(s.signing_key_file), s.ledger_origin).verifier.key
    )


@ledger_app.command("monitor")
def monitor(
    url: Annotated[str, typer.Argument(help="Base URL of an exchange, e.g. http://host:8000")],
    key_text: Annotated[str, typer.Option("--key", help="The exchange's verifier key")],
    interval: float = 10.0,
    count: Annotated[int, typer.Option(help="Checkpoints to observe; 0 = forever")] = 0,
    state: Annotated[Path | None, typer.Option(help="Remember checkpoints between runs")] = None,
) -> None:
    """Follow an exchange's checkpoints and prove each consistent with the one before."""
    verifier = verifier_key(key_text)
    seen: dict[int, str] = json.loads(state.read_text()) if state and state.exists() else {}
    seen = {int(k): v for k, v in seen.items()}
    last: CheckpointBody | None = None
    if seen:
        s = max(seen)
        last = CheckpointBody(verifier.name, s, bytes.fromhex(seen[s]))
    observed = 0
    with httpx.Client(base_url=url.rstrip("/") + "/api/v1/ledger", timeout=15) as client:
        while True:
            r = client.get("/checkpoint")
            r.raise_for_status()
            try:
                cp = CheckpointBody.parse(open_note(r.text, [verifier])[0])
            except NoteError as exc:
                err.print(f"[red]ALERT[/red] checkpoint signature invalid: {exc}")
                raise typer.Exit(2) from exc
            if cp.size in seen and seen[cp.size] != cp.root.hex():
                err.print(
                    f"[red]ALERT split view[/red]: size {cp.size} had root "
                    f"{seen[cp.size]}, now {cp.root.hex()}"
                )
                raise typer.Exit(2)
            if last is not None and cp.size > last.size:
                p = client.get("/proofs/consistency", params={"old": last.size, "new": cp.size})
                p.raise_for_status()
                proof = [base64.b64decode(h) for h in p.json()["proof"]]
                try:
                    merkle.verify_consistency(last.size, cp.size, last.root, cp.root, proof)
                except merkle.ProofError as exc:
                    err.print(f"[red]ALERT[/red] {last.size} → {cp.size} inconsistent: {exc}")
                    raise typer.Exit(2) from exc
                console.print(f"size {last.size} → {cp.size}: consistent")
            elif last is not None and cp.size < last.size:
                err.print(f"[red]ALERT[/red] the log shrank from {last.size} to {cp.size}")
                raise typer.Exit(2)
            else:
                console.print(f"size {cp.size}: root {cp.root.hex()[:16]}… signed")
            seen[cp.size] = cp.root.hex()
            last = cp
            if state:
                state.write_text(json.dumps(seen))
            observed += 1
            if count and observed >= count:
                return
            time.sleep(interval)


@receipt_app.command("verify")
def receipt_verify(
    file: Path,
    key_text: Annotated[
        str, typer.Option("--key", help="The exchange's verifier key (text or file)")
    ],
    witness: Annotated[list[str] | None, typer.Option(help="A witness verifier key")] = None,
    min_witnesses: int = 0,
) -> None:
    """Verify a receipt offline: no database and no network, only the exchange's key."""
    try:
        doc = json.loads(file.read_text())
        v = receipts.verify(
            doc,
            verifier_key(key_text),
            [Verifier.from_key(w, cosignature=False) for w in witness or []],
            min_witnesses,
        )
    except (receipts.ReceiptError, json.JSONDecodeError, NoteError, OSError) as exc:
        err.print(f"[red]INVALID[/red]: {exc}")
        raise typer.Exit(1) from exc
    e = v.entry
    console.print(
        f"[green]VALID[/green]: entry {v.seq} ({e['kind']} of {e['subject']} by "
        f"{e['actor']} at {e['at']}) is in {v.origin} at size {v.size}"
        + (f", cosigned by {v.witnesses} witness(es)" if witness else "")
    )


@witness_app.command("keygen")
def witness_keygen(name: str, out: Path) -> None:
    """Create a witness (cosignature) key pair: OUT holds the private key, OUT.pub the public."""
    signer, verifier = generate_signer(name, cosignature=True)
    out.write_text(signer + "\n")
    out.chmod(0o600)
    out.with_suffix(out.suffix + ".pub").write_text(verifier + "\n")
    console.print(verifier)


@witness_app.command("serve")
def witness_serve(
    key_file: Annotated[Path, typer.Option("--key", help="The witness's private key file")],
    log: Annotated[list[str], typer.Option(help="Verifier key of a log to witness")],
    state: Annotated[Path, typer.Option(help="Where the witness remembers what it cosigned")],
    host: str = "127.0.0.1",
    port: int = 8100,
) -> None:
    """Serve C2SP tlog-witness add-checkpoint for the given logs."""
    import uvicorn

    from databourse.ledger.witness_server import create_witness_app

    app = create_witness_app(key_file.read_text().strip(), [verifier_key(k) for k in log], state)
    uvicorn.run(app, host=host, port=port, log_config=None)
