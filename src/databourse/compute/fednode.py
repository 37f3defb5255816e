"""A node's side of federated training: the holder of its rows for one job, answering
the coordinator's messages (``federated.handle_message``) until the job ends. The holder
is built from the node's dataset at the job's first message and kept in the runtime's
sessions; only parameters, counts, aggregate statistics and metrics are returned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from databourse.compute import federated
from databourse.compute.errors import InvalidTrainingSpec

if TYPE_CHECKING:
    from databourse.compute.node import NodeRuntime


def step(runtime: NodeRuntime, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    job = body.get("job")
    if not isinstance(job, str) or not job:
        raise InvalidTrainingSpec("name the job")
    if name == "end":
        runtime.drop(job)
        return {"ended": job}
    spec = federated.TrainingSpec.from_dict(body.get("spec") or {})
    holder, digest = runtime.session(job, "fl") or (None, None)
    if holder is None or digest != spec.digest():
        dataset = body.get("dataset")
        if not isinstance(dataset, str):
            raise InvalidTrainingSpec("name the dataset")
        holder = federated.Holder.from_arrow(runtime.datasets.table(dataset), spec)
        digest = spec.digest()
        runtime.start_session(job, "fl", (holder, digest))
    return federated.handle_message(holder, spec, body.get("message") or {})
