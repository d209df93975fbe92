"""`nvmeofctl --help` and `nvmeofctl spec validate` start without the heavy libraries (issue #9).

SSH (paramiko, and cryptography under it), Ansible (ansible-runner, ansible, jinja2) load only in
the commands that use them. Each case runs the real entry point in a fresh interpreter and looks
at ``sys.modules`` afterwards: a structural check, no timing (benchmarks/startup.py times it).
The same probe counts the cyclic GC's collections: start-up runs with the collector paused
(cli.gcpause), and run() hands it back on (or off, when the caller had turned it off).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nvmeofctl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LAB = FIXTURES / "specs" / "good" / "lab.yaml"

HEAVY = ("paramiko", "cryptography", "ansible_runner", "ansible", "jinja2")
# nvmeofctl's own packages behind the commands: `--help` needs none of them
IMPLEMENTATION = ("nvmeofctl.spec", "nvmeofctl.plan", "nvmeofctl.run", "nvmeofctl.lab", "nvmeofctl.health",
                  "nvmeofctl.facts", "nvmeofctl.remote")

PROBE = """
import contextlib, gc, io, json, os, sys
if os.environ.get("PROBE_GC_OFF"):
    gc.disable()
if os.environ.get("PROBE_NO_PAUSE"):  # the control case: start-up as it was before cli.gcpause
    import nvmeofctl.cli.gcpause as gcpause
    gcpause.pause = lambda: None
for name in sys.argv[2:sys.argv.index("--")]:
    __import__(name)
collections = lambda: sum(g["collections"] for g in gc.get_stats())
before = collections()
from nvmeofctl.cli.main import run
code, out = 0, io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        run(sys.argv[sys.argv.index("--") + 1:])
    except SystemExit as exc:
        code = exc.code
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "output": out.getvalue(), "modules": sorted(sys.modules),
               "gc_collections": collections() - before, "gc_enabled": gc.isenabled()}, f)
"""


def probe(tmp_path: Path, args: list[str], preload: tuple[str, ...] = (), gc_off: bool = False,
          no_pause: bool = False) -> dict:
    """Run ``nvmeofctl ARGS`` via ``cli.main.run`` in a new interpreter; its exit code, stdout,
    the modules it had imported by the end, the GC's collections from importing cli.main to the
    end and whether the GC is on afterwards (``gc_off``: the caller turned it off first;
    ``no_pause``: cli.gcpause never pauses it)."""
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TYPER_", "_TYPER", "PROBE_"))}
    env.update(PYTHONPATH=str(Path(nvmeofctl.__file__).resolve().parents[1]), COLUMNS="120", NO_COLOR="1")
    if gc_off:
        env["PROBE_GC_OFF"] = "1"
    if no_pause:
        env["PROBE_NO_PAUSE"] = "1"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(report), *preload, "--", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and report.exists(), proc.stderr
    return json.loads(report.read_text())


def heavy(modules: list[str], roots: tuple[str, ...] = HEAVY) -> list[str]:
    return [m for m in modules if any(m == r or m.startswith(r + ".") for r in roots)]


@pytest.mark.parametrize("args", [["--help"], ["apply", "--help"], ["health", "--help"], ["lab", "up", "--help"]],
                         ids=" ".join)
def test_help_imports_no_heavy_library_and_no_command_implementation(tmp_path, args):
    result = probe(tmp_path, args)
    assert result["code"] == 0 and "Usage:" in result["output"]
    assert heavy(result["modules"]) == []
    assert heavy(result["modules"], IMPLEMENTATION) == []


def test_spec_validate_imports_no_ssh_and_no_ansible(tmp_path):
    result = probe(tmp_path, ["spec", "validate", str(LAB)])
    assert result["code"] == 0 and result["output"].startswith(f"{LAB}: valid ("), result
    assert "nvmeofctl.spec.models" in result["modules"]  # the spec was really loaded
    assert heavy(result["modules"]) == []


def test_spec_validate_error_path_imports_no_ssh_and_no_ansible(tmp_path):
    result = probe(tmp_path, ["spec", "validate", str(tmp_path / "missing.yaml")])
    assert result["code"] == 3
    assert heavy(result["modules"]) == []


def test_the_probe_sees_a_heavy_import(tmp_path):
    """Control: the same probe reports paramiko once something imports the SSH layer."""
    result = probe(tmp_path, ["--help"], preload=("nvmeofctl.remote.ssh",))
    assert "paramiko" in heavy(result["modules"])


# With the collector on throughout, start-up ran some 50 (`--help`) to 80 (`spec validate`)
# collections over objects that all live until exit; paused, `--help` runs none and `spec
# validate` only a few, once its command has started.
MAX_STARTUP_COLLECTIONS = 10


@pytest.mark.parametrize("args", [["--help"], ["spec", "validate", str(LAB)]], ids=" ".join)
def test_start_up_runs_with_the_gc_paused_and_hands_it_back_on(tmp_path, args):
    result = probe(tmp_path, args)
    assert result["code"] == 0
    assert result["gc_collections"] <= MAX_STARTUP_COLLECTIONS, result["gc_collections"]
    assert result["gc_enabled"] is True


@pytest.mark.parametrize("args", [["--help"], ["spec", "validate", str(LAB)],
                                  ["spec", "validate", "--output", "bogus", str(LAB)]], ids=" ".join)
def test_a_caller_that_turned_the_gc_off_finds_it_off(tmp_path, args):
    result = probe(tmp_path, args, gc_off=True)
    assert result["code"] in (0, 2)
    assert result["gc_enabled"] is False
    assert result["gc_collections"] == 0


def test_a_usage_error_hands_the_gc_back_on(tmp_path):
    """No command runs (the root callback never resumes the GC): run() itself hands it back."""
    result = probe(tmp_path, ["spec", "validate", "--output", "bogus", str(LAB)])
    assert result["code"] == 2
    assert result["gc_enabled"] is True


def test_the_probe_sees_collections_when_start_up_is_not_paused(tmp_path):
    """Control: the same count is far above the limit once the pause is taken out."""
    result = probe(tmp_path, ["--help"], no_pause=True)
    assert result["code"] == 0
    assert result["gc_collections"] > MAX_STARTUP_COLLECTIONS
