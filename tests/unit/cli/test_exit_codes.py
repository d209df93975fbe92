"""The same failure gives the same exit code from every command (README "Exit codes").

Every case runs the real CLI entry point, ``nvmeofctl.cli.main.run``, in-process (one also the
real process, for a real SIGINT). Hosts are real sockets on 127.0.0.1: a closed port, and an SSH
server that refuses us (sshd.py). The refused disruptive change replays the read-only probe
captured from the real lab (tests/fixtures/plan/lab-real); Ctrl-C is a KeyboardInterrupt raised
where each command starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nvmeofctl.cli import lab as lab_cli
from nvmeofctl.cli import provision as provision_cli
from nvmeofctl.cli import spec as spec_cli
from nvmeofctl.cli.main import app, run
from nvmeofctl.exitcodes import ExitCode, for_signal
from nvmeofctl.health import expect as expect_mod
from nvmeofctl.lab.keys import write_ed25519_keypair

from test_cli_errors import closed_port  # noqa: E402  (one helper for both files)
from nvmeofctl.run import records

from sshd import RefusingSshd

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
REAL = FIXTURES / "plan" / "lab-real"

SPEC_COMMANDS = ["plan", "apply", "health", "spec validate"]
HOST_COMMANDS = ["plan", "apply", "health"]


def argv(command: str, spec: Path, *extra: str) -> list[str]:
    if command == "spec validate":
        return ["spec", "validate", str(spec), *extra]
    return [command, "-f", str(spec), *extra]


def nvmeofctl(capsys, args: list[str]) -> tuple[int, str, str]:
    try:
        rc = run(args)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_target_spec(folder: Path, port: int, ssh_extra: str = "") -> Path:
    spec = folder / "cluster.yaml"
    spec.write_text(
        "name: c\nfabric: {transport: tcp}\nhosts:\n"
        f"  - {{name: t1, role: target, ssh: {{address: 127.0.0.1, port: {port}{ssh_extra}}}, "
        "fabric: {interface: eth1, ips: [10.9.0.1]}}\n"
    )
    return spec


# ---- the spec: missing, unreadable YAML -> 3 everywhere -----------------------------------------

@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_missing_spec_file_is_3_from_every_command(command, tmp_path, capsys):
    rc, _, err = nvmeofctl(capsys, argv(command, tmp_path / "nope.yaml"))
    assert rc == ExitCode.INVALID_SPEC == 3, err
    assert err.splitlines() == [f"error: {tmp_path / 'nope.yaml'}:1: cannot read the spec: file not found"]


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_spec_that_is_a_folder_is_3_from_every_command(command, tmp_path, capsys):
    rc, _, err = nvmeofctl(capsys, argv(command, tmp_path))
    assert rc == 3 and err.splitlines() == [f"error: {tmp_path}:1: cannot read the spec: it is a directory"]


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_bad_yaml_is_3_from_every_command_naming_file_and_line(command, tmp_path, capsys):
    spec = tmp_path / "c.yaml"
    spec.write_text("name: c\nhosts:\n  - {name: t1\n  - oops: [\n")
    rc, _, err = nvmeofctl(capsys, argv(command, spec))
    assert rc == 3, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}:") and "invalid YAML" in lines[0], err


# ---- hosts: unreachable -> 6, SSH refused (host key, login) -> 4, in apply and health alike ------

@pytest.mark.parametrize("command", HOST_COMMANDS)
def test_unreachable_host_is_6_from_every_command(command, tmp_path, capsys):
    port = closed_port()
    rc, out, err = nvmeofctl(capsys, argv(command, one_target_spec(tmp_path, port), "-o", "json"))
    assert rc == ExitCode.UNREACHABLE == 6, err
    assert f"127.0.0.1:{port}" in out + err


@pytest.fixture
def sshd(tmp_path):
    with RefusingSshd(tmp_path) as server:
        yield server


@pytest.mark.parametrize("command", HOST_COMMANDS)
def test_changed_host_key_is_4_from_every_command(command, sshd, tmp_path, capsys):
    sshd.pin(tmp_path / "known_hosts", other=True)
    spec = one_target_spec(tmp_path, sshd.port, ", known_hosts: known_hosts")
    rc, out, err = nvmeofctl(capsys, argv(command, spec, "-o", "json"))
    assert rc == ExitCode.PREFLIGHT == 4, (out, err)
    if command == "health":
        (finding,) = json.loads(out)["findings"]
        assert (finding["status"], finding["check"]) == ("refused", "ssh")
        assert "does not match" in finding["observed"] and json.loads(out)["exit_code"] == 4
    else:
        assert "does not match" in err and "known_hosts" in err


@pytest.mark.parametrize("command", HOST_COMMANDS)
def test_unknown_host_key_is_4_from_every_command(command, sshd, tmp_path, capsys):
    (tmp_path / "known_hosts").write_text("")
    spec = one_target_spec(tmp_path, sshd.port, ", known_hosts: known_hosts")
    rc, out, err = nvmeofctl(capsys, argv(command, spec, "-o", "json"))
    assert rc == 4, (out, err)
    assert "is not in" in (out + err)


@pytest.mark.parametrize("command", HOST_COMMANDS)
def test_refused_login_is_4_from_every_command(command, sshd, tmp_path, capsys):
    sshd.pin(tmp_path / "known_hosts")
    write_ed25519_keypair(tmp_path / "id_ed25519", "client")
    spec = one_target_spec(tmp_path, sshd.port, ", key: id_ed25519, known_hosts: known_hosts")
    rc, out, err = nvmeofctl(capsys, argv(command, spec, "-o", "json"))
    assert rc == 4, (out, err)
    assert "authentication failed as root@127.0.0.1" in (out + err)


# ---- a refused disruptive change: its own code, 7 ---------------------------------------------

@pytest.fixture
def real_lab(tmp_path, monkeypatch):
    """The real lab spec with gpu2 dropped from `train` (removing a path gpu2 uses: disruptive);
    the hosts answer with what the real lab answered (tests/fixtures/plan/lab-real/)."""
    from nvmeofctl.facts.hoststate import HostState, parse_kv, split_sections

    text = (REAL / "cluster.yaml").read_text().replace("../../specs/good/secrets", str(FIXTURES / "specs/good/secrets"))
    assert "allowed_gpu_nodes: [gpu1, gpu2]" in text
    spec = tmp_path / "cluster.yaml"
    spec.write_text(text.replace("allowed_gpu_nodes: [gpu1, gpu2]", "allowed_gpu_nodes: [gpu1]", 1))

    def gather(spec_obj, names=None, timeout=120.0):
        states = {}
        for host in spec_obj.hosts:
            if names is None or host.name in names:
                sections = split_sections((REAL / f"{host.name}.txt").read_text())
                states[host.name] = HostState(host.name, host.role, host.fabric.interface, True,
                                              preflight=parse_kv(sections["preflight"]), sections=sections)
        return states

    def run_playbook(*args, **kwargs):
        raise AssertionError("a refused apply must not run a playbook")

    monkeypatch.setattr(provision_cli, "gather", gather)
    monkeypatch.setattr(provision_cli, "run_playbook", run_playbook)
    return spec


def test_plan_shows_the_disruptive_change_and_succeeds(real_lab, capsys):
    rc, out, err = nvmeofctl(capsys, ["plan", "-f", str(real_lab), "-o", "json"])
    assert rc == 0, err
    assert json.loads(out)["disruptive"] >= 1


def test_apply_refuses_a_disruptive_change_with_7_and_records_it(real_lab, capsys):
    rc, out, err = nvmeofctl(capsys, ["apply", "-f", str(real_lab)])
    assert rc == ExitCode.DISRUPTIVE_REFUSED == 7, err
    assert "disruptive change(s) need --allow-disruptive" in err and "gpu2" in err
    rc, out, _ = nvmeofctl(capsys, ["history", "-o", "json"])
    newest = json.loads(out)["runs"][0]
    assert newest["exit_code"] == 7 and "--allow-disruptive" in newest["error"]


def test_every_exit_code_is_documented():
    """README's table lists every ExitCode; `apply --help` names the refused disruptive change."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = readme[readme.index("## Exit codes"):]
    for code in ExitCode:
        assert f"| {int(code)} " in table or f" {int(code)} |" in table, code
    assert "| 7 | disruptive changes refused" in table
    r = CliRunner(env={"COLUMNS": "160"}).invoke(app, ["apply", "--help"])
    assert r.exit_code == 0 and "7    disruptive changes refused" in r.output


