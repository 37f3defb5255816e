"""Fingerprinted downloads over real HTTP on both stores: the policy at the point of
delivery, signed links, byte ranges, metering, suspension and expiry, and leak tracing."""

from __future__ import annotations

import csv
import io
import logging
import random
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from databourse.assets.models import DataFile
from databourse.catalog.models import Product
from databourse.db import advance_clock
from databourse.delivery import access, copies, fingerprint, keys, schemes
from databourse.delivery.errors import UsageRefused
from databourse.delivery.models import Copy, FingerprintScheme
from databourse.ledger import audit
from databourse.ledger.models import LedgerEntry
from databourse.market.models import Contract
from tests.conftest import TLS, Exchange
from tests.market import world
from tests.market.world import key, ok

METERED = "按行计费 metered per 1,000 rows"
PARQUET = {"purpose": "marketing", "format": "parquet"}


@pytest.fixture
def clock() -> Iterator[None]:
    yield
    advance_clock(None)


def refused(r: httpx.Response, status: int, slug: str, constraint: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == f"urn:databourse:problem:{slug}", body
    if constraint is not None:
        assert body["constraint"] == constraint, body


def bus(ex: Exchange) -> str:
    with ex.ctx.reads() as s:
        pid = s.scalar(
            select(Product.id).where(
                Product.org_id == ex.world["merchant_a"], Product.title.contains("公交")
            )
        )
    assert pid is not None
    return pid


def subscription(ex: Exchange) -> str:
    """The demo buyer's settled yearly subscription of the bus-ridership dataset."""
    with ex.ctx.reads() as s:
        cid = s.scalar(
            select(Contract.id).where(
                Contract.buyer_org_id == ex.world["buyer_a"],
                Contract.product_id == bus(ex),
                Contract.status == "active",
            )
        )
    assert cid is not None
    return cid


def metered_contract(ex: Exchange, **policy: Any) -> tuple[world.Org, str]:
    """A fresh buyer's active metered contract on the bus dataset, with a narrowed policy."""
    buyer = world.party(ex, ["buyer"])
    base = {
        "purposes": ["marketing", "research"],
        "term_days": 30,
        "territories": ["CN"],
        "onward": {"mode": "prohibited"},
        "duties": ["attribution", "delete_at_term_end"],
    }
    count = {"max_downloads": 30, **policy.pop("count", {})}  # the listing allows 30
    body = {
        "product_id": bus(ex),
        "purpose": "marketing",
        "plan": METERED,
        "term_days": 30,
        "billing": "prepaid",
        "policy": {**base, "count": count, **policy},
    }
    with world.client(ex, buyer) as b, ex.as_demo("merchant_a") as m:
        c = ok(b.post("/contracts", json=body, headers=key()), 201)
        ok(b.post(f"/contracts/{c['id']}/sign"))
        assert ok(m.post(f"/contracts/{c['id']}/sign"))["status"] == "active"
    return buyer, str(c["id"])


def fetch(ex: Exchange, url: str, **headers: str) -> httpx.Response:
    with httpx.Client(verify=TLS, timeout=30) as c:
        return c.get(url, headers=headers)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def original_rows(ex: Exchange, data_file_id: str) -> list[list[str]]:
    with ex.ctx.reads() as s:
        df = s.get(DataFile, data_file_id)
        assert df is not None
        key_, encoding = df.object_key, df.encoding or "utf-8"
    with ex.ctx.store.open(key_) as f:
        return rows_of(f.read().decode(encoding))


def test_a_buyer_downloads_its_own_fingerprinted_copy(exchange: Exchange) -> None:
    ex = exchange
    cid = subscription(ex)
    with ex.as_demo("buyer_a") as b:
        tables = ok(b.get(f"/contracts/{cid}/tables"))
        assert len(tables) == 1 and tables[0]["row_count"] == 480
        assert [c["name"] for c in tables[0]["columns"]][:2] == ["线路", "日期"]
        d = ok(b.post(f"/contracts/{cid}/downloads", json={"purpose": "research"}), 201)
        assert d["path"] == "download" and d["rows"] == 480 and d["format"] == "csv"
        r = fetch(ex, d["url"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        got = rows_of(r.text)
        p = ok(
            b.post(
                f"/contracts/{cid}/downloads", json={"purpose": "research", "format": "parquet"}
            ),
            201,
        )
        assert p["copy_sha256"] == d["copy_sha256"]  # one copy per buyer and file version
        parquet = fetch(ex, p["url"])
        assert parquet.status_code == 200
    header, body = got[0], got[1:]
    assert len(body) == 480
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == 480 and table.column_names == header
    assert [str(v) for v in table.column("上车人次").to_pylist()] == [r[4] for r in body]

    original = original_rows(ex, tables[0]["data_file_id"])
    assert original[0] == header and len(original) == len(got)
    with ex.ctx.reads() as s:
        df = s.get(DataFile, tables[0]["data_file_id"])
        assert df is not None
        scheme = schemes.scheme_for(s, df)
    changed = 0
    for mark in scheme.marks:
        i = header.index(mark.name)
        for o, c in zip(original[1:], body, strict=True):
            delta = abs(float(c[i]) - float(o[i]))
            assert delta <= mark.tolerance + 1e-9, (mark, o[i], c[i])
            changed += delta > 0
    assert changed > 50  # the copy carries marks
    for o, c in zip(original[1:], body, strict=True):  # key columns untouched, order kept
        assert o[:4] == c[:4]


def test_each_buyer_gets_a_different_copy_committed_on_the_ledger(exchange: Exchange) -> None:
    ex = exchange
    buyer, cid = metered_contract(ex)
    mine = subscription(ex)
    with world.client(ex, buyer) as b, ex.as_demo("buyer_a") as a:
        d1 = ok(b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}), 201)
        d2 = ok(a.post(f"/contracts/{mine}/downloads", json={"purpose": "research"}), 201)
    assert d1["copy_sha256"] != d2["copy_sha256"]
    assert rows_of(fetch(ex, d1["url"]).text) != rows_of(fetch(ex, d2["url"]).text)
    with ex.ctx.reads() as s:
        copy = s.scalar(select(Copy).where(Copy.contract_id == cid))
        assert copy is not None
        kinds = set(
            s.scalars(select(LedgerEntry.kind).where(LedgerEntry.subject.in_([copy.id, d1["id"]])))
        )
        df = s.get(DataFile, copy.data_file_id)
        c = s.get(Contract, cid)
        assert df is not None and c is not None
        grant = access.grant_of(c)
        scheme = fingerprint.Scheme.from_dict(copy.scheme)
    assert kinds == {"copy.made", "download.granted"}
    # making the copy again gives the bytes the ledger committed to
    secret = keys.fingerprint_key(ex.ctx.custody_secret, df.id)
    temp, sha, _, rows = copies.write_copy(ex.ctx.store, df, grant, scheme, secret)
    ex.ctx.store.delete(temp)
    assert (sha, rows) == (copy.sha256, copy.row_count)


def test_the_policy_is_enforced_at_download(exchange: Exchange) -> None:
    ex = exchange
    buyer, cid = metered_contract(ex, count={"max_downloads": 2, "max_rows": 700})
    with world.client(ex, buyer) as b, ex.as_demo("buyer_b") as other:
        refused(b.post(f"/contracts/{cid}/downloads", json={"purpose": "statistics"}),
                403, "usage-refused", "purpose")  # fmt: skip
        refused(
            b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing", "territory": "US"}),
            403, "usage-refused", "territory",
        )  # fmt: skip
        refused(other.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}),
                404, "not-found")  # fmt: skip
        first = ok(b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}), 201)
        second = ok(b.post(f"/contracts/{cid}/downloads", json=PARQUET), 201)
        refused(b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}),
                403, "usage-refused", "count")  # fmt: skip
        assert fetch(ex, first["url"]).status_code == 200  # 480 rows of 700
        assert fetch(ex, first["url"]).status_code == 200  # the same link: rows counted once
        r = fetch(ex, second["url"])  # another 480 would pass 700
        refused(r, 403, "usage-refused", "count")
        listed = ok(b.get(f"/contracts/{cid}/downloads"))
        assert [d["fetches"] for d in listed] == [2, 0]
    meter = ex.ctx.meter("download")
    meter.flush()
    with ex.as_demo("operator") as op:
        usage = ok(op.get(f"/contracts/{cid}/usage"))
    assert usage["row"]["quantity"] == 480
    assert usage["byte"]["quantity"] > 0


