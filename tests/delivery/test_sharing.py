"""Delta Sharing over real HTTP, read with the official ``delta-sharing`` client.

The demo world's Nanfeng (buyer_a) holds a settled yearly subscription on the bus-ridership
dataset: it gets a profile, and the official client lists and reads the table — the
buyer's fingerprinted copy, with the licensed fields. Then the same client is refused
after revocation, rotation, a suspension (of the contract, of the merchant) and expiry;
another buyer's profile does not reach this share; reads are metered and every grant and
revocation is on the ledger.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import delta_sharing
import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from requests import HTTPError
from sqlalchemy import select

from databourse.assets.models import DataFile
from databourse.assets.tabular import stored_batches
from databourse.db import advance_clock, utcnow
from databourse.delivery import access, copies, sharing
from databourse.delivery.models import Copy, Recipient
from databourse.hashing import state_hash
from databourse.ledger.models import LedgerEntry
from databourse.market.models import Contract
from databourse.settlement import usage
from tests.conftest import TLS, Exchange, quick_party


@dataclass
class World:
    ex: Exchange
    contract_id: str  # Nanfeng's subscription on the bus-ridership dataset
    api_contract_id: str  # Nanfeng's metered contract on the risk-score API
    buyer: str  # bearer tokens of the API
    merchant: str
    operator: str
    merchant_org_id: str

    def api(self, token: str) -> httpx.Client:
        return self.ex.client(token)

    def protocol(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.ex.base_url + "/delta-sharing", headers=headers, timeout=30, verify=TLS
        )


@pytest.fixture(scope="module")
def world(exchange: Exchange) -> World:
    buyer_a = exchange.world["buyer_a"]
    with exchange.ctx.reads() as s:
        rows = dict(
            s.execute(
                select(Contract.product_kind, Contract.id).where(Contract.buyer_org_id == buyer_a)
            ).all()
        )
    return World(
        exchange,
        rows["dataset"],
        rows["api"],
        exchange.login(_email("buyer_a")),
        exchange.login(_email("merchant_a")),
        exchange.login(_email("operator")),
        exchange.world["merchant_a"],
    )


def _email(key: str) -> str:
    from databourse import demo

    return next(d.email for d in demo.DEMO_ORGS if d.key == key)


def _issue(w: World, token: str, contract_id: str, path: Path) -> dict[str, Any]:
    with w.api(token) as c:
        r = c.post(f"/contracts/{contract_id}/share-profile")
    assert r.status_code == 201, r.text
    profile = r.json()
    path.write_text(json.dumps(profile))
    return dict(profile)


def _refused(fn: Any, status: int) -> None:
    with pytest.raises(HTTPError) as caught:
        fn()
    assert caught.value.response is not None
    assert caught.value.response.status_code == status, caught.value.response.text
    body = caught.value.response.json()
    assert set(body) == {"errorCode", "message"}


def _copy_frame(w: World, contract_id: str) -> tuple[Copy, pd.DataFrame]:
    with w.ex.ctx.reads() as s:
        copy = s.scalars(select(Copy).where(Copy.contract_id == contract_id)).one()
        s.expunge(copy)
    with w.ex.ctx.store.open(copy.object_key) as f:
        table = pq.read_table(f)
    return copy, table.to_pandas(date_as_object=True)


def _original(w: World, df: DataFile) -> pa.Table:
    with w.ex.ctx.store.open(df.object_key) as f:
        names = [c["name"] for c in df.columns]
        batches = [
            pa.RecordBatch.from_arrays(cols, names=names)
            for _, cols in stored_batches(f, df.format, df.encoding, 0)
        ]
    return pa.Table.from_batches(batches)


def test_the_official_client_reads_the_buyers_fingerprinted_copy(
    world: World, tmp_path: Path
) -> None:
    w, cid = world, world.contract_id
    with w.ex.ctx.reads() as s:
        grant = access.usable(s, cid)
        (table,) = copies.tables(s, grant)
        df = s.get(DataFile, table.data_file_id)
        assert df is not None
        s.expunge(df)
        licensed = [n for n, _ in copies.licensed_columns(df, grant)]
        rows_before = usage.total(s, cid, "row")
    profile_path = tmp_path / "nanfeng.share"
    profile = _issue(w, w.buyer, cid, profile_path)
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"] == w.ex.base_url + "/delta-sharing"
    assert profile["bearerToken"].startswith("dbs_")
    assert profile["expirationTime"].endswith("Z")

    client = delta_sharing.SharingClient(str(profile_path))
    assert [s.name for s in client.list_shares()] == [cid]
    tables = client.list_all_tables()
    assert [(t.share, t.schema, t.name) for t in tables] == [(cid, "data", table.name)]

    url = f"{profile_path}#{cid}.data.{table.name}"
    frame = delta_sharing.load_as_pandas(url)
    assert len(frame) == df.row_count
    assert list(frame.columns) == licensed
    # the values are the buyer's copy, cell for cell
    copy, expected = _copy_frame(w, cid)
    assert copy.row_count == df.row_count
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), expected, check_dtype=False)
    # … which is fingerprinted: numeric cells carry marks, the text is the original's
    original = _original(w, df)
    changed = 0
    for name, kind in copies.licensed_columns(df, grant):
        before = pd.Series(original.column(name).to_pylist())
        if kind == "integer":
            changed += int((pd.to_numeric(before).to_numpy() != frame[name].to_numpy()).sum())
        elif kind == "string":
            assert before.tolist() == frame[name].tolist(), name
    assert changed > 0

    # the read is metered on the contract (rows, once per link)
    w.ex.ctx.meter("share").flush()
    with w.ex.ctx.reads() as s:
        assert usage.total(s, cid, "row") - rows_before >= df.row_count

    # the table's version is the data file's; metadata carries the Spark schema
    with w.protocol(profile["bearerToken"]) as c:
        base = f"/shares/{cid}/schemas/data/tables/{table.name}"
        head = c.head(base + "/version")
        assert head.status_code == 200 and head.headers["delta-table-version"] == str(df.version)
        got = c.get(base + "/metadata")
        assert got.headers["delta-table-version"] == str(df.version)
        protocol, metadata = (json.loads(line) for line in got.text.splitlines())
        assert protocol == {"protocol": {"minReaderVersion": 1}}
        fields = json.loads(metadata["metaData"]["schemaString"])["fields"]
        assert [f["name"] for f in fields] == licensed
        assert metadata["metaData"]["format"] == {"provider": "parquet"}
        assert metadata["metaData"]["partitionColumns"] == []


def test_protocol_errors_and_what_is_not_supported(world: World, tmp_path: Path) -> None:
    w, cid = world, world.contract_id
    token = _issue(w, w.buyer, cid, tmp_path / "p.share")["bearerToken"]
    with w.protocol(None) as c:
        r = c.get("/shares")
        assert r.status_code == 401
        assert r.json()["errorCode"] == "UNAUTHENTICATED"
    for bad in ("nonsense", "dbs_000000000000." + "x" * 43, token[:-2] + "xx"):
        with w.protocol(bad) as c:
            r = c.get("/shares")
            assert r.status_code == 401, r.text
            assert set(r.json()) == {"errorCode", "message"}
            assert r.json()["errorCode"] == "UNAUTHENTICATED"
    with w.protocol(token) as c:
        tables = c.get(f"/shares/{cid}/all-tables").json()["items"]
        name = tables[0]["name"]
        base = f"/shares/{cid}/schemas/data/tables/{name}"
        for path in (
            "/shares/ctr_nobody",
            f"/shares/{cid}/schemas/other/tables",
            f"/shares/{cid}/schemas/data/tables/nothing/metadata",
        ):
            r = c.get(path)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
        # share names are case-insensitive; the schema is listed
        assert c.get(f"/shares/{cid.upper()}").json() == {"share": {"name": cid, "id": cid}}
        assert c.get(f"/shares/{cid}/schemas").json()["items"] == [{"name": "data", "share": cid}]
        # paging: an empty first page points at the rest
        first = c.get("/shares", params={"maxResults": 0}).json()
        assert first["items"] == []
        rest = c.get("/shares", params={"pageToken": first["nextPageToken"]}).json()
        assert [s["name"] for s in rest["items"]] == [cid] and "nextPageToken" not in rest
        for params in ({"pageToken": "!!"}, {"maxResults": -1}, {"maxResults": "x"}):
            r = c.get("/shares", params=params)
            assert r.status_code == 400, r.text
            assert r.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
        # time travel and change data feed are refused, clearly
        for body in ({"version": 999}, {"timestamp": "2026-01-01T00:00:00Z"}, {"limitHint": "x"}):
            r = c.post(base + "/query", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["errorCode"] == "INVALID_PARAMETER_VALUE"
        r = c.post(base + "/query", content=b"{not json")
        assert r.status_code == 400
        r = c.get(base + "/changes", params={"startingVersion": 0})
        assert r.status_code == 400 and "not supported" in r.json()["message"]
        r = c.get(base + "/version", params={"startingTimestamp": "2026-01-01T00:00:00Z"})
        assert r.status_code == 400
        # a client that reads only the delta response format is told to use parquet
        r = c.get(
            base + "/metadata", headers={"delta-sharing-capabilities": "responseformat=delta"}
        )
        assert r.status_code == 400 and "parquet" in r.json()["message"]
        # one that accepts both is answered in parquet, and says so
        both = {"delta-sharing-capabilities": "responseformat=delta,parquet"}
        r = c.post(base + "/query", json={"limitHint": 5}, headers=both)
        assert r.status_code == 200, r.text
        assert r.headers["delta-sharing-capabilities"] == "responseformat=parquet"
        lines = [json.loads(line) for line in r.text.splitlines()]
        (file_line,) = [x["file"] for x in lines if "file" in x]
        assert file_line["url"].startswith(w.ex.base_url + "/files/")
        assert json.loads(file_line["stats"])["numRecords"] > 0
    # the protocol's routes are not in the OpenAPI document (their own tokens, no action)
    with httpx.Client(base_url=w.ex.base_url, verify=TLS) as c:
        paths = c.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/delta-sharing")]


def test_revocation_and_rotation_refuse_the_next_request(world: World, tmp_path: Path) -> None:
    w, cid = world, world.contract_id
    first = tmp_path / "first.share"
    _issue(w, w.buyer, cid, first)
    client = delta_sharing.SharingClient(str(first))
    assert client.list_all_tables()
    # rotation: issuing again stops the previous token
    second = tmp_path / "second.share"
    _issue(w, w.buyer, cid, second)
    _refused(client.list_all_tables, 401)
    client = delta_sharing.SharingClient(str(second))
    (table,) = client.list_all_tables()
    # the state is shown without the token
    with w.api(w.merchant) as c:
        shown = c.get(f"/contracts/{cid}/share-profile").json()
    assert shown["status"] == "active" and "bearerToken" not in json.dumps(shown)
    # the merchant revokes: the same client is refused at once
    with w.api(w.merchant) as c:
        r = c.delete(f"/contracts/{cid}/share-profile")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "revoked"
    _refused(client.list_all_tables, 401)
    _refused(lambda: delta_sharing.load_as_pandas(f"{second}#{cid}.data.{table.name}"), 401)
    # the ledger has each grant and revocation, committing to the row (token hash included)
    profile = json.loads(second.read_text())
    prefix = sharing.split_token(profile["bearerToken"])
    with w.ex.ctx.reads() as s:
        rec = s.scalars(select(Recipient).where(Recipient.prefix == prefix)).one()
        entries = s.scalars(
            select(LedgerEntry).where(LedgerEntry.subject == rec.id).order_by(LedgerEntry.seq)
        ).all()
        assert [e.kind for e in entries] == ["share.granted", "share.revoked"]
        assert entries[-1].state_hash == state_hash(sharing.recipient_state(rec))
        for e in entries:
            assert profile["bearerToken"] not in e.entry.decode()
            assert json.loads(e.entry)["body"]["contract_id"] == cid


def test_a_file_link_dies_with_the_profile_it_was_issued_to(world: World, tmp_path: Path) -> None:
    """Revoking a profile (say, its token leaked) stops the file URLs handed out under it
    too, not only the protocol's requests; a new profile's links work."""
    w, cid = world, world.contract_id
    profile = _issue(w, w.buyer, cid, tmp_path / "p.share")
    (table,) = delta_sharing.SharingClient(str(tmp_path / "p.share")).list_all_tables()

    def file_url(token: str) -> str:
        with w.protocol(token) as p:
            r = p.post(f"/shares/{cid}/schemas/data/tables/{table.name}/query", json={})
            assert r.status_code == 200, r.text
        return str(json.loads(r.text.splitlines()[2])["file"]["url"])

    url = file_url(profile["bearerToken"])
    with httpx.Client(verify=TLS, timeout=30) as c:
        assert c.get(url, headers={"Range": "bytes=-8"}).status_code == 206
        with w.api(w.buyer) as b:
            assert b.delete(f"/contracts/{cid}/share-profile").status_code == 200
        for r in (c.get(url, headers={"Range": "bytes=-8"}), c.head(url)):
            assert r.status_code == 403, r.text
        assert c.get(url).json()["type"].endswith(":invalid-signed-url")
        # rotation revokes the previous profile, and with it its links
        second = _issue(w, w.buyer, cid, tmp_path / "q.share")
        url = file_url(second["bearerToken"])
        assert c.get(url, headers={"Range": "bytes=-8"}).status_code == 206
        _issue(w, w.buyer, cid, tmp_path / "r.share")
        assert c.get(url, headers={"Range": "bytes=-8"}).status_code == 403


def test_suspension_and_expiry_refuse_the_next_request(world: World, tmp_path: Path) -> None:
    w, cid = world, world.contract_id
    path = tmp_path / "p.share"
    _issue(w, w.buyer, cid, path)
    client = delta_sharing.SharingClient(str(path))
    assert client.list_all_tables()
    reason = {"reason": "sharing test"}
    with w.api(w.operator) as op:
        assert op.post(f"/contracts/{cid}/suspend", json=reason).status_code == 200
        try:
            _refused(client.list_all_tables, 403)
        finally:
            assert op.post(f"/contracts/{cid}/reinstate", json=reason).status_code == 200
        assert client.list_all_tables()
        org = w.merchant_org_id
        assert op.post(f"/organisations/{org}/suspend", json=reason).status_code == 200
        try:
            _refused(client.list_all_tables, 403)
        finally:
            r = op.post(f"/organisations/{org}/reinstate", json=reason)
            assert r.status_code == 200, r.text
        assert client.list_all_tables()
    with w.ex.ctx.reads() as s:
        ends = s.get(Contract, cid).ends_at  # type: ignore[union-attr]
    try:
        advance_clock(ends - utcnow() + timedelta(minutes=1))
        _refused(client.list_all_tables, 401)
    finally:
        advance_clock(None)
    assert client.list_all_tables()


def test_profiles_only_for_the_buyer_of_a_dataset_contract(world: World, tmp_path: Path) -> None:
    w, cid = world, world.contract_id
    with w.api(w.buyer) as c:
        r = c.post(f"/contracts/{w.api_contract_id}/share-profile")
        assert r.status_code == 409, r.text
        assert r.json()["type"].endswith("not-deliverable")
    with w.api(w.merchant) as c:
        assert c.post(f"/contracts/{cid}/share-profile").status_code == 403
    # a replayed issue (same Idempotency-Key) neither shows the token again nor rotates it
    with w.api(w.buyer) as c:
        key = {"Idempotency-Key": secrets.token_hex(8)}
        first = c.post(f"/contracts/{cid}/share-profile", headers=key)
        again = c.post(f"/contracts/{cid}/share-profile", headers=key)
        assert first.status_code == again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert first.json()["bearerToken"] and again.json()["bearerToken"] is None
    with w.protocol(first.json()["bearerToken"]) as p:
        assert p.get("/shares").status_code == 200
    outsider = quick_party(w.ex, ["buyer"])
    with w.api(outsider.token) as c:
        assert c.post(f"/contracts/{cid}/share-profile").status_code == 404
        assert c.get(f"/contracts/{cid}/share-profile").status_code == 404


def test_another_buyers_profile_does_not_reach_this_share(world: World, tmp_path: Path) -> None:
    """A second buyer of the same dataset reads its own, differently marked copy; Nanfeng's
    share is invisible to it."""
    w, cid = world, world.contract_id
    other = quick_party(w.ex, ["buyer"])
    with w.ex.ctx.reads() as s:
        product_id = s.get(Contract, cid).product_id  # type: ignore[union-attr]
    body = {
        "product_id": product_id,
        "purpose": "research",
        "plan": "按行计费 metered per 1,000 rows",
        "billing": "invoice",
    }
    with w.api(other.token) as c, w.api(w.merchant) as m:
        key = {"Idempotency-Key": secrets.token_hex(8)}
        r = c.post("/contracts", json=body, headers=key)
        assert r.status_code == 201, r.text
        theirs = r.json()["id"]
        assert c.post(f"/contracts/{theirs}/sign").status_code == 200
        r = m.post(f"/contracts/{theirs}/sign")
        assert r.status_code == 200 and r.json()["status"] == "active", r.text
    path = tmp_path / "other.share"
    token = _issue(w, other.token, theirs, path)["bearerToken"]
    client = delta_sharing.SharingClient(str(path))
    assert [s.name for s in client.list_shares()] == [theirs]
    (table,) = client.list_all_tables()
    with w.protocol(token) as c:
        for path_ in (f"/shares/{cid}", f"/shares/{cid}/all-tables"):
            r = c.get(path_)
            assert r.status_code == 404 and r.json()["errorCode"] == "RESOURCE_DOES_NOT_EXIST"
        r = c.post(f"/shares/{cid}/schemas/data/tables/{table.name}/query", json={})
        assert r.status_code == 404
    mine = delta_sharing.load_as_pandas(f"{path}#{theirs}.data.{table.name}")
    with w.ex.ctx.reads() as s:
        grant = access.usable(s, cid)
        (shared,) = copies.tables(s, grant)
    copies.ensure(w.ex.ctx, grant, shared.data_file_id)
    _, nanfeng = _copy_frame(w, cid)
    assert len(mine) == len(nanfeng)
    assert not mine.equals(nanfeng)  # each buyer's copy carries its own marks


@pytest.fixture(autouse=True)
def _real_clock() -> Iterator[None]:
    yield
    advance_clock(None)
