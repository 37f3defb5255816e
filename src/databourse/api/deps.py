"""FastAPI dependencies: the caller's principal, read sessions, and the command runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from databourse import idempotency
from databourse.api.context import AppContext
from databourse.auth.errors import InvalidToken
from databourse.auth.policy import Principal
from databourse.auth.services import principal_from_bearer, principal_from_session
from databourse.uow import Actor, UnitOfWork

SESSION_COOKIE = "databourse_session"


def action(name: str) -> dict[str, object]:
    """Names the policy action an endpoint performs (listed in the OpenAPI document)."""
    return {"x-action": name}


async def get_ctx(request: Request) -> AppContext:
    """Async on purpose: it only reads app state, so it needs no worker-thread hop."""
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def read_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.reads() as session:
        yield session


ReadSession = Annotated[Session, Depends(read_session)]


def get_principal(request: Request, ctx: Ctx, session: ReadSession) -> Principal:
    """Bearer access token or API key in ``Authorization``; else the web session cookie.

    Uses the request's read session, which FastAPI shares with the route: one connection
    checkout per request.
    """
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise InvalidToken("use 'Authorization: Bearer <token or API key>'")
        return principal_from_bearer(session, ctx.tokens, credential.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return principal_from_session(session, cookie)
    raise InvalidToken("no credentials were presented")


Caller = Annotated[Principal, Depends(get_principal)]


class Commands:
    """Runs one command in one unit of work, honouring ``Idempotency-Key``."""

    def __init__(self, request: Request, ctx: AppContext, owner: str, actor: Actor) -> None:
        self.request = request
        self.ctx = ctx
        self.owner = owner
        self.actor = actor
        self.ttl = timedelta(hours=ctx.settings.idempotency_ttl_hours)

    def run(
        self,
        fn: Callable[[UnitOfWork], BaseModel],
        body: BaseModel | None = None,
        status_code: int = 200,
        redact: tuple[str, ...] = (),
        require_key: bool = False,
    ) -> JSONResponse:
        """``redact`` names response fields (secrets shown once) never kept for replays.

        ``require_key``: money commands refuse to run without an ``Idempotency-Key``, so a
        client that lost the response can always retry without paying twice.
        """
        key = self.request.headers.get("idempotency-key")
        if key is None and require_key:
            raise idempotency.IdempotencyKeyRequired()
        if key is None:
            with UnitOfWork(self.ctx.writes, self.actor) as uow:
                out = fn(uow).model_dump(mode="json")
                uow.commit()
            return JSONResponse(out, status_code=status_code)
        idempotency.check_key(key)
        req_hash = idempotency.request_hash(
            self.request.method,
            self.request.url.path,
            body.model_dump(mode="json") if body is not None else None,
        )
        with UnitOfWork(self.ctx.writes, self.actor) as uow:
            replay = idempotency.find(uow.session, self.owner, key, req_hash, self.ttl)
            if replay is not None:
                return self._replayed(replay)
            try:
                rec = idempotency.reserve(uow.session, self.owner, key, req_hash)
            except IntegrityError:
                uow.rollback()  # a concurrent request with this key committed first
            else:
                out = fn(uow).model_dump(mode="json")
                idempotency.complete(rec, status_code, {**out, **dict.fromkeys(redact)})
                uow.commit()
                return JSONResponse(out, status_code=status_code)
        with self.ctx.reads() as session:
            replay = idempotency.find(session, self.owner, key, req_hash, self.ttl)
        if replay is None:  # pragma: no cover - the winner rolled back between our reads
            raise idempotency.InvalidIdempotencyKey("retry the request")
        return self._replayed(replay)

    @staticmethod
    def _replayed(replay: idempotency.Replay) -> JSONResponse:
        return JSONResponse(
            replay.body, status_code=replay.status_code, headers={"Idempotent-Replayed": "true"}
        )


def commands(request: Request, ctx: Ctx, principal: Caller) -> Commands:
    return Commands(
        request, ctx, principal.ref, Actor(principal.kind, principal.id, principal.org_id)
    )


def public_commands(request: Request, ctx: Ctx) -> Commands:
    """For the unauthenticated commands (applying, logging in)."""
    return Commands(request, ctx, "public", Actor("system", "public"))


Cmd = Annotated[Commands, Depends(commands)]
PublicCmd = Annotated[Commands, Depends(public_commands)]
