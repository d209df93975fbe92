"""The CLI's contract at the edges: one-line errors, the documented exit codes, nothing changed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nvmeofctl", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_version_and_help():
    assert cli("--version").stdout.strip().startswith("nvmeofctl ")
    for cmd in (["plan"], ["apply"], ["health"], ["lab", "up"], ["spec", "validate"]):
        out = cli(*cmd, "--help")
        assert out.returncode == 0 and "Example" in out.stdout, cmd


def test_missing_spec_is_one_line_exit_3(tmp_path):
    for cmd in ("plan", "apply"):
        proc = cli(cmd, "-f", str(tmp_path / "nope.yaml"))
        assert proc.returncode == 3, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "nope.yaml" in lines[0] and "Traceback" not in proc.stderr


def test_unknown_option_value_is_usage_error():
    proc = cli("plan", "-f", "x.yaml", "--output", "xml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def _spec_with_port(tmp_path: Path, port: int) -> Path:
    """The lab-like fixture spec with gpu2's SSH endpoint on ``port``."""
    text = (FIXTURES / "specs" / "good" / "lab.yaml").read_text().replace("port: 2203", f"port: {port}")
    spec = tmp_path / "cluster.yaml"
    spec.write_text(text)
    for d in ("secrets", "ssh"):
        src = FIXTURES / "specs" / "good" / d
        if src.exists():
            subprocess.run(["cp", "-r", str(src), str(tmp_path / d)], check=True)
    return spec


def test_limit_names_unknown_hosts(tmp_path):
    spec = _spec_with_port(tmp_path, closed_port())
    proc = cli("plan", "-f", str(spec), "--limit", "gpu9")
    assert proc.returncode == 2 and "gpu9" in proc.stderr and "stor1" in proc.stderr


def test_unreachable_hosts_exit_6_before_any_change(tmp_path):
    port = closed_port()
    spec = _spec_with_port(tmp_path, port)
    proc = cli("apply", "-f", str(spec), "--limit", "gpu2")
    assert proc.returncode == 6, proc.stderr
    assert "gpu2" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert "running playbooks" not in proc.stderr  # stopped at preflight


def test_lab_commands_refuse_without_a_lab_or_flag(tmp_path):
    env = {"NVMEOFCTL_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = cli("lab", "status", "--name", "nothere", env=env)
    assert proc.returncode == 2 and "no lab named 'nothere'" in proc.stderr
    proc = cli("lab", "destroy", "--name", "nothere", env=env)
    assert proc.returncode == 2 and "--yes" in proc.stderr


def test_spec_schema_is_json():
    proc = cli("spec", "schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert "hosts" in schema.get("properties", {})


@pytest.mark.parametrize("command", ["plan", "apply", "health"])
@pytest.mark.parametrize("limit", [",", "", " , ,"])
def test_a_limit_that_names_no_host_is_a_usage_error(command, limit, tmp_path):
    """`--limit ,` once ran the playbook on every host (and health said "healthy")."""
    spec = tmp_path / "c.yaml"
    spec.write_text("name: c\nfabric: {transport: tcp}\nhosts:\n"
                    "  - {name: t1, role: target, ssh: {address: 127.0.0.1, port: 1}, "
                    "fabric: {interface: eth1, ips: [10.9.0.1]}}\n")
    proc = cli(command, "-f", str(spec), "--limit", limit)
    assert proc.returncode == 2, proc.stderr
    assert "names no host" in proc.stderr and "Traceback" not in proc.stderr
