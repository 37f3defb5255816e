"""Results: the machine they were measured on, a Rich table, and ``docs/benchmarks.md``.

Each benchmark owns one section of the document, between
``<!-- benchmark:NAME:start -->`` and ``<!-- benchmark:NAME:end -->``; re-running a
benchmark replaces its section and leaves everything else (other benchmarks' results, the
prose around them) as it was. A new benchmark's section is added at the end.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

from rich.table import Table

from benchmarks import Benchmark, Outcome, Row

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
SOFTWARE = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "sqlalchemy",
    "psycopg",
    "httpx",
)
DOC_HEAD = """# Benchmarks

Run them with `make bench` (all) or `.venv/bin/python -m benchmarks NAME ...`. Each
benchmark measures its figure and its baseline in the same run on the same machine and
replaces its own section below.

## Results
"""


@dataclass(frozen=True)
class Run:
    bench: Benchmark
    outcome: Outcome
    started: datetime  # UTC
    seconds: float
    machine: dict[str, str]


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def machine() -> dict[str, str]:
    cpu = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    mem = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo"), re.M)
    distro = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release"), re.M)
    out = {
        "CPU": cpu.group(1).strip() if cpu else (platform.processor() or platform.machine()),
        "Cores": f"{cores}" + (f" ({usable} usable)" if usable != cores else ""),
        "RAM": f"{int(mem.group(1)) / 2**20:.1f} GiB" if mem else "unknown",
        "OS": " · ".join(
            x
            for x in (
                distro.group(1) if distro else "",
                f"{platform.system()} {platform.release()}",
            )
            if x
        ),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    if hasattr(os, "getloadavg"):  # other work on the machine disturbs every figure
        out["Load average at start"] = " / ".join(f"{x:.2f}" for x in os.getloadavg()) + (
            " (1 / 5 / 15 min)"
        )
    versions = []
    for dist in SOFTWARE:
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    out["Software"] = ", ".join(versions)
    commit = _commit()
    if commit:
        out["Commit"] = commit
    return out


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + (" (with uncommitted changes)" if dirty else "")


def _num(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "–"}[met]


def _columns(rows: list[Row]) -> list[str]:
    extra: list[str] = []
    for r in rows:
        extra += [k for k in r.extra if k not in extra]
    return extra


def _cells(r: Row, extra: list[str]) -> list[str]:
    return [
        r.scenario,
        f"{_num(r.value)} {r.unit}",
        _num(r.baseline),
        f"{r.ratio:.2f}" if r.ratio is not None else "–",
        f"{'≤' if r.lower_is_better else '≥'} {r.goal:.2f}" if r.goal is not None else "–",
        _verdict(r.met),
        *(r.extra.get(k, "") for k in extra),
    ]


HEAD = ["Scenario", "Result", "Baseline", "Ratio", "Goal", "Met"]


def table(run: Run) -> Table:
    met = run.outcome.met
    verdict = {True: "[green]goal met[/green]", False: "[red]goal missed[/red]", None: "no goal"}[
        met
    ]
    t = Table(
        title=f"{run.bench.name}: {run.bench.title} ({verdict})",
        caption=f"baseline: {run.outcome.baseline}",
        caption_justify="left",
    )
    extra = _columns(run.outcome.rows)
    for i, h in enumerate([*HEAD, *extra]):
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=i > 0)
    for r in run.outcome.rows:
        cells = _cells(r, extra)
        cells[5] = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "–"}[r.met]
        t.add_row(*cells)
    return t


def _esc(s: str) -> str:
    return s.replace("|", r"\|")


def _machine_lines(m: dict[str, str]) -> dict[str, str]:
    """CPU, cores, RAM, OS and Python on one line; the rest as they are."""
    main = ("CPU", "Cores", "RAM", "OS", "Python")
    cores = f"{m['Cores']} cores" if "Cores" in m else ""
    ram = f"{m['RAM']} RAM" if "RAM" in m else ""
    line = "; ".join(
        x for x in (m.get("CPU", ""), cores, ram, m.get("OS", ""), m.get("Python", "")) if x
    )
    return {"Machine": line, **{k: v for k, v in m.items() if k not in main}}


def section(run: Run) -> str:
    b, o = run.bench, run.outcome
    verdict = {True: "met", False: "**missed**", None: "no goal set"}[o.met]
    lines = [
        f"<!-- benchmark:{b.name}:start -->",
        f"### `{b.name}`: {b.title}",
        "",
        f"- Goal: {b.goal}: {verdict}",
        f"- Run: {run.started:%Y-%m-%d %H:%M} UTC, took {run.seconds:.0f} s",
        *(f"- {k}: {v}" for k, v in _machine_lines(run.machine).items()),
        f"- Baseline: {o.baseline}",
        "",
    ]
    extra = _columns(o.rows)
    head = [*HEAD, *extra]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join([":---", *(["---:"] * (len(head) - 1))]) + "|")
    lines += ["| " + " | ".join(_esc(c) for c in _cells(r, extra)) + " |" for r in o.rows]
    if o.method:
        lines += ["", "Method:", "", *(f"- {m}" for m in o.method)]
    if o.notes:
        lines += ["", "Notes:", "", *(f"- {n}" for n in o.notes)]
    lines.append(f"<!-- benchmark:{b.name}:end -->")
    return "\n".join(lines) + "\n"


def update_doc(runs: list[Run], path: Path = DOC) -> None:
    text = path.read_text() if path.exists() else DOC_HEAD
    for run in runs:
        new = section(run)
        pattern = re.compile(
            rf"<!-- benchmark:{re.escape(run.bench.name)}:start -->.*?"
            rf"<!-- benchmark:{re.escape(run.bench.name)}:end -->\n?",
            re.S,
        )
        m = pattern.search(text)
        head, tail = (text[: m.start()], text[m.end() :]) if m else (text.rstrip("\n") + "\n\n", "")
        text = head + new + tail
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
