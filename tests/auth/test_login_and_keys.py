"""Passwords, sessions, bearer tokens and the API-key lifecycle, over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from databourse.auth.models import ApiKey, WebSession
from databourse.auth.secrets import mint_access_token
from databourse.participants.models import User
from tests import factories
from tests.conftest import Exchange, new_party, quick_party


def test_login_gives_token_and_session_cookie(exchange: Exchange) -> None:
    party = new_party(exchange, ["buyer"])
    with exchange.client() as c:
        r = c.post("/auth/login", json={"email": party.email, "password": factories.PASSWORD})
        assert r.status_code == 200
        token = r.json()["access_token"]
        assert r.json()["expires_in"] == 900
        cookie = r.cookies["databourse_session"]
        assert (
            c.get("/me", headers={"Authorization": f"Bearer {token}"}).json()["org_id"] == party.id
        )
        # the cookie alone authenticates reads and refreshes the bearer token
        assert c.get("/me").json()["org_id"] == party.id
        fresh = c.post("/auth/token")
        assert fresh.status_code == 200
        c.post("/auth/logout")
        c.cookies.set("databourse_session", cookie)
        assert c.post("/auth/token").status_code == 401
    with exchange.ctx.reads() as s:
        stored = s.scalars(select(WebSession.token_hash)).all()
        users = s.scalars(select(User.password_hash).where(User.email == party.email)).all()
    assert cookie not in stored  # only its hash is kept
    assert users[0].startswith("$argon2id$")


def test_wrong_password_and_unknown_user_look_the_same(exchange: Exchange) -> None:
    party = new_party(exchange, ["buyer"])
    with exchange.client() as c:
        a = c.post("/auth/login", json={"email": party.email, "password": "wrong-password"})
        b = c.post("/auth/login", json={"email": "nobody@x.example", "password": "whatever-pw"})
    assert a.status_code == b.status_code == 401
    assert a.json()["type"] == b.json()["type"] == "urn:databourse:problem:bad-credentials"
    assert a.json()["detail"] == b.json()["detail"]


def test_no_forged_or_expired_token_is_accepted(exchange: Exchange) -> None:
    party = quick_party(exchange, ["buyer"])
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = mint_access_token(
        exchange.ctx.tokens.secret,
        party.user_id,
        past,  # type: ignore[attr-defined]
        timedelta(minutes=15),
    )
    forged = mint_access_token(
        b"not-the-secret" * 3,
        party.user_id,
        datetime.now(UTC),  # type: ignore[attr-defined]
        timedelta(minutes=15),
    )
    for token in (expired, forged, "garbage", ""):
        with exchange.client(token or None) as c:
            r = c.get("/me")
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"


def test_api_key_lifecycle(exchange: Exchange) -> None:
    party = quick_party(exchange, ["merchant"])
    with party.client() as c:
        r = c.post(
            f"/organisations/{party.id}/api-keys",
            json={"name": "etl", "scopes": ["read", "write"], "expires_in_days": 30},
        )
        assert r.status_code == 201
        created = r.json()
        secret = created["key"]
        assert secret.startswith(created["prefix"] + ".")
        listed = c.get(f"/organisations/{party.id}/api-keys").json()
        assert [k["prefix"] for k in listed] == [created["prefix"]]
        assert "key" not in listed[0] and secret not in str(listed)
    with exchange.client(secret) as k:
        me = k.get("/me").json()
        assert (me["kind"], me["org_id"]) == ("apikey", party.id)
        # an API key cannot mint more keys
        assert k.post(f"/organisations/{party.id}/api-keys", json={"name": "x"}).status_code == 403
    with exchange.ctx.reads() as s:
        row = s.get(ApiKey, created["id"])
        assert row is not None and secret not in (row.secret_hash, row.prefix)
    with party.client() as c:
        assert c.post(f"/api-keys/{created['id']}/revoke").json()["revoked_at"]
    with exchange.client(secret) as k:
        r = k.get("/me")
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]


def test_expired_and_tampered_api_keys_fail(exchange: Exchange) -> None:
    party = quick_party(exchange, ["buyer"])
    with party.client() as c:
        created = c.post(f"/organisations/{party.id}/api-keys", json={"name": "t"}).json()
    secret = created["key"]
    with exchange.client(secret[:-1] + ("A" if secret[-1] != "A" else "B")) as k:
        assert k.get("/me").status_code == 401
    with exchange.ctx.writes() as s, s.begin():
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with exchange.client(secret) as k:
        r = k.get("/me")
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


def test_read_only_key_cannot_write(exchange: Exchange) -> None:
    party = quick_party(exchange, ["buyer"])
    with party.client() as c:
        secret = c.post(
            f"/organisations/{party.id}/api-keys", json={"name": "ro", "scopes": ["read"]}
        ).json()["key"]
    with exchange.client(secret) as k:
        assert k.get(f"/organisations/{party.id}").status_code == 200
        r = k.post(f"/organisations/{party.id}/withdraw", json={})
    assert r.status_code == 403


def test_another_organisations_key_cannot_be_revoked_or_seen(exchange: Exchange) -> None:
    owner = quick_party(exchange, ["buyer"])
    stranger = quick_party(exchange, ["merchant"])
    with owner.client() as c:
        key = c.post(f"/organisations/{owner.id}/api-keys", json={"name": "mine"}).json()
    with stranger.client() as c:
        assert c.post(f"/api-keys/{key['id']}/revoke").status_code == 404
        assert c.get(f"/organisations/{owner.id}/api-keys").status_code == 404
