"""Horizontal federated learning: FedAvg of logistic and linear regression with Flower (pure).

Several data holders keep rows with the same columns; a coordinator trains one model on
all of them without any row leaving its holder. Flower provides the abstractions: each
holder is a :class:`flwr.client.NumPyClient` (:class:`Holder`), and the coordinator
aggregates with Flower's :class:`~flwr.server.strategy.FedAvg` (``aggregate_fit`` weights
each holder's parameters by its row count, ``aggregate_evaluate`` its loss), with
Flower's ``FitIns``/``FitRes``/``EvaluateIns``/``EvaluateRes`` and ``Parameters``
between them. Flower's own transport (SuperLink, SuperNode, gRPC) is not used: the
exchange carries the messages between its coordinator and the compute nodes itself, so
a participant is anything with NumPyClient's ``fit`` and ``evaluate``: a :class:`Holder`
in the same process, or a :class:`RemoteParticipant` whose ``send`` is the exchange's
authenticated HTTP call to a node that answers with :func:`handle_message`.

The flow (:meth:`Coordinator.run`):

1. statistics: each holder returns, per feature and for the label, its training rows'
   count, sum and sum of squared deviations from its own mean; the coordinator combines
   them (Chan, Golub and LeVeque's pairwise update) into the global means and population
   standard deviations, so every holder standardises the same way without pooling rows;
2. rounds: the global parameters go to every holder, which runs ``local_epochs`` of
   gradient descent with L2 regularisation on its training rows and returns the new
   parameters (clipped and noised if the spec asks), FedAvg averages them;
3. evaluation after each round: each holder scores the global model on its held-out rows
   (a split fixed by the seed) and returns loss, metrics and count; the coordinator
   weights them by count. Log-loss, accuracy, MSE/RMSE and R² come out exact for the
   union of the held-out rows. AUC, which sorts every held-out row, is computed in the
   last round only: averaged over holders it is an approximation, so the holders also
   return per-label histograms of their scores, from which the AUC of the union follows
   to within a bound that is reported with it.

A holder's replies carry parameters, counts, aggregate statistics and metrics only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from operator import methodcaller
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import roc_auc_score

from databourse.compute.errors import InvalidTrainingSpec
from databourse.errors import Conflict

# flwr 1.41's generated protobuf modules were built with protobuf 5.29 and warn, once per
# module, under the 6.x runtime the environment holds; the messages are not ours to fix.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Protobuf gencode version", category=UserWarning)
    import flwr
    from flwr.client import NumPyClient
    from flwr.common import (
        Code,
        EvaluateIns,
        EvaluateRes,
        FitIns,
        FitRes,
        GetParametersIns,
        GetParametersRes,
        GetPropertiesIns,
        GetPropertiesRes,
        Parameters,
        Scalar,
        Status,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.strategy import FedAvg
    from flwr.supercore.differential_privacy import compute_clip_model_update, get_norm

__all__ = [
    "Coordinator",
    "Holder",
    "Participant",
    "RemoteParticipant",
    "TrainingCancelled",
    "TrainingResult",
    "TrainingSpec",
    "decode",
    "encode",
    "handle_message",
    "local_training",
    "pooled_auc",
    "predict",
    "split_rows",
]

Model: TypeAlias = Literal["logistic", "linear"]
Config: TypeAlias = dict[str, Scalar]
FitReply: TypeAlias = tuple[list[np.ndarray], int, Config]
EvaluateReply: TypeAlias = tuple[float, int, Config]
T = TypeVar("T")

MODELS = ("logistic", "linear")
MAX_FEATURES = 1000
MAX_ROUNDS = 100
MAX_EPOCHS = 100
MIN_TRAIN_ROWS = 20  # fewer rows and an update comes close to describing them one by one
MAX_BINS = 4096
SCORE_RANGE = 16.0  # score histograms cover log-odds in [-16, 16]; beyond goes to the ends
MAX_WIRE_CHARS = 1 << 22  # the largest encoded parameter text accepted
_DTYPE = np.dtype("<f8")  # the only array type on the wire
_STAGES = ("statistics", "train", "evaluate")
_SPEC_KEY = "spec"  # config entry with the digest of the spec the coordinator runs
_LINEAR_METRICS = ("rmse", "label_mean", "label_m2")


class TrainingCancelled(Conflict):
    """Raised by :meth:`Coordinator.run` when ``cancelled()`` says so, between rounds.

    ``result`` is the partial :class:`TrainingResult` (``cancelled`` true): the model as of
    the last completed round, or none before the first one finished."""

    slug = "training-cancelled"
    title = "The federated training was cancelled"

    def __init__(self, result: TrainingResult) -> None:
        super().__init__(
            f"the training was cancelled after {result.rounds_completed} of "
            f"{result.spec.rounds} rounds",
            rounds_completed=result.rounds_completed,
        )
        self.result = result


# --- the spec --------------------------------------------------------------------------


def _bad(detail: str, name: str | None = None) -> InvalidTrainingSpec:
    return InvalidTrainingSpec(detail, field=name) if name else InvalidTrainingSpec(detail)


def _int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer", name)
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low} and {high}, not {value}", name)
    return value


def _float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{name} must be a number", name)
    if not math.isfinite(value):
        raise _bad(f"{name} must be finite", name)
    return float(value)


@dataclass(frozen=True)
class TrainingSpec:
    """What to train and how; the holders run it only as stated (its digest travels with
    every request, and a holder refuses a request made for another spec).

    ``learning_rate`` and ``l2`` apply to the mean loss over a holder's rows on
    standardised features (and, for linear regression, a standardised label): the
    objective is ``mean(loss) + l2/2·‖coefficients‖²``, the intercept unpenalised.
    ``clip_norm`` bounds the L2 norm of each holder's update per round; with
    ``noise_multiplier`` σ the holder adds Gaussian noise of standard deviation σ·clip_norm
    to each coordinate of the update. ``batch_size`` ``None`` is full-batch gradient
    descent; ``score_bins`` 0 turns off the histograms behind the pooled AUC."""

    model: Model
    features: Sequence[str]  # kept as a tuple
    label: str
    rounds: int = 20
    local_epochs: int = 5
    learning_rate: float = 0.1
    l2: float = 0.0
    clip_norm: float | None = None
    noise_multiplier: float | None = None
    seed: int = 0
    test_fraction: float = 0.2
    batch_size: int | None = None
    score_bins: int = 256

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise _bad(f"model must be one of {', '.join(MODELS)}, not {self.model!r}", "model")
        features = self.features
        if isinstance(features, str) or not isinstance(features, Sequence):
            raise _bad("features must be a list of column names", "features")
        if not features:
            raise _bad("at least one feature is needed", "features")
        if len(features) > MAX_FEATURES:
            raise _bad(f"at most {MAX_FEATURES} features, not {len(features)}", "features")
        if not all(isinstance(f, str) and f for f in features):
            raise _bad("features must be non-empty column names", "features")
        twice = sorted({f for f in features if features.count(f) > 1})
        if twice:
            raise _bad(f"feature(s) named more than once: {', '.join(twice)}", "features")
        object.__setattr__(self, "features", tuple(features))
        if not isinstance(self.label, str) or not self.label:
            raise _bad("label must be a column name", "label")
        if self.label in features:
            raise _bad(f"the label {self.label!r} is also a feature", "label")
        _int(self.rounds, "rounds", 1, MAX_ROUNDS)
        _int(self.local_epochs, "local_epochs", 1, MAX_EPOCHS)
        lr = _float(self.learning_rate, "learning_rate")
        if not 0 < lr <= 10:
            raise _bad("learning_rate must be in (0, 10]", "learning_rate")
        l2 = _float(self.l2, "l2")
        if not 0 <= l2 <= 100:
            raise _bad("l2 must be in [0, 100]", "l2")
        if self.clip_norm is not None and not _float(self.clip_norm, "clip_norm") > 0:
            raise _bad("clip_norm must be positive", "clip_norm")
        if self.noise_multiplier is not None:
            if not _float(self.noise_multiplier, "noise_multiplier") >= 0:
                raise _bad("noise_multiplier must not be negative", "noise_multiplier")
            if self.clip_norm is None:
                raise _bad(
                    "noise_multiplier needs clip_norm: the noise is σ·clip_norm", "clip_norm"
                )
        _int(self.seed, "seed", 0, 2**63 - 1)
        tf = _float(self.test_fraction, "test_fraction")
        if not 0 < tf <= 0.5:
            raise _bad("test_fraction must be in (0, 0.5]", "test_fraction")
        if self.batch_size is not None:
            _int(self.batch_size, "batch_size", 1, 2**31)
        bins = _int(self.score_bins, "score_bins", 0, MAX_BINS)
        if 0 < bins < 16:
            raise _bad("score_bins must be 0 (off) or at least 16", "score_bins")

    @property
    def dp(self) -> bool:
        """Whether holders add noise to their updates."""
        return bool(self.noise_multiplier) and self.clip_norm is not None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingSpec:
        if not isinstance(d, Mapping):
            raise _bad("the training spec must be an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in set(d) - known)
        if unknown:
            raise _bad(f"unknown field(s): {', '.join(unknown)}", unknown[0])
        missing = [k for k in ("model", "features", "label") if k not in d]
        if missing:
            raise _bad(f"missing field(s): {', '.join(missing)}", missing[0])
        features = d["features"]
        if isinstance(features, str) or not isinstance(features, Sequence):
            raise _bad("features must be a list of column names", "features")
        return cls(**{**d, "features": tuple(features)})

    def digest(self) -> str:
        """A short hash of the spec, so a holder can tell the coordinator runs its spec."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def shapes(self) -> list[tuple[int, ...]]:
        """The model's parameter shapes: coefficients, then intercept."""
        return [(len(self.features),), (1,)]


