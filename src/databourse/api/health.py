"""Liveness and readiness probes for a load balancer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from databourse.api.deps import Ctx

router = APIRouter(tags=["operations"])


@router.get("/health", openapi_extra={"x-action": "public.health"})
def health() -> dict[str, str]:
    """The process is up (no dependencies checked)."""
    return {"status": "ok"}


@router.get("/ready", openapi_extra={"x-action": "public.ready"})
def ready(ctx: Ctx) -> JSONResponse:
    """The process can serve: the database answers."""
    try:
        with ctx.reads() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ready", "database": "ok"})
