"""A compute node: the process that holds a data holder's tables and runs only the jobs
the exchange authorises, returning only their permitted output (原始数据不出域).

``NodeRuntime`` is the node's logic, transport-free: DP SQL over its tables, its side of a
private set intersection, its side of federated training. Two things carry requests to
it: ``node_app`` (the HTTP server ``databourse node serve`` runs next to the merchant's
data, every request signed by the exchange and every answer signed by the node, see
``nodeauth``) and, for data the exchange itself hosts, the exchange's embedded node,
which calls the runtime in process. What a runtime method returns is all that leaves the
node: a noisy or thresholded table, an opaque PSI message, a count, model parameters and
metrics — never a row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from databourse.compute import dprun, dpsql, psi
from databourse.compute.errors import InvalidPSIInput, QueryNotPrivate
from databourse.errors import NotFound, ValidationFailed

SESSION_SECONDS = 3600  # a PSI or training session's state is dropped after an hour idle
DATASET_NAME = r"^[A-Za-z0-9_:.\-]{1,120}$"
PSI_REVEALS = ("cardinality", "intersection")
FL_STEPS = ("message", "end")
PER_UNIT_CACHE = 8  # datasets whose rows per privacy unit a node remembers


class UnknownDataset(NotFound):
    slug = "unknown-dataset"
    title = "The node holds no such dataset"


class NodeSessionMissing(ValidationFailed):
    slug = "node-session-missing"
    title = "The node has no session for this job step"


# Datasets ---------------------------------------------------------------------------------


def column_types(schema: pa.Schema) -> list[dict[str, str]]:
    """A table's columns as the exchange may know them: names and logical types."""
    out = []
    for f in schema:
        t = f.type
        if pa.types.is_integer(t):
            kind = "integer"
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            kind = "float"
        elif pa.types.is_boolean(t):
            kind = "boolean"
        elif pa.types.is_date(t) or pa.types.is_timestamp(t):
            kind = "date"
        else:
            kind = "string"
        out.append({"name": f.name, "type": kind})
    return out


class FileDatasets:
    """Datasets that are CSV or Parquet files on the node's own disk, read when first used
    and again when the file changes."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self.paths = dict(paths)
        self._cache: dict[str, tuple[float, pa.Table]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self.paths)

    def table(self, name: str) -> pa.Table:
        path = self.paths.get(name)
        if path is None:
            raise UnknownDataset(f"this node holds no dataset {name!r}", dataset=name)
        mtime = path.stat().st_mtime
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and hit[0] == mtime:
                return hit[1]
        table = pq.read_table(path) if path.suffix.lower() == ".parquet" else pacsv.read_csv(path)
        with self._lock:
            self._cache[name] = (mtime, table)
        return table

    def text_column(self, name: str, column: str) -> pa.ChunkedArray:
        """One column as text, exactly as written: identifiers such as ``0086…`` must not
        be read as numbers."""
        path = self.paths.get(name)
        if path is None:
            raise UnknownDataset(f"this node holds no dataset {name!r}", dataset=name)
        if column not in self.columns(name):
            raise InvalidPSIInput(f"the dataset has no column {column!r}", column=column)
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path, columns=[column])
        else:
            options = pacsv.ConvertOptions(
                include_columns=[column], column_types={column: pa.string()}
            )
            table = pacsv.read_csv(path, convert_options=options)
        return table.column(column).cast(pa.string())

    def _schema(self, name: str) -> pa.Schema:
        path = self.paths[name]
        return (
            pq.read_schema(path) if path.suffix.lower() == ".parquet" else self.table(name).schema
        )

    def columns(self, name: str) -> list[str]:
        """The column names, from the file's header alone."""
        path = self.paths[name]
        if path.suffix.lower() == ".parquet":
            return list(pq.read_schema(path).names)
        with pacsv.open_csv(path) as reader:
            return list(reader.schema.names)

    def describe(self) -> dict[str, Any]:
        return {n: {"columns": column_types(self._schema(n))} for n in self.names()}


class TableSource:
    """Datasets given by a function (the embedded node's: the exchange's stored files)."""

    def __init__(self, load: Callable[[str], pa.Table], names: Callable[[], list[str]]) -> None:
        self._load = load
        self._names = names

    def names(self) -> list[str]:
        return self._names()

    def table(self, name: str) -> pa.Table:
        return self._load(name)

    def text_column(self, name: str, column: str) -> pa.ChunkedArray:
        table = self._load(name)
        if column not in table.column_names:
            raise InvalidPSIInput(f"the dataset has no column {column!r}", column=column)
        return table.column(column).cast(pa.string())

    def describe(self) -> dict[str, Any]:
        return {n: {"columns": column_types(self.table(n).schema)} for n in self.names()}


