"""``databourse trade …``: negotiations, contracts, signatures, payments and bills.

Members act with ``--as EMAIL`` under their user's principal, exactly as over HTTP; the
exchange's staff commands (resolve, suspend, reinstate, terminate, the scheduled run) act
as the exchange itself when ``--as`` is omitted. Every command converts the rows it shows
into output inside its unit of work, and a refusal is one red line with exit code 1.

Contracts are signed custodially (the exchange holds the organisation's key, sealed under
its custody secret) or client-side: ``trade keygen`` makes an Ed25519 key, ``trade
register-key`` registers its public half, and ``trade sign --key`` signs the contract's
document bytes here and files only the signature. ``trade receipt`` and ``trade verify``
carry the trade filing (交易备案) to anyone holding the exchange's verifier key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from databourse.assets.cli import (
    As,
    Member,
    Output,
    acting,
    console,
    emit_json,
    err,
    exchange,
    id_table,
    pairs_table,
    read,
    run,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sqlalchemy.orm import Session

    from databourse.api.context import AppContext
    from databourse.auth.policy import Principal
    from databourse.market.models import Contract, Negotiation
    from databourse.settlement.models import Bill
    from databourse.uow import UnitOfWork

    Step = Callable[[UnitOfWork, Principal, str], Contract]
    Decision = Callable[[UnitOfWork, Principal, str, str], Contract]

trade_app = typer.Typer(help="Negotiations, contracts and trades.", no_args_is_help=True)


class BillingChoice(StrEnum):
    prepaid = "prepaid"
    invoice = "invoice"


Plan = Annotated[str, typer.Option("--plan", help="The name of one of the listing's plans.")]
Purpose = Annotated[str, typer.Option(help="What the data is for, e.g. research.")]
Price = Annotated[
    int | None,
    typer.Option(
        "--price",
        metavar="FEN",
        help="Proposed price in fen (per period for a subscription); default: the plan's.",
    ),
]
Term = Annotated[int | None, typer.Option("--term", metavar="DAYS", help="Term in days.")]
Quantity = Annotated[int | None, typer.Option(help="Units of a package plan.")]
Message = Annotated[str | None, typer.Option(help="A note to the other side.")]
Billing = Annotated[BillingChoice | None, typer.Option(help="How a metered plan is billed.")]
Required = Annotated[str, typer.Option(help="Why; recorded with the decision.")]
MaybeReason = Annotated[str | None, typer.Option(help="Why; recorded with the decision.")]
Status = Annotated[str | None, typer.Option(help="Only those in this state.")]
Limit = Annotated[int, typer.Option(min=1, max=500)]
KeyFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False)]


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error[/red]: {escape(message)}")
    raise typer.Exit(1)


def _money(fen: int | None, currency: str) -> str:
    from databourse.catalog.pricing import format_money

    return "" if fen is None else format_money(fen, currency)


def _when(t: Any) -> str:
    return "" if t is None else t.isoformat(timespec="seconds")


def _names(session: Session, org_ids: Iterable[str | None]) -> dict[str, str]:
    """Organisations' names by id, for tables read by people."""
    from sqlalchemy import select

    from databourse.participants.models import Organisation

    ids = {i for i in org_ids if i}
    if not ids:
        return {}
    rows = session.execute(
        select(Organisation.id, Organisation.name).where(Organisation.id.in_(ids))
    ).all()
    return {org_id: name for org_id, name in rows}


def _listing(*columns: str) -> Table:
    """A table led by the id; ids in other columns are folded, never cut."""
    table = id_table(*columns)
    for column in table.columns[1:]:
        column.overflow = "fold"
        column.no_wrap = column.header in ("status", "payment")
    return table


def _terms(
    plan: str,
    price: int | None = None,
    term: int | None = None,
    quantity: int | None = None,
    message: str | None = None,
    billing: BillingChoice | None = None,
) -> dict[str, Any]:
    """A Terms body as the API takes it, omitting what was not given."""
    given = {
        "plan": plan,
        "price_fen": price,
        "term_days": term,
        "quantity": quantity,
        "message": message,
        "billing": None if billing is None else str(billing),
    }
    return {k: v for k, v in given.items() if v is not None}


