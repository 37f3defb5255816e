"""``databourse money …`` against the running exchange's database, as its operator would."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from databourse.cli import app
from databourse.settings import get_settings
from tests.conftest import Exchange, quick_party


class Money:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(app, ["money", *args])
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result


@pytest.fixture
def money(exchange: Exchange, store_url: str) -> Iterator[Money]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABOURSE_DATA_DIR", str(exchange.ctx.settings.data_dir))
        mp.setenv("DATABOURSE_DATABASE_URL", store_url)
        get_settings.cache_clear()
        yield Money()
    get_settings.cache_clear()


def test_deposits_withdrawals_and_fees_through_the_console(
    exchange: Exchange, money: Money
) -> None:
    member = quick_party(exchange, ["buyer"])
    out = money("deposit", "5000", "--as", member.email).stdout
    [trf] = set(re.findall(r"\btrf_[0-9a-f]{20}\b", out))
    assert "requested" in out and "pay_to: DataBourse Exchange client money account" in out
    ref = f"BK-CLI-{secrets.token_hex(4)}"
    assert "confirmed" in money("confirm", trf, "--rail-ref", ref).stdout
    assert "¥50.00" in money("accounts", "--org", member.id).stdout
    statement = money("statement", "--as", member.email).stdout
    assert "deposit" in statement and "available: ¥0.00 → ¥50.00" in statement

    out = money("withdraw", "100", "--as", member.email, "--to", "acct-1").stdout
    [wdr] = set(re.findall(r"\btrf_[0-9a-f]{20}\b", out))
    assert "rejected" in money("reject", wdr, "--reason", "payee unknown").stdout
    assert wdr in money("transfers", "--org", member.id).stdout
    failed = money("confirm", wdr, "--rail-ref", "BK-123456", ok=False)
    assert failed.exit_code == 1 and "invalid-transition" in failed.output

    assert "member" in money("set-tier", member.id, "member").stdout
    assert "invalid-fee-rule" in money("set-tier", member.id, "gold", ok=False).output
    # the strategic tier's default, set as a rule: the fee in force does not change
    assert "100 bp" in money("set-fee", "compute", "strategic", "100", "--min", "0").stdout
    assert "strategic" in money("fees").stdout
    assert "0 payouts" in money("payout-commissions", "--agent", member.id).stdout
