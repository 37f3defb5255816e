"""Running authorised jobs: the exchange's side of each computation.

A job runs on a worker thread of the process that accepted it. Each lifecycle step is a
transaction with its ledger entry: ``job.started``; then ``job.succeeded`` with the
result's SHA-256 and the job's metering (``usage.recorded``) in the same transaction — or
``job.failed`` / ``job.cancelled``. Progress is written as it goes, without a ledger
entry (it is not a state). The exchange only ever holds what nodes send it: a noisy or
thresholded table, opaque PSI messages it relays, a count, model parameters and metrics.

Metering (metrics of ``settlement.usage``): every job is one ``call``; a DP query also
its ``epsilon_micro``; a PSI the initiator's item count as ``row``; a training
``rounds × participants`` more calls and the training rows as ``row``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from databourse.compute import jobs, psi
from databourse.compute.errors import InvalidPSIInput
from databourse.compute.models import ComputeService, Job, Node
from databourse.compute.nodeclient import NodeClient, NodeFailed
from databourse.db import utcnow
from databourse.errors import Conflict, DataBourseError
from databourse.settlement import usage
from databourse.uow import Actor, UnitOfWork

log = logging.getLogger("databourse.compute.runner")
RUNNER = Actor("system", "compute-runner")


#: What the buyer's node may report of a PSI's result (the exchange keeps nothing else).
PSI_RESULT = ("cardinality", "intersection_size", "sha256", "output")


def _message(answer: dict[str, Any]) -> bytes:
    """A relayed PSI message from a node's answer; a malformed one fails the job."""
    try:
        return base64.b64decode(answer["message"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise NodeFailed("a node answered the PSI with no valid message") from exc


class Cancelled(Exception):
    """The buyer cancelled the job; raised between steps."""


NodeFor = Callable[[Node | None], NodeClient]


class JobRunner:
    """Runs jobs on a small thread pool. ``node_for(node)`` gives the client for a
    registered node, or the embedded node for None."""

    def __init__(
        self, writes: sessionmaker[Session], reads: sessionmaker[Session], node_for: NodeFor,
        workers: int = 4,
    ) -> None:  # fmt: skip
        self.writes = writes
        self.reads = reads
        self.node_for = node_for
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="compute-job")

    def start(self, job_id: str) -> None:
        self._pool.submit(self.run, job_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    # steps
    def _transition(self, job_id: str, to: str, **changes: Any) -> Job | None:
        with UnitOfWork(self.writes, RUNNER) as uow:
            j = uow.session.get(Job, job_id, with_for_update=True, populate_existing=True)
            if j is None or j.state in jobs.TERMINAL:
                return None
            if to == "running" and j.state != "authorised":
                return None
            events: list[usage.UsageEvent] = changes.pop("usage", [])
            for k, v in changes.items():
                setattr(j, k, v)
            j.state = to
            j.updated_at = utcnow()
            if to in jobs.TERMINAL:
                j.finished_at = j.updated_at
            uow.session.flush()
            if events:
                usage.ingest(uow, events)
            body = jobs.state(j)
            if j.problem:
                body["problem"] = j.problem.get("type")
            kind = {"running": "job.started"}.get(to, f"job.{to}")
            uow.record(kind, j.id, body, jobs.state(j), (j.buyer_org_id,))
            uow.commit()
            return j

    def progress(self, job_id: str, fraction: float, note: str) -> None:
        """Write progress; raise ``Cancelled`` if the buyer has asked to cancel."""
        with UnitOfWork(self.writes, RUNNER) as uow:
            j = uow.session.get(Job, job_id, with_for_update=True, populate_existing=True)
            if j is None:
                return
            cancel = j.cancel_requested
            j.progress = max(0.0, min(1.0, fraction))
            j.progress_note = note[:300]
            j.updated_at = utcnow()
            uow.commit()
        if cancel:
            raise Cancelled()

    def run(self, job_id: str) -> None:
        """Run one authorised job to its end (a no-op if it is not authorised)."""
        j = self._transition(job_id, "running", progress=0.0, progress_note="started")
        if j is None:
            return
        try:
            with self.reads() as s:
                job = s.get(Job, job_id)
                assert job is not None
                svc = s.get(ComputeService, job.product_id)
                assert svc is not None
                s.expunge_all()
            if svc.revision != job.request.get("service_revision") or svc.kind != job.kind:
                raise Conflict(
                    "the product's compute service was declared again after the job was "
                    "authorised; submit the job again"
                )
            run = {"sql": self._sql, "psi": self._psi, "fl": self._fl}[job.kind]
            result, events = run(job, svc)
            self._transition(
                job_id,
                "succeeded",
                result=result,
                result_sha256=jobs.result_hash(result),
                progress=1.0,
                progress_note="done",
                usage=events,
            )
        except Cancelled:
            self._transition(job_id, "cancelled", progress_note="cancelled by the buyer")
        except DataBourseError as exc:
            log.info("job %s failed: %s", job_id, exc.detail)
            problem = {"type": exc.type, "title": exc.title, "detail": exc.detail}
            self._transition(job_id, "failed", problem=problem, progress_note="failed")
        except Exception:
            log.exception("job %s failed", job_id)
            problem = {
                "type": "urn:databourse:problem:internal",
                "title": "Internal error",
                "detail": "the job failed on the exchange; nothing was released",
            }
            self._transition(job_id, "failed", problem=problem, progress_note="failed")

    # kinds
    def _node(self, node_id: str | None) -> NodeClient:
        if node_id is None:
            return self.node_for(None)
        with self.reads() as s:
            n = s.get(Node, node_id)
            if n is None or n.status != "active":
                raise NodeFailed(f"node {node_id} is not active")
            s.expunge(n)
        return self.node_for(n)

    def _events(self, job: Job, metrics: Mapping[str, int], at: datetime) -> list[usage.UsageEvent]:
        return [
            usage.UsageEvent(job.contract_id, m, int(q), at, "compute", f"{job.id}:{m}")
            for m, q in metrics.items()
            if q > 0
        ]

    def _sql(self, job: Job, svc: ComputeService) -> tuple[dict[str, Any], list[usage.UsageEvent]]:
        req = job.request
        node = self._node(svc.node_id)
        self.progress(job.id, 0.1, f"query sent to node {node.name}")
        body = {
            "job": job.id,
            "sql": req["sql"],
            "mode": req["mode"],
            "epsilon": req.get("epsilon"),
            "delta": req.get("delta") or 0.0,
            "min_group_size": req.get("min_group_size"),
            "schema": svc.spec["schema"],
            "tables": svc.spec["tables"],
        }
        result = node.call("POST", "sql", body)
        metrics = {"call": 1, "epsilon_micro": job.epsilon_micro}
        return {"node": node.name, **result}, self._events(job, metrics, utcnow())

    def _psi(self, job: Job, svc: ComputeService) -> tuple[dict[str, Any], list[usage.UsageEvent]]:
        """Relay the three messages; keep only their hashes and sizes as the transcript."""
        req = job.request
        initiator = self._node(req["node_id"])
        responder = self._node(svc.node_id)
        m1 = initiator.call(
            "POST",
            "psi/request",
            {"job": job.id, "dataset": req["dataset"], "column": req["column"],
             "reveal": req["reveal"]},
        )  # fmt: skip
        self.progress(job.id, 1 / 3, f"relayed the buyer node's message to {responder.name}")
        header = psi.read_header(_message(m1))
        if header.kind != "request" or header.reveal != req["reveal"]:
            raise InvalidPSIInput(
                f"the buyer's node asked to reveal {header.reveal}, not the authorised "
                f"{req['reveal']}"
            )
        m2 = responder.call(
            "POST",
            "psi/reply",
            {"job": job.id, "dataset": svc.spec["dataset"], "column": svc.spec["column"],
             "reveal": req["reveal"], "message": m1["message"]},
        )  # fmt: skip
        self.progress(job.id, 2 / 3, f"relayed {responder.name}'s answer to the buyer's node")
        result = initiator.call("POST", "psi/finish", {"job": job.id, "message": m2["message"]})
        sizes = [len(psi.transcript_items(_message(m))) for m in (m1, m2)]
        transcript = [
            {"from": who, "sha256": hashlib.sha256(_message(m)).hexdigest(), "elements": n}
            for who, m, n in ((initiator.name, m1, sizes[0]), (responder.name, m2, sizes[1]))
        ]
        out: dict[str, Any] = {k: result[k] for k in PSI_RESULT if k in result}
        for k in ("cardinality", "intersection_size"):
            if k in out and (isinstance(out[k], bool) or not isinstance(out[k], int)):
                raise NodeFailed(f"node {initiator.name} answered the PSI with a bad {k}")
        out.update(
            reveal=req["reveal"],
            initiator=initiator.name,
            responder=responder.name,
            transcript=transcript,
        )
        return out, self._events(job, {"call": 1, "row": sizes[0]}, utcnow())

    def _fl(self, job: Job, svc: ComputeService) -> tuple[dict[str, Any], list[usage.UsageEvent]]:
        from databourse.compute import fedrun

        return fedrun.train(self, job, svc)
