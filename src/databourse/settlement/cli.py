"""``databourse money …``: accounts, deposits and withdrawals, fees, agency, statements.

Members' commands (deposit, withdraw) name the acting user with ``--as EMAIL``; the others
run as the exchange itself, the operator at its console.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from databourse.assets.cli import As, Member, Reason, console, exchange, id_table, read, run

if TYPE_CHECKING:
    from databourse.settlement.models import Transfer

money_app = typer.Typer(help="Accounts, payment rails, fees and statements.", no_args_is_help=True)
Currency = Annotated[str, typer.Option(help="ISO 4217 currency code.")]
RailName = Annotated[str, typer.Option("--rail", help="bank_transfer or digital_rmb.")]


def _money(fen: int, currency: str) -> str:
    from databourse.catalog.pricing import format_money

    return ("-" if fen < 0 else "") + format_money(abs(fen), currency)


def _when(text: str | None) -> datetime | None:
    """An ISO date or time; without a time zone it is UTC."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO date or time") from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _show_transfer(t: Transfer, instructions: dict[str, object] | None = None) -> None:
    console.print(
        f"{t.direction} {t.id}: {_money(t.amount_fen, t.currency)} by {t.rail}, "
        f"[bold]{t.status}[/bold]"
    )
    for name, value in (instructions or {}).items():
        console.print(f"  {name}: {escape(str(value))}")


@money_app.command("accounts")
def money_accounts(
    org: Annotated[
        str | None, typer.Option(help="Whose accounts (an org id, or 'exchange').")
    ] = None,
    email: As = None,
) -> None:
    """Accounts and balances: the user's organisation with --as, else the exchange's."""
    from databourse.settlement import statements

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: statements.accounts(s, p, org))
    table = id_table("owner", "kind", "balance")
    for a in rows:
        table.add_row(a.id, a.owner, a.kind, _money(a.balance_fen, a.currency))
    console.print(table)


def _request(direction: str, email: str, amount: int, currency: str, rail: str, ref: str) -> None:
    from databourse.settlement import rails

    with exchange() as ctx:
        t, how = run(
            ctx,
            email,
            lambda uow, p: rails.request(
                uow, p, rails.rails(ctx.settings), direction, amount, currency, rail, ref
            ),
        )
    _show_transfer(t, how)


@money_app.command("deposit")
def money_deposit(
    amount_fen: int,
    email: Member,
    currency: Currency = "CNY",
    rail: RailName = "bank_transfer",
    reference: Annotated[str, typer.Option(help="The paying account, as the bank shows it.")] = "",
) -> None:
    """Announce a deposit of AMOUNT_FEN fen; prints how to pay."""
    _request("deposit", email, amount_fen, currency, rail, reference)


@money_app.command("withdraw")
def money_withdraw(
    amount_fen: int,
    email: Member,
    to: Annotated[str, typer.Option("--to", help="The payee account to pay to.")],
    currency: Currency = "CNY",
    rail: RailName = "bank_transfer",
) -> None:
    """Ask for AMOUNT_FEN fen to be paid out (an organisation administrator)."""
    _request("withdrawal", email, amount_fen, currency, rail, to)


def _decide(transfer_id: str, step: str, rail_ref: str | None, reason: str | None) -> None:
    from databourse.settlement import rails

    with exchange() as ctx:
        t = run(
            ctx,
            None,
            lambda uow, p: rails.decide(
                uow,
                p,
                rails.rails(ctx.settings),
                transfer_id,
                step,
                rail_ref=rail_ref,
                reason=reason,
            ),
        )
    _show_transfer(t)


@money_app.command("confirm")
def money_confirm(
    transfer_id: str,
    rail_ref: Annotated[
        str, typer.Option("--rail-ref", help="The rail's reference (bank serial number).")
    ],
) -> None:
    """Confirm a deposit or withdrawal: the money moved on the rail."""
    _decide(transfer_id, "confirm", rail_ref, None)


@money_app.command("reject")
def money_reject(transfer_id: str, reason: Reason = None) -> None:
    """Reject a deposit or withdrawal (a withdrawal's amount returns to available)."""
    _decide(transfer_id, "reject", None, reason)


