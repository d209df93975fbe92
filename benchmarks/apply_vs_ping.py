#!/usr/bin/env python3
"""Time, in one run on the lab: `ansible all -m ping` over the spec's hosts, the first apply on
pristine VMs, and a no-op apply; print the figures and the ratios to ping.

Goals (issue #9): a converged (no-op) apply runs no Ansible at all (its plan is empty on every
host, boot files included) and costs at most 1.0x the ping; the first apply on pristine VMs at
most 6x the ping. Measured here, never asserted in tests.

Usage: .venv/bin/python benchmarks/apply_vs_ping.py [--lab NAME] [--runs N]
Returns the lab's VMs to their pristine state first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from _common import CLI, lab_spec, must, ping_times, table, timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default=os.environ.get("NVMEOFCTL_LAB", "lab"))
    ap.add_argument("--runs", type=int, default=3, help="repetitions of ping and of the no-op apply")
    args = ap.parse_args()
    print(f"restoring lab {args.lab!r} to its pristine booted state ...", file=sys.stderr)
    spec_path = lab_spec(args.lab, fresh=True)
    pings = ping_times(spec_path, args.runs)
    first, proc = timed(CLI + ["apply", "-f", spec_path, "--output", "json"])
    must(proc, "first apply")
    noops = []
    for _ in range(args.runs):
        t, proc = timed(CLI + ["apply", "-f", spec_path, "--output", "json"])
        must(proc, "no-op apply")
        out = json.loads(proc.stdout)
        if any(h["changes"] or h["status"] != "ok" for h in out["hosts"]):
            sys.exit(f"the no-op apply changed something: {out['hosts']}")
        if out["stats"]:
            sys.exit(f"the no-op apply ran Ansible on {sorted(out['stats'])}")
        noops.append(t)
    ping, noop = statistics.median(pings), statistics.median(noops)
    print(f"lab {args.lab}: median of {args.runs} runs (ping: {', '.join(f'{p:.1f}' for p in pings)}; "
          f"no-op: {', '.join(f'{n:.1f}' for n in noops)})")
    print(table([("ansible all -m ping", ping), ("first apply (pristine VMs)", first),
                 ("no-op apply (converged)", noop)], ping))
    print(f"goal: no-op apply <= 1.0x ping -> {'met' if noop <= ping else 'NOT met'} ({noop / ping:.2f}x)")
    print(f"goal: first apply <= 6.0x ping -> {'met' if first <= 6 * ping else 'NOT met'} ({first / ping:.2f}x)")


if __name__ == "__main__":
    main()
