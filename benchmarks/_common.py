"""Shared by the lab benchmarks: timing, the lab's spec, and `ansible all -m ping` as the baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CLI = [str(BIN / "nvmeofctl")]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def timed(argv: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    return time.monotonic() - start, proc


def must(proc: subprocess.CompletedProcess, what: str, ok=(0,)) -> None:
    if proc.returncode not in ok:
        sys.exit(f"{what} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def lab_spec(lab: str, fresh: bool) -> str:
    """Bring the lab up (pristine with ``fresh``) and return its spec path."""
    argv = CLI + ["lab", "up", "--name", lab, "--output", "json"] + (["--fresh"] if fresh else [])
    _, proc = timed(argv)
    must(proc, "lab up")
    return json.loads(proc.stdout)["spec"]


def ping_times(spec_path: str, runs: int) -> list[float]:
    """`ansible all -m ping` over exactly the spec's hosts and SSH settings."""
    from nvmeofctl.run.inventory import build_inventory
    from nvmeofctl.spec import load_spec

    spec = load_spec(spec_path)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        inv = Path(tmp) / "inventory.json"
        inv.write_text(json.dumps(build_inventory(spec, {})))
        env = {**os.environ, "ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "True",
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(Path(tmp) / "cp")}
        for _ in range(runs):
            t, proc = timed([str(BIN / "ansible"), "all", "-i", str(inv), "-m", "ping", "-o"], env)
            must(proc, "ansible ping")
            times.append(t)
    return times


def table(rows: list[tuple[str, float]], baseline: float) -> str:
    lines = [f"{'measurement':<36}{'seconds':>10}{'x ping':>10}"]
    lines += [f"{name:<36}{secs:>10.1f}{secs / baseline:>10.2f}" for name, secs in rows]
    return "\n".join(lines)