# The runtime ------------------------------------------------------------------------------


@dataclass
class _Session:
    kind: str
    state: Any
    touched: float = field(default_factory=time.monotonic)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidPSIInput(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPSIInput(f"{what} is not base64") from exc


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{key} must be a non-empty string", field=key)
    return value


class NodeRuntime:
    """The node's computations. Thread-safe; sessions (a PSI initiator between its two
    steps, a training participant between rounds) live in memory, keyed by job id."""

    def __init__(
        self,
        name: str,
        datasets: FileDatasets | TableSource,
        *,
        outputs: Path | None = None,
        psi_workers: int = 1,
    ) -> None:
        self.name = name
        self.datasets = datasets
        self.outputs = outputs
        self.psi_workers = psi_workers
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._per_unit: dict[tuple[str, str], tuple[pa.Table, int]] = {}
        self._lock = threading.Lock()

    # sessions
    def _put(self, job: str, kind: str, state: Any) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, s in self._sessions.items() if now - s.touched > SESSION_SECONDS]:
                del self._sessions[key]
            self._sessions[(job, kind)] = _Session(kind, state, now)

    def _get(self, job: str, kind: str, *, pop: bool = False) -> Any:
        with self._lock:
            s = self._sessions.pop((job, kind), None) if pop else self._sessions.get((job, kind))
            if s is None:
                raise NodeSessionMissing(f"no {kind} session for job {job} on this node", job=job)
            s.touched = time.monotonic()
            return s.state

    def session(self, job: str, kind: str) -> Any:
        """A job's session state, or None (for steps that start one when there is none)."""
        with self._lock:
            s = self._sessions.get((job, kind))
            if s is None:
                return None
            s.touched = time.monotonic()
            return s.state

    def start_session(self, job: str, kind: str, state: Any) -> None:
        self._put(job, kind, state)

    def drop(self, job: str) -> None:
        with self._lock:
            for key in [k for k in self._sessions if k[0] == job]:
                del self._sessions[key]

    # what the node holds
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "datasets": self.datasets.describe()}

    # DP SQL
    def sql(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Plan the query again here (the node does not take the exchange's word that it is
        private), run it over the node's tables and return the noisy or thresholded
        result."""
        try:
            schema = dpsql.Schema.from_dict(body["schema"])
        except (KeyError, TypeError, ValueError) as exc:
            raise QueryNotPrivate(
                f"the declared schema is not valid: {exc}", reason="schema"
            ) from exc
        query = _str(body, "sql")
        if body.get("mode") == "threshold":
            k = body.get("min_group_size")
            if not isinstance(k, int) or k < 2:
                raise QueryNotPrivate("threshold mode needs min_group_size ≥ 2", reason="schema")
            plan = dpsql.plan_threshold(query, schema, min_group_size=k)
        else:
            epsilon, delta = body.get("epsilon"), body.get("delta") or 0.0
            if not isinstance(epsilon, int | float) or not isinstance(delta, int | float):
                raise QueryNotPrivate("a DP query needs a numeric ε and δ", reason="schema")
            plan = dpsql.plan(query, schema, epsilon=float(epsilon), delta=float(delta))
        mapping = body.get("tables") or {}
        tables, per_unit = {}, {}
        for t in schema.tables:
            dataset = mapping.get(t.name, t.name) if isinstance(mapping, dict) else t.name
            tables[t.name] = self.datasets.table(dataset)
            per_unit[t.name] = self._rows_per_unit(dataset, tables[t.name], schema.privacy_unit)
        return dprun.run(plan, tables, rows_per_unit=per_unit).to_dict()

    def _rows_per_unit(self, dataset: str, table: pa.Table, unit: str) -> int:
        """Measured once per version of a dataset (the table object the dataset gives)."""
        key = (dataset, unit)
        with self._lock:
            hit = self._per_unit.get(key)
        if hit is not None and hit[0] is table:
            return hit[1]
        n = dprun.rows_per_unit(table, unit)
        with self._lock:
            self._per_unit.pop(key, None)
            while len(self._per_unit) >= PER_UNIT_CACHE:  # drop the oldest: it holds a table
                self._per_unit.pop(next(iter(self._per_unit)))
            self._per_unit[key] = (table, n)
        return n

    # PSI
    def _psi_items(self, body: Mapping[str, Any]) -> list[str]:
        dataset, column = _str(body, "dataset"), _str(body, "column")
        return self.datasets.text_column(dataset, column).drop_null().to_pylist()

    def psi_request(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The initiator's first message; the initiator's state stays here."""
        job, reveal = _str(body, "job"), body.get("reveal")
        if reveal not in PSI_REVEALS:
            raise InvalidPSIInput("reveal must be cardinality or intersection")
        initiator = psi.Initiator(self._psi_items(body), reveal=reveal, workers=self.psi_workers)
        message = initiator.request()
        self._put(job, "psi", (initiator, reveal))
        return {"message": _b64(message)}

    def psi_reply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The responder's answer to the initiator's message (its items stay blinded)."""
        request = _unb64(body.get("message"), "message")
        header = psi.read_header(request)
        if header.kind != "request" or header.reveal != body.get("reveal"):
            # the initiator writes the header: the responder holds it to what was authorised
            raise InvalidPSIInput(
                f"the request asks to reveal {header.reveal}; the job authorised "
                f"{body.get('reveal')}"
            )
        responder = psi.Responder(self._psi_items(body), workers=self.psi_workers)
        return {"message": _b64(responder.reply(request))}

    def psi_finish(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The result at the initiator: the cardinality, or the intersection written to the
        node's own outputs (the exchange learns only its size and hash)."""
        job = _str(body, "job")
        initiator, reveal = self._get(job, "psi", pop=True)
        result = initiator.finish(_unb64(body.get("message"), "message"))
        if reveal == "cardinality":
            return {"cardinality": int(result)}
        items = list(result)
        text = "".join(f"{i}\n" for i in items).encode()
        out: dict[str, Any] = {
            "intersection_size": len(items),
            "sha256": hashlib.sha256(text).hexdigest(),
        }
        if self.outputs is not None:
            self.outputs.mkdir(parents=True, exist_ok=True)
            path = self.outputs / f"{job}-intersection.txt"
            path.write_bytes(text)
            out["output"] = path.name
        return out

    # federated learning
    def fl(self, step: str, body: Mapping[str, Any]) -> dict[str, Any]:
        from databourse.compute import fednode

        return fednode.step(self, step, body)

    def dispatch(self, method: str, step: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The one table of what a node does, for its HTTP server and the embedded node."""
        if method == "GET" and step == "info":
            return self.info()
        if method == "POST":
            if step == "sql":
                return self.sql(body)
            if step == "psi/request":
                return self.psi_request(body)
            if step == "psi/reply":
                return self.psi_reply(body)
            if step == "psi/finish":
                return self.psi_finish(body)
            if step.startswith("fl/") and step[3:] in FL_STEPS:
                return self.fl(step[3:], body)
        raise NotFound(f"a node has no step {method} {step}")


# Configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeConfig:
    """A node's configuration file (TOML), as ``databourse node init`` writes it::

    name = "bank-node"
    exchange_key = "<the exchange's node-signing public key>"
    key_file = "node.key"          # the node's Ed25519 seed, 0600
    outputs = "outputs"            # where results delivered to this node are written
    psi_workers = 2
    [datasets]
    customers = "customers.csv"    # CSV or Parquet, relative to the file
    """

    name: str
    exchange_key: str
    key_seed: bytes
    datasets: dict[str, Path]
    outputs: Path
    psi_workers: int = 1

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        base = path.parent
        try:
            key_path = base / raw.get("key_file", "node.key")
            seed = base64.urlsafe_b64decode(key_path.read_text().strip() + "==")
            datasets = {str(k): base / str(v) for k, v in dict(raw.get("datasets", {})).items()}
            return cls(
                name=str(raw["name"]),
                exchange_key=str(raw["exchange_key"]),
                key_seed=seed[:32],
                datasets=datasets,
                outputs=base / str(raw.get("outputs", "outputs")),
                psi_workers=int(raw.get("psi_workers", 1)),
            )
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"node configuration {path.name}: {exc}") from exc


def runtime_of(config: NodeConfig) -> NodeRuntime:
    return NodeRuntime(
        config.name,
        FileDatasets(config.datasets),
        outputs=config.outputs,
        psi_workers=config.psi_workers,
    )


def canonical(obj: Any) -> bytes:
    """The bytes a node signs and the exchange hashes: compact, key-sorted JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = [
    "DATASET_NAME",
    "FileDatasets",
    "NodeConfig",
    "NodeRuntime",
    "TableSource",
    "canonical",
    "runtime_of",
]