# Views, built inside the unit of work ---------------------------------------------------


def _negotiation_view(session: Session, n: Negotiation) -> list[Table]:
    from databourse.catalog.models import Product
    from databourse.market import negotiation

    product = session.get(Product, n.product_id)
    currency = product.currency if product is not None else "CNY"
    names = _names(session, (n.buyer_org_id, n.merchant_org_id))
    facts = pairs_table(
        [
            ("negotiation", n.id),
            ("product", f"{n.product_id} {product.title if product else ''}".strip()),
            ("buyer", f"{names.get(n.buyer_org_id, '')} ({n.buyer_org_id})"),
            ("merchant", f"{names.get(n.merchant_org_id, '')} ({n.merchant_org_id})"),
            ("purpose", n.purpose),
            ("status", n.status),
            ("contract", n.contract_id),
            ("updated", _when(n.updated_at)),
        ]
    )
    offers = Table(
        "#", "side", "plan", "price", "term", "quantity", "status", "expires", title="offers"
    )
    for o in negotiation.offers(session, n.id):
        offers.add_row(
            str(o.seq),
            o.side,
            escape(o.plan),
            _money(o.price_fen, currency),
            f"{o.term_days} days",
            "" if o.quantity is None else str(o.quantity),
            o.status,
            o.expires_at.strftime("%Y-%m-%d %H:%M"),
        )
    return [facts, offers]


def _contract_view(session: Session, c: Contract) -> Table:
    """A contract's terms, money and signatures."""
    from databourse.market import contracts

    names = _names(session, (c.buyer_org_id, c.merchant_org_id, c.agent_org_id))
    product = contracts.document(c).get("product", {})
    signed = {s.side: s for s in contracts.signatures(session, [c.id])[c.id]}
    rows: list[tuple[str, Any]] = [
        ("contract", c.id),
        (
            "product",
            f"{c.product_id} v{c.product_version} ({c.product_kind}) "
            f"{product.get('title', '')}".strip(),
        ),
        ("buyer", f"{names.get(c.buyer_org_id, '')} ({c.buyer_org_id})"),
        ("merchant", f"{names.get(c.merchant_org_id, '')} ({c.merchant_org_id})"),
    ]
    if c.agent_org_id:
        rows.append(("agent", f"{names.get(c.agent_org_id, '')} ({c.agent_org_id})"))
    rows += [
        ("plan", f"{c.plan.get('name', '')} ({c.plan.get('model', '')})"),
        ("price", f"{_money(c.price_fen, c.currency)}, billing {c.billing}"),
        ("term", f"{_when(c.starts_at)} → {_when(c.ends_at)}"),
        ("purpose", c.purpose),
        (
            "fee",
            f"{_money(c.fee_fen, c.currency)} ({c.fee_bp / 100:g}%, at least "
            f"{_money(c.fee_min_fen, c.currency)})",
        ),
        ("commission", f"{_money(c.commission_fen, c.currency)} ({c.commission_bp / 100:g}%)"),
        ("status", c.status),
        ("payment", f"{c.payment_status}, escrow {_money(c.escrow_fen, c.currency)}"),
        ("sign by", _when(c.sign_by)),
    ]
    for side in ("buyer", "merchant"):
        s = signed.get(side)
        rows.append(
            (
                f"{side} signature",
                "not yet"
                if s is None
                else f"{s.key_id} ({'custodial' if s.custodial else 'own key'}) "
                f"by {s.signed_by} at {_when(s.signed_at)}",
            )
        )
    if c.delivered_at:
        rows += [("delivered", _when(c.delivered_at)), ("accept by", _when(c.accept_by))]
    if c.negotiation_id or c.auction_id:
        rows.append(("origin", c.negotiation_id or c.auction_id))
    if c.reason:
        rows.append(("reason", c.reason))
    rows.append(("document sha256", c.document_hash))
    return pairs_table(rows)