# ---- Ctrl-C: 130 from every command ------------------------------------------------------------

def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


INTERRUPTIBLE = {
    "plan": (lambda mp: mp.setattr(provision_cli, "load_spec", _interrupt), ["plan", "-f", "c.yaml"]),
    "apply": (lambda mp: mp.setattr(provision_cli, "load_spec", _interrupt), ["apply", "-f", "c.yaml"]),
    "health": (lambda mp: mp.setattr(expect_mod, "load_spec", _interrupt), ["health", "-f", "c.yaml"]),
    "spec validate": (lambda mp: mp.setattr(spec_cli, "load_spec", _interrupt), ["spec", "validate", "c.yaml"]),
    "history": (lambda mp: mp.setattr(records, "read_history", _interrupt), ["history"]),
    "lab status": (lambda mp: mp.setattr(lab_cli, "LabManager", _interrupt), ["lab", "status"]),
}


@pytest.mark.parametrize("command", list(INTERRUPTIBLE))
def test_keyboard_interrupt_is_130_from_every_command(command, monkeypatch, capsys):
    patch, args = INTERRUPTIBLE[command]
    patch(monkeypatch)
    rc, _, err = nvmeofctl(capsys, args)
    assert rc == ExitCode.INTERRUPTED == 130 == for_signal(signal.SIGINT)
    assert err.splitlines() == ["interrupted"]


