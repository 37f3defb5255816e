"""A buyer's compute job through its lifecycle:

    submitted → authorised → running → succeeded | failed | cancelled
    submitted → refused

Submission and authorisation are one transaction: the contract is judged for this use
now (``delivery.access``: active, in term, nobody suspended, purpose and territory
licensed), the job counted against ``max_calls``, the request checked for what the
service and policy allow — for SQL the query planned (``dpsql``: it must be answerable
with differential privacy, or under the threshold rule) and the privacy budget charged —
and ``job.submitted`` and ``job.authorised`` go on the ledger with the charge. So a result
is only ever computed for ε already spent, and concurrent queries can never overspend. A
request that fails these checks is recorded as ``refused`` (with the problem) in a
transaction of its own, and the caller gets the problem.

Running and finishing are the runner's (``runner``); cancelling is the buyer's: a job not
yet running is cancelled at once, a running one at its next step. ε spent on a query that
then fails stays spent: the charge is for the right to a release, and the node may
already have computed it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from databourse.auth.policy import OP, REG, Principal, authorize
from databourse.catalog.policy import UsagePolicy
from databourse.compute import budget as budget_units
from databourse.compute import budgets, dpsql
from databourse.compute.errors import InvalidTrainingSpec
from databourse.compute.models import ComputeService, Job, PrivacyBudget
from databourse.compute.node import canonical
from databourse.compute.schemas import (
    BudgetOut,
    FlJobIn,
    JobIn,
    JobOut,
    PsiJobIn,
    SqlJobIn,
)
from databourse.compute.services import active_node
from databourse.db import new_id, utcnow
from databourse.delivery import access, rules
from databourse.delivery.errors import NotDeliverable
from databourse.errors import DataBourseError, InvalidTransition, NotFound, ValidationFailed
from databourse.ledger.writer import assert_untampered
from databourse.market.models import Contract
from databourse.uow import Actor, UnitOfWork

TERMINAL = ("succeeded", "failed", "cancelled", "refused")
COUNTED = ("authorised", "running", "succeeded")


def subject_of(job_id: str) -> str:
    return job_id


def state(j: Job) -> dict[str, Any]:
    """What the ledger vouches for: the lifecycle, not the progress bar."""
    return {
        "id": j.id,
        "contract_id": j.contract_id,
        "kind": j.kind,
        "state": j.state,
        "epsilon_micro": j.epsilon_micro,
        "delta_pico": j.delta_pico,
        "cancel_requested": j.cancel_requested,
        "result_sha256": j.result_sha256,
    }


def visible(j: Job, principal: Principal) -> JobOut:
    """The job as ``principal`` may see it: the result is the buyer's (and the exchange's
    and regulator's, who audit); the merchant sees that a job ran, not what it gave."""
    seen = out(j)
    auditor = principal.kind == "system" or bool({OP, REG} & set(principal.roles))
    if principal.org_id != j.buyer_org_id and not auditor:
        seen = seen.model_copy(update={"result": None})
    return seen


def out(j: Job) -> JobOut:
    return JobOut(
        id=j.id,
        contract_id=j.contract_id,
        product_id=j.product_id,
        kind=j.kind,
        state=j.state,
        request=j.request,
        epsilon=j.epsilon_micro / budget_units.EPSILON_UNIT,
        delta=j.delta_pico / budget_units.DELTA_UNIT,
        progress=j.progress,
        progress_note=j.progress_note,
        cancel_requested=j.cancel_requested,
        result=j.result,
        result_sha256=j.result_sha256,
        problem=j.problem,
        created_at=j.created_at,
        updated_at=j.updated_at,
        finished_at=j.finished_at,
    )


def result_hash(result: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(result)).hexdigest()


def _contract(session: Session, principal: Principal, contract_id: str) -> Contract:
    """The contract, locked: concurrent submissions on it are counted one after another."""
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    authorize(principal, "job.submit", c.buyer_org_id)
    locked = session.get(Contract, contract_id, with_for_update=True, populate_existing=True)
    assert locked is not None
    return locked


def _service(session: Session, product_id: str, kind: str) -> ComputeService:
    svc = session.get(ComputeService, product_id)
    if svc is None:
        raise NotDeliverable(f"product {product_id} has no compute service declared")
    if svc.kind != kind:
        raise ValidationFailed(
            f"product {product_id} computes {svc.kind}, not {kind}", field="kind"
        )
    return svc


def _count(session: Session, grant: access.Grant) -> None:
    used = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.contract_id == grant.contract_id, Job.state.in_(COUNTED))
    )
    refusal = rules.over_count("jobs", used or 0, 1, [grant.policy.count.max_calls])
    if refusal is not None:
        raise access.refuse(refusal, grant)