def _state(c: Contract) -> str:
    escrow = f", {_money(c.escrow_fen, c.currency)} in escrow" if c.escrow_fen else ""
    return f"{c.id} is [bold]{c.status}[/bold], payment [bold]{c.payment_status}[/bold]{escrow}"


# Negotiations ---------------------------------------------------------------------------


@trade_app.command("negotiate")
def trade_negotiate(
    product_id: str,
    plan: Plan,
    purpose: Purpose,
    email: Member,
    price: Price = None,
    term: Term = None,
    quantity: Quantity = None,
    message: Message = None,
    billing: Billing = None,
    demand: Annotated[str | None, typer.Option(help="The demand this answers.")] = None,
) -> None:
    """Open a negotiation (议价) on a listed product with a first offer."""
    from databourse.market import negotiation, schemas

    with exchange() as ctx:
        data = schemas.NegotiationIn.model_validate(
            {
                "product_id": product_id,
                "purpose": purpose,
                "offer": _terms(plan, price, term, quantity, message, billing),
                **({"demand_id": demand} if demand else {}),
            }
        )
        tables = run(
            ctx,
            email,
            lambda uow, p: _negotiation_view(
                uow.session, negotiation.open_negotiation(uow, p, ctx.settings, data)
            ),
        )
    for t in tables:
        console.print(t)


@trade_app.command("counter")
def trade_counter(
    negotiation_id: str,
    plan: Plan,
    email: Member,
    price: Price = None,
    term: Term = None,
    quantity: Quantity = None,
    message: Message = None,
    billing: Billing = None,
) -> None:
    """Make a counter-offer: it supersedes the standing offer."""
    from databourse.market import negotiation, schemas

    with exchange() as ctx:
        t = schemas.Terms.model_validate(_terms(plan, price, term, quantity, message, billing))
        tables = run(
            ctx,
            email,
            lambda uow, p: _negotiation_view(
                uow.session, negotiation.counter(uow, p, ctx.settings, negotiation_id, t)
            ),
        )
    for table in tables:
        console.print(table)


@trade_app.command("agree")
def trade_agree(negotiation_id: str, email: Member) -> None:
    """Accept the other side's standing offer: the contract is drafted for signing."""
    from databourse.market import negotiation

    with exchange() as ctx:

        def agree(uow: UnitOfWork, p: Principal) -> tuple[str, Table]:
            n, c = negotiation.accept(uow, p, ctx.settings, negotiation_id)
            line = f"{n.id} is [bold]{n.status}[/bold]: contract {c.id} drafted for signing"
            return line, _contract_view(uow.session, c)

        line, table = run(ctx, email, agree)
    console.print(line)
    console.print(table)


@trade_app.command("withdraw")
def trade_withdraw(negotiation_id: str, email: Member) -> None:
    """Withdraw from a negotiation."""
    from databourse.market import negotiation
    from databourse.market.negotiation import negotiation_state

    with exchange() as ctx:
        n = run(
            ctx,
            email,
            lambda uow, p: negotiation_state(negotiation.withdraw(uow, p, negotiation_id)),
        )
    console.print(f"{n['id']} is [bold]{n['status']}[/bold]")


@trade_app.command("negotiations")
def trade_negotiations(status: Status = None, limit: Limit = 100, email: As = None) -> None:
    """Negotiations, latest first: the user's organisation's with --as, else every one."""
    from databourse.market import negotiation

    def table(session: Session, p: Principal) -> Table:
        from databourse.catalog.models import Product

        rows = negotiation.list_negotiations(session, p, status, limit, 0)
        names = _names(session, [o for n in rows for o in (n.buyer_org_id, n.merchant_org_id)])
        out = _listing("product", "buyer", "merchant", "status", "standing offer", "contract")
        for n in rows:
            standing = negotiation.standing_offer(session, n)
            product = session.get(Product, n.product_id)
            offer = (
                ""
                if standing is None or product is None
                else f"{standing.side}: {_money(standing.price_fen, product.currency)}"
            )
            out.add_row(
                n.id,
                n.product_id,
                escape(names.get(n.buyer_org_id, n.buyer_org_id)),
                escape(names.get(n.merchant_org_id, n.merchant_org_id)),
                n.status,
                offer,
                n.contract_id or "",
            )
        return out

    with exchange() as ctx:
        console.print(read(ctx, email, table))


