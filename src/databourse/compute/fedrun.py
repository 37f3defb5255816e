"""The exchange's side of a federated training job: Flower's FedAvg over the
participants' nodes, each message carried by the node protocol (``fl/message``)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from databourse.compute import federated
from databourse.compute.models import ComputeService, Job
from databourse.db import utcnow
from databourse.settlement import usage

if TYPE_CHECKING:
    from databourse.compute.runner import JobRunner


def train(
    runner: JobRunner, job: Job, svc: ComputeService
) -> tuple[dict[str, Any], list[usage.UsageEvent]]:
    spec = federated.TrainingSpec.from_dict(job.request["spec"])
    holders = list(svc.spec["participants"])
    if job.request.get("participant"):
        holders.append(job.request["participant"])
    nodes = [(runner._node(p["node_id"]), p["dataset"]) for p in holders]

    def sender(node: Any, dataset: str) -> Any:
        def send(message: dict[str, Any]) -> dict[str, Any]:
            body = {"job": job.id, "dataset": dataset, "spec": spec.to_dict(), "message": message}
            return node.call("POST", "fl/message", body)

        return send

    participants = [federated.RemoteParticipant(spec, sender(n, d)) for n, d in nodes]

    def progress(done: int, total: int, metrics: dict[str, float]) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())[:3])
        runner.progress(
            job.id, done / total, f"round {done}/{total}" + (f": {shown}" if shown else "")
        )

    try:
        result = federated.Coordinator(spec, participants).run(progress=progress)
    finally:
        for n, _ in nodes:
            with contextlib.suppress(Exception):  # the session expires on the node anyway
                n.call("POST", "fl/end", {"job": job.id})
    out = result.to_dict()
    out["nodes"] = [n.name for n, _ in nodes]
    rows = sum(int(p.get("train_rows", 0)) for p in result.participants)
    metrics = {"call": 1 + result.rounds_completed * len(nodes), "row": rows}
    return out, runner._events(job, metrics, utcnow())