@money_app.command("transfers")
def money_transfers(
    org: Annotated[str | None, typer.Option(help="Only this organisation's.")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    email: As = None,
) -> None:
    """Deposits and withdrawals, newest first."""
    from databourse.settlement import rails

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: rails.list_transfers(s, p, org, None, status, 500))
    table = id_table("org", "direction", "amount", "rail", "status")
    for t in rows:
        table.add_row(
            t.id, t.org_id, t.direction, _money(t.amount_fen, t.currency), t.rail, t.status
        )
    console.print(table)


@money_app.command("statement")
def money_statement(
    email: As = None,
    org: Annotated[str | None, typer.Option(help="An org id, or 'exchange'.")] = None,
    currency: Currency = "CNY",
    start: Annotated[str | None, typer.Option("--from", help="ISO date or time.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="ISO date or time (excluded).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """Postings to an organisation's accounts, oldest first, with their ledger entries."""
    from rich.table import Table

    from databourse.settlement import statements

    with exchange() as ctx:
        st = read(
            ctx,
            email,
            lambda s, p: statements.statement(
                s, p, org, currency, _when(start), _when(end), limit, 0
            ),
        )
    table = Table("at", "kind", "ref", "account", "amount", "balance", "ledger", title=st.owner)
    for line in st.lines:
        table.add_row(
            line.at.strftime("%Y-%m-%d %H:%M"),
            line.journal_kind,
            line.ref or "",
            line.account_kind,
            _money(line.amount_fen, currency),
            _money(line.balance_after_fen, currency),
            "" if line.ledger_seq is None else str(line.ledger_seq),
        )
    console.print(table)
    for b in st.balances:
        console.print(
            f"{b.account_kind}: {_money(b.opening_fen, currency)} → "
            f"{_money(b.closing_fen, currency)}"
        )
    if st.total > len(st.lines):
        console.print(f"{len(st.lines)} of {st.total} postings shown")


@money_app.command("fees")
def money_fees() -> None:
    """The fee in force for every product kind and tier, and where it comes from."""
    from rich.table import Table

    from databourse.settlement import fees

    with exchange() as ctx:
        _, effective = read(ctx, None, fees.schedule)
    table = Table("kind", "tier", "rate (bp)", "minimum", "from")
    for e in effective:
        table.add_row(e.product_kind, e.tier, str(e.rate_bp), _money(e.min_fen, "CNY"), e.source)
    console.print(table)


@money_app.command("set-fee")
def money_set_fee(
    kind: str,
    tier: str,
    rate_bp: int,
    min_fen: Annotated[int, typer.Option("--min", help="Minimum fee in fen.")] = 0,
) -> None:
    """Set the fee for a product KIND (or '*': every kind) and TIER."""
    from databourse.settlement import fees

    with exchange() as ctx:
        rule = run(
            ctx, None, lambda uow, p: fees.put_fee_rule(uow, p, kind, tier, rate_bp, min_fen)
        )
    console.print(
        f"fee for {rule.product_kind}/{rule.tier}: {rule.rate_bp} bp, "
        f"at least {_money(rule.min_fen, 'CNY')}"
    )


@money_app.command("set-tier")
def money_set_tier(org: str, tier: str) -> None:
    """Put an organisation in a TIER of the fee schedule (standard, member, strategic)."""
    from databourse.settlement import fees

    with exchange() as ctx:
        row = run(ctx, None, lambda uow, p: fees.set_tier(uow, p, org, tier))
    console.print(f"{row.org_id} is now [bold]{row.tier}[/bold]")


@money_app.command("payout-commissions")
def money_payout(
    agent: Annotated[str | None, typer.Option(help="Only this agent's commissions.")] = None,
) -> None:
    """Pay agents the commissions they are owed."""
    from databourse.settlement import fees

    with exchange() as ctx:
        journals = run(ctx, None, lambda uow, p: fees.payout_commissions(uow, p, agent))
    console.print(f"{len(journals)} payout{'' if len(journals) == 1 else 's'}")
    for jid in journals:
        console.print(f"  {jid}")
