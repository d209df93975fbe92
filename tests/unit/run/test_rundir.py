"""Private run dirs: 0700 under a private parent, gone on return, exception, SIGHUP, SIGTERM and
SIGINT; after a SIGKILL the next run removes them."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from nvmeofctl.errors import NvmeofctlError
from nvmeofctl.run import rundir
from nvmeofctl.run.rundir import (
    OWNER_FILE,
    Owner,
    current_owner,
    ensure_private_dir,
    private_run_dir,
    process_start_time,
    read_owner,
    remove_stale_run_dirs,
    remove_tree,
    runs_parent,
)
from nvmeofctl.run.runner import CONTROL_NAME_LEN, SUN_PATH_MAX, control_path_dir

KEY = "DHHC-1:01:+Xoos2iDZZi3X2WV4wjk0sxdPHyYCnAq/aUCMnojytKVzPTD:"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_run_dir_and_parent_are_0700_and_removed(tmp_path: Path) -> None:
    parent = tmp_path / "a" / "runs"
    with private_run_dir(parent=parent) as d:
        assert d.parent == parent and d.name.startswith("run-")
        assert mode(d) == 0o700 and mode(parent) == 0o700 and mode(parent.parent) == 0o700
        assert read_owner(d) == current_owner()
        assert mode(d / OWNER_FILE) == 0o600
    assert not d.exists() and parent.exists()


def test_removed_on_exception_even_with_read_only_subdirs(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), private_run_dir("x", parent=tmp_path) as d:
        sub = d / "artifacts" / "1"
        sub.mkdir(parents=True)
        (sub / "stdout").write_text(KEY)
        sub.chmod(0o500)
        (d / "artifacts").chmod(0o500)
        raise RuntimeError("boom")
    assert not d.exists()


def test_remove_tree_copes_with_unreadable_dirs(tmp_path: Path) -> None:
    top = tmp_path / "t"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "key").write_text(KEY)
    (top / "a" / "b").chmod(0o000)
    (top / "a").chmod(0o500)
    remove_tree(top)
    assert not top.exists()
    remove_tree(top)  # gone already: no error


@pytest.mark.parametrize(("perm", "problem"), [(0o755, "open to group/other (mode 0755)"),
                                               (0o770, "open to group/other (mode 0770)")])
def test_parent_open_to_others_is_refused(tmp_path: Path, perm: int, problem: str) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    parent.chmod(perm)
    with pytest.raises(NvmeofctlError) as err, private_run_dir(parent=parent):
        pass
    assert str(err.value) == f"refusing to keep DH-HMAC-CHAP keys in {parent}: it is {problem}; run `chmod 700 {parent}`"
    assert list(parent.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_parent_of_another_user_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    parent.mkdir(mode=0o700)
    os.chown(parent, 65534, 65534)
    with pytest.raises(NvmeofctlError, match=r"is owned by uid 65534, not by you \(uid 0\)"):
        ensure_private_dir(parent)


def test_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("")
    with pytest.raises(NvmeofctlError, match="it is not a directory"):
        ensure_private_dir(tmp_path / "runs")


def test_runs_parent_prefers_a_private_xdg_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path / "cache"))
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    assert runs_parent({"XDG_RUNTIME_DIR": str(runtime)}) == runtime / "nvmeofctl" / "runs"
    runtime.chmod(0o755)  # not private: the cache is used instead
    assert runs_parent({"XDG_RUNTIME_DIR": str(runtime)}) == tmp_path / "cache" / "runs"
    assert runs_parent({"XDG_RUNTIME_DIR": "relative/dir"}) == tmp_path / "cache" / "runs"
    assert runs_parent({"XDG_RUNTIME_DIR": str(tmp_path / "missing")}) == tmp_path / "cache" / "runs"
    assert runs_parent({}) == tmp_path / "cache" / "runs"


def test_default_parent_comes_from_the_environment(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    with private_run_dir(environ={"XDG_RUNTIME_DIR": str(runtime)}) as d:
        assert d.parent == runtime / "nvmeofctl" / "runs"
    assert list((runtime / "nvmeofctl" / "runs").iterdir()) == []


def test_process_start_time_tells_a_reused_pid(tmp_path: Path) -> None:
    me = process_start_time(os.getpid())
    if me is None:
        pytest.skip("no /proc")
    assert me.isdigit()
    fake = tmp_path / "proc" / "4242"
    fake.mkdir(parents=True)
    rest = " ".join(["S"] + [str(i) for i in range(4, 22)] + ["777"] + ["0"] * 10)
    (fake / "stat").write_text(f"4242 (we ird) name)) {rest}\n")
    assert process_start_time(4242, tmp_path / "proc") == "777"
    (fake / "stat").write_text(f"4242 (zombie) {rest.replace('S', 'Z', 1)}\n")
    assert process_start_time(4242, tmp_path / "proc") is None
    assert process_start_time(4243, tmp_path / "proc") is None


def make_stale(parent: Path, name: str, owner: Owner | None) -> Path:
    d = parent / name
    d.mkdir(mode=0o700, parents=True)
    (d / "inventory").mkdir()
    (d / "inventory" / "hosts.json").write_text(json.dumps({"key": KEY}))
    if owner is not None:
        (d / OWNER_FILE).write_text(json.dumps(owner.__dict__))
    return d


def dead_pid() -> tuple[int, str | None]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = process_start_time(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, start


def test_stale_dirs_of_dead_owners_are_removed_live_ones_kept(tmp_path: Path) -> None:
    me = current_owner()
    pid, start = dead_pid()
    dead = make_stale(tmp_path, "run-dead", Owner(pid, start, me.boot, me.host))
    reused = make_stale(tmp_path, "run-reused", Owner(me.pid, "1", me.boot, me.host))  # our pid, not us
    rebooted = make_stale(tmp_path, "run-boot", Owner(me.pid, me.start, "another-boot", me.host))
    live = make_stale(tmp_path, "run-live", me)
    remote = make_stale(tmp_path, "run-remote", Owner(pid, start, "x", me.host + "-other"))
    with private_run_dir(parent=tmp_path) as d:
        left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["run-live", "run-remote", d.name])
    assert not dead.exists() and not reused.exists() and not rebooted.exists()
    assert live.exists() and remote.exists()


def test_dirs_without_owner_file_are_removed_only_when_old(tmp_path: Path) -> None:
    fresh = make_stale(tmp_path, "run-fresh", None)
    now = time.time()
    assert remove_stale_run_dirs(tmp_path, clock=lambda: now) == []
    assert fresh.exists()
    assert remove_stale_run_dirs(tmp_path, clock=lambda: now + rundir.OWNER_GRACE_S + 60) == [fresh]
    assert not fresh.exists()


def test_files_and_symlinks_in_the_parent_are_left_alone(tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "note").write_text("x")
    target = make_stale(tmp_path / "elsewhere", "keep", None)
    (parent / "link").symlink_to(target)
    assert remove_stale_run_dirs(parent, clock=lambda: time.time() + 10**6) == []
    assert (parent / "note").exists() and (parent / "link").is_symlink() and target.exists()


@pytest.fixture
def default_handlers():
    """Python's own handlers (a test run in the background may start with SIGINT ignored)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, h in before.items():
        signal.signal(s, h)