# --- the wire --------------------------------------------------------------------------


def encode(ndarrays: Sequence[np.ndarray]) -> str:
    """Flower's ``Parameters`` (one ``.npy`` buffer per array), each in base64, joined by
    dots: a JSON-safe string. Arrays go as little-endian float64, the one type accepted."""
    arrays = [np.ascontiguousarray(a, dtype=_DTYPE) for a in ndarrays]
    tensors = ndarrays_to_parameters(arrays).tensors
    return ".".join(base64.b64encode(t).decode("ascii") for t in tensors)


def _check_tensor(raw: bytes, shape: tuple[int, ...] | None) -> None:
    """Read the ``.npy`` header before the data, so a lying header cannot make numpy
    allocate what it declares, and a wrong type or shape is refused up front."""
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise _bad(f"garbled parameters: {exc}") from None
    got, _fortran, dtype = header
    if dtype != _DTYPE:
        raise _bad(f"parameters must be little-endian float64, not {dtype}")
    if shape is not None and tuple(got) != tuple(shape):
        raise _bad(f"parameters have shape {tuple(got)}, the model expects {tuple(shape)}")
    if len(raw) != buf.tell() + math.prod(got) * _DTYPE.itemsize:
        raise _bad("garbled parameters: the data does not match its header")


def decode(text: str, shapes: Sequence[tuple[int, ...]] | None = None) -> list[np.ndarray]:
    """The arrays of :func:`encode`'s text; with ``shapes``, exactly that many of those
    shapes. Anything else (not base64, not ``.npy``, another type, NaN) raises
    :class:`InvalidTrainingSpec`."""
    if not isinstance(text, str):
        raise _bad("parameters must be text")
    if len(text) > MAX_WIRE_CHARS:
        raise _bad(f"parameters longer than {MAX_WIRE_CHARS} characters")
    parts = text.split(".") if text else []
    if shapes is not None and len(parts) != len(shapes):
        raise _bad(f"{len(parts)} parameter arrays, the model expects {len(shapes)}")
    try:
        raws = [base64.b64decode(p.encode("ascii"), validate=True) for p in parts]
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _bad("garbled parameters: not base64") from None
    for i, raw in enumerate(raws):
        _check_tensor(raw, None if shapes is None else shapes[i])
    arrays = parameters_to_ndarrays(Parameters(tensors=raws, tensor_type="numpy.ndarray"))
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise _bad("parameters must be finite numbers")
    return [np.ascontiguousarray(a) for a in arrays]


