"""``databourse gateway …``: the upstreams of API products and the usage they metered.

Merchants act with ``--as EMAIL`` under their user's principal, exactly as over HTTP;
reads without ``--as`` act as the exchange itself. The upstream's credential is never
taken from the command line (where other users of the machine could see it): it is read
from an environment variable (``--secret-env``) or typed at a hidden prompt
(``--prompt-secret``), and never printed.
"""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from databourse.assets.cli import (
    As,
    Member,
    console,
    emit_json,
    err,
    exchange,
    pairs_table,
    read,
    run,
)

if TYPE_CHECKING:
    from databourse.delivery.gateway import UpstreamOut

gateway_app = typer.Typer(help="The metered API gateway of api products.", no_args_is_help=True)
upstream_app = typer.Typer(help="Where an API product's calls are forwarded.", no_args_is_help=True)
gateway_app.add_typer(upstream_app, name="upstream")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _show(u: UpstreamOut) -> None:
    console.print(
        pairs_table(
            [
                ("product", u.product_id),
                ("base URL", u.base_url),
                ("paths", ", ".join(u.allowed_paths)),
                ("methods", ", ".join(u.methods)),
                (
                    "response fields",
                    "all" if u.response_fields is None else ", ".join(u.response_fields),
                ),
                ("timeout", f"{u.timeout_ms} ms"),
                ("credential", f"set, sent as {u.auth_header}" if u.auth_secret_set else "none"),
                ("revision", u.revision),
                ("updated", f"{u.updated_at.isoformat(timespec='seconds')} by {u.updated_by}"),
            ],
            title=f"upstream of {u.product_id}",
        )
    )


def _secret(env: str | None, prompt: bool, clear: bool) -> tuple[bool, str | None]:
    """Whether the credential changes, and to what (None: removed)."""
    if sum((env is not None, prompt, clear)) > 1:
        err.print("[red]error[/red]: give one of --secret-env, --prompt-secret, --clear-secret")
        raise typer.Exit(2)
    if clear:
        return True, None
    if env is not None:
        value = os.environ.get(env)
        if not value:
            err.print(f"[red]error[/red]: the environment variable {escape(env)} is not set")
            raise typer.Exit(2)
        return True, value
    if prompt:
        return True, getpass.getpass("upstream credential (not shown): ")
    return False, None


@upstream_app.command("set")
def upstream_set(
    product_id: str,
    email: Member,
    base_url: Annotated[
        str,
        typer.Option(
            "--base-url", help="The base URL: http(s)://host, with a port and a path prefix if any."
        ),
    ],
    paths: Annotated[
        list[str], typer.Option("--path", help="An open path, e.g. /score or /v1/* (repeat).")
    ],
    methods: Annotated[
        list[str] | None, typer.Option("--method", help="An open method (repeat); GET, POST.")
    ] = None,
    fields: Annotated[
        list[str] | None,
        typer.Option("--field", help="A response field the upstream may return (repeat)."),
    ] = None,
    timeout_ms: Annotated[int | None, typer.Option("--timeout-ms", help="Time to answer.")] = None,
    auth_header: Annotated[
        str | None, typer.Option("--auth-header", help="Header for the credential.")
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option("--secret-env", metavar="VAR", help="Read the credential from $VAR."),
    ] = None,
    prompt_secret: Annotated[
        bool, typer.Option("--prompt-secret", help="Type the credential at a hidden prompt.")
    ] = False,
    clear_secret: Annotated[
        bool, typer.Option("--clear-secret", help="Remove the stored credential.")
    ] = False,
) -> None:
    """Register or replace the upstream of the user's API product (a ledger entry)."""
    from databourse.delivery import gateway

    changes, secret = _secret(secret_env, prompt_secret, clear_secret)
    body: dict[str, Any] = {"base_url": base_url, "allowed_paths": paths}
    if methods:
        body["methods"] = [m.upper() for m in methods]
    if fields:
        body["response_fields"] = fields
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    if auth_header is not None:
        body["auth_header"] = auth_header
    if changes:
        body["auth_secret"] = secret
    with exchange() as ctx:
        data = gateway.UpstreamIn.model_validate(body)
        out = run(
            ctx,
            email,
            lambda uow, p: gateway.register_upstream(
                uow,
                p,
                ctx.custody_secret,
                product_id,
                data,
                default_timeout_ms=ctx.settings.gateway_timeout_ms,
            ),
        )
    console.print(f"upstream of {out.product_id} registered (revision {out.revision})")
    _show(out)


@upstream_app.command("show")
def upstream_show(product_id: str, email: As = None, as_json: Json = False) -> None:
    """The upstream of an API product (never its credential)."""
    from databourse.delivery import gateway

    with exchange() as ctx:
        out = read(ctx, email, lambda s, p: gateway.get_upstream(s, p, product_id))
    if as_json:
        emit_json(out.model_dump(mode="json"), None)
    else:
        _show(out)


@gateway_app.command("usage")
def gateway_usage(contract_id: str, email: As = None, as_json: Json = False) -> None:
    """A contract's usage over its term, by metric.

    Billed events and units, refusals and upstream errors (never billed). Usage still
    buffered in a running server appears once it is written (every
    DATABOURSE_METER_FLUSH_SECONDS)."""
    from databourse.market import contracts
    from databourse.settlement.usage import usage_summary

    def summary(session: Any, p: Any) -> tuple[Any, dict[str, dict[str, int]]]:
        c = contracts.get(session, p, contract_id)
        contracts.authorize_on(p, "usage.read", c)
        return c, usage_summary(session, c.id, c.starts_at, c.ends_at)

    with exchange() as ctx:
        c, rows = read(ctx, email, summary)
    if as_json:
        emit_json({"contract_id": c.id, "usage": rows}, None)
        return
    table = Table(title=f"usage of {c.id} ({c.status})", title_justify="left")
    for name in ("metric", "billed events", "billed quantity", "refused", "upstream errors"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for metric, m in rows.items():
        table.add_row(
            metric,
            f"{m['calls']:,}",
            f"{m['quantity']:,}",
            f"{m['refused']:,}",
            f"{m['upstream_errors']:,}",
        )
    if not rows:
        table.add_row("(none)", "0", "0", "0", "0")
    console.print(table)
