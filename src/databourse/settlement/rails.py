"""Payment rails (BRIEF §9): how money enters and leaves the exchange.

A rail tells the payer what to do (``instructions``) and checks the rail's evidence that
the money moved (``confirm``), returning the rail's reference in a normal form. Two rails:

- ``bank_transfer`` (the default): the member pays into the exchange's client-money bank
  account quoting the transfer id; the operator sees the credit on the bank statement and
  confirms with the bank's transaction reference. Withdrawals run the other way.
- ``digital_rmb``: the same contract over a digital RMB (e-CNY) wallet operator, reached
  through a ``WalletProvider``. Without one configured the rail refuses every request
  with ``payment-rail-unavailable``.

The commands below record each transfer's life (requested → confirmed | rejected) on the
ledger, with the money movements it causes:

=====================  ======================================================
deposit confirmed      ``deposit``: rail clearing −A, org available +A
withdrawal requested   ``withdrawal.request``: org available −A, withdrawing +A
withdrawal confirmed   ``withdrawal.paid``: org withdrawing −A, rail clearing +A
withdrawal rejected    ``withdrawal.returned``: org withdrawing −A, available +A
=====================  ======================================================

A rail's clearing account (owner ``rail:<name>``) is negative by what came in and not yet
went out: money held in the exchange's bank account (or wallet) for its members.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.catalog.pricing import MAX_FEN
from databourse.db import new_id, utcnow
from databourse.errors import (
    Conflict,
    DataBourseError,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from databourse.ledger.writer import assert_untampered
from databourse.settings import Settings
from databourse.settlement import services
from databourse.settlement.errors import CurrencyMismatch, InvalidAmount, UnknownRail
from databourse.settlement.models import AccountKind, Transfer, TransferStatus
from databourse.settlement.services import Leg, Movement
from databourse.uow import UnitOfWork

DEPOSIT, WITHDRAWAL = "deposit", "withdrawal"
DIRECTIONS = (DEPOSIT, WITHDRAWAL)
CURRENCY = re.compile(r"[A-Z]{3}")  # ISO 4217 alphabetic code


class RailUnavailable(DataBourseError):
    slug = "payment-rail-unavailable"
    status = 503
    title = "The payment rail is not available"


class InvalidRailReference(ValidationFailed):
    slug = "invalid-rail-reference"
    title = "The rail's reference is not valid"


class RailReferenceUsed(Conflict):
    slug = "rail-reference-used"
    title = "The rail's reference already confirmed another transfer"


class PaymentRail(Protocol):
    """An adapter between the exchange's accounts and money outside it."""

    name: str

    def instructions(self, transfer: Transfer) -> dict[str, Any]:
        """What the payer (a depositing member, or the operator paying a withdrawal) does."""
        ...

    def confirm(self, transfer: Transfer, rail_ref: str) -> str:
        """Check the rail's evidence that ``transfer`` moved; its normalised reference."""
        ...


def check_money(amount_fen: int, currency: str) -> None:
    """An amount of a transfer: whole fen, more than 0, at most ``MAX_FEN``; an ISO 4217
    currency code."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidAmount("amounts are whole fen (integers)")
    if not 0 < amount_fen <= MAX_FEN:
        raise InvalidAmount(f"the amount must be between 1 and {MAX_FEN} fen")
    if not CURRENCY.fullmatch(currency):
        raise InvalidAmount(f"{currency!r} is not an ISO 4217 currency code", field="currency")


def reference_hash(reference: str) -> str:
    """What the ledger keeps of a bank reference: its SHA-256, never the number itself."""
    return hashlib.sha256(reference.encode()).hexdigest()


# ---------------------------------------------------------------- the rails


BANK_REF = re.compile(r"[A-Z0-9][A-Z0-9._/-]{3,63}")


class BankTransferRail:
    """Bank transfers confirmed by the operator against the bank statement."""

    name = "bank_transfer"

    def __init__(self, bank_account: str) -> None:
        self.bank_account = bank_account

    def instructions(self, transfer: Transfer) -> dict[str, Any]:
        base = {
            "rail": self.name,
            "amount_fen": transfer.amount_fen,
            "currency": transfer.currency,
            "reference": transfer.id,
        }
        if transfer.direction == DEPOSIT:
            return base | {
                "pay_to": self.bank_account,
                "steps": "Transfer the amount to the account above and quote the reference in "
                "the payment's remark; the operator credits it once it is on the statement.",
            }
        return base | {
            "pay_to": transfer.reference,
            "steps": "The exchange's operator pays the amount to the account above and "
            "confirms the withdrawal with the bank's transaction reference.",
        }

    def confirm(self, transfer: Transfer, rail_ref: str) -> str:
        """The bank's transaction serial number: 4-64 letters, digits, ``. _ / -``."""
        ref = re.sub(r"\s+", "", rail_ref or "").upper()
        if not BANK_REF.fullmatch(ref):
            raise InvalidRailReference(
                "a bank transaction reference is 4-64 letters, digits, '.', '_', '/' or '-'"
            )
        return ref


