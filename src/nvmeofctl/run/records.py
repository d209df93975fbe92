"""Run records: what each `apply` did, kept so an operator can tell what changed when.

One JSON file per run under `<state>/runs/` (state: `$NVMEOFCTL_STATE`,
`$XDG_STATE_HOME/nvmeofctl` or `~/.local/state/nvmeofctl`): the plan, per-host changes and
failures, timings and the exit code. The folder is 0700, each file 0600, written atomically
(a temp file in the same folder, then os.replace). The newest `KEEP_RECORDS` are kept.

A record never holds a secret: the caller passes public data only (the plan and the module
results are already redacted), and `redact` runs over everything again as a second line of
defence: any string holding a DH-HMAC-CHAP secret (`DHHC-1:`) and the values of secret-named
keys (`dhchap_*key*`, `*secret*`, `*password*`, `*token*`, ...) become "<secret>".

`record_apply` never raises for I/O problems (a full disk must not turn a finished apply into
a failure): it returns None and says why through `warn`. Wrong argument types do raise.
"""

from __future__ import annotations

import errno
import fnmatch
import getpass
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nvmeofctl.errors import NvmeofctlError, UsageError
from nvmeofctl.run.rundir import make_dirs_0700

RECORD_VERSION = 1
KEEP_RECORDS = 500
RUNS = "runs"
SECRET = "<secret>"
# A record of a run over hundreds of hosts stays far below this; anything larger is not ours.
MAX_RECORD_BYTES = 64 * 1024 * 1024

ID_RE = re.compile(r"\d{8}T\d{6}Z-\d+-[0-9a-f]{4}")
RECORD_NAME_RE = re.compile(r"(" + ID_RE.pattern + r")\.json")
DHHC_RE = re.compile(r"DHHC-1:", re.IGNORECASE)
# Key names whose values are secrets whatever they hold (case-insensitive, fnmatch patterns).
SECRET_KEY_PATTERNS = (
    "dhchap_*key*",
    "*secret*",
    "*password*",
    "*passphrase*",
    "*token*",
    "*private_key*",
    "*psk*",
)
# Host statuses (apply rows and preflight skips) that mean "this host did not get configured".
FAILED_STATUSES = ("failed", "unreachable", "preflight failed")
SKIPPED_STATUSES = ("skipped",)


# ---------------------------------------------------------------- where


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """nvmeofctl's state folder: `$NVMEOFCTL_STATE`, else `$XDG_STATE_HOME/nvmeofctl`, else
    `~/.local/state/nvmeofctl`."""
    env = os.environ if environ is None else environ
    if env.get("NVMEOFCTL_STATE"):
        return Path(env["NVMEOFCTL_STATE"])
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "nvmeofctl"


def runs_dir(root: Path | str | None = None) -> Path:
    """Where the records live: `<root>/runs`, root defaulting to `state_dir()`."""
    return (Path(root) if root is not None else state_dir()) / RUNS


# ---------------------------------------------------------------- pure: redaction, record, summary


def _secret_key(key: str) -> bool:
    k = key.lower()
    return any(fnmatch.fnmatchcase(k, p) for p in SECRET_KEY_PATTERNS)


def _is_secret_object(obj: Any) -> bool:
    """pydantic's SecretStr/SecretBytes (and look-alikes), without importing pydantic here."""
    return type(obj).__name__ in ("SecretStr", "SecretBytes") and hasattr(obj, "get_secret_value")


def redact(obj: Any, *, _under_secret: bool = False) -> Any:
    """A deep copy of `obj` (dicts, lists, tuples -> lists, scalars) with secrets replaced by
    "<secret>": every string that contains `DHHC-1:`, every string or number held (at any depth)
    under a key named like a secret (see SECRET_KEY_PATTERNS), and pydantic secret values.
    None and booleans stay (whether a key is set is not a secret). Other objects are returned
    as they are (json.dumps then refuses them: a programming error)."""
    if _is_secret_object(obj):
        return SECRET
    if isinstance(obj, str):
        return SECRET if _under_secret or DHHC_RE.search(obj) else obj
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, (int, float)):
        return SECRET if _under_secret else obj
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            key = redact(k) if isinstance(k, str) else k
            out[key] = redact(v, _under_secret=_under_secret or (isinstance(k, str) and _secret_key(k)))
        return out
    if isinstance(obj, (list, tuple)):
        return [redact(v, _under_secret=_under_secret) for v in obj]
    return obj