def _authorise_sql(
    uow: UnitOfWork, job: Job, grant: access.Grant, svc: ComputeService, data: SqlJobIn
) -> dict[str, Any]:
    output = grant.policy.output
    schema = dpsql.Schema.from_dict(svc.spec["schema"])
    if output.epsilon_micro is not None:
        if data.epsilon is None:
            raise budget_units.InvalidPrivacyParameter(
                "name the query's ε (epsilon)", parameter="epsilon"
            )
        budget_units.delta_pico(data.delta)  # refuse a malformed δ by its own name
        if budget_units.epsilon_micro(data.epsilon) == 0:
            raise budget_units.InvalidPrivacyParameter(
                "a query's ε must be positive", parameter="epsilon"
            )
        plan = dpsql.plan(data.sql, schema, epsilon=data.epsilon, delta=data.delta)
        # what the mechanisms spend: the ε asked for, and δ 0 (pure ε-DP noise)
        eps, delta = budget_units.epsilon_micro(plan.epsilon), budget_units.delta_pico(plan.delta)
        budgets.charge(uow, job.contract_id, schema.privacy_unit, eps, delta, ref=job.id)
        job.epsilon_micro, job.delta_pico = eps, delta
        return {"mode": "dp", "columns": list(plan.columns)}
    if output.min_group_size is not None:
        plan = dpsql.plan_threshold(data.sql, schema, min_group_size=output.min_group_size)
        return {"mode": "threshold", "min_group_size": output.min_group_size}
    raise NotDeliverable(
        "the contract's policy grants neither a privacy budget nor a minimum group size, "
        "so no query result may be released"
    )


def _authorise_psi(
    session: Session, grant: access.Grant, svc: ComputeService, data: PsiJobIn
) -> dict[str, Any]:
    if data.reveal not in svc.spec["reveal"]:
        raise ValidationFailed(
            f"this product reveals only {', '.join(svc.spec['reveal'])}", field="reveal"
        )
    active_node(session, data.node_id, grant.buyer_org_id, "the buyer")
    if svc.node_id is not None:
        active_node(session, svc.node_id, grant.merchant_org_id, "the merchant")
    return {}


def _authorise_fl(
    session: Session, grant: access.Grant, svc: ComputeService, data: FlJobIn
) -> dict[str, Any]:
    from databourse.compute import federated

    spec = federated.TrainingSpec.from_dict(data.spec)
    allowed = set(svc.spec["features"])
    extra = sorted(set(spec.features) - allowed)
    if extra:
        raise InvalidTrainingSpec(
            f"features not offered by the product: {', '.join(extra)}", field="features"
        )
    if spec.label != svc.spec["label"]:
        raise InvalidTrainingSpec(f"the label is {svc.spec['label']}", field="label")
    if spec.model not in svc.spec["models"]:
        raise InvalidTrainingSpec(
            f"the product trains {', '.join(svc.spec['models'])} models", field="model"
        )
    for p in svc.spec["participants"]:
        if p["node_id"] is not None:
            active_node(session, p["node_id"], grant.merchant_org_id, "the merchant")
    if data.participant is not None:
        if data.participant.node_id is None:
            raise ValidationFailed("name your own node to join the training", field="participant")
        active_node(session, data.participant.node_id, grant.buyer_org_id, "the buyer")
    if len(svc.spec["participants"]) + (data.participant is not None) < 2:
        raise InvalidTrainingSpec("federated training needs at least two data holders")
    return {"spec": spec.to_dict()}


def _new_job(c: Contract, principal: Principal, data: JobIn, state: str) -> Job:
    now = utcnow()
    return Job(
        id=new_id("job"),
        contract_id=c.id,
        product_id=c.product_id,
        buyer_org_id=c.buyer_org_id,
        kind=data.kind,
        state=state,
        request=data.model_dump(mode="json", by_alias=True),
        epsilon_micro=0,
        delta_pico=0,
        progress=0.0,
        cancel_requested=False,
        submitted_by=principal.ref,
        created_at=now,
        updated_at=now,
    )


def submit(uow: UnitOfWork, principal: Principal, contract_id: str, data: JobIn) -> JobOut:
    """Submit and authorise a job in one transaction (see the module's docstring)."""
    s = uow.session
    c = _contract(s, principal, contract_id)
    purpose = data.purpose or c.purpose
    grant = access.for_use(s, contract_id, purpose, data.territory)
    if grant.product_kind != "compute":
        raise NotDeliverable(f"contract {contract_id} is for a {grant.product_kind} product")
    svc = _service(s, grant.product_id, data.kind)
    _count(s, grant)
    job = _new_job(c, principal, data, "submitted")
    s.add(job)
    s.flush()
    parties = (c.buyer_org_id, grant.merchant_org_id)
    uow.record("job.submitted", job.id, {**state(job), "request": job.request}, state(job), parties)
    if isinstance(data, SqlJobIn):
        extra = _authorise_sql(uow, job, grant, svc, data)
    elif isinstance(data, PsiJobIn):
        extra = _authorise_psi(s, grant, svc, data)
    else:
        extra = _authorise_fl(s, grant, svc, data)
    job.request = {**job.request, **extra, "service_revision": svc.revision}
    job.state = "authorised"
    job.updated_at = utcnow()
    s.flush()
    uow.record("job.authorised", job.id, state(job), state(job), parties)
    return out(job)


