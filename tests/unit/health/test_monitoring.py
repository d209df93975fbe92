"""monitoring/ (alert rules, Grafana dashboard) and `nvmeofctl monitor install`: every metric the
rules and the dashboard use is one `health --output prometheus` emits (fed the real lab captures,
as the health CLI tests are), the rules pass promtool's own tests, and the schedule's units."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from test_health_cli import fake, invoke, spec_dict  # noqa: F401 - fixtures and runner of the health CLI tests

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "monitoring" / "prometheus" / "nvmeofctl-alerts.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "nvmeofctl-fabric.json"
METRIC_RE = re.compile(r"\bnvmeofctl_[a-z_]+\b")


def _used_metrics() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [dash["templating"]["list"][0]["query"]["query"]]
    return {m for e in exprs for m in METRIC_RE.findall(e)}


def test_every_metric_the_rules_and_dashboard_use_is_emitted(fake):  # noqa: F811
    used = _used_metrics()
    assert used == {"nvmeofctl_health_check", "nvmeofctl_health_host_up", "nvmeofctl_health_exit_code",
                    "nvmeofctl_health_last_run_timestamp_seconds", "nvmeofctl_perf_rdma_write_gbps"}
    r = invoke("--perf", "-o", "prometheus")
    emitted = {line.split("{")[0].split(" ")[0] for line in r.stdout.splitlines() if line and not line.startswith("#")}
    assert used <= emitted, used - emitted
    # the checks the rules name by label are checks health runs on the lab
    for check in ("nvme_controller", "link_errors", "nic_drops", "congestion"):
        assert check in RULES.read_text() and f'check="{check}"' in r.stdout, check


def test_textfile_is_written_atomically(fake, tmp_path, cli):  # noqa: F811
    out = tmp_path / "nvmeofctl.prom"
    r = invoke("-o", "prometheus", "--textfile", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    text = out.read_text()
    assert text.startswith("# HELP nvmeofctl_health_check") and "nvmeofctl_health_last_run_timestamp_seconds " in text
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["nvmeofctl.prom"]  # no temporary file left
    r = cli(["health", "-f", str(SPEC), "-o", "json", "--textfile", str(out)])
    assert r.exit_code == 2 and "use it with --output prometheus" in r.output


def _promtool() -> str | None:
    found = shutil.which("promtool")
    cached = Path.home() / ".cache" / "nvmeofctl" / "tools" / "promtool"
    return found or (str(cached) if cached.exists() else None)


@pytest.mark.skipif(_promtool() is None, reason="promtool not installed (`make promtool` unpacks Debian's)")
def test_alert_rules_pass_promtool():
    folder = RULES.parent
    check = subprocess.run([_promtool(), "check", "rules", RULES.name], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stdout + check.stderr
    test = subprocess.run([_promtool(), "test", "rules", "nvmeofctl-alerts.test.yml"], cwd=folder,
                          capture_output=True, text=True)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_dashboard_is_grafana_json_with_a_query_per_panel():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "nvmeofctl-fabric" and dash["__inputs"][0]["pluginId"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) == 8
    assert all(p["targets"][0]["expr"] for p in dash["panels"])


# --------------------------------------------------------------------------- monitor install
@pytest.fixture
def cli(run_cli):
    """(exit code, stdout + stderr) of a command line."""
    class Ran:
        def __init__(self, args):
            self.exit_code, out, err = run_cli(args)
            self.output = out + err

    return Ran


SPEC = REPO / "tests" / "fixtures" / "plan" / "lab-real" / "cluster.yaml"


def test_print_shows_both_units_and_changes_nothing(tmp_path, cli):
    r = cli(["monitor", "install", "-f", str(SPEC), "--every", "5m", "--print", "--unit-dir", str(tmp_path),
              "--textfile", "/var/lib/node_exporter/nvmeofctl.prom"])
    assert r.exit_code == 0, r.output
    assert list(tmp_path.iterdir()) == []
    lines = r.output.splitlines()
    assert f"# {tmp_path}/nvmeofctl-health.service" in lines and f"# {tmp_path}/nvmeofctl-health.timer" in lines
    exec_start = next(l for l in lines if l.startswith("ExecStart="))
    assert exec_start.endswith(f" health -f {SPEC} --output prometheus --textfile /var/lib/node_exporter/nvmeofctl.prom")
    assert "SuccessExitStatus=4 6 10 11" in lines and "OnUnitActiveSec=5min" in lines and "WantedBy=timers.target" in lines


def test_install_writes_the_units_and_enables_the_timer(tmp_path, monkeypatch, cli):
    log = tmp_path / "systemctl.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bindir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    units = tmp_path / "units"
    r = cli(["monitor", "install", "-f", str(SPEC), "--every", "1h", "--unit-dir", str(units)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in units.iterdir()) == ["nvmeofctl-health.service", "nvmeofctl-health.timer"]
    assert "OnUnitActiveSec=1h" in (units / "nvmeofctl-health.timer").read_text()
    assert log.read_text().splitlines() == ["daemon-reload", "enable --now nvmeofctl-health.timer"]


@pytest.mark.parametrize("args, message", [
    (["--every", "5x"], "--every '5x': a number and s, m or h"),
    (["--every", "10s"], "at least 30s"),
    (["--textfile", "/tmp/a b;rm.prom"], "an absolute path of letters"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, cli, args, message):
    r = cli(["monitor", "install", "-f", str(SPEC), "--unit-dir", str(tmp_path), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert list(tmp_path.iterdir()) == []
