"""HTTP routes of compute: nodes, compute services, jobs and privacy budgets (/api/v1)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.auth.policy import authorize
from databourse.compute import jobs, services
from databourse.compute.schemas import (
    BudgetOut,
    ExchangeKeyOut,
    JobIn,
    JobOut,
    NodeIn,
    NodeOut,
    ServiceIn,
    ServiceOut,
)
from databourse.errors import DataBourseError
from databourse.uow import Actor

router = APIRouter(tags=["compute"])
MAX_WAIT = 60.0


@router.get(
    "/nodes/exchange-key", response_model=ExchangeKeyOut, openapi_extra=action("node.exchange_key")
)
def exchange_key(caller: Caller, ctx: Ctx) -> Any:
    """The public key the exchange signs its requests to compute nodes with: put it in a
    node's configuration (``databourse node init --exchange-key``)."""
    authorize(caller, "node.exchange_key")
    return ExchangeKeyOut(public_key=ctx.compute.public_key)


@router.post(
    "/nodes", response_model=NodeOut, status_code=201, openapi_extra=action("node.register")
)
def register_node(body: NodeIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> Any:
    """Register your organisation's compute node. The exchange first asks the node for its
    datasets over a signed exchange, so the address and the key must belong together."""
    authorize(caller, "node.register", caller.org_id)
    info = services.probe_node(ctx.compute.probe, body)  # no transaction is open meanwhile
    return cmd.run(lambda uow: services.register_node(uow, caller, body, info), body, 201)


@router.get("/nodes", response_model=list[NodeOut], openapi_extra=action("node.read"))
def list_nodes(
    caller: Caller, session: ReadSession, org_id: Annotated[str | None, Query()] = None
) -> Any:
    return services.list_nodes(session, caller, org_id)


@router.get("/nodes/{node_id}", response_model=NodeOut, openapi_extra=action("node.read"))
def get_node(node_id: str, caller: Caller, session: ReadSession) -> Any:
    return services.get_node(session, caller, node_id)


@router.post("/nodes/{node_id}/revoke", response_model=NodeOut, openapi_extra=action("node.revoke"))
def revoke_node(node_id: str, caller: Caller, cmd: Cmd) -> Any:
    return cmd.run(lambda uow: services.revoke_node(uow, caller, node_id))


@router.put(
    "/products/{product_id}/compute", response_model=ServiceOut, openapi_extra=action("compute.set")
)
def declare_service(
    product_id: str,
    body: Annotated[ServiceIn, Body(discriminator="kind")],
    caller: Caller,
    cmd: Cmd,
) -> Any:
    """Declare what the compute product runs: ``sql`` (a schema with public bounds and
    categories), ``psi`` (a set) or ``fl`` (training participants)."""
    return cmd.run(lambda uow: services.declare(uow, caller, product_id, body), body)


@router.get(
    "/products/{product_id}/compute",
    response_model=ServiceOut,
    openapi_extra=action("compute.read"),
)
def get_service(product_id: str, caller: Caller, session: ReadSession) -> Any:
    """What the product computes; for SQL, the schema a buyer writes queries against."""
    return services.get_service(session, caller, product_id)


async def _await_end(ctx: Ctx, caller: Any, job_id: str, wait: float) -> JobOut:
    deadline = time.monotonic() + min(wait, MAX_WAIT)
    delay = 0.02
    while True:
        out = await asyncio.to_thread(_read_job, ctx, caller, job_id)
        if out.state in jobs.TERMINAL or time.monotonic() >= deadline:
            return out
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def _read_job(ctx: Ctx, caller: Any, job_id: str) -> JobOut:
    with ctx.reads() as s:
        return jobs.visible(jobs.get(s, caller, job_id), caller)


@router.post(
    "/contracts/{contract_id}/jobs",
    response_model=JobOut,
    status_code=201,
    openapi_extra=action("job.submit"),
)
async def submit_job(
    contract_id: str,
    body: Annotated[JobIn, Body(discriminator="kind")],
    caller: Caller,
    ctx: Ctx,
    cmd: Cmd,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
) -> Any:
    """Submit a job under the contract: it is authorised (policy, service, budget) in the
    same transaction, then runs in the background. ``wait`` (seconds) answers when it has
    finished, or with its state when the time is up. A refused job is recorded and the
    problem returned, naming the job (``job_id``)."""

    def submit() -> JSONResponse:
        try:
            return cmd.run(lambda uow: jobs.submit(uow, caller, contract_id, body), body, 201)
        except DataBourseError as exc:
            actor = Actor(caller.kind, caller.id, caller.org_id)
            job_id = jobs.record_refusal(ctx.writes, actor, caller, contract_id, body, exc)
            if job_id is not None:
                exc.extra["job_id"] = job_id
            raise

    response = await asyncio.to_thread(submit)
    job = json.loads(bytes(response.body))
    if job.get("state") == "authorised" and response.headers.get("Idempotent-Replayed") is None:
        ctx.compute.runner.start(job["id"])
    if wait > 0 and job.get("id"):
        return JSONResponse(
            (await _await_end(ctx, caller, job["id"], wait)).model_dump(mode="json"), 201
        )
    return response


@router.get(
    "/contracts/{contract_id}/jobs", response_model=list[JobOut], openapi_extra=action("job.read")
)
def list_jobs(
    contract_id: str,
    caller: Caller,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    return [jobs.visible(j, caller) for j in jobs.list_for(session, caller, contract_id, limit)]


@router.get("/jobs/{job_id}", response_model=JobOut, openapi_extra=action("job.read"))
async def get_job(
    job_id: str,
    caller: Caller,
    ctx: Ctx,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0,
) -> Any:
    """The job, its progress and, once it succeeded, its result. ``wait`` (seconds) waits
    for the job to finish."""
    if wait > 0:
        return await _await_end(ctx, caller, job_id, wait)
    return await asyncio.to_thread(_read_job, ctx, caller, job_id)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, openapi_extra=action("job.cancel"))
def cancel_job(job_id: str, caller: Caller, cmd: Cmd) -> Any:
    return cmd.run(lambda uow: jobs.cancel(uow, caller, job_id))


@router.get(
    "/contracts/{contract_id}/budget",
    response_model=list[BudgetOut],
    openapi_extra=action("budget.read"),
)
def get_budget(contract_id: str, caller: Caller, session: ReadSession) -> Any:
    """The contract's privacy budget: granted, spent and remaining ε and δ."""
    return jobs.budgets_of(session, caller, contract_id)