class WalletProvider(Protocol):
    """A digital RMB wallet operator's interface, as the exchange's wallet sees it."""

    name: str

    def collection_wallet(self) -> str:
        """The exchange's wallet id that members pay deposits into."""
        ...

    def verify(self, transaction_id: str, *, direction: str, amount_fen: int, to: str) -> str:
        """The operator's normalised transaction id, once it confirms that ``amount_fen``
        moved in ``direction`` (to the exchange's wallet, or to the wallet ``to``); raises
        ``InvalidRailReference`` otherwise."""
        ...


class DigitalRmbRail:
    """Digital RMB (e-CNY) wallet payments, through a configured ``WalletProvider``."""

    name = "digital_rmb"

    def __init__(self, wallet: WalletProvider | None = None) -> None:
        self.wallet = wallet

    def _provider(self, transfer: Transfer) -> WalletProvider:
        if self.wallet is None:
            raise RailUnavailable(
                "no digital RMB wallet provider is configured on this exchange; "
                "use the bank_transfer rail",
                rail=self.name,
            )
        if transfer.currency != "CNY":
            raise CurrencyMismatch("the digital RMB rail carries CNY only")
        return self.wallet

    def instructions(self, transfer: Transfer) -> dict[str, Any]:
        wallet = self._provider(transfer)
        base = {
            "rail": self.name,
            "amount_fen": transfer.amount_fen,
            "currency": transfer.currency,
            "reference": transfer.id,
            "provider": wallet.name,
        }
        if transfer.direction == DEPOSIT:
            return base | {
                "pay_to": wallet.collection_wallet(),
                "steps": "Pay the amount from your digital RMB wallet to the wallet above, "
                "quoting the reference.",
            }
        return base | {
            "pay_to": transfer.reference,
            "steps": "The exchange pays the amount to the wallet above and confirms with the "
            "wallet operator's transaction id.",
        }

    def confirm(self, transfer: Transfer, rail_ref: str) -> str:
        wallet = self._provider(transfer)
        return wallet.verify(
            (rail_ref or "").strip(),
            direction=transfer.direction,
            amount_fen=transfer.amount_fen,
            to=transfer.reference,
        )


def rails(settings: Settings, wallet: WalletProvider | None = None) -> dict[str, PaymentRail]:
    """The exchange's rails by name. ``wallet`` enables the digital RMB rail."""
    return {
        BankTransferRail.name: BankTransferRail(settings.bank_account),
        DigitalRmbRail.name: DigitalRmbRail(wallet),
    }


def rail_named(registry: Mapping[str, PaymentRail], name: str) -> PaymentRail:
    rail = registry.get(name)
    if rail is None:
        raise UnknownRail(f"no payment rail {name!r}; known: {', '.join(sorted(registry))}")
    return rail


# ---------------------------------------------------------------- the commands


def transfer_state(t: Transfer) -> dict[str, Any]:
    """What the ledger commits to of a transfer (the bank reference only as its hash)."""
    return {
        "id": t.id,
        "direction": t.direction,
        "org_id": t.org_id,
        "rail": t.rail,
        "amount_fen": t.amount_fen,
        "currency": t.currency,
        "reference_sha256": reference_hash(t.reference),
        "rail_ref": t.rail_ref,
        "status": t.status,
        "decided_by": t.decided_by,
        "reason": t.reason,
    }


def _record(uow: UnitOfWork, t: Transfer) -> None:
    body: dict[str, Any] = {
        "org_id": t.org_id,
        "rail": t.rail,
        "amount_fen": t.amount_fen,
        "currency": t.currency,
        "reference_sha256": reference_hash(t.reference),
        "status": t.status,
    }
    if t.rail_ref is not None:
        body["rail_ref"] = t.rail_ref
    uow.record(f"{t.direction}.{t.status}", t.id, body, transfer_state(t), (t.org_id,))


def _legs(t: Transfer, kind: str) -> Movement:
    org, rail, a = t.org_id, f"rail:{t.rail}", t.amount_fen
    legs = {
        "deposit": (Leg(rail, AccountKind.clearing, -a), Leg(org, AccountKind.available, a)),
        "withdrawal.request": (
            Leg(org, AccountKind.available, -a),
            Leg(org, AccountKind.withdrawing, a),
        ),
        "withdrawal.paid": (
            Leg(org, AccountKind.withdrawing, -a),
            Leg(rail, AccountKind.clearing, a),
        ),
        "withdrawal.returned": (
            Leg(org, AccountKind.withdrawing, -a),
            Leg(org, AccountKind.available, a),
        ),
    }[kind]
    return Movement(kind, t.id, t.currency, legs)


