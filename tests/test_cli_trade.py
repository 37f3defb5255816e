"""A trade through the console: ``databourse trade …`` from negotiation to a verified filing.

The real command line runs in-process against a SQLite database in a temporary directory,
seeded by ``db upgrade`` and ``demo seed`` as an operator would. The demo buyer negotiates
the yearly subscription of the demo merchant's bus-ridership product, both sign (the
merchant custodially, the buyer with its own key), the buyer deposits the price and pays,
the merchant delivers, the buyer accepts, and the trade filing verifies offline. Another
buyer's trade is suspended, reinstated, disputed and split by the operator.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from typer.testing import Result

from databourse.market.cli import trade_app
from databourse.settings import get_settings
from tests import console
from tests.console import one_id

MERCHANT = "merchant-a@databourse.example"
BUYER = "buyer-a@databourse.example"
OTHER_BUYER = "buyer-b@databourse.example"
PLAN = "包年订阅 yearly"
PRODUCT_TITLE = "上海公交线路小时客流 Shanghai hourly bus ridership by line and stop"


class Console(console.Console):
    """The console, with the trade group invoked directly and a deposit step."""

    def invoke(self, args: list[str]) -> Result:
        # ``databourse trade …`` runs the trade group; invoking the group itself spares
        # building every other group's commands on each call (most of a call's time)
        if args[0] == "trade":
            return self.runner.invoke(trade_app, args[1:])
        return super().invoke(args)

    def fund(self, email: str, fen: int) -> None:
        """The user's organisation deposits by bank transfer; the operator confirms it."""
        requested = self("money", "deposit", str(fen), "--as", email).stdout
        transfer_id = one_id("trf", requested)
        self("money", "confirm", transfer_id, "--rail-ref", f"BANK-{transfer_id[-8:]}")


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with console.seeded(Console(tmp_path_factory.mktemp("exchange"))) as c:
        yield c


def bus_ridership(merchant_email: str) -> str:
    """The id of the demo merchant's listed bus-ridership product."""
    from databourse.auth.services import principal_for_email
    from databourse.catalog.models import Product
    from databourse.db import Database

    db = Database.connect(get_settings().database)
    try:
        with db.read_sessions()() as s:
            merchant = principal_for_email(s, merchant_email).org_id
            product_id = s.scalar(
                select(Product.id).where(Product.org_id == merchant, Product.title == PRODUCT_TITLE)
            )
    finally:
        db.dispose()
    assert product_id is not None
    return product_id


def available(email: str) -> int:
    """The available balance of the user's organisation, in fen."""
    from databourse.auth.services import principal_for_email
    from databourse.db import Database
    from databourse.settlement.services import balance_of

    db = Database.connect(get_settings().database)
    try:
        with db.read_sessions()() as s:
            org_id = principal_for_email(s, email).org_id
            return balance_of(s, org_id, "available", "CNY")
    finally:
        db.dispose()


def field(name: str, text: str) -> str:
    """The value on a ``name  value`` line of a facts table."""
    found = re.search(rf"^\s*{re.escape(name)}\s+(\S.*?)\s*$", text, re.M)
    assert found, (name, text)
    return found.group(1)


