"""Commands and queries of the participants domain.

Each command takes a unit of work (one transaction) and the principal acting, checks the
policy, changes rows and records the change for the ledger. Queries take a plain session.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.auth.secrets import hash_password
from databourse.db import new_id, utcnow
from databourse.errors import InvalidTransition, NotFound, ValidationFailed
from databourse.ledger.writer import assert_untampered
from databourse.participants import schemas
from databourse.participants.admission import TRANSITIONS, kyb_findings
from databourse.participants.errors import (
    AdmissionIncomplete,
    DuplicateEmail,
    DuplicateOrganisation,
    RoleNotGrantable,
)
from databourse.participants.models import (
    REQUESTABLE_ROLES,
    AdmissionDecision,
    Organisation,
    OrganisationRole,
    OrgStatus,
    Role,
    User,
)
from databourse.uow import Actor, UnitOfWork


def org_state(org: Organisation) -> dict[str, Any]:
    """The organisation's state the ledger commits to (hashed; never put in an entry).

    It includes the admission history, so a decision row edited by hand is detected too.
    """
    session = object_session(org)
    decisions = (
        session.execute(
            select(
                AdmissionDecision.id,
                AdmissionDecision.action,
                AdmissionDecision.to_status,
                AdmissionDecision.actor,
                AdmissionDecision.reason,
            )
            .where(AdmissionDecision.org_id == org.id)
            .order_by(AdmissionDecision.id)
        ).all()
        if session is not None
        else []
    )
    return {
        "id": org.id,
        "kind": org.kind,
        "name": org.name,
        "identifier": org.identifier,
        "uscc": org.uscc,
        "country": org.country,
        "registry_id": org.registry_id,
        "address": org.address,
        "decisions": [list(d) for d in decisions],
        "legal_representative": org.legal_representative,
        "contacts": org.contacts,
        "requested_roles": sorted(org.requested_roles),
        "roles": org.role_names,
        "data_source_statement": org.data_source_statement,
        "compliance_commitment": org.compliance_commitment,
        "kyb": org.kyb,
        "status": org.status,
    }


def user_state(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "org_id": user.org_id,
        "email": user.email,
        "display_name": user.display_name,
        "password_hash": user.password_hash,
        "is_admin": user.is_admin,
        "active": user.active,
    }


def _record_org(uow: UnitOfWork, kind: str, org: Organisation, **body: Any) -> None:
    uow.session.flush()
    uow.record(kind, org.id, {"status": org.status, **body}, org_state(org), (org.id,))


def _load_for_update(uow: UnitOfWork, org_id: str) -> Organisation:
    org = uow.session.get(Organisation, org_id, with_for_update=True, populate_existing=True)
    if org is None:
        raise NotFound(f"organisation {org_id} not found")
    assert_untampered(uow, org.id, org_state(org))
    return org


def _add_user(
    session: Session, org_id: str, data: schemas.AdminUserIn | schemas.UserIn, is_admin: bool
) -> User:
    email = str(data.email).lower()
    if session.scalar(select(User.id).where(User.email == email)):
        raise DuplicateEmail(f"{email} already has an account")
    user = User(
        id=new_id("usr"),
        org_id=org_id,
        email=email,
        display_name=data.display_name,
        password_hash=hash_password(data.password),
        is_admin=is_admin,
        active=True,
    )
    session.add(user)
    return user


def apply(uow: UnitOfWork, data: schemas.ApplicationIn) -> tuple[Organisation, User]:
    """An organisation applies for admission; its first user becomes its administrator."""
    s = uow.session
    if data.kind == "domestic":
        identifier, country, registry_id = f"CN:{data.uscc}", "CN", data.uscc or ""
    else:
        identifier = f"{data.country}:{data.registry_id}"
        country, registry_id = data.country or "", data.registry_id or ""
    if s.scalar(select(Organisation.id).where(Organisation.identifier == identifier)):
        raise DuplicateOrganisation(f"{identifier} has already applied")
    org = Organisation(
        id=new_id("org"),
        kind=data.kind,
        name=data.name,
        identifier=identifier,
        uscc=data.uscc,
        country=country,
        registry_id=registry_id,
        legal_representative=data.legal_representative.model_dump(),
        contacts=[c.model_dump(mode="json") for c in data.contacts],
        address=data.address,
        requested_roles=[str(r) for r in data.requested_roles],
        data_source_statement=data.data_source_statement,
        compliance_commitment=data.compliance_commitment,
        kyb={},
        status=OrgStatus.applied,
        roles=[],
    )
    s.add(org)
    user = _add_user(s, org.id, data.admin, is_admin=True)
    s.add(
        AdmissionDecision(
            org_id=org.id,
            action="apply",
            from_status=None,
            to_status=OrgStatus.applied,
            actor=f"user:{user.id}",
            actor_org_id=org.id,
        )
    )
    try:
        s.flush()
    except IntegrityError as exc:  # a concurrent application with the same identifier
        raise DuplicateOrganisation(f"{identifier} has already applied") from exc
    uow.actor = Actor("user", user.id, org.id)
    _record_org(uow, "org.applied", org)
    uow.record(
        "user.created", user.id, {"org_id": org.id, "is_admin": True}, user_state(user), (org.id,)
    )
    return org, user


def transition(
    uow: UnitOfWork,
    principal: Principal,
    org_id: str,
    action: str,
    reason: str | None = None,
    kyb: schemas.KybIn | None = None,
) -> Organisation:
    """Move an organisation through the admission workflow, recording the decision."""
    policy_action = {"withdraw": "org.withdraw", "resubmit": "org.resubmit"}.get(
        action, f"admission.{action}"
    )
    authorize(principal, policy_action, org_id)
    step = TRANSITIONS[action]
    org = _load_for_update(uow, org_id)
    if org.status not in step.sources:
        raise InvalidTransition(
            f"cannot {action} an organisation that is {org.status}",
            current_status=org.status,
        )
    if step.reason_required and not (reason or "").strip():
        raise ValidationFailed(
            f"{action} needs a reason",
            errors=[{"loc": ["body", "reason"], "msg": "a reason is required", "type": "missing"}],
        )
    kyb_record = None
    if action == "admit":
        missing = kyb_findings(
            has_identifier=bool(org.identifier),
            legal_representative=org.legal_representative,
            contacts=org.contacts,
            requested_roles=org.requested_roles,
            data_source_statement=org.data_source_statement,
            compliance_commitment=org.compliance_commitment,
        )
        if kyb is None or not kyb.legal_representative_verified:
            missing.append("verification of the legal representative's identity")
        if missing:
            raise AdmissionIncomplete("admission needs " + "; ".join(missing), missing=missing)
        assert kyb is not None
        kyb_record = {
            **kyb.model_dump(),
            "verified_by": principal.ref,
            "verified_at": utcnow().isoformat(),
        }
        org.kyb = kyb_record
        granted = {r.role for r in org.roles}
        for role in org.requested_roles:
            if role not in granted:
                org.roles.append(OrganisationRole(role=role, granted_by=principal.ref))
    previous = org.status
    org.status = step.target
    org.updated_at = utcnow()
    uow.session.add(
        AdmissionDecision(
            org_id=org.id,
            action=action,
            from_status=previous,
            to_status=step.target,
            actor=principal.ref,
            actor_org_id=principal.org_id,
            reason=reason,
            kyb=kyb_record,
        )
    )
    _record_org(uow, f"org.{action}", org, from_status=previous)
    return org


def grant_role(
    uow: UnitOfWork, principal: Principal, org_id: str, role: Role, reason: str
) -> Organisation:
    authorize(principal, "role.grant", org_id)
    org = _load_for_update(uow, org_id)
    if org.status not in (OrgStatus.admitted, OrgStatus.suspended):
        raise RoleNotGrantable(f"roles are granted to admitted organisations, not {org.status}")
    if role not in REQUESTABLE_ROLES and org.kind != "domestic":
        raise RoleNotGrantable(f"{role} can only be held by a domestic organisation")
    if role not in org.role_names:
        org.roles.append(OrganisationRole(role=str(role), granted_by=principal.ref))
        org.updated_at = utcnow()
        _record_org(uow, "org.role_granted", org, role=str(role))
    return org


def revoke_role(
    uow: UnitOfWork, principal: Principal, org_id: str, role: Role, reason: str
) -> Organisation:
    authorize(principal, "role.revoke", org_id)
    org = _load_for_update(uow, org_id)
    held = [r for r in org.roles if r.role == role]
    if not held:
        raise NotFound(f"{org.id} does not hold the role {role}")
    if role == Role.operator and org_id == principal.org_id:
        raise RoleNotGrantable("the operator cannot revoke its own operator role")
    org.roles.remove(held[0])
    org.updated_at = utcnow()
    _record_org(uow, "org.role_revoked", org, role=str(role))
    return org


def create_user(uow: UnitOfWork, principal: Principal, org_id: str, data: schemas.UserIn) -> User:
    authorize(principal, "user.create", org_id)
    _load_for_update(uow, org_id)
    user = _add_user(uow.session, org_id, data, is_admin=data.is_admin)
    uow.session.flush()
    uow.record(
        "user.created",
        user.id,
        {"org_id": org_id, "is_admin": user.is_admin},
        user_state(user),
        (org_id,),
    )
    return user


def deactivate_user(uow: UnitOfWork, principal: Principal, user_id: str) -> User:
    user = uow.session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    authorize(principal, "user.deactivate", user.org_id)
    if user.id == principal.id:
        raise ValidationFailed("you cannot deactivate yourself")
    assert_untampered(uow, user.id, user_state(user))
    user.active = False
    uow.record(
        "user.deactivated", user.id, {"org_id": user.org_id}, user_state(user), (user.org_id,)
    )
    return user


# Queries -------------------------------------------------------------------------------


def get_org(session: Session, principal: Principal, org_id: str) -> Organisation:
    authorize(principal, "org.read", org_id)
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id} not found")
    return org


def list_orgs(
    session: Session,
    principal: Principal,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Organisation]:
    authorize(principal, "org.list")
    q = select(Organisation).order_by(Organisation.created_at, Organisation.id)
    if status:
        q = q.where(Organisation.status == status)
    return list(session.scalars(q.limit(limit).offset(offset)))


def list_decisions(session: Session, principal: Principal, org_id: str) -> list[AdmissionDecision]:
    authorize(principal, "decision.list", org_id)
    if session.get(Organisation, org_id) is None:
        raise NotFound(f"organisation {org_id} not found")
    q = select(AdmissionDecision).where(AdmissionDecision.org_id == org_id)
    return list(session.scalars(q.order_by(AdmissionDecision.id)))


def list_users(session: Session, principal: Principal, org_id: str) -> list[User]:
    if authorize(principal, "user.list", org_id) is Reach.ANY:
        get_org(session, principal, org_id)
    return list(session.scalars(select(User).where(User.org_id == org_id).order_by(User.email)))
