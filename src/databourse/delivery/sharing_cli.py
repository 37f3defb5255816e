"""``databourse share …``: a contract's Delta Sharing profile from the console.

``share profile`` issues (or rotates) the buyer's profile and writes the file a Delta
Sharing client reads, readable by its owner only (mode 0600); the token is never printed.
``share revoke`` stops the profile at once; ``share show`` tells its state. Members act
with ``--as EMAIL`` under their user's principal, exactly as over HTTP; ``revoke`` and
``show`` act as the exchange itself when ``--as`` is omitted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from databourse.assets.cli import As, Member, console, exchange, pairs_table, read, run

if TYPE_CHECKING:
    from databourse.auth.policy import Principal
    from databourse.delivery.models import Recipient
    from databourse.uow import UnitOfWork

share_app = typer.Typer(help="Delta Sharing profiles of dataset contracts.", no_args_is_help=True)

ProfileFile = Annotated[
    Path,
    typer.Option(
        "--output", "-o", dir_okay=False, help="Where to write the profile file (mode 0600)."
    ),
]
Endpoint = Annotated[
    str | None,
    typer.Option(
        help="The exchange's public base URL clients reach; default: the public_url setting."
    ),
]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode otherwise
        f.write(text)


def _facts(contract_id: str, r: Recipient | None) -> list[tuple[str, object]]:
    from databourse.delivery import sharing

    rows: list[tuple[str, object]] = [
        ("contract", contract_id),
        ("share", f"{contract_id} (schema {sharing.SCHEMA})"),
        ("status", sharing.status_of(r)),
    ]
    if r is not None:
        rows += [
            ("recipient", r.id),
            ("token prefix", r.prefix),
            ("issued", f"{r.created_at.isoformat(timespec='seconds')} by {r.created_by}"),
            ("expires", r.expires_at.isoformat(timespec="seconds")),
        ]
        if r.revoked_at is not None:
            when = r.revoked_at.isoformat(timespec="seconds")
            rows.append(("revoked", f"{when} by {r.revoked_by}"))
    return rows


@share_app.command("profile")
def share_profile(
    contract_id: str, email: Member, output: ProfileFile, endpoint: Endpoint = None
) -> None:
    """Issue the buyer's profile for a dataset contract (rotating any previous one) and
    write it to a file only its owner can read."""
    from databourse.delivery import sharing

    with exchange() as ctx:
        base = (endpoint or ctx.settings.public_url).rstrip("/")

        def issue(uow: UnitOfWork, me: Principal) -> dict[str, Any]:
            r, token = sharing.grant(uow, me, contract_id)
            return sharing.profile_document(f"{base}/delta-sharing", token, r.expires_at)

        doc = run(ctx, email, issue)
        write_private(output, json.dumps(doc, indent=2) + "\n")
        console.print(
            f"profile for share [bold]{escape(contract_id)}[/bold] written to "
            f"{escape(str(output))} (expires {escape(doc['expirationTime'])}); "
            "any earlier profile of this contract no longer works"
        )


@share_app.command("revoke")
def share_revoke(contract_id: str, email: As = None) -> None:
    """Revoke the contract's profile: its next request is refused."""
    from databourse.delivery import sharing

    with exchange() as ctx:
        facts = run(
            ctx,
            email,
            lambda uow, me: _facts(contract_id, sharing.revoke(uow, me, contract_id)),
        )
        console.print(pairs_table(facts))


@share_app.command("show")
def share_show(contract_id: str, email: As = None) -> None:
    """The state of the contract's profile (never its token)."""
    from databourse.delivery import sharing

    with exchange() as ctx:
        facts = read(
            ctx,
            email,
            lambda session, me: _facts(contract_id, sharing.current(session, me, contract_id)),
        )
        console.print(pairs_table(facts))
