#!/usr/bin/env python3
"""Time how fast the CLI starts (issue #9: `nvmeofctl --help` and `spec validate` in <= 0.3 s):
`nvmeofctl --help`, `nvmeofctl spec validate inventory/example.yaml`, and `ansible --version`
for reference, RUNS times each (after one warm-up run each), as whole processes; prints min,
median and max wall seconds. No lab needed.

Usage: .venv/bin/python benchmarks/startup.py [--runs N] [--spec FILE]
It times this checkout's code (src/ first on PYTHONPATH), started through the venv's `nvmeofctl`
script. Quote the median; a wide min..max says the machine was busy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from _common import BIN, CLI, must, timed

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.3  # seconds, issue #9


def env() -> dict[str, str]:
    """This checkout's src/ ahead of whatever the venv has installed."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def times(argv: list[str], runs: int, what: str) -> list[float]:
    _, proc = timed(argv, env())  # warm-up: file-system cache, .pyc files
    must(proc, what)
    out = []
    for _ in range(runs):
        t, proc = timed(argv, env())
        must(proc, what)
        out.append(t)
    return out


def table(rows: list[tuple[str, list[float]]]) -> str:
    lines = [f"{'command':<52}{'min':>8}{'median':>8}{'max':>8}"]
    lines += [f"{name:<52}{min(ts):>8.3f}{statistics.median(ts):>8.3f}{max(ts):>8.3f}" for name, ts in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--spec", default=str(ROOT / "inventory" / "example.yaml"), help="a valid cluster spec")
    args = ap.parse_args()
    cli = CLI if Path(CLI[0]).exists() else [sys.executable, "-m", "nvmeofctl"]
    spec = os.path.relpath(args.spec) if Path(args.spec).is_relative_to(Path.cwd()) else args.spec
    rows = [
        ("nvmeofctl --help", times(cli + ["--help"], args.runs, "nvmeofctl --help")),
        (f"nvmeofctl spec validate {spec}", times(cli + ["spec", "validate", args.spec], args.runs, "spec validate")),
    ]
    ansible = BIN / "ansible"
    if ansible.exists():
        rows.append(("ansible --version (reference)", times([str(ansible), "--version"], args.runs, "ansible")))
    print(f"wall seconds, {args.runs} runs each after 1 warm-up; goal (issue #9): nvmeofctl <= {GOAL} s")
    print(table(rows))


if __name__ == "__main__":
    main()