def test_a_negotiated_trade_from_offer_to_verified_filing(cli: Console) -> None:
    product_id = bus_ridership(MERCHANT)

    # the buyer asks ¥10,000 for the year; the merchant counters at ¥11,000
    ask = ("--plan", PLAN, "--purpose", "research", "--price", "1000000", "--as", BUYER)
    opened = cli("trade", "negotiate", product_id, *ask).stdout
    negotiation_id = one_id("neg", opened)
    assert "¥10,000.00" in opened and "open" in opened
    countered = cli(
        "trade", "counter", negotiation_id, "--plan", PLAN, "--price", "1100000", "--as", MERCHANT
    ).stdout
    assert "countered" in countered and "¥11,000.00" in countered
    assert "not-your-turn" in cli.refused("trade", "agree", negotiation_id, "--as", MERCHANT)
    assert negotiation_id in cli("trade", "negotiations", "--as", BUYER, "--status", "open").stdout

    # the buyer agrees: the contract is drafted at the merchant's price
    agreed = cli("trade", "agree", negotiation_id, "--as", BUYER).stdout
    contract_id = one_id("ctr", agreed)
    assert "agreed" in agreed and "awaiting_signatures" in agreed
    assert field("price", agreed).startswith("¥11,000.00")
    assert field("fee", agreed).startswith("¥330.00")
    document_hash = field("document sha256", agreed)
    assert re.fullmatch(r"[0-9a-f]{64}", document_hash)

    # the merchant signs with the key the exchange holds for it
    signed = cli("trade", "sign", contract_id, "--as", MERCHANT).stdout
    assert "merchant signed" in signed and "waiting for the other party" in signed

    # the buyer makes its own key; unregistered, its signature is refused
    pem = cli.dir / "buyer.pem"
    public = cli("trade", "keygen", str(pem)).stdout.strip()
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600 and b"PRIVATE KEY" in pem.read_bytes()
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", public)
    assert "exists" in cli.refused("trade", "keygen", str(pem))
    sign_with_key = ("trade", "sign", contract_id, "--key", str(pem), "--as", BUYER)
    assert "invalid-signing-key" in cli.refused(*sign_with_key)
    key_id = one_id("sgk", cli("trade", "register-key", str(pem), "--as", BUYER).stdout)
    assert public[:20] in cli("trade", "keys", "--as", BUYER).stdout
    filed = cli(*sign_with_key).stdout
    assert key_id in filed and "filed" in filed and "signed" in filed

    shown = cli("trade", "show", contract_id, "--as", MERCHANT).stdout
    assert key_id in field("buyer signature", shown) and "own key" in shown
    assert "custodial" in field("merchant signature", shown)
    assert field("document sha256", shown) == document_hash
    assert field("status", shown) == "signed"

    # the buyer deposits the price and pays; the merchant delivers; the buyer accepts
    cli.fund(BUYER, 1_100_000)
    assert "held" in cli("trade", "pay", contract_id, "--as", BUYER).stdout
    assert "forbidden" in cli.refused("trade", "deliver", contract_id, "--as", BUYER)
    assert "delivered" in cli("trade", "deliver", contract_id, "--as", MERCHANT).stdout
    assert "released" in cli("trade", "accept", contract_id, "--as", BUYER).stdout
    listed = cli("trade", "contracts", "--as", BUYER).stdout
    assert re.search(rf"{contract_id}.*¥11,000\.00.*active.*released", listed)

    # the trade filing verifies offline with the exchange's key
    receipt = cli.dir / "receipt.json"
    cli("trade", "receipt", contract_id, "-o", str(receipt), "--as", BUYER)
    key = cli("ledger", "key").stdout.strip()
    verified = cli("trade", "verify", str(receipt), "--key", key).stdout
    assert "VALID" in verified and contract_id in verified
    assert "Nanfeng" in field("buyer", verified) and "Jingcheng" in field("merchant", verified)
    assert PRODUCT_TITLE in verified and field("price", verified) == "¥11,000.00"
    assert field("document sha256", verified) == document_hash

    # a receipt whose document claims a lower price does not
    doc = json.loads(receipt.read_text(encoding="utf-8"))
    terms = json.loads(doc["contract"]["document"])
    terms["price"]["amount_fen"] = 100
    doc["contract"]["document"] = json.dumps(terms, ensure_ascii=False)
    tampered = cli.dir / "tampered.json"
    tampered.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    result = cli("trade", "verify", str(tampered), "--key", key, ok=False)
    assert result.exit_code == 1 and "INVALID" in result.output and "hash" in result.output
    assert "VALID" not in result.output.replace("INVALID", "")

    # the scheduled run reports what it did
    assert re.search(r"metered periods billed\W+\d+", cli("trade", "run").stdout)