def _stage_shapes(
    spec: TrainingSpec, stage: str
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(request shapes, reply shapes) of a stage's parameters."""
    d = len(spec.features)
    if stage == "statistics":
        return [], [(d + 1,)] * 3
    if stage == "train":
        return spec.shapes(), spec.shapes()
    return spec.shapes(), []


def _config(config: object) -> Config:
    if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
        raise _bad("the training config must be an object")
    for key, value in config.items():
        if not isinstance(value, bool | int | float | str):
            raise _bad(f"config {key!r} must be a number, text or true/false")
    return dict(config)


def _metrics(metrics: object) -> Config:
    if not isinstance(metrics, Mapping):
        raise _bad("metrics must be an object")
    out: Config = {}
    for key, value in metrics.items():
        if isinstance(value, bool | str):
            out[str(key)] = value
        elif isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value):
            out[str(key)] = value.item() if isinstance(value, np.generic) else value
        else:
            raise _bad(f"metric {key!r} must be a finite number, text or true/false")
    return out


def _count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise _bad("a count must be a non-negative integer")
    return int(n)


def handle_message(client: NumPyClient, spec: TrainingSpec, message: Mapping[str, Any]) -> dict:
    """The node's side of the wire: one JSON request in, one JSON reply out.

    Requests are ``{"method": "fit" | "evaluate", "parameters": encode(...), "config": {...}}``;
    replies ``{"parameters", "num_examples", "metrics"}`` for fit and ``{"loss",
    "num_examples", "metrics"}`` for evaluate."""
    if not isinstance(message, Mapping):
        raise _bad("the message must be an object")
    method = message.get("method")
    config = _config(message.get("config", {}))
    stage = config.get("stage")
    if method not in ("fit", "evaluate") or stage not in _STAGES:
        raise _bad(f"unknown request {method!r} for stage {stage!r}")
    if (method == "evaluate") != (stage == "evaluate"):
        raise _bad(f"stage {stage!r} is not a {method} request")
    request, _ = _stage_shapes(spec, str(stage))
    parameters = decode(message.get("parameters", ""), request)
    if method == "fit":
        arrays, n, metrics = client.fit(parameters, config)
        return {
            "parameters": encode(arrays),
            "num_examples": _count(n),
            "metrics": _metrics(metrics),
        }
    loss, n, metrics = client.evaluate(parameters, config)
    return {"loss": float(loss), "num_examples": _count(n), "metrics": _metrics(metrics)}


class Participant(Protocol):
    """One data holder as the coordinator sees it: NumPyClient's contract."""

    def fit(self, parameters: list[np.ndarray], config: Config) -> FitReply: ...

    def evaluate(self, parameters: list[np.ndarray], config: Config) -> EvaluateReply: ...


class RemoteParticipant:
    """A holder on another machine: ``send`` delivers a JSON request to its node (which
    answers with :func:`handle_message`) and returns the JSON reply."""

    def __init__(self, spec: TrainingSpec, send: Callable[[dict[str, Any]], Mapping]) -> None:
        self.spec = spec
        self.send = send

    def _call(self, method: str, parameters: list[np.ndarray], config: Config) -> Mapping:
        reply = self.send({"method": method, "parameters": encode(parameters), "config": config})
        if not isinstance(reply, Mapping):
            raise _bad("a node's reply must be an object")
        return reply

    def fit(self, parameters: list[np.ndarray], config: Config) -> FitReply:
        reply = self._call("fit", parameters, config)
        _, shapes = _stage_shapes(self.spec, str(config.get("stage")))
        arrays = decode(reply.get("parameters", ""), shapes)
        return arrays, _count(reply.get("num_examples")), _metrics(reply.get("metrics", {}))

    def evaluate(self, parameters: list[np.ndarray], config: Config) -> EvaluateReply:
        reply = self._call("evaluate", parameters, config)
        loss = reply.get("loss")
        if isinstance(loss, bool) or not isinstance(loss, int | float) or not math.isfinite(loss):
            raise _bad("a node's loss must be a finite number")
        return float(loss), _count(reply.get("num_examples")), _metrics(reply.get("metrics", {}))