@trade_app.command("negotiation")
def trade_negotiation(negotiation_id: str, email: As = None) -> None:
    """One negotiation and its offers."""
    from databourse.market import negotiation

    with exchange() as ctx:
        tables = read(
            ctx,
            email,
            lambda s, p: _negotiation_view(s, negotiation.get(s, p, negotiation_id)),
        )
    for t in tables:
        console.print(t)


# Contracts ------------------------------------------------------------------------------


@trade_app.command("buy")
def trade_buy(
    product_id: str,
    plan: Plan,
    purpose: Purpose,
    email: Member,
    term: Term = None,
    quantity: Quantity = None,
    billing: Billing = None,
) -> None:
    """Buy at the listing's terms: the contract is drafted for signing."""
    from databourse.market import negotiation, schemas

    terms = _terms(plan, term=term, quantity=quantity, billing=billing)
    body = {"product_id": product_id, "purpose": purpose, **terms}
    with exchange() as ctx:
        data = schemas.ContractIn.model_validate(body)
        table = run(
            ctx,
            email,
            lambda uow, p: _contract_view(uow.session, negotiation.buy(uow, p, ctx.settings, data)),
        )
    console.print(table)


@trade_app.command("contracts")
def trade_contracts(status: Status = None, limit: Limit = 100, email: As = None) -> None:
    """Contracts, newest first: the user's organisation's with --as, else every one."""
    from databourse.market import contracts

    def table(session: Session, p: Principal) -> Table:
        rows = contracts.list_contracts(session, p, status, limit, 0)
        names = _names(session, [o for c in rows for o in (c.buyer_org_id, c.merchant_org_id)])
        out = _listing("product", "buyer", "merchant", "price", "status", "payment")
        for c in rows:
            out.add_row(
                c.id,
                c.product_id,
                escape(names.get(c.buyer_org_id, c.buyer_org_id)),
                escape(names.get(c.merchant_org_id, c.merchant_org_id)),
                _money(c.price_fen, c.currency),
                c.status,
                c.payment_status,
            )
        return out

    with exchange() as ctx:
        console.print(read(ctx, email, table))


@trade_app.command("show")
def trade_show(contract_id: str, email: As = None) -> None:
    """A contract: terms, fee, commission, signatures and its document's hash."""
    from databourse.market import contracts

    with exchange() as ctx:
        table = read(ctx, email, lambda s, p: _contract_view(s, contracts.get(s, p, contract_id)))
    console.print(table)


# Signing --------------------------------------------------------------------------------


def _load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:  # TypeError: an encrypted key
        _fail(f"{path.name} is not an unencrypted PEM private key: {exc}")
    if not isinstance(key, Ed25519PrivateKey):
        _fail(f"{path.name} is not an Ed25519 key")
    return key


