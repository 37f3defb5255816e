"""HTTP routes of the participants domain (under /api/v1)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from databourse.api.deps import Caller, Cmd, PublicCmd, ReadSession, action
from databourse.errors import NotFound
from databourse.participants import schemas, services
from databourse.participants.models import OrgStatus, Role
from databourse.uow import UnitOfWork

router = APIRouter(tags=["participants"])


@router.post(
    "/applications",
    status_code=201,
    response_model=schemas.ApplicationOut,
    openapi_extra=action("public.apply"),
)
def apply(body: schemas.ApplicationIn, cmd: PublicCmd) -> object:
    """Apply for admission: the organisation, its KYB data and its first administrator."""

    def run(uow: UnitOfWork) -> schemas.ApplicationOut:
        org, user = services.apply(uow, body)
        return schemas.ApplicationOut(
            organisation=schemas.OrganisationOut.model_validate(org),
            admin_user=schemas.UserOut.model_validate(user),
        )

    return cmd.run(run, body, status_code=201)


@router.get(
    "/organisations", response_model=list[schemas.OrganisationOut], openapi_extra=action("org.list")
)
def list_organisations(
    caller: Caller,
    session: ReadSession,
    status: Annotated[OrgStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    return services.list_orgs(session, caller, status, limit, offset)


@router.get(
    "/organisations/{org_id}",
    response_model=schemas.OrganisationOut,
    openapi_extra=action("org.read"),
)
def get_organisation(org_id: str, caller: Caller, session: ReadSession) -> object:
    return services.get_org(session, caller, org_id)


@router.get(
    "/organisations/{org_id}/decisions",
    response_model=list[schemas.DecisionOut],
    openapi_extra=action("decision.list"),
)
def list_decisions(org_id: str, caller: Caller, session: ReadSession) -> object:
    return services.list_decisions(session, caller, org_id)


Step = Literal["start_review", "reject", "suspend", "reinstate", "withdraw", "resubmit"]
_PATHS: dict[str, Step] = {
    "review": "start_review",
    "reject": "reject",
    "suspend": "suspend",
    "reinstate": "reinstate",
    "withdraw": "withdraw",
    "resubmit": "resubmit",
}
_ACTIONS = {"withdraw": "org.withdraw", "resubmit": "org.resubmit"}


def _add_step_route(path: str, step: Step) -> None:
    def handler(org_id: str, body: schemas.DecisionIn, caller: Caller, cmd: Cmd) -> object:
        return cmd.run(
            lambda uow: schemas.OrganisationOut.model_validate(
                services.transition(uow, caller, org_id, step, body.reason)
            ),
            body,
        )

    handler.__name__ = f"{step}_organisation"
    handler.__doc__ = f"Admission workflow: {step.replace('_', ' ')}."
    router.add_api_route(
        f"/organisations/{{org_id}}/{path}",
        handler,
        methods=["POST"],
        response_model=schemas.OrganisationOut,
        openapi_extra=action(_ACTIONS.get(step, f"admission.{step}")),
    )


for _path, _step in _PATHS.items():
    _add_step_route(_path, _step)


@router.post(
    "/organisations/{org_id}/admit",
    response_model=schemas.OrganisationOut,
    openapi_extra=action("admission.admit"),
)
def admit_organisation(org_id: str, body: schemas.AdmitIn, caller: Caller, cmd: Cmd) -> object:
    """Admit an organisation under review, recording how its identity was verified."""
    return cmd.run(
        lambda uow: schemas.OrganisationOut.model_validate(
            services.transition(uow, caller, org_id, "admit", body.reason, body.kyb)
        ),
        body,
    )


@router.post(
    "/organisations/{org_id}/roles",
    response_model=schemas.OrganisationOut,
    openapi_extra=action("role.grant"),
)
def grant_role(org_id: str, body: schemas.RoleIn, caller: Caller, cmd: Cmd) -> object:
    return cmd.run(
        lambda uow: schemas.OrganisationOut.model_validate(
            services.grant_role(uow, caller, org_id, body.role, body.reason)
        ),
        body,
    )


@router.post(
    "/organisations/{org_id}/roles/{role}/revoke",
    response_model=schemas.OrganisationOut,
    openapi_extra=action("role.revoke"),
)
def revoke_role(
    org_id: str, role: str, body: schemas.DecisionIn, caller: Caller, cmd: Cmd
) -> object:
    if role not in Role.__members__:
        raise NotFound(f"no role {role!r}")
    return cmd.run(
        lambda uow: schemas.OrganisationOut.model_validate(
            services.revoke_role(uow, caller, org_id, Role(role), body.reason or "")
        ),
        body,
    )


@router.get(
    "/organisations/{org_id}/users",
    response_model=list[schemas.UserOut],
    openapi_extra=action("user.list"),
)
def list_users(org_id: str, caller: Caller, session: ReadSession) -> object:
    return services.list_users(session, caller, org_id)


@router.post(
    "/organisations/{org_id}/users",
    status_code=201,
    response_model=schemas.UserOut,
    openapi_extra=action("user.create"),
)
def create_user(org_id: str, body: schemas.UserIn, caller: Caller, cmd: Cmd) -> object:
    return cmd.run(
        lambda uow: schemas.UserOut.model_validate(services.create_user(uow, caller, org_id, body)),
        body,
        status_code=201,
    )


@router.post(
    "/users/{user_id}/deactivate",
    response_model=schemas.UserOut,
    openapi_extra=action("user.deactivate"),
)
def deactivate_user(user_id: str, caller: Caller, cmd: Cmd) -> object:
    return cmd.run(
        lambda uow: schemas.UserOut.model_validate(services.deactivate_user(uow, caller, user_id))
    )