def test_links_expire_cannot_be_forged_and_serve_byte_ranges(
    exchange: Exchange, clock: None
) -> None:
    ex = exchange
    buyer, cid = metered_contract(ex)
    with world.client(ex, buyer) as b:
        d = ok(b.post(f"/contracts/{cid}/downloads", json=PARQUET), 201)
    url = d["url"]
    with httpx.Client(verify=TLS, timeout=30) as c:
        head = c.head(url)
        assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
        size = int(head.headers["content-length"])
        part = c.get(url, headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100
        assert part.headers["content-range"] == f"bytes 0-99/{size}"
        tail = c.get(url, headers={"Range": "bytes=-8"})
        assert tail.status_code == 206 and tail.content.endswith(b"PAR1")
        assert c.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
        mac = url.rpartition("/")[2].partition(".")[2]
        forged = url.replace(mac, secrets.token_urlsafe(32))
        refused(c.get(forged), 403, "invalid-signed-url")
    advance_clock(timedelta(minutes=ex.ctx.settings.download_link_minutes, seconds=5))
    refused(fetch(ex, url), 403, "invalid-signed-url")


def test_a_link_is_never_written_to_the_log(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """A link is a bearer credential: the request log names the route, not the token."""
    ex = exchange
    buyer, cid = metered_contract(ex)
    with world.client(ex, buyer) as b:
        d = ok(b.post(f"/contracts/{cid}/downloads", json=PARQUET), 201)
    token = d["url"].rpartition("/")[2]

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "databourse.access" and "files" in r.path]

    with caplog.at_level(logging.INFO):
        assert fetch(ex, d["url"], Range="bytes=0-9").status_code == 206
        refused(fetch(ex, d["url"] + "x"), 403, "invalid-signed-url")
        waited = 0.0
        while len(logged()) < 2 and waited < 5:  # written once the response has been sent
            time.sleep(0.05)
            waited += 0.05
    assert len(logged()) == 2 and all(r.path == "/files/…" for r in logged())
    # the server's own records (``serve`` turns uvicorn's access log off)
    server = [r for r in caplog.records if r.name.startswith("databourse")]
    text = "".join(f"{r.getMessage()} {vars(r)}" for r in server)
    assert token.partition(".")[2] not in text and token.partition(".")[0] not in text


def test_a_copy_that_fails_to_be_recorded_leaves_no_object(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy is an object and a row with its ledger entry: never the object alone."""
    ex = exchange
    buyer, cid = metered_contract(ex)
    store = ex.ctx.store

    def objects() -> list[str]:
        return list(store.fs.glob(store.path(f"copies/{cid}") + "/*"))

    def unrecorded(c: Copy) -> Any:
        raise RuntimeError("the database went away")

    with world.client(ex, buyer) as b:
        with monkeypatch.context() as m:
            m.setattr(copies, "copy_state", unrecorded)
            r = b.post(f"/contracts/{cid}/downloads", json=PARQUET)
            assert r.status_code == 500, r.text
        assert objects() == []
        d = ok(b.post(f"/contracts/{cid}/downloads", json=PARQUET), 201)
    assert fetch(ex, d["url"]).status_code == 200
    with ex.ctx.reads() as s:
        (copy,) = s.scalars(select(Copy).where(Copy.contract_id == cid)).all()
    assert objects() == [store.path(copy.object_key)]


def test_suspension_and_expiry_stop_downloads_and_links(exchange: Exchange, clock: None) -> None:
    ex = exchange
    buyer, cid = metered_contract(ex)
    with world.client(ex, buyer) as b, ex.as_demo("regulator") as reg, ex.as_demo("operator") as op:
        d = ok(b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}), 201)
        ok(reg.post(f"/contracts/{cid}/suspend", json={"reason": "inquiry"}))
        refused(fetch(ex, d["url"]), 403, "usage-refused", "suspended")  # a link handed out
        refused(b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}),
                403, "usage-refused", "suspended")  # fmt: skip
        ok(op.post(f"/contracts/{cid}/reinstate", json={"reason": "cleared"}))
        assert fetch(ex, d["url"]).status_code == 200
        d = ok(b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}), 201)
        advance_clock(timedelta(days=31))
        refused(fetch(ex, d["url"]), 403, "invalid-signed-url")  # never outlives the term
        with ex.ctx.reads() as s, pytest.raises(UsageRefused) as exc:
            access.usable(s, cid)
        assert exc.value.constraint == "term"


def leak(text: str, share: float, seed: int, round_to: int = 10) -> bytes:
    """What a leaker might post: a share of the rows, shuffled, counts rounded."""
    rows = rows_of(text)
    header, body = rows[0], rows[1:]
    rng = random.Random(seed)
    picked = rng.sample(body, int(len(body) * share))
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(header)
    for r in picked:
        r = list(r)
        for i in (4, 5):
            r[i] = str(round(int(r[i]) / round_to) * round_to)
        w.writerow(r)
    return out.getvalue().encode()


def test_the_merchant_traces_a_leak_to_its_buyer(exchange: Exchange) -> None:
    ex = exchange
    buyer, cid = metered_contract(ex)
    _, bystander = metered_contract(ex)
    with world.client(ex, buyer) as b:
        d = ok(b.post(f"/contracts/{cid}/downloads", json={"purpose": "marketing"}), 201)
        text = fetch(ex, d["url"]).text
        product = bus(ex)
        refused(
            b.post(f"/products/{product}/traces", files={"file": ("x.csv", b"a,b\n1,2\n")}),
            403, "forbidden",
        )  # fmt: skip
    stranger = world.party(ex, ["buyer"])
    with ex.as_demo("merchant_a") as m:
        r = m.post(f"/products/{product}/traces", files={"file": ("leak.csv", leak(text, 0.2, 7))})
        t = ok(r, 201)
        assert t["accused"] == [cid], t
        top = t["ranking"][0]
        assert top["contract_id"] == cid and top["accused"] and top["p_false"] < 1e-6
        assert top["buyer_org_id"] == buyer.id
        others = [s for s in t["ranking"] if s["contract_id"] != cid]
        assert bystander not in [s["contract_id"] for s in others if s["accused"]]
        assert {s["contract_id"] for s in t["ranking"]} >= {cid}
        assert ok(m.get(f"/traces/{t['id']}"))["accused"] == [cid]
        with world.client(ex, stranger) as other:  # a buyer's role reads no traces
            refused(other.get(f"/traces/{t['id']}"), 403, "forbidden")
        # the original itself, unmarked, accuses nobody
        original = original_rows(ex, t["data_file_id"])
        out = io.StringIO()
        csv.writer(out).writerows([original[0], *original[1:200]])
        plain = {"file": ("o.csv", out.getvalue())}
        clean = ok(m.post(f"/products/{product}/traces", files=plain), 201)
        assert clean["accused"] == []
        refused(m.post(f"/products/{product}/traces", files={"file": ("e.csv", b"")}),
                422, "invalid-suspect-file")  # fmt: skip
    with ex.ctx.reads() as s:
        entry = s.scalar(select(LedgerEntry).where(LedgerEntry.subject == t["id"]))
        assert entry is not None and entry.kind == "trace.completed"


def test_the_merchant_declares_the_scheme_and_an_edit_of_it_is_found(exchange: Exchange) -> None:
    ex = exchange
    with ex.ctx.reads() as s:
        from databourse.catalog import services as catalog

        asset = catalog.asset_ids_of(s, bus(ex))[0]
    with ex.as_demo("merchant_a") as m, ex.as_demo("buyer_a") as b:
        got = ok(m.get(f"/assets/{asset}/fingerprint"))
        assert got["declared"] and got["revision"] >= 1
        marks = {x["name"]: x for x in got["scheme"]["marks"]}
        assert marks["上车人次"]["relative"] == 0.03
        refused(
            b.get(f"/assets/{asset}/fingerprint"), 403, "forbidden"
        )  # not a role that reads schemes
        bad = {
            "key_columns": ["线路"],
            "marks": [{"name": "站点", "kind": "integer", "tolerance": 1}],
        }
        r = m.put(f"/assets/{asset}/fingerprint", json=bad)
        refused(r, 422, "invalid-fingerprint-scheme")
        assert r.json()["problems"]
        with ex.ctx.writes() as s:  # widen the tolerance behind the exchange's back
            row = s.get(FingerprintScheme, asset)
            assert row is not None
            original = dict(row.scheme)
            row.scheme = {**original, "gamma": 2}
            s.commit()
        try:
            with ex.ctx.reads() as s:
                found = [f for f in audit.verify(s).findings if f.subject == f"fingerprint:{asset}"]
            assert [f.problem for f in found] == ["edited"]
            body = {
                "key_columns": original["key_columns"],
                "marks": [{k: v for k, v in x.items()} for x in original["marks"]],
            }
            refused(m.put(f"/assets/{asset}/fingerprint", json=body), 409, "ledger-mismatch")
        finally:  # put the row back: the database is shared with other tests
            with ex.ctx.writes() as s:
                row = s.get(FingerprintScheme, asset)
                assert row is not None
                row.scheme = original
                s.commit()


def test_copies_made_under_different_schemes_are_traced_together(exchange: Exchange) -> None:
    """The merchant changes the scheme between two buyers' copies: a trace ranks both,
    each against the scheme its copy was made with, and names the right one."""
    ex = exchange
    first, first_contract = metered_contract(ex)
    second, second_contract = metered_contract(ex)
    with ex.ctx.reads() as s:
        from databourse.catalog import services as catalog

        asset = catalog.asset_ids_of(s, bus(ex))[0]
    with ex.as_demo("merchant_a") as m:
        declared = ok(m.get(f"/assets/{asset}/fingerprint"))["scheme"]
        original = {
            "key_columns": declared["key_columns"],
            "marks": [
                {k: x[k] for k in ("name", "kind", "tolerance", "relative")}
                for x in declared["marks"]
            ],
        }
        with world.client(ex, first) as b:
            ok(b.post(f"/contracts/{first_contract}/downloads", json={"purpose": "marketing"}), 201)
        other = {**original, "marks": [{**x, "relative": 0.05} for x in original["marks"]]}
        try:
            ok(m.put(f"/assets/{asset}/fingerprint", json=other))
            with world.client(ex, second) as b:
                d = ok(
                    b.post(
                        f"/contracts/{second_contract}/downloads", json={"purpose": "marketing"}
                    ),
                    201,
                )
                text = fetch(ex, d["url"]).text
        finally:  # later copies in this shared exchange use the demo's scheme again
            ok(m.put(f"/assets/{asset}/fingerprint", json=original))
        t = ok(
            m.post(f"/products/{bus(ex)}/traces", files={"file": ("l.csv", leak(text, 0.3, 11))}),
            201,
        )
    with ex.ctx.reads() as s:
        schemes_used = {
            c.contract_id: c.scheme["marks"][0]["relative"]
            for c in s.scalars(
                select(Copy).where(Copy.contract_id.in_([first_contract, second_contract]))
            )
        }
    assert schemes_used == {first_contract: 0.03, second_contract: 0.05}
    ranked = {r["contract_id"]: r for r in t["ranking"]}
    assert {first_contract, second_contract} <= set(ranked)
    assert ranked[second_contract]["accused"] and not ranked[first_contract]["accused"]
    assert second_contract in t["accused"] and first_contract not in t["accused"]