def _public_key(path: Path) -> str:
    """The base64 raw public key from a PEM public key, or from a PEM private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from databourse.market import signing

    pem = path.read_bytes()
    if b"PRIVATE KEY" in pem:
        return signing.public_key_b64(_load_private(path))
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        _fail(f"{path.name} is not a PEM public or private key: {exc}")
    if not isinstance(key, Ed25519PublicKey):
        _fail(f"{path.name} is not an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return signing.b64(raw)


@trade_app.command("keygen")
def trade_keygen(
    out: Annotated[Path, typer.Argument(dir_okay=False, help="Where to write the private key.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Make an Ed25519 signing key: OUT holds the private key (PEM, mode 0600); its
    base64 public key is printed, to register with trade register-key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from databourse.market import signing

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)  # never readable by others, not even for a moment
    except FileExistsError:
        _fail(f"{out} exists; pass --force to overwrite it")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror}")
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    out.chmod(0o600)  # an overwritten file keeps its old mode otherwise
    public = signing.public_key_b64(key)
    print(public)
    err.print(
        f"private key written to {escape(str(out))} (key id {signing.key_id(public)}); "
        "register it with: databourse trade register-key"
    )


@trade_app.command("register-key")
def trade_register_key(key_file: KeyFile, email: Member) -> None:
    """Register the organisation's own public key (from a public or private PEM) to sign
    contracts client-side; its previous key is retired and custodial signing stops."""
    from databourse.market import keys

    public = _public_key(key_file)
    with exchange() as ctx:
        k = run(ctx, email, lambda uow, p: keys.key_state(keys.register(uow, p, public)))
    console.print(
        f"registered signing key {k['id']} of {k['org_id']}: its contracts are signed "
        "client-side now, with trade sign --key"
    )


@trade_app.command("keys")
def trade_keys(
    org_id: Annotated[str | None, typer.Option("--org")] = None, email: As = None
) -> None:
    """An organisation's contract-signing keys, custodial or registered."""
    from databourse.market import keys

    if email is None and org_id is None:
        raise typer.BadParameter(
            "name the organisation, or act --as one of its users", param_hint="--org"
        )

    def table(session: Session, p: Principal) -> Table:
        out = _listing("public key", "custodial", "active", "created")
        for k in keys.list_keys(session, p, org_id):
            out.add_row(
                k.id,
                k.public_key,
                "yes" if k.custodial else "",
                "yes" if k.active else "",
                _when(k.created_at),
            )
        return out

    with exchange() as ctx:
        console.print(read(ctx, email, table))


def _signed(uow: UnitOfWork, p: Principal, c: Contract) -> str:
    from databourse.market import contracts

    side = contracts.side_of(p, c)
    mine = contracts.signatures(uow.session, [c.id])[c.id]
    key = next((s.key_id for s in mine if s.side == side), "?")
    line = f"the {side} signed {c.id} with key {key}"
    if c.status == "awaiting_signatures":
        return f"{line}; waiting for the other party"
    return f"{line}: both have signed, the trade is filed; {_state(c)}"


@trade_app.command("sign")
def trade_sign(
    contract_id: str,
    email: Member,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            exists=True,
            dir_okay=False,
            help="Sign here with this Ed25519 PEM private key (its public half registered); "
            "default: the exchange signs with the key it holds for the organisation.",
        ),
    ] = None,
) -> None:
    """Sign a contract: custodially, or client-side with --key."""
    from databourse.market import contracts, signing

    private = None if key is None else _load_private(key)
    with exchange() as ctx:

        def sign(uow: UnitOfWork, p: Principal) -> str:
            if private is None:
                c = contracts.sign_custodial(uow, p, ctx.custody_secret, contract_id)
                return _signed(uow, p, c)
            # signed here, over the document's exact bytes; only the signature is filed
            document = contracts.document(contracts.get(uow.session, p, contract_id))
            key_id = signing.key_id(signing.public_key_b64(private))
            c = contracts.sign_with(uow, p, contract_id, key_id, signing.sign(private, document))
            return _signed(uow, p, c)

        line = run(ctx, email, sign)
    console.print(line)


# Money and governance -------------------------------------------------------------------


def _step(contract_id: str, email: str | None, fn: Step) -> None:
    with exchange() as ctx:
        line = run(ctx, email, lambda uow, p: _state(fn(uow, p, contract_id)))
    console.print(line)


def _reason(reason: str) -> str:
    from databourse.market import schemas

    return schemas.ReasonIn.model_validate({"reason": reason}).reason


@trade_app.command("pay")
def trade_pay(contract_id: str, email: Member) -> None:
    """The buyer pays the price into escrow from its available balance."""
    from databourse.market import trades

    _step(contract_id, email, trades.pay)


@trade_app.command("deliver")
def trade_deliver(contract_id: str, email: Member) -> None:
    """The merchant declares delivery; the buyer's acceptance window starts."""
    from databourse.market import trades

    _step(contract_id, email, trades.deliver)


@trade_app.command("accept")
def trade_accept(contract_id: str, email: Member) -> None:
    """The buyer accepts delivery: the escrow is released to the merchant."""
    from databourse.market import trades

    _step(contract_id, email, trades.accept)