def test_interrupted_apply_is_recorded_as_130(monkeypatch, capsys):
    monkeypatch.setattr(provision_cli, "load_spec", _interrupt)
    assert nvmeofctl(capsys, ["apply", "-f", "c.yaml"])[0] == 130
    rc, out, _ = nvmeofctl(capsys, ["history", "-o", "json"])
    assert json.loads(out)["runs"][0]["exit_code"] == 130


def test_ctrl_c_turned_into_abort_by_click_is_130_not_a_usage_error(monkeypatch, capsys):
    """Older typer (click's own main) raises Abort from the KeyboardInterrupt: that once exited 2."""
    def abort(*args, **kwargs):
        raise typer.Abort() from KeyboardInterrupt()

    monkeypatch.setattr(provision_cli, "load_spec", abort)
    rc, _, err = nvmeofctl(capsys, ["plan", "-f", "c.yaml"])
    assert rc == 130 and err.splitlines() == ["interrupted"]


def test_sigint_ends_the_real_process_with_130(tmp_path):
    """A real SIGINT while `health` waits for a host that accepted TCP and never answers SSH."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(silent.accept()[0])
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    spec = one_target_spec(tmp_path, silent.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvmeofctl", "health", "-f", str(spec)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, NO_COLOR="1"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # also when the test runner ignores it
    )
    try:
        deadline = time.monotonic() + 60
        while not accepted and time.monotonic() < deadline:  # the probe is waiting for the banner
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert accepted, "health never connected"
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        for conn in accepted:  # let the SSH thread end now instead of at its banner timeout
            conn.close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        silent.close()
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err


# ---- usage errors: 2 everywhere, and --output per command ---------------------------------------

@pytest.mark.parametrize("args", [
    ["plan", "-f", "c.yaml", "-o", "prometheus"],
    ["apply", "-f", "c.yaml", "-o", "prometheus"],
    ["spec", "validate", "c.yaml", "-o", "prometheus"],
    ["history", "-o", "prometheus"],
    ["lab", "status", "-o", "prometheus"],
    ["health", "-f", "c.yaml", "-o", "yaml"],
], ids=lambda a: " ".join(a[:2]))
def test_an_output_format_the_command_cannot_write_is_a_usage_error(args, capsys):
    rc, out, err = nvmeofctl(capsys, args)
    assert rc == ExitCode.USAGE == 2 and out == ""
    choices = "table | json | prometheus" if args[0] == "health" else "table | json"
    assert f"(choose {choices})" in err and "Traceback" not in err


@pytest.mark.parametrize("command", HOST_COMMANDS)
def test_limit_naming_an_unknown_host_is_2_from_every_command(command, tmp_path, capsys):
    rc, _, err = nvmeofctl(capsys, argv(command, one_target_spec(tmp_path, closed_port()), "-l", "nope"))
    assert rc == 2 and err.splitlines() == ["error: --limit: unknown host(s) nope (hosts: t1)"]


def test_apply_forks_reach_ansible_and_zero_is_a_usage_error(real_lab, monkeypatch, capsys):
    from nvmeofctl.cli import provision as provision_cli

    seen = {}

    def run_playbook(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop right there: what matters is what Ansible was asked for

    monkeypatch.setattr(provision_cli, "run_playbook", run_playbook)
    rc, _, err = nvmeofctl(capsys, ["apply", "-f", str(real_lab), "--allow-disruptive", "--forks", "64"])
    assert rc == 130 and seen["forks"] == 64, err
    rc, _, err = nvmeofctl(capsys, ["apply", "-f", str(real_lab), "--forks", "0"])
    assert rc == 2 and "--forks" in err


def test_every_apply_first_removes_a_killed_runs_directory(real_lab, tmp_path, monkeypatch, capsys):
    """A run killed with SIGKILL leaves its run directory (its inventory holds keys). A converged
    apply runs no playbook, so apply removes such directories first, whether a playbook runs or
    not: here the apply is refused (7) before any playbook."""
    import json as _json
    import socket

    from nvmeofctl.run.rundir import OWNER_FILE, runs_parent

    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    parent = runs_parent()
    parent.mkdir(parents=True, mode=0o700)
    dead = parent / "run-killed"
    dead.mkdir(mode=0o700)
    (dead / "inventory").mkdir()
    (dead / "inventory" / "hosts.yml").write_text("secret: DHHC-1:00:x:\n")
    # a process that is gone: no /proc/<pid> for this pid on this host
    (dead / OWNER_FILE).write_text(_json.dumps({"pid": 2**22 - 3, "start": "1", "boot": None,
                                               "host": socket.gethostname()}))
    alive = parent / "run-alive"  # this very process: never removed
    alive.mkdir(mode=0o700)
    from nvmeofctl.run.rundir import current_owner
    from dataclasses import asdict
    (alive / OWNER_FILE).write_text(_json.dumps(asdict(current_owner())))
    rc, out, err = nvmeofctl(capsys, ["apply", "-f", str(real_lab)])
    assert rc == 7, err
    assert not dead.exists() and alive.exists()
    assert "removed run-killed, left by a run that was killed" in err
