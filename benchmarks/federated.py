"""federated: FedAvg across two holders against centralised training on the same rows.

Data. 1,000,000 synthetic rows × 20 features (each feature normal with its own offset and
scale, so standardisation matters), a binary label drawn from a logistic model of them;
rows are split 55 / 45 between two holders. Each holder holds out 20 % of its rows (the
module's seeded split).

**Federated** (``federated.Coordinator.run``): the statistics round, then ``ROUNDS``
rounds of ``LOCAL_EPOCHS`` full-batch gradient-descent epochs on each holder, Flower's
FedAvg, and after each round an evaluation on each holder's held-out rows (log-loss and
accuracy; AUC and score histograms in the last round). Each run starts from fresh
holders, so their standardisation is timed like the baseline's. The holders run one after
the other in this process (``workers=1``), as :class:`~databourse.compute.federated.Holder`
objects behind
:class:`~databourse.compute.federated.RemoteParticipant`: every request and reply is
encoded as on the wire (parameters through ``encode``/``decode``, the message through
``json.dumps``/``json.loads``) and answered by ``handle_message``.

**Centralised** (the baseline): the union of the same training rows; their mean and
standard deviation, the standardised copy, ``ROUNDS × LOCAL_EPOCHS`` epochs of the same
``local_training`` function, and one evaluation on the union of the held-out rows
(log-loss and AUC).

Both sides start from data already in memory (a holder's table loaded, the union already
concatenated). Two scenarios: OpenBLAS limited to one thread (``threadpoolctl``, which
scikit-learn brings), and OpenBLAS as it comes. In each, runs alternate ``centralised,
federated, centralised, …``; a federated run's ratio is its time over the mean of the
centralised times just before and after it, and the reported ratio is the median over runs.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from benchmarks import Outcome, Row, register
from databourse.compute import federated
from databourse.compute.federated import Holder, RemoteParticipant, TrainingSpec

GOAL = 1.2
ROWS = 1_000_000
FEATURES = 20
SHARES = (0.55, 0.45)
ROUNDS = 10
LOCAL_EPOCHS = 5
REPEATS = 5
SPEC = TrainingSpec(
    model="logistic",
    features=tuple(f"x{i:02d}" for i in range(FEATURES)),
    label="y",
    rounds=ROUNDS,
    local_epochs=LOCAL_EPOCHS,
    learning_rate=0.5,
    l2=1e-4,
    seed=7,
    test_fraction=0.2,
)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)) * rng.uniform(0.5, 20, FEATURES) + rng.normal(
        0, 50, FEATURES
    )
    z = (x - x.mean(axis=0)) / x.std(axis=0) @ rng.normal(0, 0.7, FEATURES) - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return x, y


def _wire(holder: Holder, sent: list[int]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The node at the other end of a JSON link, counting the bytes both ways."""

    def send(message: dict[str, Any]) -> dict[str, Any]:
        request = json.dumps(message)
        reply = json.dumps(federated.handle_message(holder, SPEC, json.loads(request)))
        sent.append(len(request) + len(reply))
        return json.loads(reply)

    return send


def _federated(
    x: np.ndarray, y: np.ndarray, parts: list[np.ndarray]
) -> tuple[float, federated.TrainingResult, int]:
    """A run with fresh holders (their tables loaded, nothing computed yet)."""
    holders = [Holder(SPEC, x[p], y[p]) for p in parts]
    sent: list[int] = []
    participants = [RemoteParticipant(SPEC, _wire(h, sent)) for h in holders]
    t0 = time.perf_counter()
    result = federated.Coordinator(SPEC, participants).run()
    return time.perf_counter() - t0, result, sum(sent)


