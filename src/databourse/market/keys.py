"""Organisations' contract-signing keys: custodial by default, or registered by the
organisation to sign client-side. An organisation has at most one active key."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, authorize
from databourse.db import utcnow
from databourse.errors import NotFound
from databourse.market import signing
from databourse.market.errors import InvalidSigningKey
from databourse.market.models import SigningKey
from databourse.participants.models import Organisation
from databourse.uow import UnitOfWork


def key_state(k: SigningKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "org_id": k.org_id,
        "public_key": k.public_key,
        "custodial": k.custodial,
        "active": k.active,
    }


def active_key(session: Session, org_id: str) -> SigningKey | None:
    return session.scalar(
        select(SigningKey)
        .where(SigningKey.org_id == org_id, SigningKey.active.is_(True))
        .order_by(SigningKey.created_at.desc())
        .limit(1)
    )


def _lock_org(uow: UnitOfWork, org_id: str) -> None:
    """Serialise key changes of one organisation (two first signatures at once would
    otherwise each create a custodial key). Taken after the contract row: the lock order."""
    uow.session.execute(select(Organisation.id).where(Organisation.id == org_id).with_for_update())


def _retire(uow: UnitOfWork, key: SigningKey) -> None:
    key.active = False
    key.revoked_at = utcnow()
    uow.record("signing_key.revoked", key.id, {"org_id": key.org_id}, key_state(key), (key.org_id,))


def custodial_key(
    uow: UnitOfWork, secret: bytes, org_id: str
) -> tuple[SigningKey, Ed25519PrivateKey]:
    """The organisation's custodial key, generated on first use. Refused when the
    organisation signs with its own key: the exchange then cannot sign for it."""
    _lock_org(uow, org_id)
    key = active_key(uow.session, org_id)
    if key is not None and not key.custodial:
        raise InvalidSigningKey(
            "this organisation signs client-side with its registered key: "
            "POST the signature to /contracts/{id}/signatures"
        )
    if key is None:
        private = Ed25519PrivateKey.generate()
        public = signing.public_key_b64(private)
        kid = signing.key_id(public)
        key = SigningKey(
            id=kid,
            org_id=org_id,
            public_key=public,
            custodial=True,
            private_sealed=signing.seal(secret, kid, private),
            active=True,
            created_by=uow.actor.ref,
            created_at=utcnow(),
        )
        uow.session.add(key)
        uow.session.flush()
        uow.record(
            "signing_key.created",
            key.id,
            {"org_id": org_id, "custodial": True},
            key_state(key),
            (org_id,),
        )
        return key, private
    assert key.private_sealed is not None
    return key, signing.unseal(secret, key.id, key.private_sealed)


def register(uow: UnitOfWork, principal: Principal, public_key: str) -> SigningKey:
    """Register the organisation's own public key; its previous key is retired."""
    authorize(principal, "signing_key.register", principal.org_id)
    try:
        kid = signing.key_id(public_key)
    except ValueError as exc:
        raise InvalidSigningKey(str(exc)) from exc
    if uow.session.get(SigningKey, kid) is not None:
        raise InvalidSigningKey("this key is already registered")
    _lock_org(uow, principal.org_id)
    for old in uow.session.scalars(
        select(SigningKey).where(SigningKey.org_id == principal.org_id, SigningKey.active.is_(True))
    ).all():
        _retire(uow, old)
    uow.session.flush()
    key = SigningKey(
        id=kid,
        org_id=principal.org_id,
        public_key=public_key,
        custodial=False,
        private_sealed=None,
        active=True,
        created_by=principal.ref,
        created_at=utcnow(),
    )
    uow.session.add(key)
    uow.session.flush()
    uow.record(
        "signing_key.registered",
        key.id,
        {"org_id": key.org_id, "custodial": False},
        key_state(key),
        (key.org_id,),
    )
    return key


def revoke(uow: UnitOfWork, principal: Principal, key_id: str) -> SigningKey:
    """Retire a key; the exchange's custodial key is generated again when next needed."""
    key = uow.session.get(SigningKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound(f"signing key {key_id} not found")
    authorize(principal, "signing_key.revoke", key.org_id)
    if key.active:
        _retire(uow, key)
    return key


def list_keys(session: Session, principal: Principal, org_id: str | None) -> list[SigningKey]:
    org = org_id or principal.org_id
    authorize(principal, "signing_key.list", org)
    return list(
        session.scalars(
            select(SigningKey).where(SigningKey.org_id == org).order_by(SigningKey.created_at)
        )
    )


def get_key(session: Session, key_id: str) -> SigningKey | None:
    return session.get(SigningKey, key_id)


def verifies(
    session: Session, key_id: str, org_id: str, document: dict[str, Any], signature: str
) -> SigningKey:
    """The signer's active key, after checking the signature against it."""
    key = session.get(SigningKey, key_id)
    if key is None or key.org_id != org_id or not key.active:
        raise InvalidSigningKey(f"{key_id} is not an active signing key of your organisation")
    from databourse.market.errors import InvalidSignature

    if not signing.verify(key.public_key, document, signature):
        raise InvalidSignature("the signature does not verify against this contract and key")
    return key
