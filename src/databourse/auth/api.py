"""HTTP routes of the auth domain: login, tokens, logout, who-am-I and API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from databourse.api.deps import SESSION_COOKIE, Caller, Cmd, Ctx, ReadSession, action
from databourse.auth import schemas, services
from databourse.auth.errors import InvalidToken
from databourse.auth.policy import authorize
from databourse.uow import UnitOfWork

router = APIRouter(tags=["auth"])


@router.post("/auth/login", response_model=schemas.TokenOut, openapi_extra=action("public.login"))
def login(body: schemas.LoginIn, ctx: Ctx) -> JSONResponse:
    """Password login: a bearer access token in the body, a web session in a cookie."""
    with UnitOfWork(ctx.writes) as uow:
        result = services.login(uow, ctx.tokens, str(body.email), body.password)
        uow.commit()
    ttl = int(ctx.tokens.access_ttl.total_seconds())
    resp = JSONResponse(
        schemas.TokenOut(access_token=result.access_token, expires_in=ttl).model_dump()
    )
    resp.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        httponly=True,
        samesite="strict",
        secure=ctx.settings.session_cookie_secure,
        max_age=int(ctx.tokens.session_ttl.total_seconds()),
        path="/",
    )
    return resp


@router.post("/auth/token", response_model=schemas.TokenOut, openapi_extra=action("public.token"))
def token(request: Request, ctx: Ctx, session: ReadSession) -> object:
    """A fresh short-lived access token for the holder of a web session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise InvalidToken("no web session")
    access = services.refresh_token(session, ctx.tokens, cookie)
    return schemas.TokenOut(
        access_token=access, expires_in=int(ctx.tokens.access_ttl.total_seconds())
    )


@router.post("/auth/logout", status_code=204, openapi_extra=action("public.logout"))
def logout(request: Request, ctx: Ctx) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with UnitOfWork(ctx.writes) as uow:
            services.logout(uow, cookie)
            uow.commit()
    resp = Response(status_code=204)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/me", response_model=schemas.MeOut, openapi_extra=action("me.read"))
def me(caller: Caller) -> object:
    authorize(caller, "me.read", caller.org_id)
    return schemas.MeOut(
        kind=caller.kind,
        id=caller.id,
        org_id=caller.org_id,
        org_status=caller.org_status,
        roles=sorted(caller.roles),
        is_admin=caller.is_admin,
        scopes=sorted(caller.scopes),
    )


@router.get(
    "/organisations/{org_id}/api-keys",
    response_model=list[schemas.ApiKeyOut],
    openapi_extra=action("apikey.list"),
)
def list_keys(org_id: str, caller: Caller, session: ReadSession) -> object:
    return services.list_api_keys(session, caller, org_id)


@router.post(
    "/organisations/{org_id}/api-keys",
    status_code=201,
    response_model=schemas.ApiKeyCreatedOut,
    openapi_extra=action("apikey.create"),
)
def create_key(org_id: str, body: schemas.ApiKeyIn, caller: Caller, cmd: Cmd) -> object:
    """Issue an API key. The secret is in this response only; the exchange keeps its hash."""

    def run(uow: UnitOfWork) -> schemas.ApiKeyCreatedOut:
        key, secret = services.create_api_key(uow, caller, org_id, body)
        return schemas.ApiKeyCreatedOut(
            **schemas.ApiKeyOut.model_validate(key).model_dump(), key=secret
        )

    return cmd.run(run, body, status_code=201, redact=("key",))


@router.post(
    "/api-keys/{key_id}/revoke",
    response_model=schemas.ApiKeyOut,
    openapi_extra=action("apikey.revoke"),
)
def revoke_key(key_id: str, caller: Caller, cmd: Cmd) -> object:
    return cmd.run(
        lambda uow: schemas.ApiKeyOut.model_validate(services.revoke_api_key(uow, caller, key_id))
    )
