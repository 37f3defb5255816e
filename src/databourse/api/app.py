"""The application factory: the HTTP edge of every domain."""

from __future__ import annotations

import asyncio
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


async def _checkpoints(ctx: AppContext, every: int) -> None:
    """Sign a checkpoint on a schedule whenever the log has grown since the last one."""
    from databourse.ledger.services import publish_checkpoint
    from databourse.uow import UnitOfWork

    def tick() -> None:
        with UnitOfWork(ctx.writes) as uow:
            publish_checkpoint(uow, ctx.log_key)
            uow.commit()

    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(tick)
        except Exception:  # a failed tick must not stop the schedule
            log.exception("scheduled checkpoint failed")


def create_app(settings: Settings | None = None, *, configure_logging: bool = True) -> FastAPI:
    settings = settings or get_settings()
    if configure_logging:
        logs.configure(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("exchange starting", extra={"exchange": settings.exchange_name})
        ticker = None
        for meter in ctx.distinct_meters():
            meter.start()
        gateway_api.open_gateway(app)
        if settings.checkpoint_interval_seconds > 0:
            ticker = asyncio.create_task(_checkpoints(ctx, settings.checkpoint_interval_seconds))
        yield
        log.info("exchange stopping: closing database connections")
        if ticker is not None:
            ticker.cancel()
        await gateway_api.close_gateway(app)
        log.info("exchange stopping: writing buffered usage records")
        for meter in ctx.distinct_meters():
            await asyncio.to_thread(meter.stop)
        await asyncio.to_thread(ctx.compute.close)
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

    from databourse.assets import api as assets_api
    from databourse.auth import api as auth_api
    from databourse.catalog import api as catalog_api
    from databourse.compute import api as compute_api
    from databourse.delivery import api as delivery_api
    from databourse.delivery import files as delivery_files
    from databourse.delivery import gateway_api, sharing_api
    from databourse.demands import api as demands_api
    from databourse.ledger import api as ledger_api
    from databourse.market import api as market_api
    from databourse.market import auction_api
    from databourse.participants import api as participants_api
    from databourse.settlement import api as settlement_api

    v1 = APIRouter(prefix=API_PREFIX)
    v1.include_router(auth_api.router)
    v1.include_router(participants_api.router)
    v1.include_router(ledger_api.router)
    v1.include_router(assets_api.router)
    v1.include_router(catalog_api.router)
    v1.include_router(demands_api.router)
    v1.include_router(market_api.router)
    v1.include_router(auction_api.router)
    v1.include_router(settlement_api.router)
    v1.include_router(gateway_api.router)
    v1.include_router(delivery_api.router)
    v1.include_router(sharing_api.router)
    v1.include_router(compute_api.router)
    # The gateway first: its calls are the hottest path, and Starlette tries routes in
    # order (the /api/v1 tree is some 150 routes); no prefix is shared, so order is free.
    app.include_router(gateway_api.gateway)
    app.include_router(health.router)
    app.include_router(v1)
    app.include_router(delivery_files.router)  # signed links: /files/<token>
    if settings.demo_upstream:
        from databourse import demo_upstream

        app.include_router(demo_upstream.router)
    if settings.demo_nodes:
        from databourse import demo_compute

        demo_compute.mount_nodes(app, settings, ctx.custody_secret)
    app.include_router(sharing_api.protocol)  # Delta Sharing: /delta-sharing/…
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.upload_max_bytes,
    )
    return app
