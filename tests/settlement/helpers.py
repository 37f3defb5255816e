"""Shortcuts of the settlement HTTP tests: keys, deposits, balances, funded parties."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from databourse.db import new_id
from tests.assets.test_asset_api import ok


def key() -> dict[str, str]:
    """A fresh Idempotency-Key header."""
    return {"Idempotency-Key": secrets.token_hex(12)}


def bank_ref() -> str:
    """A bank transaction serial number never used before."""
    return new_id("BK").upper()


def deposit(m: httpx.Client, op: httpx.Client, amount: int, currency: str = "CNY") -> str:
    """A deposit requested by the member and confirmed by the operator; its id."""
    body = {"amount_fen": amount, "currency": currency, "reference": "6222 0000 1111 2222"}
    t = ok(m.post("/deposits", json=body, headers=key()), 201)
    done = ok(op.post(f"/deposits/{t['id']}/confirm", json={"rail_ref": bank_ref()}, headers=key()))
    assert done["status"] == "confirmed"
    return str(t["id"])


def balances(c: httpx.Client, org_id: str | None = None, currency: str = "CNY") -> dict[str, int]:
    """Balance per account kind (missing kinds are 0)."""
    params = {"org_id": org_id} if org_id else {}
    rows: list[dict[str, Any]] = ok(c.get("/accounts", params=params))
    return {r["kind"]: r["balance_fen"] for r in rows if r["currency"] == currency}
