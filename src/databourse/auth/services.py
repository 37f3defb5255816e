"""Logging in, resolving who a request is, and the API-key lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.auth.errors import BadCredentials, InvalidToken
from databourse.auth.models import ApiKey, WebSession
from databourse.auth.policy import Principal, authorize
from databourse.auth.schemas import ApiKeyIn
from databourse.auth.secrets import (
    mint_access_token,
    new_api_key,
    new_session_token,
    read_access_token,
    same_hash,
    sha256_hex,
    split_api_key,
    verify_password,
)
from databourse.db import new_id, utcnow
from databourse.errors import NotFound
from databourse.ledger.writer import assert_untampered
from databourse.participants.models import Organisation, OrganisationRole, User
from databourse.uow import UnitOfWork


@dataclass(frozen=True)
class TokenConfig:
    secret: bytes
    access_ttl: timedelta
    session_ttl: timedelta


@dataclass(frozen=True)
class LoginResult:
    user: User
    session_token: str
    access_token: str


def login(uow: UnitOfWork, cfg: TokenConfig, email: str, password: str) -> LoginResult:
    user = uow.session.scalar(select(User).where(User.email == email.lower()))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        raise BadCredentials()
    now = utcnow()
    token = new_session_token()
    uow.session.add(
        WebSession(
            id=new_id("ses"),
            token_hash=sha256_hex(token),
            user_id=user.id,
            expires_at=now + cfg.session_ttl,
        )
    )
    user.last_login_at = now
    return LoginResult(user, token, mint_access_token(cfg.secret, user.id, now, cfg.access_ttl))


def session_user(session: Session, token: str) -> User:
    ws = session.scalar(select(WebSession).where(WebSession.token_hash == sha256_hex(token)))
    if ws is None or ws.revoked_at is not None or ws.expires_at <= utcnow():
        raise InvalidToken("the session has expired or was ended")
    user = session.get(User, ws.user_id)
    if user is None or not user.active:
        raise InvalidToken("the session's user is no longer active")
    return user


def refresh_token(session: Session, cfg: TokenConfig, session_token: str) -> str:
    user = session_user(session, session_token)
    return mint_access_token(cfg.secret, user.id, utcnow(), cfg.access_ttl)


def logout(uow: UnitOfWork, session_token: str) -> None:
    ws = uow.session.scalar(
        select(WebSession).where(WebSession.token_hash == sha256_hex(session_token))
    )
    if ws is not None and ws.revoked_at is None:
        ws.revoked_at = utcnow()


def _org_status_and_roles(session: Session, org_id: str) -> tuple[str, frozenset[str]]:
    """One query for what authorization needs of an organisation (on every request)."""
    rows = session.execute(
        select(Organisation.status, OrganisationRole.role)
        .outerjoin(OrganisationRole, OrganisationRole.org_id == Organisation.id)
        .where(Organisation.id == org_id)
    ).all()
    if not rows:
        raise InvalidToken("the organisation no longer exists")
    return rows[0][0], frozenset(role for _, role in rows if role is not None)


def _user_principal(session: Session, user: User) -> Principal:
    status, roles = _org_status_and_roles(session, user.org_id)
    return Principal("user", user.id, user.org_id, status, roles, is_admin=user.is_admin)


def principal_from_bearer(session: Session, cfg: TokenConfig, token: str) -> Principal:
    """A bearer credential is either an access token (JWT) or an API key."""
    prefix = split_api_key(token)
    if prefix is not None:
        return _apikey_principal(session, prefix, token)
    user_id = read_access_token(cfg.secret, token)
    if user_id is None:
        raise InvalidToken()
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise InvalidToken("the token's user is no longer active")
    return _user_principal(session, user)


def principal_from_session(session: Session, session_token: str) -> Principal:
    return _user_principal(session, session_user(session, session_token))


def _apikey_principal(session: Session, prefix: str, presented: str) -> Principal:
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not same_hash(key.secret_hash, presented):
        raise InvalidToken()
    if key.revoked_at is not None:
        raise InvalidToken("this API key has been revoked")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise InvalidToken("this API key has expired")
    status, roles = _org_status_and_roles(session, key.org_id)
    return Principal("apikey", key.id, key.org_id, status, roles, scopes=frozenset(key.scopes))


def create_api_key(
    uow: UnitOfWork, principal: Principal, org_id: str, data: ApiKeyIn
) -> tuple[ApiKey, str]:
    authorize(principal, "apikey.create", org_id)
    material = new_api_key()
    now = utcnow()
    key = ApiKey(
        id=new_id("key"),
        org_id=org_id,
        name=data.name,
        prefix=material.prefix,
        secret_hash=material.secret_hash,
        scopes=sorted(set(data.scopes)),
        created_by=principal.ref,
        created_at=now,
        expires_at=now + timedelta(days=data.expires_in_days) if data.expires_in_days else None,
    )
    uow.session.add(key)
    uow.session.flush()
    uow.record(
        "apikey.issued",
        key.id,
        {"org_id": org_id, "scopes": key.scopes},
        apikey_state(key),
        (org_id,),
    )
    return key, material.secret


def revoke_api_key(uow: UnitOfWork, principal: Principal, key_id: str) -> ApiKey:
    key = uow.session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    authorize(principal, "apikey.revoke", key.org_id)
    assert_untampered(uow, key.id, apikey_state(key))
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.revoked_by = principal.ref
        uow.record(
            "apikey.revoked", key.id, {"org_id": key.org_id}, apikey_state(key), (key.org_id,)
        )
    return key


def list_api_keys(session: Session, principal: Principal, org_id: str) -> list[ApiKey]:
    authorize(principal, "apikey.list", org_id)
    q = select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.created_at)
    return list(session.scalars(q))


def apikey_state(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "org_id": key.org_id,
        "name": key.name,
        "prefix": key.prefix,
        "created_by": key.created_by,
        "secret_hash": key.secret_hash,
        "scopes": key.scopes,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def principal_for_email(session: Session, email: str) -> Principal:
    """The principal of an active user, for the exchange's console and its demo seed."""
    user = session.scalar(select(User).where(User.email == email.lower()))
    if user is None or not user.active:
        raise InvalidToken(f"no active user {email}")
    return _user_principal(session, user)
