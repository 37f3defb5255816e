"""Idempotency-Key: retries replay, conflicts are refused, concurrency has one effect."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from databourse.participants.models import Organisation
from tests import factories
from tests.conftest import Exchange, quick_party


def _count(ex: Exchange, uscc: str) -> int:
    with ex.ctx.reads() as s:
        return int(s.scalar(select(func.count()).where(Organisation.uscc == uscc)) or 0)


def test_retry_with_same_key_replays_the_first_result(exchange: Exchange) -> None:
    body = factories.application()
    key = {"Idempotency-Key": secrets.token_hex(8)}
    with exchange.client() as c:
        first = c.post("/applications", json=body, headers=key)
        second = c.post("/applications", json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert _count(exchange, body["uscc"]) == 1


def test_same_key_with_another_body_is_a_422(exchange: Exchange) -> None:
    key = {"Idempotency-Key": secrets.token_hex(8)}
    with exchange.client() as c:
        assert c.post("/applications", json=factories.application(), headers=key).status_code == 201
        other = factories.application()
        r = c.post("/applications", json=other, headers=key)
    assert r.status_code == 422
    assert r.json()["type"] == "urn:databourse:problem:idempotency-key-reused"
    assert _count(exchange, other["uscc"]) == 0


def test_invalid_key_is_refused(exchange: Exchange) -> None:
    with exchange.client() as c:
        r = c.post(
            "/applications", json=factories.application(), headers={"Idempotency-Key": "x" * 300}
        )
    assert r.status_code == 422
    assert r.json()["type"] == "urn:databourse:problem:invalid-idempotency-key"


def test_concurrent_requests_with_one_key_have_one_effect(exchange: Exchange) -> None:
    body = factories.application()
    key = {"Idempotency-Key": secrets.token_hex(8)}

    def send(_: int) -> tuple[int, str]:
        with exchange.client() as c:
            r = c.post("/applications", json=body, headers=key)
            return r.status_code, r.json()["organisation"]["id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    assert {status for status, _ in results} == {201}
    assert len({org for _, org in results}) == 1
    assert _count(exchange, body["uscc"]) == 1


def test_keys_are_scoped_to_their_owner(exchange: Exchange) -> None:
    a, b = quick_party(exchange, ["buyer"]), quick_party(exchange, ["buyer"])
    key = {"Idempotency-Key": "shared-key-123"}
    with a.client() as ca, b.client() as cb:
        ra = ca.post(f"/organisations/{a.id}/api-keys", json={"name": "k"}, headers=key)
        rb = cb.post(f"/organisations/{b.id}/api-keys", json={"name": "k"}, headers=key)
    assert ra.status_code == rb.status_code == 201
    assert ra.json()["id"] != rb.json()["id"]


def test_replayed_api_key_creation_never_reveals_the_secret_again(exchange: Exchange) -> None:
    party = quick_party(exchange, ["buyer"])
    key = {"Idempotency-Key": secrets.token_hex(8)}
    with party.client() as c:
        first = c.post(f"/organisations/{party.id}/api-keys", json={"name": "k"}, headers=key)
        again = c.post(f"/organisations/{party.id}/api-keys", json={"name": "k"}, headers=key)
    assert first.json()["key"]
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["key"] is None


def test_an_expired_key_may_be_used_again(exchange: Exchange) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from databourse.idempotency import IdempotencyRecord

    key = {"Idempotency-Key": secrets.token_hex(8)}
    with exchange.client() as c:
        assert c.post("/applications", json=factories.application(), headers=key).status_code == 201
        with exchange.ctx.writes() as s, s.begin():
            s.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.key == key["Idempotency-Key"])
                .values(created_at=datetime.now(UTC) - timedelta(days=2))
            )
        other = factories.application()
        r = c.post("/applications", json=other, headers=key)
    assert r.status_code == 201
    assert _count(exchange, other["uscc"]) == 1
