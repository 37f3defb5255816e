"""``python -m benchmarks [NAME ...]``: run benchmarks, print their results, record them.

Without names every registered benchmark runs. Each one's section of
``docs/benchmarks.md`` is replaced (``--no-doc`` leaves the document alone). The exit
status is 1 if a benchmark failed to run, or with ``--strict`` if one missed its goal.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from benchmarks import _report, discover


def main(argv: list[str] | None = None) -> int:
    registry = discover()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(registry)}",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--no-doc", action="store_true", help="do not update the results document")
    parser.add_argument(
        "--doc",
        type=Path,
        default=_report.DOC,
        help="the results document (default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if a goal is missed"
    )
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=150)

    if args.list:
        for b in registry.values():
            console.print(f"[bold]{b.name}[/bold]  {b.title}  [dim](goal: {b.goal})[/dim]")
        return 0
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(registry)}")
    chosen = [registry[n] for n in dict.fromkeys(args.names)] or list(registry.values())

    machine = _report.machine()
    console.print(
        "[dim]" + " · ".join(f"{k}: {v}" for k, v in machine.items() if k != "Software") + "[/dim]"
    )
    runs: list[_report.Run] = []
    failed = False
    for bench in chosen:
        started = datetime.now(UTC)
        t0 = time.monotonic()
        try:
            outcome = bench.run(console)
        except Exception:  # report it and go on with the other benchmarks
            console.print(f"[red]{bench.name} failed[/red]")
            console.print(traceback.format_exc(), markup=False, highlight=False)
            failed = True
            continue
        run = _report.Run(bench, outcome, started, time.monotonic() - t0, machine)
        runs.append(run)
        console.print(_report.table(run))
        for note in outcome.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
    if runs and not args.no_doc:
        _report.update_doc(runs, args.doc)
        console.print(
            f"[dim]results written to {args.doc.name} "
            f"({', '.join(r.bench.name for r in runs)})[/dim]"
        )
    missed = any(r.outcome.met is False for r in runs)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