def request(
    uow: UnitOfWork,
    principal: Principal,
    registry: Mapping[str, PaymentRail],
    direction: str,
    amount_fen: int,
    currency: str,
    rail_name: str,
    reference: str,
) -> tuple[Transfer, dict[str, Any]]:
    """A member asks to deposit (any member) or withdraw (an administrator) money of its own
    organisation; a withdrawal sets the amount aside at once. Returns the transfer and the
    rail's instructions."""
    if direction not in DIRECTIONS:
        raise ValueError(direction)
    authorize(principal, f"{direction}.create", principal.org_id)
    check_money(amount_fen, currency)
    reference = reference.strip()
    if direction == WITHDRAWAL and not reference:
        raise ValidationFailed(
            "a withdrawal needs the payee account's reference", field="reference"
        )
    rail = rail_named(registry, rail_name)
    t = Transfer(
        id=new_id("trf"),
        direction=direction,
        org_id=principal.org_id,
        rail=rail.name,
        amount_fen=amount_fen,
        currency=currency,
        reference=reference,
        rail_ref=None,
        status=TransferStatus.requested,
        created_at=utcnow(),
    )
    instructions = rail.instructions(t)  # an unavailable rail refuses before anything is kept
    uow.session.add(t)
    if direction == WITHDRAWAL:
        services.move(uow, _legs(t, "withdrawal.request"))
    uow.session.flush()
    _record(uow, t)
    return t, instructions


def decide(
    uow: UnitOfWork,
    principal: Principal,
    registry: Mapping[str, PaymentRail],
    transfer_id: str,
    step: str,
    *,
    direction: str | None = None,
    rail_ref: str | None = None,
    reason: str | None = None,
) -> Transfer:
    """The operator confirms (with the rail's reference) or rejects (with a reason) a
    requested transfer. ``direction``, when given, must be the transfer's."""
    if step not in ("confirm", "reject"):
        raise ValueError(step)
    t = uow.session.get(Transfer, transfer_id, with_for_update=True, populate_existing=True)
    if t is None or (direction is not None and t.direction != direction):
        raise NotFound(f"{direction or 'transfer'} {transfer_id} not found")
    authorize(principal, f"{t.direction}.{step}", t.org_id)
    assert_untampered(uow, t.id, transfer_state(t))
    if t.status != TransferStatus.requested:
        raise InvalidTransition(
            f"cannot {step} a {t.direction} that is {t.status}", current_status=t.status
        )
    if step == "confirm":
        ref = rail_named(registry, t.rail).confirm(t, rail_ref or "")
        used = uow.session.scalar(
            select(Transfer.id).where(
                Transfer.rail == t.rail,
                Transfer.rail_ref == ref,
                Transfer.status == TransferStatus.confirmed,
            )
        )
        if used is not None:
            raise RailReferenceUsed(
                f"the {t.rail} reference {ref} already confirmed {used}", transfer_id=used
            )
        services.move(uow, _legs(t, "deposit" if t.direction == DEPOSIT else "withdrawal.paid"))
        t.rail_ref = ref
        t.status = TransferStatus.confirmed
    else:
        if not (reason or "").strip():
            raise ValidationFailed(f"rejecting a {t.direction} needs a reason", field="reason")
        if t.direction == WITHDRAWAL:
            services.move(uow, _legs(t, "withdrawal.returned"))
        t.reason = (reason or "").strip()
        t.status = TransferStatus.rejected
    t.decided_by = principal.ref
    t.decided_at = utcnow()
    try:
        uow.session.flush()
    except IntegrityError as exc:  # the same reference confirmed concurrently elsewhere
        raise RailReferenceUsed(
            f"the {t.rail} reference {t.rail_ref} already confirmed another transfer"
        ) from exc
    _record(uow, t)
    return t


def list_transfers(
    session: Session,
    principal: Principal,
    org_id: str | None = None,
    direction: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Transfer]:
    """A member's own transfers, newest first; any organisation's for the exchange's staff."""
    reach = authorize(principal, "transfer.list", org_id)
    q = select(Transfer)
    if reach is Reach.OWN:
        q = q.where(Transfer.org_id == principal.org_id)
    elif org_id is not None:
        q = q.where(Transfer.org_id == org_id)
    if direction:
        q = q.where(Transfer.direction == direction)
    if status:
        q = q.where(Transfer.status == status)
    q = q.order_by(Transfer.created_at.desc(), Transfer.id).limit(limit).offset(offset)
    return list(session.scalars(q))
