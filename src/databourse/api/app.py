"""The application factory: the HTTP edge of every domain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from databourse import __version__, logs
from databourse.api import health, problems
from databourse.api.context import AppContext
from databourse.api.middleware import EdgeMiddleware
from databourse.settings import Settings, get_settings

log = logging.getLogger("databourse")
API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, configure_logging: bool = True) -> FastAPI:
    settings = settings or get_settings()
    if configure_logging:
        logs.configure(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("exchange starting", extra={"exchange": settings.exchange_name})
        yield
        log.info("exchange stopping: closing database connections")
        ctx.db.dispose()

    ctx = AppContext.build(settings)
    app = FastAPI(
        title="DataBourse",
        version=__version__,
        description="An open-source data exchange. Errors are RFC 9457 problem+json.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)

    from databourse.auth import api as auth_api
    from databourse.participants import api as participants_api

    v1 = APIRouter(prefix=API_PREFIX)
    v1.include_router(auth_api.router)
    v1.include_router(participants_api.router)
    app.include_router(health.router)
    app.include_router(v1)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