# --- the holder's side -----------------------------------------------------------------


def split_rows(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and held-out rows, each in table order: a shuffle by the
    seed, the first ``round(n·test_fraction)`` (at least one) held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * z)  # no overflow for any z


def local_training(
    x: np.ndarray,
    y: np.ndarray,
    coef: np.ndarray,
    intercept: float,
    spec: TrainingSpec,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, float]:
    """``spec.local_epochs`` epochs of gradient descent on standardised rows from the given
    parameters: the new coefficients and intercept. Pure numpy; the centralised baseline
    runs the same function on the union of the rows. No training loss is computed: a pass
    of logarithms over every row costs a tenth of the training, and the held-out loss that
    each round's evaluation returns tracks progress without describing the training rows."""
    coef = np.array(coef, dtype=np.float64)
    n = len(y)
    lr, l2, logistic = spec.learning_rate, spec.l2, spec.model == "logistic"
    batch = spec.batch_size if spec.batch_size and spec.batch_size < n else None
    rng = rng or np.random.default_rng(spec.seed)
    for _ in range(spec.local_epochs):
        if batch is None:
            parts: Sequence[np.ndarray | slice] = [slice(None)]
        else:
            order = rng.permutation(n)
            parts = [order[i : i + batch] for i in range(0, n, batch)]
        for part in parts:
            xb, yb = x[part], y[part]
            z = xb @ coef + intercept
            r = (_sigmoid(z) if logistic else z) - yb
            coef -= lr * (xb.T @ r / len(yb) + l2 * coef)
            intercept -= lr * float(r.mean())
    return coef, float(intercept)


@dataclass(frozen=True)
class _Scaling:
    means: np.ndarray
    stds: np.ndarray
    label_mean: float  # linear regression trains on the standardised label
    label_std: float

    def encode(self) -> str:
        return encode([self.means, self.stds, np.array([self.label_mean, self.label_std])])

    @classmethod
    def decode(cls, text: object, d: int) -> _Scaling:
        if not isinstance(text, str):
            raise _bad("the request has no standardisation")
        means, stds, label = decode(text, [(d,), (d,), (2,)])
        if not (np.all(stds > 0) and label[1] > 0):
            raise _bad("standard deviations must be positive")
        return cls(means, stds, float(label[0]), float(label[1]))


def _column(table: pa.Table, name: str, role: str) -> np.ndarray:
    if name not in table.column_names:
        raise _bad(f"the table has no {role} column {name!r}", name)
    col = table.column(name)
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)) and not (
        role == "label" and pa.types.is_boolean(t)
    ):
        raise _bad(f"{role} column {name!r} must be numeric, not {t}", name)
    if col.null_count:
        raise _bad(f"{role} column {name!r} has {col.null_count} empty value(s)", name)
    values = pc.cast(col, pa.float64()).to_numpy()
    if not np.all(np.isfinite(values)):
        raise _bad(f"{role} column {name!r} has non-finite value(s)", name)
    return values