def test_a_disputed_trade_and_the_operators_hand(cli: Console) -> None:
    product_id = bus_ridership(MERCHANT)
    # another buyer buys at the listing's terms; both sides sign custodially
    bought = cli(
        "trade", "buy", product_id, "--plan", PLAN, "--purpose", "statistics", "--as", OTHER_BUYER
    ).stdout
    contract_id = one_id("ctr", bought)
    assert field("price", bought).startswith("¥12,000.00")  # the listing's price
    cli("trade", "sign", contract_id, "--as", OTHER_BUYER)
    assert "filed" in cli("trade", "sign", contract_id, "--as", MERCHANT).stdout

    # the operator suspends it: payment is refused until it is reinstated
    cli("trade", "suspend", contract_id, "--reason", "complaint under review")
    cli.fund(OTHER_BUYER, 1_200_000)
    before = available(OTHER_BUYER)
    assert "suspended" in cli.refused("trade", "pay", contract_id, "--as", OTHER_BUYER)
    assert "signed" in cli("trade", "reinstate", contract_id, "--reason", "cleared").stdout
    assert "held" in cli("trade", "pay", contract_id, "--as", OTHER_BUYER).stdout

    # the buyer disputes; the operator gives the merchant half, the rest goes back
    why = "half the rows are missing"
    disputed = cli("trade", "dispute", contract_id, "--reason", why, "--as", OTHER_BUYER).stdout
    assert "frozen" in disputed
    assert "cannot exceed" in cli.refused(
        "trade", "resolve", contract_id, "--to-merchant", "1200001", "--reason", "too much"
    )
    resolved = cli(
        "trade", "resolve", contract_id, "--to-merchant", "600000", "--reason", "half delivered"
    ).stdout
    assert "resolved" in resolved and "in escrow" not in resolved
    assert available(OTHER_BUYER) == before - 1_200_000 + 600_000
    shown = cli("trade", "show", contract_id).stdout
    assert field("reason", shown) == "half delivered"


def test_cancelled_withdrawn_and_refused(cli: Console) -> None:
    product_id = bus_ridership(MERCHANT)
    bought = cli(
        "trade", "buy", product_id, "--plan", PLAN, "--purpose", "research", "--as", OTHER_BUYER
    ).stdout
    contract_id = one_id("ctr", bought)
    cancelled = cli("trade", "cancel", contract_id, "--reason", "changed plans", "--as", MERCHANT)
    assert "terminated" in cancelled.stdout
    assert "already terminated" in cli.refused(
        "trade", "terminate", contract_id, "--reason", "too late"
    )
    ask = ("--plan", PLAN, "--purpose", "research", "--as", OTHER_BUYER)
    opened = cli("trade", "negotiate", product_id, *ask).stdout
    negotiation_id = one_id("neg", opened)
    assert "withdrawn" in cli("trade", "withdraw", negotiation_id, "--as", MERCHANT).stdout
    assert field("status", cli("trade", "negotiation", negotiation_id).stdout) == "withdrawn"
    assert "the negotiation is withdrawn" in cli.refused(
        "trade", "agree", negotiation_id, "--as", MERCHANT
    )
    assert "no plan named" in cli.refused(
        "trade", "buy", product_id, "--plan", "nope", "--purpose", "research", "--as", BUYER
    )
    assert "invalid input" in cli.refused(
        "trade", "buy", product_id, "--plan", PLAN, "--purpose", "gossip", "--as", BUYER
    )
    assert "not found" in cli.refused("trade", "show", "ctr_00000000000000000000", "--as", BUYER)
    assert "period" in cli("trade", "bills", "--as", OTHER_BUYER).stdout  # none yet
    assert "not found" in cli.refused(
        "trade", "pay-bill", "bil_00000000000000000000", "--as", BUYER
    )