def _centralised(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[float, float, float]:
    """(seconds, test log-loss, test AUC) of the same gradient descent on the union."""
    spec = dataclasses.replace(SPEC, local_epochs=ROUNDS * LOCAL_EPOCHS)
    t0 = time.perf_counter()
    mean, std = x.mean(axis=0), x.std(axis=0)
    coef, intercept = federated.local_training((x - mean) / std, y, np.zeros(FEATURES), 0.0, spec)
    z = (x_test - mean) / std @ coef + intercept
    loss = float(np.mean(np.logaddexp(0.0, z) - y_test * z))
    auc = float(roc_auc_score(y_test, z))
    return time.perf_counter() - t0, loss, auc


def _measure(
    console: Console,
    threads: str,
    x: np.ndarray,
    y: np.ndarray,
    parts: list[np.ndarray],
    union: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> Row:
    """One scenario: a warm-up, then federated runs alternating with centralised ones."""
    _federated(x, y, parts)  # imports, caches, page faults
    before, central_loss, central_auc = _centralised(*union)
    bases, times, ratios = [before], [], []
    result: federated.TrainingResult | None = None
    wire = 0
    for r in range(REPEATS):
        seconds, result, wire = _federated(x, y, parts)
        after, *_ = _centralised(*union)
        times.append(seconds)
        ratios.append(seconds / ((before + after) / 2))
        bases.append(after)
        console.print(
            f"  [dim]{threads}, run {r + 1}/{REPEATS}: federated {seconds:.2f} s, "
            f"centralised {after:.2f} s[/dim]"
        )
        before = after
    assert result is not None
    m = result.metrics
    if abs(m["auc_pooled"] - central_auc) > 0.005 + m["auc_pooled_max_error"]:
        raise AssertionError(f"federated AUC {m['auc_pooled']} vs centralised {central_auc}")
    return Row(
        f"{ROWS // 1_000_000}M rows × {FEATURES}, 2 holders, {threads}",
        statistics.median(times),
        "s",
        statistics.median(bases),
        goal=GOAL,
        lower_is_better=True,
        ratio_override=statistics.median(ratios),
        extra={
            "best of runs": f"{min(times):.2f} s vs {min(bases):.2f} s",
            "test AUC": f"{m['auc_pooled']:.4f} (centralised {central_auc:.4f})",
            "test log-loss": f"{m['loss']:.4f} (centralised {central_loss:.4f})",
            "wire per round": f"{wire / (ROUNDS + 1) / 1024:.0f} KiB",
        },
    )


@register(
    title="Federated learning (FedAvg, Flower) vs centralised training",
    goal=f"federated wall time ≤ {GOAL:.1f}× centralised gradient descent on the same rows "
    "and epochs",
)
def federated_bench(console: Console) -> Outcome:
    console.print(f"[bold]federated[/bold]: generating {ROWS:,} rows × {FEATURES} features …")
    x, y = _data(ROWS, 1)
    order = np.random.default_rng(2).permutation(ROWS)
    parts = np.split(order, [round(SHARES[0] * ROWS)])
    train, test = [], []
    for p in parts:
        tr, te = federated.split_rows(len(p), SPEC.test_fraction, SPEC.seed)
        train.append(p[tr])
        test.append(p[te])
    tr_all, te_all = np.concatenate(train), np.concatenate(test)
    union = (x[tr_all], y[tr_all], x[te_all], y[te_all])
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        rows.append(_measure(console, "1 BLAS thread", x, y, parts, union))
    rows.append(_measure(console, "default BLAS threads", x, y, parts, union))
    epochs = ROUNDS * LOCAL_EPOCHS
    return Outcome(
        rows=rows,
        baseline=f"the same `local_training` gradient descent for {epochs} epochs on the union "
        "of the holders' training rows (standardised from their own mean and deviation), "
        "then one evaluation on the union of the held-out rows; same process, same run, "
        "alternating with the federated runs",
        method=[
            f"{ROWS:,} synthetic rows (features normal with random offsets and scales, label "
            "from a logistic model), split 55 / 45 between two holders, 20 % of each held out",
            f"spec: full-batch gradient descent, learning rate {SPEC.learning_rate}, l2 "
            f"{SPEC.l2:g}, {ROUNDS} rounds × {LOCAL_EPOCHS} local epochs = {epochs} epochs "
            "over every training row either way",
            "federated = `Coordinator.run`: statistics round, rounds of fit (Flower FedAvg) and "
            "evaluation on each holder's held-out rows, every message JSON-encoded with "
            "parameters through `encode`/`decode` and answered by `handle_message`; the two "
            "holders run one after the other in this process, each run with fresh holders",
            f"two scenarios: OpenBLAS limited to one thread (threadpoolctl) and left at its "
            f"default; each one warm-up, then {REPEATS} federated runs between centralised "
            "ones; times are medians; the ratio is the median of each federated time over the "
            "mean of the centralised times around it",
        ],
        notes=[
            "on separate machines the holders would train at the same time, so the federated "
            "wall time would be nearer half of this, plus the network's round trips",
            "the federated side also evaluates the model after every round (log-loss and "
            "accuracy on each holder's held-out rows, AUC and score histograms in the last); "
            "the centralised side evaluates once",
        ],
    )