class Holder(NumPyClient):
    """A data holder's side: its rows, split by the seed into training and held-out rows,
    never returned; what :meth:`fit` and :meth:`evaluate` return is listed in the module's
    docstring."""

    def __init__(self, spec: TrainingSpec, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        d = len(spec.features)
        if x.ndim != 2 or x.shape[1] != d or y.shape != (x.shape[0],):
            raise _bad(f"expected {d} feature columns and one label per row")
        if spec.model == "logistic" and not np.all((y == 0) | (y == 1)):
            raise _bad(f"label {spec.label!r} must be 0 or 1 for logistic regression", "label")
        train, test = split_rows(len(y), spec.test_fraction, spec.seed)
        if len(train) < max(MIN_TRAIN_ROWS, d + 1):
            raise _bad(
                f"{len(train)} training rows; at least {max(MIN_TRAIN_ROWS, d + 1)} are needed "
                f"so that no update describes a handful of rows"
            )
        self.spec = spec
        self._x, self._y = np.ascontiguousarray(x[train]), y[train]
        self._x_test, self._y_test = np.ascontiguousarray(x[test]), y[test]
        self._cache: tuple[str, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_arrow(cls, table: pa.Table, spec: TrainingSpec) -> Holder:
        """From a table with the spec's feature and label columns: numeric, no empty or
        non-finite values; a logistic label 0/1 or true/false."""
        x = np.column_stack([_column(table, f, "feature") for f in spec.features])
        y = _column(table, spec.label, "label")
        return cls(spec, x.reshape(table.num_rows, len(spec.features)), y)

    @property
    def counts(self) -> tuple[int, int]:
        """(training rows, held-out rows)."""
        return len(self._y), len(self._y_test)

    def _check(self, config: Config) -> None:
        if config.get(_SPEC_KEY) != self.spec.digest():
            raise _bad("the request was made for another training spec than this holder's")

    def _standardised(self, config: Config) -> tuple[_Scaling, np.ndarray, np.ndarray]:
        """The scaling of the request, the standardised training rows and labels (kept
        while the scaling stays the same, as it does for the whole run)."""
        text = config.get("standardisation")
        scaling = _Scaling.decode(text, len(self.spec.features))
        if self._cache is None or self._cache[0] != text:
            x = (self._x - scaling.means) / scaling.stds
            y = self._y
            if self.spec.model == "linear":
                y = (y - scaling.label_mean) / scaling.label_std
            x_test = (self._x_test - scaling.means) / scaling.stds
            self._cache = (str(text), x, y, x_test)
        return scaling, self._cache[1], self._cache[2]

    def _parameters(self, parameters: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        shapes = self.spec.shapes()
        if len(parameters) != len(shapes) or any(
            np.shape(p) != s or not np.all(np.isfinite(p))
            for p, s in zip(parameters, shapes, strict=False)
        ):
            raise _bad(f"the model's parameters must be finite arrays of shapes {shapes}")
        coef, intercept = (np.asarray(p, dtype=np.float64) for p in parameters)
        return coef, intercept

    def get_parameters(self, config: Config) -> list[np.ndarray]:
        return [np.zeros(s) for s in self.spec.shapes()]

    def fit(self, parameters: list[np.ndarray], config: Config) -> FitReply:
        self._check(config)
        stage = config.get("stage")
        if stage == "statistics":
            return self._statistics(), len(self._y), {}
        if stage != "train":
            raise _bad(f"unknown stage {stage!r}")
        coef, intercept = self._parameters(parameters)
        _, x, y = self._standardised(config)
        rng = np.random.default_rng([self.spec.seed, _count(config.get("round", 0))])
        with np.errstate(over="ignore", invalid="ignore"):
            new_coef, new_intercept = local_training(
                x, y, coef, float(intercept[0]), self.spec, rng
            )
        if not (np.all(np.isfinite(new_coef)) and math.isfinite(new_intercept)):
            raise _diverged()
        update = [new_coef, np.array([new_intercept])]
        if self.spec.clip_norm is not None:
            update = _clip(update, [coef, intercept], self.spec.clip_norm)
        if self.spec.dp:
            update = _noised(update, self.spec)
        return update, len(self._y), {}

    def _statistics(self) -> list[np.ndarray]:
        """Per column (features, then label): count, sum, sum of squared deviations from
        this holder's mean: aggregates, from which sums of squares follow exactly."""
        n = len(self._y)
        sums = np.append(self._x.sum(axis=0), self._y.sum())
        mean = sums / n
        m2 = np.append(((self._x - mean[:-1]) ** 2).sum(axis=0), ((self._y - mean[-1]) ** 2).sum())
        return [np.full(len(sums), float(n)), sums, m2]

    def evaluate(self, parameters: list[np.ndarray], config: Config) -> EvaluateReply:
        self._check(config)
        coef, intercept = self._parameters(parameters)
        scaling, _, _ = self._standardised(config)
        assert self._cache is not None
        with np.errstate(over="ignore", invalid="ignore"):
            loss, n, metrics = self._evaluate(self._cache[3] @ coef + intercept[0], scaling, config)
        if not math.isfinite(loss):
            raise _diverged()
        return loss, n, metrics

    def _evaluate(self, z: np.ndarray, scaling: _Scaling, config: Config) -> EvaluateReply:
        y = self._y_test
        n = len(y)
        metrics: Config = {}
        if self.spec.model == "logistic":
            loss = float(np.mean(np.logaddexp(0.0, z) - y * z))  # log-loss from log-odds
            metrics["accuracy"] = float(np.mean((z >= 0) == (y == 1)))
            if not config.get("final"):  # AUC sorts every held-out row: once, at the end
                return loss, n, metrics
            if 0 < y.sum() < n:
                metrics["auc"] = float(roc_auc_score(y, z))
            if self.spec.score_bins:
                metrics["score_histogram"] = encode(_histograms(z, y, self.spec.score_bins))
            return loss, n, metrics
        pred = scaling.label_mean + scaling.label_std * z
        mse = float(np.mean((pred - y) ** 2))
        metrics["rmse"] = math.sqrt(mse)
        mean = float(y.mean())
        m2 = float(((y - mean) ** 2).sum())
        metrics["label_mean"] = mean  # with label_m2, the union's R² follows exactly
        metrics["label_m2"] = m2
        if m2 > 0:
            metrics["r2"] = 1 - mse * n / m2
        return mse, n, metrics


def _diverged() -> InvalidTrainingSpec:
    return _bad("the training diverged: lower learning_rate", "learning_rate")


def _clip(update: list[np.ndarray], start: list[np.ndarray], clip_norm: float) -> list[np.ndarray]:
    """Flower's fixed clipping of the update (new − start) to ``clip_norm`` in L2 norm."""
    delta = [u - s for u, s in zip(update, start, strict=True)]
    if get_norm(delta) == 0:  # Flower's helper divides by the norm
        return update
    out = [np.array(u) for u in update]
    compute_clip_model_update(out, [np.asarray(s) for s in start], clip_norm)
    return out


def _noised(update: list[np.ndarray], spec: TrainingSpec) -> list[np.ndarray]:
    """OpenDP's Gaussian mechanism over the flattened parameters, scale σ·clip_norm.

    OpenDP rather than Flower's helper, which draws from numpy's global pseudo-random
    generator: OpenDP draws from the operating system's entropy and samples a discrete
    Gaussian on a fine grid before rounding to a float, the construction its privacy proof
    covers, so the low bits of a noisy value do not give the noise away."""
    import opendp.prelude as dp  # here: loading OpenDP's library takes a second or more

    dp.enable_features("contrib")
    assert spec.clip_norm is not None and spec.noise_multiplier is not None
    flat = np.concatenate([u.ravel() for u in update])
    space = (
        dp.vector_domain(dp.atom_domain(T=float, nan=False), size=len(flat)),
        dp.l2_distance(T=float),
    )
    mech = dp.m.make_gaussian(*space, scale=spec.noise_multiplier * spec.clip_norm)
    noisy = np.asarray(mech([float(v) for v in flat]), dtype=np.float64)
    out, at = [], 0
    for u in update:
        out.append(noisy[at : at + u.size].reshape(u.shape))
        at += u.size
    return out


def _histograms(z: np.ndarray, y: np.ndarray, bins: int) -> list[np.ndarray]:
    """Counts of held-out scores (log-odds, clipped to ±SCORE_RANGE) per bin, for label 1
    then label 0."""
    edges = np.linspace(-SCORE_RANGE, SCORE_RANGE, bins + 1)
    idx = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, bins - 1)
    pos = np.bincount(idx[y == 1], minlength=bins).astype(np.float64)
    neg = np.bincount(idx[y == 0], minlength=bins).astype(np.float64)
    return [pos, neg]


def pooled_auc(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float] | None:
    """AUC from score histograms (bins in increasing score): (AUC, largest error). A
    positive above a negative counts 1, in the same bin ½; only same-bin pairs can be
    wrong, by ½ each at most. ``None`` without both labels."""
    p, q = float(positives.sum()), float(negatives.sum())
    if p == 0 or q == 0:
        return None
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    same = float(np.dot(positives, negatives))
    auc = (float(np.dot(positives, below)) + 0.5 * same) / (p * q)
    return auc, 0.5 * same / (p * q)


# --- the coordinator's side ------------------------------------------------------------


class _Proxy(ClientProxy):
    """Flower's server-side handle on one participant, whatever carries the messages:
    Flower's ``FitIns``/``EvaluateIns`` in, ``FitRes``/``EvaluateRes`` out, replies checked."""

    def __init__(self, cid: str, participant: Participant, spec: TrainingSpec) -> None:
        super().__init__(cid)
        self.participant = participant
        self.spec = spec

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        arrays, n, metrics = self.participant.fit(
            parameters_to_ndarrays(ins.parameters), ins.config
        )
        _, shapes = _stage_shapes(self.spec, str(ins.config.get("stage")))
        if len(arrays) != len(shapes):
            raise _bad(f"participant {self.cid} returned {len(arrays)} arrays, not {len(shapes)}")
        for a, s in zip(arrays, shapes, strict=True):
            if np.shape(a) != s or not np.all(np.isfinite(a)):
                raise _bad(f"participant {self.cid} returned non-finite or misshapen arrays")
        if _count(n) < 1:
            raise _bad(f"participant {self.cid} trained on no rows")
        params = ndarrays_to_parameters([np.asarray(a, dtype=_DTYPE) for a in arrays])
        return FitRes(Status(Code.OK, "ok"), params, int(n), _metrics(metrics))

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None
    ) -> EvaluateRes:
        loss, n, metrics = self.participant.evaluate(
            parameters_to_ndarrays(ins.parameters), ins.config
        )
        if not math.isfinite(loss):
            raise _bad(f"participant {self.cid} returned a non-finite loss")
        return EvaluateRes(Status(Code.OK, "ok"), float(loss), _count(n), _metrics(metrics))

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None
    ) -> GetParametersRes:
        params = ndarrays_to_parameters([np.zeros(s) for s in self.spec.shapes()])
        return GetParametersRes(Status(Code.OK, "ok"), params)

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None
    ) -> GetPropertiesRes:
        return GetPropertiesRes(Status(Code.OK, "ok"), {})

    def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        raise NotImplementedError("the exchange's nodes are not connected through Flower")


