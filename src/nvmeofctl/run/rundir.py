"""Private per-run directories for ansible-runner: they hold the inventory, so DH-HMAC-CHAP keys.

A run directory lives under a per-user private parent (0700, owned by us):
`$XDG_RUNTIME_DIR/nvmeofctl/runs` (a tmpfs that the login session owns) when that is usable,
else `<nvmeofctl cache>/runs`. It is removed on every way out of the `with` block: return,
exception, SIGHUP (a dropped SSH session), SIGTERM and SIGINT. SIGKILL and the OOM killer
can't be caught, so each run directory records its owner process (pid, the process start time
from /proc/<pid>/stat, boot id, host name) and the next run removes the directories whose owner
is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from nvmeofctl.errors import PreflightError
from nvmeofctl.exitcodes import for_signal
from nvmeofctl.lab.paths import cache_root

OWNER_FILE = "owner.json"
# A directory without a readable owner file is being created right now (mkdtemp, then the owner
# file) or was left by a run killed in between: only the second kind is older than this.
OWNER_GRACE_S = 300.0
PROC = Path("/proc")
# Signals that end the process by default and can be caught; removing the keys comes first.
CLEANUP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGHUP", "SIGTERM", "SIGINT") if hasattr(signal, name)
)


@dataclass(frozen=True)
class Owner:
    """The process that owns a run directory. `start` (clock ticks since boot, field 22 of
    /proc/<pid>/stat) tells a reused pid from the owner; None where there is no /proc."""

    pid: int
    start: str | None
    boot: str | None
    host: str


def runs_parent(environ: Mapping[str, str] | None = None) -> Path:
    """Where run directories go: `$XDG_RUNTIME_DIR/nvmeofctl/runs` when XDG_RUNTIME_DIR is an
    absolute path to a directory owned by us and closed to group/other, else `<cache>/runs`
    (cache: NVMEOFCTL_CACHE, $XDG_CACHE_HOME/nvmeofctl or ~/.cache/nvmeofctl)."""
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        try:
            st = os.stat(runtime)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077:
            return Path(runtime) / "nvmeofctl" / "runs"
    return cache_root() / "runs"


def make_dirs_0700(path: Path) -> None:
    """Create `path` and its missing parents, each mode 0700 whatever the umask (a folder made
    meanwhile by another run is left to the caller's checks). Raises OSError naming the folder."""
    missing: list[Path] = []
    p = Path(path)
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700, then check that it is a directory
    owned by the effective user with no group/other permission bits. Raises PreflightError."""
    try:
        make_dirs_0700(path)
    except OSError as exc:
        raise PreflightError(f"cannot create the private run folder {exc.filename or path}: {exc.strerror}") from None
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PreflightError(f"cannot use the private run folder {path}: {exc.strerror}") from None
    euid = os.geteuid()
    problem = fix = ""
    if not stat.S_ISDIR(st.st_mode):
        problem, fix = "is not a directory", f"remove it (`rm {path}`)"
    elif st.st_uid != euid:
        problem = f"is owned by uid {st.st_uid}, not by you (uid {euid})"
        fix = f"remove it, or `chown {euid} {path}` if it is yours"
    elif st.st_mode & 0o077:
        problem = f"is open to group/other (mode {stat.S_IMODE(st.st_mode):04o})"
        fix = f"run `chmod 700 {path}`"
    if problem:
        raise PreflightError(f"refusing to keep DH-HMAC-CHAP keys in {path}: it {problem}; {fix}")
    return Path(path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree, also when parts of it were made read-only (ansible-runner and
    ansible do that); never raises."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path) or os.path.islink(path):
        return
    for root, dirs, _files in os.walk(path, onerror=lambda _exc: None):
        for name in dirs:
            sub = os.path.join(root, name)
            if not os.path.islink(sub):
                try:
                    os.chmod(sub, 0o700)  # before os.walk lists it
                except OSError:
                    pass
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)


def _proc_stat_fields(pid: int, proc: Path) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state first), or None when there is no such process."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    # field 2 (comm) is in parentheses and may hold spaces and ')': split after the last ')'
    rest = raw[raw.rfind(")") + 1 :].split()
    return rest if len(rest) >= 20 else None


def process_start_time(pid: int, proc: Path = PROC) -> str | None:
    """Start time of a live process (field 22 of /proc/<pid>/stat), None when it is gone,
    a zombie, or there is no /proc."""
    fields = _proc_stat_fields(pid, proc)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return None
    return fields[22 - 3]


def _boot_id(proc: Path) -> str | None:
    try:
        return (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


def current_owner(proc: Path = PROC) -> Owner:
    pid = os.getpid()
    return Owner(pid=pid, start=process_start_time(pid, proc), boot=_boot_id(proc), host=socket.gethostname())


def owner_alive(owner: Owner, me: Owner, proc: Path = PROC) -> bool:
    """Whether the process that made a run directory may still be using it. Directories of other
    hosts (a cache folder on a shared home) are never judged: they count as alive."""
    if owner.host != me.host:
        return True
    if owner.boot and me.boot and owner.boot != me.boot:
        return False  # made before the last reboot
    if me.start is not None:  # /proc works here: pid plus start time identify the process
        start = process_start_time(owner.pid, proc)
        return start is not None and (owner.start is None or start == owner.start)
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists
        return True
    return True


def read_owner(run_dir: Path) -> Owner | None:
    try:
        data = json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))
        return Owner(pid=int(data["pid"]), start=data.get("start"), boot=data.get("boot"), host=str(data["host"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_owner(run_dir: Path, owner: Owner) -> None:
    fd = os.open(run_dir / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(asdict(owner), fh)


def remove_stale_run_dirs(
    parent: Path,
    *,
    me: Owner | None = None,
    clock: Callable[[], float] = time.time,
    proc: Path = PROC,
    grace_s: float = OWNER_GRACE_S,
) -> list[Path]:
    """Remove the run directories under `parent` whose owner process is gone (a run killed with
    SIGKILL or by the OOM killer). Returns what was removed; reads no file but the owner files."""
    me = me or current_owner(proc)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        owner = read_owner(path)
        if owner is None:
            try:
                age = clock() - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            stale = age > grace_s
        else:
            stale = not owner_alive(owner, me, proc)
        if stale:
            remove_tree(path)
            removed.append(path)
    return removed


def sweep_stale_run_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """``remove_stale_run_dirs`` on this user's runs folder, when it exists. Every ``apply`` calls
    it first: a converged apply runs no playbook (and so makes no run directory), yet the
    directory a killed run left, with the keys of its inventory, must not wait for the next run
    that does."""
    parent = runs_parent(environ)
    if not parent.is_dir():
        return []
    return remove_stale_run_dirs(parent)


class _SignalCleanup:
    """While installed, SIGHUP/SIGTERM/SIGINT first remove `path`, then end the process as the
    signal would have: a Python handler that was there before runs next; otherwise SIGINT raises
    KeyboardInterrupt and the others SystemExit(128 + signum), so `finally` blocks still run.
    Signals ignored before (`nohup`) stay ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works in the main thread only
        for signum in CLEANUP_SIGNALS:
            prev = signal.getsignal(signum)
            if prev is None or prev == signal.SIG_IGN:  # set outside Python, or ignored on purpose
                continue
            self.previous[signum] = prev
            signal.signal(signum, self._handle)

    def restore(self) -> None:
        previous, self.previous = self.previous, {}
        for signum, prev in previous.items():
            signal.signal(signum, prev)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        prev = self.previous.get(signum)
        self.restore()
        remove_tree(self.path)
        if callable(prev):
            prev(signum, frame)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(for_signal(signum))


@contextmanager
def private_run_dir(
    prefix: str = "run",
    *,
    parent: Path | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    proc: Path = PROC,
) -> Iterator[Path]:
    """A fresh 0700 directory `<parent>/<prefix>-XXXXXXXX` for one run, removed on exit.

    parent: default `runs_parent(environ)`; created 0700, refused (PreflightError) when it is
    not ours or is open to group/other. On entry, run directories of ended processes are
    removed. While inside, SIGHUP/SIGTERM/SIGINT remove the directory before ending the process
    (see _SignalCleanup); the previous handlers come back on exit.
    """
    base = ensure_private_dir(parent if parent is not None else runs_parent(environ))
    me = current_owner(proc)
    remove_stale_run_dirs(base, me=me, clock=clock, proc=proc)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=base))
    guard = _SignalCleanup(path)
    try:
        guard.install()
        _write_owner(path, me)
        yield path
    finally:
        guard.restore()
        remove_tree(path)
