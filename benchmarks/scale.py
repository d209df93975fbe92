#!/usr/bin/env python3
"""What one host costs the CONTROL machine, measured on the lab, for scaling on paper.

For `plan`, a cold `apply` (pristine VMs), a no-op `apply` and `health`, run once each on the
lab: wall time, CPU-seconds of the whole process tree (nvmeofctl, ansible-playbook and its forks,
ssh) and the peak resident memory of that tree (sampled every 50 ms from /proc), and the same per
host. The README's "Scaling" section extrapolates these per-host figures to 100 and 1,000 GPU nodes.

Measured, never asserted in tests. Restores the lab's VMs to their pristine booted state first.

Usage: .venv/bin/python benchmarks/scale.py [--lab NAME] [--output json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import CLI, lab_spec, must

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants, now."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
        todo += _children(p)
    return total


def measure(argv: list[str], ok=(0,)) -> dict:
    """Run ``argv``; wall seconds, CPU-seconds of the tree (rusage of reaped children) and peak
    tree RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            done.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    must(subprocess.CompletedProcess(argv, proc.returncode, out, err), " ".join(argv[1:3]), ok=ok)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(peak / 2**20, 1),
            "stdout": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", default=os.environ.get("NVMEOFCTL_LAB", "lab"))
    ap.add_argument("--output", choices=("table", "json"), default="table")
    args = ap.parse_args()
    print(f"restoring lab {args.lab!r} to its pristine booted state ...", file=sys.stderr)
    spec = lab_spec(args.lab, fresh=True)
    hosts = json.loads(measure(CLI + ["spec", "validate", spec, "--output", "json"])["stdout"])["counts"]["hosts"]
    rows = {}
    for name, argv, ok in (
        ("plan (pristine)", CLI + ["plan", "-f", spec, "--output", "json"], (0,)),
        ("apply (cold)", CLI + ["apply", "-f", spec, "--output", "json"], (0,)),
        ("apply (no-op)", CLI + ["apply", "-f", spec, "--output", "json"], (0,)),
        ("plan (converged)", CLI + ["plan", "-f", spec, "--output", "json"], (0,)),
        ("health", CLI + ["health", "-f", spec, "--window", "1", "--output", "json"], (0, 10)),
    ):
        print(f"{name} ...", file=sys.stderr)
        r = measure(argv, ok)
        r.pop("stdout")
        rows[name] = r
    if args.output == "json":
        print(json.dumps({"lab": args.lab, "hosts": hosts, "forks": "ansible default (see README)",
                          "measurements": rows}, indent=2))
        return
    print(f"lab {args.lab}: {hosts} hosts, control machine: {os.cpu_count()} CPUs")
    print(f"{'command':<20}{'wall s':>9}{'CPU s':>9}{'CPU s/host':>12}{'peak MiB':>10}{'MiB/host':>10}")
    for name, r in rows.items():
        print(f"{name:<20}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['cpu_s'] / hosts:>12.2f}"
              f"{r['peak_rss_mib']:>10.0f}{r['peak_rss_mib'] / hosts:>10.1f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
