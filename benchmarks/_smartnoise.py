"""The SmartNoise SQL side of the ``dpsql`` benchmark, in its own virtual environment.

smartnoise-sql 1.0 pins OpenDP and pandas below the versions the exchange uses, so it
cannot live in the project's environment. :func:`interpreter` creates a separate virtual
environment once (under the benchmark cache directory, which is never committed) and
pip-installs it there; the benchmark then runs this file with that interpreter:

    python _smartnoise.py PARQUET ROWS EPSILON ROUNDS

which loads the first ROWS rows (pandas), opens a SmartNoise ``PrivateReader`` over them
(SmartNoise's pandas reader copies the frame into an in-memory SQLite database), sets the
per-statistic ε so that the query's total cost equals EPSILON, and prints one JSON object
with the load time and each round's ``execute`` time, measured inside this process.

Only the standard library is imported at module level: the benchmark imports this module
from the project's environment to find the interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import venv
from pathlib import Path

PACKAGES = ["smartnoise-sql>=1.0,<1.1", "pyarrow"]
QUERY = (
    "SELECT region, COUNT(*) AS n, SUM(income) AS total, AVG(age) AS mean_age "
    "FROM bench.people GROUP BY region"
)


def interpreter(cache: Path) -> tuple[Path | None, str]:
    """The Python of a virtual environment with smartnoise-sql, or None and the reason."""
    home = cache / "smartnoise-venv"
    python = home / "bin" / "python"
    marker = home / ".installed"
    if marker.exists() and python.exists():
        return python, _version(python)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create its virtual environment: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"pip install {' '.join(PACKAGES)} failed: {tail[0]}"
    marker.write_text("ok\n")
    return python, _version(python)


def _version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('smartnoise-sql'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "unknown version"


def _main(path: str, rows: int, epsilon: float, rounds: int) -> None:
    import pyarrow.parquet as pq
    import snsql

    t0 = time.perf_counter()
    df = pq.read_table(path).slice(0, rows).to_pandas()
    metadata = {
        "bench": {
            "bench": {
                "people": {
                    "max_ids": 1,
                    "censor_dims": False,  # the regions are public, as in the exchange
                    "person_id": {"type": "int", "private_id": True},
                    "region": {"type": "string"},
                    "age": {"type": "int", "lower": 0, "upper": 100},
                    "income": {"type": "float", "lower": 0.0, "upper": 500000.0},
                }
            }
        }
    }
    probe = snsql.from_df(df.head(100), privacy=snsql.Privacy(epsilon=1.0), metadata=metadata)
    unit_cost, _ = probe.get_privacy_cost(QUERY)  # the query's cost at ε 1 per statistic
    per_stat = epsilon / unit_cost
    reader = snsql.from_df(df, privacy=snsql.Privacy(epsilon=per_stat), metadata=metadata)
    load = time.perf_counter() - t0
    times = []
    result = None
    for _ in range(rounds):
        t = time.perf_counter()
        result = reader.execute(QUERY)
        times.append(time.perf_counter() - t)
    cost, _ = reader.get_privacy_cost(QUERY)
    print(
        json.dumps(
            {
                "rows": len(df),
                "load_seconds": load,
                "seconds": times,
                "epsilon_per_statistic": per_stat,
                "epsilon_total": cost,
                "groups": len(result) - 1 if result else 0,
            }
        )
    )


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