def iso_utc(epoch: float) -> str:
    """`2024-03-01T12:00:00.000+00:00` (milliseconds, UTC)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def new_record_id(started: float, pid: int, suffix: str) -> str:
    """`<UTC yyyymmddTHHMMSSZ>-<pid>-<4 hex>`: sorts by start time, unique per process."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-{pid}-{suffix}"


def _limit_list(limit: Any) -> list[str] | None:
    if limit is None:
        return None
    if isinstance(limit, str):  # the raw --limit value
        names = [n.strip() for n in limit.split(",") if n.strip()]
        return names or None
    if isinstance(limit, (list, tuple)) and all(isinstance(n, str) for n in limit):
        return list(limit)
    raise TypeError(f"limit must be a list of host names, a comma-separated string or None, not {limit!r}")


def _dict_rows(rows: Iterable[Any], what: str) -> list[dict]:
    out = []
    for r in rows:
        if hasattr(r, "to_dict"):
            r = r.to_dict()
        if not isinstance(r, Mapping):
            raise TypeError(f"{what} rows must be dicts, not {type(r).__name__}")
        out.append(dict(r))
    return out


def build_apply_record(
    *,
    record_id: str,
    spec: str,
    spec_sha256: str | None,
    user: str,
    check: bool,
    allow_disruptive: bool,
    limit: Any,
    strict: bool,
    plan: Any,
    skipped: Iterable[Any],
    hosts: Iterable[Any],
    exit_code: int,
    error: str | None,
    started: float,
    finished: float,
    phases: Iterable[Any] | None = None,
) -> dict[str, Any]:
    """The record of one `apply`, redacted. Pure; raises TypeError for wrong argument types."""
    for name, value in (("started", started), ("finished", finished)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be epoch seconds (float), not {value!r}")
    if isinstance(exit_code, bool) or not isinstance(exit_code, int):
        raise TypeError(f"exit_code must be an int, not {exit_code!r}")
    if error is not None and not isinstance(error, str):
        raise TypeError(f"error must be a string or None, not {error!r}")
    if plan is not None and hasattr(plan, "to_dict"):
        plan = plan.to_dict()
    if plan is not None and not isinstance(plan, Mapping):
        raise TypeError(f"plan must be Plan.to_dict() or None, not {type(plan).__name__}")
    record = {
        "version": RECORD_VERSION,
        "id": record_id,
        "command": "apply",
        "started": iso_utc(started),
        "finished": iso_utc(finished),
        "seconds": round(float(finished) - float(started), 3),
        "user": user,
        "spec": spec,
        "spec_sha256": spec_sha256,
        "check": bool(check),
        "allow_disruptive": bool(allow_disruptive),
        "limit": _limit_list(limit),
        "strict": bool(strict),
        "exit_code": int(exit_code),
        "error": error,
        "plan": dict(plan) if plan is not None else None,
        "skipped": _dict_rows(skipped or [], "skipped"),
        "hosts": _dict_rows(hosts or [], "hosts"),
        "phases": _dict_rows(phases, "phases") if phases is not None else None,
    }
    return redact(record)


def _count(rows: Any) -> int:
    return len(rows) if isinstance(rows, list) else 0


def summarize(record: Mapping[str, Any]) -> dict[str, Any]:
    """One line of history: when, mode, exit code, hosts changed, changes, failed/skipped hosts.

    Hosts that apply ran count as changed when they report changes or status "changed"; failed
    hosts are those that failed, were unreachable or failed preflight; skipped hosts were left
    untouched because a target they connect to was not configured. Pure."""
    hosts = [h for h in record.get("hosts") or [] if isinstance(h, Mapping)]
    # a run stopped before the playbook has no host rows: its preflight skips still tell who failed
    listed = {h.get("host") for h in hosts}
    extra = [s for s in record.get("skipped") or [] if isinstance(s, Mapping) and s.get("host") not in listed]
    rows = hosts + extra
    changed = [str(h.get("host")) for h in hosts if _count(h.get("changes")) or h.get("status") == "changed"]
    failed = [str(h.get("host")) for h in rows if h.get("status") in FAILED_STATUSES]
    skipped = [str(h.get("host")) for h in rows if h.get("status") in SKIPPED_STATUSES]
    plan = record.get("plan") if isinstance(record.get("plan"), Mapping) else None
    return {
        "id": record.get("id"),
        "started": record.get("started"),
        "mode": "apply --check" if record.get("check") else "apply",
        "exit_code": record.get("exit_code"),
        "hosts": len(rows),
        "hosts_changed": changed,
        "changes": sum(_count(h.get("changes")) for h in hosts),
        "planned_changes": plan.get("changes") if plan else None,
        "failed_hosts": failed,
        "skipped_hosts": skipped,
        "host_status": {str(h.get("host")): h.get("status") for h in rows},
        "error": record.get("error"),
        "spec": record.get("spec"),
        "seconds": record.get("seconds"),
    }


def local_time(iso: str | None, tz: timezone | None = None) -> str:
    """`2024-03-01 13:00:00` in the local time zone (or `tz`); the input when it is not ISO."""
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------- I/O


class RecordStoreError(OSError):
    """The records folder cannot be used (not ours, not a folder, a symlink)."""


def ensure_runs_dir(path: Path) -> Path:
    """Create `path` and its missing parents with mode 0700; refuse a symlink, a non-folder or a
    folder of another user (RecordStoreError); close a folder of ours that is open to others."""
    make_dirs_0700(path)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise RecordStoreError(errno.ENOTDIR, "not a folder (or a symlink)", str(path))
    if st.st_uid != os.geteuid():
        raise RecordStoreError(errno.EPERM, f"owned by uid {st.st_uid}, not by you", str(path))
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return Path(path)


def _write_atomic(folder: Path, name: str, data: bytes) -> Path:
    """Write `folder/name` (0600) with the collection's one atomic write (module_utils/fileio.py:
    temp file 0600 in the same folder, fsync, os.replace, temp removed on failure)."""
    from nvmeofctl.resources import load_module_utils

    load_module_utils("fileio").write_atomic(str(folder / name), data, 0o600, dir_mode=0o700)
    return folder / name


def _record_names(folder: Path) -> list[str]:
    """Names of the record files in `folder`, oldest first (their names start with the UTC time)."""
    try:
        names = [e.name for e in os.scandir(folder) if RECORD_NAME_RE.fullmatch(e.name)]
    except OSError:
        return []

    def key(name: str) -> tuple[str, int, str]:
        stamp, pid, suffix = name[: -len(".json")].split("-")
        return stamp, int(pid), suffix

    return sorted(names, key=key)


def prune(folder: Path, keep: int = KEEP_RECORDS, *, spare: Iterable[str] = ()) -> list[str]:
    """Delete all but the newest `keep` record files (only names matching the record pattern;
    `spare` names are never deleted). Returns the deleted names; never raises."""
    names = _record_names(folder)
    spared = set(spare)
    doomed = [n for n in names[: max(len(names) - keep, 0)] if n not in spared]
    removed = []
    for name in doomed:
        try:
            os.unlink(folder / name)
            removed.append(name)
        except OSError:
            pass
    return removed


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return str(os.geteuid())


def _sha256(path: Path) -> str | None:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def record_apply(
    *,
    spec_path: Path | str,
    check: bool,
    allow_disruptive: bool,
    limit: list[str] | str | None,
    strict: bool,
    plan: dict | None,
    skipped: list[dict],
    hosts: list[dict],
    exit_code: int,
    error: str | None,
    started: float,
    finished: float,
    phases: list[dict] | None = None,
    root: Path | str | None = None,
    warn: Callable[[str], None] | None = None,
) -> Path | None:
    """Write the record of one `apply` under `<root or state_dir()>/runs/` and keep the newest
    KEEP_RECORDS. Returns the record's path, or None when it could not be written (the reason
    goes to `warn`, if given). Raises TypeError/ValueError for wrong arguments (a bug)."""
    spec = os.path.abspath(os.fspath(spec_path))
    pid = os.getpid()
    record = build_apply_record(
        record_id=new_record_id(started, pid, "0000"), spec=spec, spec_sha256=None, user=_login_name(),
        check=check, allow_disruptive=allow_disruptive, limit=limit, strict=strict, plan=plan,
        skipped=skipped, hosts=hosts, exit_code=exit_code, error=error, started=started,
        finished=finished, phases=phases,
    )
    json.dumps(record, allow_nan=False)  # a value JSON cannot hold is a bug: raise before any I/O
    record["spec_sha256"] = _sha256(Path(spec))
    folder = runs_dir(root)
    try:
        ensure_runs_dir(folder)
        for _ in range(16):  # same second, same pid: draw another suffix
            record["id"] = new_record_id(started, pid, secrets.token_hex(2))
            if not os.path.lexists(folder / f"{record['id']}.json"):
                break
        data = (json.dumps(record, indent=2, allow_nan=False) + "\n").encode("utf-8")
        path = _write_atomic(folder, f"{record['id']}.json", data)
    except OSError as exc:
        if warn is not None:
            where = exc.filename or folder
            warn(f"run record not written: {where}: {exc.strerror or exc}")
        return None
    prune(folder, KEEP_RECORDS, spare=[path.name])
    return path


@dataclass
class History:
    """The readable records (newest first) and one line per record file that could not be read."""

    folder: Path
    records: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _read_record(path: Path) -> dict:
    """Load one record file; raises ValueError (with a short reason) or OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError("not a regular file")
        raw = fh.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError(f"larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise ValueError(f"not a version {RECORD_VERSION} run record")
    if data.get("id") != path.name[: -len(".json")]:
        raise ValueError("its id does not match its file name")
    return redact(data)


def read_history(root: Path | str | None = None) -> History:
    """Every record under `<root or state_dir()>/runs/`, newest first; never creates anything."""
    folder = runs_dir(root)
    hist = History(folder)
    for name in reversed(_record_names(folder)):
        try:
            hist.records.append(_read_record(folder / name))
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            hist.problems.append(f"{folder / name}: {why}")
    hist.records.sort(key=lambda r: (str(r.get("started") or ""), str(r.get("id"))), reverse=True)
    return hist


def list_records(root: Path | str | None = None) -> list[dict]:
    """The readable records, newest first (see `read_history` for the unreadable ones)."""
    return read_history(root).records


def load_record(record_id: str, root: Path | str | None = None) -> dict:
    """One record by id (or by a prefix of exactly one id). UsageError when there is none;
    NvmeofctlError when its file cannot be read."""
    folder = runs_dir(root)
    wanted = record_id.strip()
    if not wanted or not re.fullmatch(r"[0-9A-Za-z-]+", wanted):
        raise UsageError(f"{record_id!r} is not a run id (see `nvmeofctl history`)")
    ids = [n[: -len(".json")] for n in _record_names(folder)]
    if wanted in ids:
        match = wanted
    else:
        matches = [i for i in ids if i.startswith(wanted)]
        if not matches:
            raise UsageError(f"no run {wanted!r} in {folder} (`nvmeofctl history` lists the runs)")
        if len(matches) > 1:
            shown = ", ".join(matches[-3:])
            raise UsageError(f"{wanted!r} matches {len(matches)} runs ({shown}, ...): give more of the id")
        match = matches[0]
    path = folder / f"{match}.json"
    try:
        return _read_record(path)
    except OSError as exc:
        raise NvmeofctlError(f"cannot read run record {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise NvmeofctlError(f"run record {path} is damaged: {exc}; remove it") from None
