"""DataBourse benchmarks: ``python -m benchmarks [NAME ...]`` (``make bench``).

A benchmark is a module in this package (not starting with ``_``) with one function
decorated by :func:`register`. The function measures a figure and a baseline *in the same
run*, and returns an :class:`Outcome` whose rows carry both, their ratio and whether the
goal was met. ``__main__`` discovers the modules, runs the benchmarks asked for, prints a
table and replaces that benchmark's section of ``docs/benchmarks.md``.

Helpers shared between benchmarks live in the ``_``-prefixed modules: ``_stores``
(throwaway SQLite / PostgreSQL databases), ``_server`` (an app served by uvicorn in its
own process), ``_load`` (HTTP load from client processes) and ``_report`` (tables, machine
description and the results document).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console


@dataclass
class Row:
    """One measured scenario: its figure, the baseline's figure, and the goal on their ratio."""

    scenario: str
    value: float
    unit: str
    baseline: float | None = None
    goal: float | None = None  # the bound on the ratio value / baseline
    lower_is_better: bool = False  # the ratio must be at most the goal (e.g. an overhead)
    extra: dict[str, str] = field(default_factory=dict)  # more columns (latency, CPU …)
    ratio_override: float | None = None  # e.g. a median of paired per-round ratios

    @property
    def ratio(self) -> float | None:
        if self.ratio_override is not None:
            return self.ratio_override
        if self.baseline:
            return self.value / self.baseline
        return None

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.ratio is None:
            return None
        if self.lower_is_better:
            return self.ratio <= self.goal
        return self.ratio >= self.goal


@dataclass
class Outcome:
    """What a benchmark function returns."""

    rows: list[Row]
    baseline: str  # what the baseline is, in words
    method: list[str] = field(default_factory=list)  # how it was measured (parameters)
    notes: list[str] = field(default_factory=list)  # skips, caveats, findings

    @property
    def met(self) -> bool | None:
        verdicts = [r.met for r in self.rows if r.met is not None]
        return all(verdicts) if verdicts else None


@dataclass(frozen=True)
class Benchmark:
    name: str  # the module's name; the command-line name and the docs section id
    title: str
    goal: str  # the goal in words
    run: Callable[[Console], Outcome]


REGISTRY: dict[str, Benchmark] = {}


def register(title: str, goal: str) -> Callable[[Callable[[Console], Outcome]], Benchmark]:
    """Register the decorated function as the benchmark named after its module."""

    def deco(fn: Callable[[Console], Outcome]) -> Benchmark:
        name = fn.__module__.rpartition(".")[2]
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        bench = Benchmark(name, title, goal, fn)
        REGISTRY[name] = bench
        return bench

    return deco


def discover() -> dict[str, Benchmark]:
    """Import every benchmark module of this package; the registry, in name order."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return dict(sorted(REGISTRY.items()))
