"""The demo world's merchant API: a mobile-number risk-scoring service behind the gateway.

Served by the exchange itself at ``/demo/upstream`` when ``DATABOURSE_DEMO_UPSTREAM`` is
set (``make run`` sets it), so a newcomer's gateway call has a real upstream to reach. It
answers like a merchant's service would: it checks its own credential (which the merchant
registered with the gateway, sealed), and returns one field more than the product
licenses (``carrier_ref``), which the gateway strips. Scores are derived from the number,
so the same number always scores the same.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request

from databourse.delivery.keys import derive

PREFIX = "/demo/upstream"
AUTH_HEADER = "X-Demo-Key"


def demo_key(root: bytes) -> str:
    """The credential the demo merchant's service expects (derived, never stored)."""
    return derive(root, "demo-upstream").hex()


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/score")
def score(request: Request, mobile: str, x_demo_key: str | None = Header(None)) -> dict[str, Any]:
    expected = demo_key(request.app.state.ctx.custody_secret)
    if x_demo_key is None or not hmac.compare_digest(x_demo_key, expected):
        raise HTTPException(401, "the demo merchant's service wants its own key")
    digits = "".join(ch for ch in mobile if ch.isdigit())
    if len(digits) != 11 or not digits.startswith("1"):
        raise HTTPException(422, "mobile must be an 11-digit mainland China number")
    h = hashlib.sha256(digits.encode()).digest()
    return {
        "mobile": digits,
        "tenure_months": 1 + h[0] % 180,
        "status": "suspended" if h[1] < 20 else "active",
        "risk_score": h[2] % 101,
        "carrier_ref": h[3:9].hex(),  # internal: not a licensed field
    }