def _weighted_means(results: list[tuple[int, Config]]) -> Config:
    """Count-weighted mean of each numeric metric, over the holders that reported it."""
    out: Config = {}
    keys = sorted({k for _, m in results for k, v in m.items() if not isinstance(v, str | bool)})
    for key in keys:
        pairs = [(n, float(m[key])) for n, m in results if key in m]
        total = sum(n for n, _ in pairs)
        if total:
            out[key] = sum(n * v for n, v in pairs) / total
    return out


@dataclass
class TrainingResult:
    """The trained model, how it got there and how well it does on the held-out rows."""

    spec: TrainingSpec
    model: dict[str, Any] | None  # None when cancelled before the first round ended
    history: list[dict[str, float]]
    metrics: dict[str, float]
    participants: list[dict[str, int]]
    rounds_completed: int
    cancelled: bool = False
    framework: str = field(default_factory=lambda: f"flwr {flwr.__version__}")

    def to_dict(self) -> dict[str, Any]:
        nm, clip = self.spec.noise_multiplier, self.spec.clip_norm
        sigma = nm * clip if nm and clip else None
        return {
            "status": "cancelled" if self.cancelled else "completed",
            "spec": self.spec.to_dict(),
            "model": self.model,
            "rounds_completed": self.rounds_completed,
            "history": self.history,
            "metrics": self.metrics,
            "participants": self.participants,
            "privacy": {
                "clip_norm": self.spec.clip_norm,
                "noise_multiplier": self.spec.noise_multiplier,
                "noise_stddev": sigma,
            },
            "framework": self.framework,
        }


