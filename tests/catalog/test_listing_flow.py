"""The supply side end to end over HTTP: register, upload, list, search, match, suspend."""

from __future__ import annotations

import httpx

from databourse.ledger.receipts import verify as verify_receipt
from tests import factories
from tests.conftest import Exchange, Party, quick_party

ROWS = [
    ("71路", "2026-03-02 08:00", "人民广场", "1532"),
    ("71路", "2026-03-02 09:00", "人民广场", "1210"),
    ("49路", "2026-03-02 08:00", "徐家汇", "987"),
    ("927路", "2026-03-02 08:00", "虹桥枢纽", "640"),
]


def gbk_csv() -> bytes:
    lines = ["线路,时段,站点,上车人次"] + [",".join(r) for r in ROWS]
    return ("\n".join(lines) + "\n").encode("gbk")


def register_asset(ex: Exchange, merchant: Party, **over: object) -> str:
    with merchant.client() as c:
        r = c.post("/assets", json=factories.asset(**over))
        assert r.status_code == 201, r.text
        asset_id = r.json()["id"]
        assert c.post(f"/assets/{asset_id}/submit", json={}).status_code == 200
    with ex.as_demo("operator") as op:
        r = op.post(f"/assets/{asset_id}/register", json={"reason": "documents checked"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "registered"
    return str(asset_id)


def upload(
    c: httpx.Client, asset_id: str, data: bytes, name: str = "ridership.csv"
) -> httpx.Response:
    return c.post(f"/assets/{asset_id}/files", files={"file": (name, data, "text/csv")})


def listed_product(ex: Exchange, merchant: Party, **over: object) -> tuple[str, str]:
    asset_id = register_asset(ex, merchant)
    with merchant.client() as c:
        assert upload(c, asset_id, gbk_csv()).status_code == 201
        body = factories.product([asset_id], ["线路", "时段", "站点", "上车人次"], **over)
        r = c.post("/products", json=body)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        r = c.post(f"/products/{pid}/submit", json={})
        assert r.status_code == 200, r.text
    with ex.as_demo("operator") as op:
        r = op.post(f"/products/{pid}/approve", json={"reason": "checklist passed"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "listed"
    return asset_id, str(pid)


def test_done_when_scenario(exchange: Exchange) -> None:
    merchant = quick_party(exchange, ["merchant"])
    asset_id = register_asset(exchange, merchant)
    with merchant.client() as c:
        cert = c.get(f"/assets/{asset_id}/certificate")
        assert cert.status_code == 200, cert.text
        verified = verify_receipt(cert.json(), exchange.ctx.log_key.verifier)
        assert verified.entry["subject"] == asset_id
        assert verified.entry["kind"] == "asset.registered"

        r = upload(c, asset_id, gbk_csv())
        assert r.status_code == 201, r.text
        f = r.json()
        assert f["encoding"] == "gb18030"
        assert f["row_count"] == len(ROWS)
        assert [col["name"] for col in f["columns"]] == ["线路", "时段", "站点", "上车人次"]

        body = factories.product([asset_id], ["线路", "时段", "站点", "上车人次"])
        r = c.post("/products", json=body)
        assert r.status_code == 201, r.text
        product = r.json()
        assert product["sample"]["rows"][0][0] == "71路"
        pid = product["id"]
        assert c.post(f"/products/{pid}/submit", json={}).status_code == 200

    with exchange.as_demo("buyer_a") as buyer:
        assert buyer.get(f"/products/{pid}").status_code == 404  # not listed yet

    with exchange.as_demo("operator") as op:
        checklist = op.get(f"/products/{pid}/checklist").json()
        assert all(item["passed"] for item in checklist), checklist
        r = op.post(f"/products/{pid}/approve", json={"reason": "ok"})
        assert r.status_code == 200, r.text

    with exchange.as_demo("buyer_a") as buyer:
        for q in ("公交客流", "bus ridership"):
            r = buyer.get("/catalog/search", params={"q": q})
            assert r.status_code == 200, r.text
            assert pid in [h["id"] for h in r.json()["hits"]], (q, r.json())
        r = buyer.post(
            "/demands",
            json={
                "title": "公交客流数据",
                "need": "需要上海公交线路的小时客流，用于交通规划研究",
                "purpose": "research",
                "required_fields": ["线路", "上车人次"],
            },
        )
        assert r.status_code == 201, r.text
        assert pid in [m["product_id"] for m in r.json()["matches"]]

    with merchant.client() as c:
        notices = c.get("/notices").json()
        assert any(n["product_id"] == pid and n["side"] == "merchant" for n in notices)

    with exchange.as_demo("regulator") as reg:
        r = reg.post(f"/products/{pid}/suspend", json={"reason": "complaint under review"})
        assert r.status_code == 200, r.text
    with exchange.as_demo("buyer_a") as buyer:
        r = buyer.get("/catalog/search", params={"q": "公交客流"})
        assert pid not in [h["id"] for h in r.json()["hits"]]
        assert buyer.get(f"/products/{pid}").status_code == 404


def test_the_readme_examples_list_and_match(exchange: Exchange) -> None:
    """The request bodies of README's walkthrough (examples/) stay valid."""
    import json
    from pathlib import Path

    examples = Path(__file__).parents[2] / "examples"
    merchant = quick_party(exchange, ["merchant"])
    with merchant.client() as c:
        r = c.post("/assets", json=json.loads((examples / "asset.json").read_text("utf-8")))
        assert r.status_code == 201, r.text
        asset_id = r.json()["id"]
        assert c.post(f"/assets/{asset_id}/submit", json={}).status_code == 200
    with exchange.as_demo("operator") as op:
        assert op.post(f"/assets/{asset_id}/register", json={}).status_code == 200
    with merchant.client() as c:
        data = (examples / "metro-station-flow-gbk.csv").read_bytes()
        r = upload(c, asset_id, data, "metro-station-flow-gbk.csv")
        assert r.status_code == 201, r.text
        assert r.json()["encoding"] == "gb18030"
        body = json.loads((examples / "product.json").read_text("utf-8"))
        body["asset_ids"] = [asset_id]
        r = c.post("/products", json=body)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        assert c.post(f"/products/{pid}/submit", json={}).status_code == 200
    with exchange.as_demo("operator") as op:
        assert op.post(f"/products/{pid}/approve", json={}).status_code == 200
    buyer = quick_party(exchange, ["buyer"])
    with buyer.client() as c:
        for q in ("地铁客流", "metro station entries"):
            hits = c.get("/catalog/search", params={"q": q}).json()["hits"]
            assert hits and hits[0]["id"] == pid, (q, hits)
        demand = json.loads((examples / "demand.json").read_text("utf-8"))
        matches = c.post("/demands", json=demand).json()["matches"]
        assert matches[0]["product_id"] == pid
    with exchange.as_demo("regulator") as reg:
        assert reg.post(f"/products/{pid}/suspend", json={"reason": "test"}).status_code == 200