def test_handlers_installed_inside_and_restored_after(tmp_path: Path, default_handlers) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup: stays ignored
        with private_run_dir(parent=tmp_path):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
            assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_sigint_still_ends_as_keyboard_interrupt(tmp_path: Path, default_handlers) -> None:
    with pytest.raises(KeyboardInterrupt), private_run_dir(parent=tmp_path) as d:
        (d / "key").write_text(KEY)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    assert not d.exists()


def test_no_handlers_outside_the_main_thread(tmp_path: Path, default_handlers) -> None:
    seen: list = []

    def work() -> None:
        with private_run_dir(parent=tmp_path) as d:
            seen.append((d, signal.getsignal(signal.SIGTERM)))

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    d, handler = seen[0]
    assert handler is before and not d.exists()


CHILD = """
import signal, sys, time
from pathlib import Path
from nvmeofctl.run.rundir import private_run_dir
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # a python started in the background ignores some
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)
with private_run_dir(parent=Path(sys.argv[1])) as d:
    (d / "inventory").mkdir(mode=0o700)
    (d / "inventory" / "hosts.json").write_text(sys.argv[2])
    print(d, flush=True)
    time.sleep(60)
"""


def start_child(parent: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(parent), KEY], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read()
    path = Path(line)
    assert (path / "inventory" / "hosts.json").read_text() == KEY
    return proc, path


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_signal_removes_the_dir(tmp_path: Path, sig: int) -> None:
    proc, path = start_child(tmp_path)
    proc.send_signal(sig)
    rc = proc.wait(timeout=30)
    err = proc.stderr.read()
    if sig == signal.SIGINT:  # an uncaught KeyboardInterrupt ends python by SIGINT
        assert rc == -signal.SIGINT and "KeyboardInterrupt" in err
    else:
        assert rc == 128 + sig, err
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert KEY not in err


def test_sigkill_leaves_the_dir_and_the_next_run_removes_it(tmp_path: Path) -> None:
    proc, path = start_child(tmp_path)
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert (path / "inventory" / "hosts.json").exists()
    with private_run_dir(parent=tmp_path) as d:
        assert not path.exists()
        assert list(tmp_path.iterdir()) == [d]
    assert list(tmp_path.iterdir()) == []


def test_control_path_dir_keeps_socket_paths_short(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # pytest's tmp_path is too long for this
    try:
        with control_path_dir(short) as cp:
            assert cp == short / "cp" and mode(cp) == 0o700
            assert len(os.fsencode(cp)) + CONTROL_NAME_LEN <= SUN_PATH_MAX
    finally:
        remove_tree(short)
    long_dir = tmp_path / ("x" * 80)
    long_dir.mkdir()
    with control_path_dir(long_dir) as cp:
        assert cp.parent != long_dir and cp.name.startswith("nvcp-") and mode(cp) == 0o700
        assert len(os.fsencode(cp)) + CONTROL_NAME_LEN <= SUN_PATH_MAX
    assert not cp.exists()