def _model(spec: TrainingSpec, params: list[np.ndarray], scaling: _Scaling) -> dict[str, Any]:
    """The buyer's model: coefficients on standardised features (x − mean) / std, by name,
    the intercept, the standardisation, and the same model on the raw features."""
    coef, intercept = params[0].astype(np.float64), float(params[1][0])
    if spec.model == "linear":  # back from the standardised label to its units
        coef = coef * scaling.label_std
        intercept = scaling.label_mean + scaling.label_std * intercept
    raw = coef / scaling.stds
    return {
        "kind": spec.model,
        "features": list(spec.features),
        "label": spec.label,
        "coefficients": dict(zip(spec.features, map(float, coef), strict=True)),
        "intercept": intercept,
        "standardisation": {
            f: {"mean": float(m), "std": float(s)}
            for f, m, s in zip(spec.features, scaling.means, scaling.stds, strict=True)
        },
        "raw_coefficients": dict(zip(spec.features, map(float, raw), strict=True)),
        "raw_intercept": intercept - float(np.dot(raw, scaling.means)),
        "output": "probability of label 1" if spec.model == "logistic" else spec.label,
    }


class Coordinator:
    """Runs a training across the participants, aggregating with Flower's FedAvg.

    ``workers`` participants are called at once (threads): remote holders then train at
    the same time instead of one after the other. Replies are aggregated in participant
    order whatever order they arrive in, so the result does not depend on ``workers``."""

    def __init__(
        self, spec: TrainingSpec, participants: Sequence[Participant], workers: int = 1
    ) -> None:
        if len(participants) < 2:
            raise _bad("federated training needs at least two data holders")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError("workers must be a positive integer")
        self.spec = spec
        self.workers = workers
        self.proxies: list[ClientProxy] = [
            _Proxy(str(i), p, spec) for i, p in enumerate(participants)
        ]
        n = len(participants)
        self.strategy = FedAvg(
            min_fit_clients=n,
            min_evaluate_clients=n,
            min_available_clients=n,
            accept_failures=False,
            fit_metrics_aggregation_fn=_weighted_means,
            evaluate_metrics_aggregation_fn=self._evaluation_metrics,
        )

    def _evaluation_metrics(self, results: list[tuple[int, Config]]) -> Config:
        """Exact figures for the union of held-out rows where aggregates allow, else the
        count-weighted mean (AUC: ``auc_mean``; ``auc_pooled`` from histograms)."""
        means = _weighted_means(results)
        needed = ("accuracy",) if self.spec.model == "logistic" else _LINEAR_METRICS
        if not all(key in m for _, m in results for key in needed):
            raise _bad(f"a holder's evaluation lacks one of {', '.join(needed)}")
        out: Config = {}
        if self.spec.model == "logistic":
            out["accuracy"] = means["accuracy"]
            if "auc" in means:
                out["auc_mean"] = means["auc"]
            hists = [m.get("score_histogram") for _, m in results]
            if hists and all(isinstance(h, str) for h in hists):
                out.update(self._pooled(results, [str(h) for h in hists]))
            return out
        total = sum(n for n, _ in results)
        mean = sum(n * float(m["label_mean"]) for n, m in results) / total
        sst = sum(
            float(m["label_m2"]) + n * (float(m["label_mean"]) - mean) ** 2 for n, m in results
        )
        sse = sum(n * float(m["rmse"]) ** 2 for n, m in results)
        out["rmse"] = math.sqrt(sse / total)
        if sst > 0:
            out["r2"] = 1 - sse / sst
        return out

    def _pooled(self, results: list[tuple[int, Config]], hists: list[str]) -> Config:
        bins = self.spec.score_bins
        pos, neg = np.zeros(bins), np.zeros(bins)
        for (n, _), text in zip(results, hists, strict=True):
            p, q = decode(text, [(bins,), (bins,)])
            if np.any(p < 0) or np.any(q < 0) or p.sum() + q.sum() != n:
                raise _bad("a score histogram does not match its holder's count")
            pos += p
            neg += q
        got = pooled_auc(pos, neg)
        if got is None:
            return {}
        return {"auc_pooled": got[0], "auc_pooled_max_error": got[1]}

    def _each(self, call: Callable[[ClientProxy], T]) -> list[T]:
        """``call`` on every participant, in participant order."""
        if self.workers == 1:
            return [call(proxy) for proxy in self.proxies]
        with ThreadPoolExecutor(min(self.workers, len(self.proxies))) as pool:
            return list(pool.map(call, self.proxies))

    def _statistics(self) -> tuple[_Scaling, list[int]]:
        ins = FitIns(ndarrays_to_parameters([]), self._config("statistics", 0))
        replies: list[FitRes] = self._each(methodcaller("fit", ins, None, None))
        stats = [parameters_to_ndarrays(r.parameters) for r in replies]
        counts = [int(s[0][0]) for s in stats]
        for r, s in zip(replies, stats, strict=True):
            if np.any(s[0] != r.num_examples) or np.any(s[2] < 0):
                raise _bad("a holder's statistics do not match its count")
        n = float(sum(counts))
        mean = np.sum([s[1] for s in stats], axis=0) / n
        m2 = np.sum([s[2] + s[0] * (s[1] / s[0] - mean) ** 2 for s in stats], axis=0)
        std = np.sqrt(m2 / n)
        # a constant column (up to rounding) is centred, not divided by ~0
        std = np.where(std > 1e-9 * np.abs(mean), std, 1.0)
        if self.spec.model == "logistic" and not 0 < mean[-1] < 1:
            raise _bad(f"the label {self.spec.label!r} has a single value across all holders")
        scaling = _Scaling(mean[:-1], std[:-1], float(mean[-1]), float(std[-1]))
        return scaling, counts

    def _config(self, stage: str, rnd: int, **extra: Scalar) -> Config:
        config: Config = {"stage": stage, "round": rnd, _SPEC_KEY: self.spec.digest()}
        config.update(extra)
        return config

    def run(
        self,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> TrainingResult:
        """The statistics round, then ``spec.rounds`` rounds of training and evaluation.

        ``progress(round, rounds, metrics)`` is called after each round; ``cancelled()``
        is asked before each round and, when true, :class:`TrainingCancelled` is raised
        with the partial result."""
        spec = self.spec
        scaling, counts = self._statistics()
        text = scaling.encode()
        params = ndarrays_to_parameters([np.zeros(s) for s in spec.shapes()])
        history: list[dict[str, float]] = []
        model: dict[str, Any] | None = None
        tests: list[int] = [0] * len(self.proxies)
        for rnd in range(1, spec.rounds + 1):
            if cancelled is not None and cancelled():
                raise TrainingCancelled(
                    self._result(model, history, counts, tests, rnd - 1, cancelled=True)
                )
            ins = FitIns(params, self._config("train", rnd, standardisation=text))
            fits: list[FitRes] = self._each(methodcaller("fit", ins, None, None))
            results = list(zip(self.proxies, fits, strict=True))
            aggregated, fit_metrics = self.strategy.aggregate_fit(rnd, results, [])
            assert aggregated is not None
            arrays = parameters_to_ndarrays(aggregated)
            if not all(np.all(np.isfinite(a)) for a in arrays):
                raise _diverged()
            params = aggregated
            final = rnd == spec.rounds
            eval_ins = EvaluateIns(
                params, self._config("evaluate", rnd, standardisation=text, final=final)
            )
            scores: list[EvaluateRes] = self._each(methodcaller("evaluate", eval_ins, None, None))
            evals = list(zip(self.proxies, scores, strict=True))
            loss, metrics = self.strategy.aggregate_evaluate(rnd, evals, [])
            tests = [res.num_examples for _, res in evals]
            figures = {"loss": loss or 0.0, **fit_metrics, **metrics}
            history.append({"round": rnd, **{k: float(v) for k, v in figures.items()}})
            model = _model(spec, arrays, scaling)
            if progress is not None:
                progress(rnd, spec.rounds, dict(history[-1]))
        return self._result(model, history, counts, tests, spec.rounds)

    def _result(
        self,
        model: dict[str, Any] | None,
        history: list[dict[str, float]],
        counts: list[int],
        tests: list[int],
        rounds: int,
        cancelled: bool = False,
    ) -> TrainingResult:
        final = {k: v for k, v in history[-1].items() if k != "round"} if history else {}
        return TrainingResult(
            spec=self.spec,
            model=model,
            history=history,
            metrics=final,
            participants=[
                {"train_rows": n, "test_rows": m} for n, m in zip(counts, tests, strict=True)
            ],
            rounds_completed=rounds,
            cancelled=cancelled,
        )


# --- the buyer's side ------------------------------------------------------------------


def predict(
    result: Mapping[str, Any],
    rows: pa.Table | Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]] | np.ndarray,
) -> np.ndarray:
    """Apply a downloaded model (``TrainingResult.to_dict()`` or its ``model``) to rows:
    a table or columns by name, a list of rows by name, or an array with the features in
    the model's order. Probabilities of label 1 (logistic) or predicted values (linear)."""
    model = result.get("model", result)
    if not isinstance(model, Mapping) or "coefficients" not in model:
        raise _bad("not a trained model")
    features = list(model["features"])
    try:
        if isinstance(rows, np.ndarray):
            x = np.asarray(rows, dtype=np.float64)
        elif isinstance(rows, pa.Table):
            x = np.column_stack([_column(rows, f, "feature") for f in features])
        elif isinstance(rows, Mapping):
            x = np.column_stack([np.asarray(rows[f], dtype=np.float64) for f in features])
        else:
            x = np.array([[float(r[f]) for f in features] for r in rows], dtype=np.float64)
        x = x.reshape(-1, len(features))
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(f"the rows do not carry the model's {len(features)} features: {exc}") from None
    scale = model["standardisation"]
    means = np.array([scale[f]["mean"] for f in features])
    stds = np.array([scale[f]["std"] for f in features])
    coef = np.array([model["coefficients"][f] for f in features])
    z = ((x - means) / stds) @ coef + float(model["intercept"])
    return _sigmoid(z) if model["kind"] == "logistic" else z