@trade_app.command("cancel")
def trade_cancel(contract_id: str, email: Member, reason: MaybeReason = None) -> None:
    """Either party cancels before delivery; money in escrow goes back to the buyer."""
    from databourse.market import schemas, trades

    with exchange() as ctx:
        why = schemas.OptionalReasonIn.model_validate({"reason": reason}).reason
        line = run(ctx, email, lambda uow, p: _state(trades.cancel(uow, p, contract_id, why)))
    console.print(line)


@trade_app.command("dispute")
def trade_dispute(contract_id: str, reason: Required, email: Member) -> None:
    """A party disputes the trade: the escrow is frozen until the operator resolves it."""
    from databourse.market import trades

    with exchange() as ctx:
        why = _reason(reason)
        line = run(ctx, email, lambda uow, p: _state(trades.dispute(uow, p, contract_id, why)))
    console.print(line)


@trade_app.command("resolve")
def trade_resolve(
    contract_id: str,
    to_merchant: Annotated[
        int, typer.Option("--to-merchant", metavar="FEN", help="The merchant's part in fen.")
    ],
    reason: Required,
    email: As = None,
) -> None:
    """The operator splits a frozen escrow: the merchant's part (less fee and commission)
    to the merchant, the rest back to the buyer."""
    from databourse.market import schemas, trades

    with exchange() as ctx:
        data = schemas.ResolveIn.model_validate({"to_merchant_fen": to_merchant, "reason": reason})
        line = run(
            ctx,
            email,
            lambda uow, p: _state(
                trades.resolve(uow, p, contract_id, data.to_merchant_fen, data.reason)
            ),
        )
    console.print(line)


def _govern(contract_id: str, reason: str, email: str | None, fn: Decision) -> None:
    with exchange() as ctx:
        why = _reason(reason)
        line = run(ctx, email, lambda uow, p: _state(fn(uow, p, contract_id, why)))
    console.print(line)


@trade_app.command("suspend")
def trade_suspend(contract_id: str, reason: Required, email: As = None) -> None:
    """Suspend (叫停) a contract at once: every delivery path refuses its next request."""
    from databourse.market import contracts

    _govern(contract_id, reason, email, contracts.suspend)


@trade_app.command("reinstate")
def trade_reinstate(contract_id: str, reason: Required, email: As = None) -> None:
    """Lift a contract's suspension."""
    from databourse.market import contracts

    _govern(contract_id, reason, email, contracts.reinstate)


@trade_app.command("terminate")
def trade_terminate(contract_id: str, reason: Required, email: As = None) -> None:
    """End a contract; money held for undelivered data is refunded."""
    from databourse.market import trades

    _govern(contract_id, reason, email, trades.terminate)


# The trade filing -----------------------------------------------------------------------


def _receipt(ctx: AppContext, principal: Principal, contract_id: str) -> dict[str, Any]:
    from databourse.market import contracts
    from databourse.uow import UnitOfWork

    with UnitOfWork(ctx.writes) as uow:
        out = contracts.receipt(uow, principal, ctx.log_key, contract_id)
        uow.commit()  # a checkpoint covering the filing may have been published
    return out


@trade_app.command("receipt")
def trade_receipt(contract_id: str, output: Output = None, email: As = None) -> None:
    """The trade filing (交易备案): the signed document, both signatures and the ledger
    receipt of the filing, checked offline by trade verify."""
    with exchange() as ctx:
        with ctx.reads() as session:
            principal = acting(session, email)
        doc = _receipt(ctx, principal, contract_id)
    emit_json(doc, output)