#: The problems a submission is refused with, as opposed to errors of who may ask at all.
REFUSALS = (
    "query-not-private",
    "privacy-budget-exhausted",
    "no-privacy-budget",
    "invalid-privacy-parameter",
    "usage-refused",
    "no-usable-contract",
    "invalid-psi-input",
    "invalid-training-spec",
    "not-deliverable",
    "validation",
)


def record_refusal(
    writes: sessionmaker[Session],
    actor: Actor,
    principal: Principal,
    contract_id: str,
    data: JobIn,
    error: DataBourseError,
) -> str | None:
    """Record a refused submission (its own transaction): the audit trail of what was
    asked and why it was refused. None when the caller may not submit on the contract."""
    if error.slug not in REFUSALS:
        return None
    with UnitOfWork(writes, actor) as uow:
        s = uow.session
        c = s.get(Contract, contract_id)
        if c is None or (principal.kind != "system" and c.buyer_org_id != principal.org_id):
            return None
        job = _new_job(c, principal, data, "refused")
        job.problem = {"type": error.type, "title": error.title, "detail": error.detail}
        job.finished_at = job.created_at
        s.add(job)
        s.flush()
        uow.record(
            "job.refused",
            job.id,
            {**state(job), "request": job.request, "problem": error.type},
            state(job),
            (c.buyer_org_id,),
        )
        uow.commit()
        return job.id


def get(session: Session, principal: Principal, job_id: str) -> Job:
    j = session.get(Job, job_id)
    if j is None:
        raise NotFound(f"job {job_id} not found")
    c = session.get(Contract, j.contract_id)
    assert c is not None
    _authorize_read(principal, c)
    return j


def _authorize_read(principal: Principal, c: Contract) -> None:
    try:
        authorize(principal, "job.read", c.buyer_org_id)
    except NotFound:
        authorize(principal, "job.read", c.merchant_org_id)


def list_for(session: Session, principal: Principal, contract_id: str, limit: int) -> list[Job]:
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    _authorize_read(principal, c)
    return list(
        session.scalars(
            select(Job)
            .where(Job.contract_id == contract_id)
            .order_by(Job.created_at.desc(), Job.id)
            .limit(limit)
        )
    )


def cancel(uow: UnitOfWork, principal: Principal, job_id: str) -> JobOut:
    """Cancel a job not yet finished: at once if it has not started, else at its next
    step (the runner sees ``cancel_requested``)."""
    j = uow.session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if j is None:
        raise NotFound(f"job {job_id} not found")
    c = uow.session.get(Contract, j.contract_id)
    assert c is not None
    authorize(principal, "job.cancel", c.buyer_org_id)
    if j.state in TERMINAL:
        raise InvalidTransition(f"job {job_id} is already {j.state}")
    assert_untampered(uow, j.id, state(j))
    now = utcnow()
    if j.state in ("submitted", "authorised"):
        j.state, j.finished_at, j.progress_note = "cancelled", now, "cancelled before it ran"
        kind = "job.cancelled"
    else:
        kind = "job.cancel_requested"
    j.cancel_requested = True
    j.updated_at = now
    uow.session.flush()
    uow.record(kind, j.id, state(j), state(j), (c.buyer_org_id,))
    return out(j)


def budgets_of(session: Session, principal: Principal, contract_id: str) -> list[BudgetOut]:
    """The contract's privacy budgets: one per privacy unit charged so far, or the
    policy's whole grant when nothing has been charged yet."""
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    try:
        authorize(principal, "budget.read", c.buyer_org_id)
    except NotFound:
        authorize(principal, "budget.read", c.merchant_org_id)
    rows: Sequence[PrivacyBudget] = session.scalars(
        select(PrivacyBudget)
        .where(PrivacyBudget.contract_id == contract_id)
        .order_by(PrivacyBudget.privacy_unit)
    ).all()
    output = UsagePolicy.model_validate(c.policy).output
    if not rows and output.epsilon_micro is not None:
        svc = session.get(ComputeService, c.product_id)
        unit = "*"
        if svc is not None and svc.kind == "sql":
            unit = str(svc.spec["schema"].get("privacy_unit", "*"))
        eps, delta = output.epsilon_micro, output.delta_pico or 0
        fresh = PrivacyBudget(contract_id=c.id, privacy_unit=unit, epsilon_micro=eps)
        fresh.delta_pico, fresh.spent_epsilon_micro, fresh.spent_delta_pico = delta, 0, 0
        rows = [fresh]
    e, d = budget_units.EPSILON_UNIT, budget_units.DELTA_UNIT
    return [
        BudgetOut(
            contract_id=b.contract_id,
            privacy_unit=b.privacy_unit,
            epsilon=b.epsilon_micro / e,
            delta=b.delta_pico / d,
            spent_epsilon=b.spent_epsilon_micro / e,
            spent_delta=b.spent_delta_pico / d,
            remaining_epsilon=(b.epsilon_micro - b.spent_epsilon_micro) / e,
            remaining_delta=(b.delta_pico - b.spent_delta_pico) / d,
        )
        for b in rows
    ]
