"""Play the leaker: keep a share of a CSV's rows, shuffle them, round numbers to tens.

    python3 examples/leak.py copy.csv leaked.csv --share 0.2 --round 10

Used by the README's leak-tracing walkthrough: the merchant then traces ``leaked.csv``
back to the buyer whose copy it came from. Only the standard library is needed.
"""

from __future__ import annotations

import argparse
import csv
import random


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--share", type=float, default=0.2, help="share of rows kept")
    parser.add_argument("--round", type=int, default=10, help="round integers to this step")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with open(args.source, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    rng = random.Random(args.seed)
    kept = rng.sample(body, max(1, int(len(body) * args.share)))
    for row in kept:
        for i, cell in enumerate(row):
            if cell.lstrip("-").isdigit():
                row[i] = str(round(int(cell) / args.round) * args.round)
    with open(args.target, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *kept])
    print(f"{args.target}: {len(kept)} of {len(body)} rows, shuffled, integers rounded")


if __name__ == "__main__":
    main()