@trade_app.command("verify")
def trade_verify(
    file: Annotated[Path, typer.Argument(help="A contract receipt from trade receipt.")],
    key_text: Annotated[
        str,
        typer.Option(
            "--key", help="The exchange's verifier key (text or file), from a source you trust."
        ),
    ],
) -> None:
    """Verify a contract receipt offline: the filing is in the exchange's signed ledger,
    it filed this very document, and both parties' signatures hold. No database, no
    network."""
    from databourse.ledger.cli import verifier_key
    from databourse.market.signing import verify_filing

    verifier = verifier_key(key_text)
    try:
        receipt = json.loads(file.read_text(encoding="utf-8"))
        doc = verify_filing(receipt, verifier)
        seq = receipt["seq"]
        price = doc["price"]
        digest = receipt["contract"]["document"].encode()
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        # ContractReceiptError and JSONDecodeError are ValueErrors; the rest: a mangled file
        problem = str(exc) if isinstance(exc, ValueError | OSError) else f"malformed: {exc!r}"
        err.print(f"[red]INVALID[/red]: {escape(problem)}")
        raise typer.Exit(1) from exc

    def party(p: dict[str, Any] | None) -> str:
        return "" if not p else f"{p.get('name')} ({p.get('identifier')}, {p.get('org_id')})"

    product, term = doc.get("product") or {}, doc.get("term") or {}
    console.print(
        f"[green]VALID[/green]: contract {escape(str(doc.get('id')))} is filed as entry {seq} "
        f"of {escape(verifier.name)}, signed by both parties"
    )
    rows: list[tuple[str, Any]] = [
        ("buyer", party(doc.get("buyer"))),
        ("merchant", party(doc.get("merchant"))),
    ]
    if doc.get("agent"):
        rows.append(("agent", party(doc["agent"])))
    rows += [
        ("product", f"{product.get('title')} ({product.get('id')} v{product.get('version')})"),
        ("plan", (doc.get("plan") or {}).get("name")),
        ("price", _money(price["amount_fen"], price["currency"])),
        ("term", f"{term.get('starts_at')} → {term.get('ends_at')} ({term.get('days')} days)"),
        ("purpose", doc.get("purpose")),
        ("document sha256", hashlib.sha256(digest).hexdigest()),
    ]
    console.print(pairs_table(rows))


# Bills and the scheduled run ------------------------------------------------------------


def _bills_table(rows: Iterable[Bill]) -> Table:
    out = _listing("contract", "period", "units", "amount", "status", "due")
    for b in rows:
        out.add_row(
            b.id,
            b.contract_id,
            f"{b.period_start:%Y-%m-%d} → {b.period_end:%Y-%m-%d}",
            f"{b.units} {b.unit}",
            _money(b.amount_fen, b.currency),
            b.status,
            "" if b.due_at is None else f"{b.due_at:%Y-%m-%d}",
        )
    return out


@trade_app.command("bills")
def trade_bills(
    contract_id: Annotated[str | None, typer.Option("--contract")] = None,
    limit: Limit = 100,
    email: As = None,
) -> None:
    """Bills of metered contracts, latest period first."""
    from databourse.market import billing

    with exchange() as ctx:
        table = read(
            ctx,
            email,
            lambda s, p: _bills_table(billing.list_bills(s, p, contract_id, limit, 0)),
        )
    console.print(table)


@trade_app.command("pay-bill")
def trade_pay_bill(bill_id: str, email: Member) -> None:
    """The buyer pays an invoice from its available balance."""
    from databourse.market import billing

    def pay(uow: UnitOfWork, p: Principal) -> str:
        b = billing.pay_bill(uow, p, bill_id)
        return f"{b.id} is [bold]{b.status}[/bold]: {_money(b.amount_fen, b.currency)} paid"

    with exchange() as ctx:
        line = run(ctx, email, pay)
    console.print(line)


@trade_app.command("run")
def trade_run() -> None:
    """Run the market's scheduled work now: expired offers, lapsed contracts, escrow whose
    acceptance window lapsed, metered bills, closed auctions."""
    from databourse.market import scheduler

    with exchange() as ctx, console.status("running the scheduled work…"):
        r = scheduler.run_due(ctx.writes, ctx.reads, ctx.settings)
    table = Table("step", "done", title="scheduled run", title_justify="left")
    for name, n in (
        ("standing offers expired", r.offers_expired),
        ("unsigned or unpaid contracts voided", r.contracts_voided),
        ("contracts expired at term end", r.contracts_expired),
        ("escrow released after the acceptance window", r.released),
        ("metered periods billed", r.bills),
        ("auctions closed", r.auctions),
    ):
        table.add_row(name, str(n) if n else "[dim]0[/dim]")
    console.print(table)
