#!/usr/bin/env python3
"""Time `nvmeofctl health` on the (provisioned) lab against `ansible all -m ping` over the same
hosts, in the same run, and print the ratio. Health reads every host in ONE SSH round trip (in
parallel) instead of one Ansible task per check.

Usage: .venv/bin/python benchmarks/health_vs_ping.py [--lab NAME] [--runs N] [--window S]
Applies the lab's spec first if the lab is not provisioned (health would then be measuring a
half-empty host).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from _common import CLI, lab_spec, must, ping_times, table, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default=os.environ.get("NVMEOFCTL_LAB", "lab"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--window", default="3", help="health's counter window in seconds (default 3)")
    args = ap.parse_args()
    spec_path = lab_spec(args.lab, fresh=False)
    _, proc = timed(CLI + ["apply", "-f", spec_path, "--output", "json"])
    must(proc, "apply")
    pings = ping_times(spec_path, args.runs)
    runs = []
    for _ in range(args.runs):
        t, proc = timed(CLI + ["health", "-f", spec_path, "--window", args.window, "--output", "json"])
        must(proc, "health", ok=(0, 10, 11))
        runs.append(t)
    ping, health = statistics.median(pings), statistics.median(runs)
    print(f"lab {args.lab}: median of {args.runs} runs, counter window {args.window}s")
    print(table([("ansible all -m ping", ping), (f"nvmeofctl health (window {args.window}s)", health)], ping))
    print(f"health costs {health / ping:.2f}x an Ansible ping of the same hosts "
          f"({health - float(args.window):.1f}s without the counter window)")


if __name__ == "__main__":
    main()
