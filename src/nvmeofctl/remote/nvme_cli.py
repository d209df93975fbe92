"""Typed wrapper over the nvme-cli calls nvmeofctl makes: version, discover, connect, disconnect,
list-subsys, gen-dhchap-key.

Runs locally through ``sh`` or remotely through an injected runner::

    run(argv: list[str], timeout: float) -> (rc, stdout, stderr)

A runner signals a timeout by raising ``TimeoutError`` or returning rc 124 (what
``nvmeofctl.remote.ssh.run_command`` does). A remote runner must quote argv itself
(``shlex.join``). No secret is ever put in argv (any local user can read /proc/PID/cmdline):
``connect`` takes a DH-HMAC-CHAP host key only through nvme-cli's JSON config file
(``--config``, written 0600 by the caller: ``dhchap_config_json``), which nvme-cli 2.3 reads
for the host key (verified on the lab). nvme-cli 2.3 takes a controller key (bidirectional
authentication) only on its command line, so this wrapper refuses one; the ``nvme_host``
module writes such connections to ``/dev/nvme-fabrics`` itself, from stdin.

Parsers accept nvme-cli 2.3, 2.11 and 3.x JSON; errors are classified by the same function the
Ansible module uses (module_utils/nvme_host.py, loaded by path: it is stdlib-only).
For observed state prefer sysfs (``module_utils.nvme_host.DUMP_COMMAND`` + ``parse_dump``):
nvme-cli JSON is a convenience here, not the source of truth.
"""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterable

from nvmeofctl.resources import load_module_utils

Runner = Callable[[list[str], float], "tuple[int, str, str]"]

TIMEOUT_RC = 124


def host_utils() -> ModuleType:
    """module_utils/nvme_host.py, loaded by file path (no Ansible import)."""
    return load_module_utils("nvme_host")


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class NvmeVersion:
    nvme: str
    libnvme: str | None = None

    @property
    def major_minor(self) -> tuple[int, int]:
        m = re.match(r"(\d+)\.(\d+)", self.nvme)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@dataclass(frozen=True)
class DiscoveryRecord:
    trtype: str
    adrfam: str | None
    subtype: str
    traddr: str
    trsvcid: str
    subnqn: str
    portid: int | None = None
    treq: str | None = None
    sectype: str | None = None

    @property
    def is_discovery(self) -> bool:
        return "discovery" in self.subtype or self.subnqn == "nqn.2014-08.org.nvmexpress.discovery"


@dataclass(frozen=True)
class SubsysPath:
    name: str
    transport: str | None
    address: dict[str, str]
    state: str | None
    ana_state: str | None = None

    @property
    def traddr(self) -> str | None:
        return self.address.get("traddr")

    @property
    def trsvcid(self) -> str | None:
        return self.address.get("trsvcid")


@dataclass(frozen=True)
class Subsystem:
    name: str
    nqn: str
    iopolicy: str | None
    paths: tuple[SubsysPath, ...] = ()


@dataclass(frozen=True)
class HostSubsystems:
    hostnqn: str | None
    hostid: str | None
    subsystems: tuple[Subsystem, ...] = ()


@dataclass(frozen=True)
class ConnectResult:
    """``ok`` covers "already connected"; the caller confirms the controller in sysfs."""

    ok: bool
    category: str  # ok already_connected refused no_listener unreachable missing_secret auth_failed
    #                invalid no_modules not_installed timeout unknown
    device: str | None
    rc: int | None
    message: str
    hint: str


@dataclass(frozen=True)
class DhchapKey:
    """A generated DH-HMAC-CHAP key; ``str()``/``repr()`` never show it."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "DHHC-1:********"

    def reveal(self) -> str:
        return self.value


class NvmeCliError(Exception):
    """An nvme-cli call failed; ``str()`` is one line without secrets."""

    def __init__(self, what: str, category: str, message: str, hint: str = "") -> None:
        self.category = category
        self.hint = hint
        super().__init__(f"{what}: {category}: {message}" + (f" ({hint})" if hint else ""))


# --------------------------------------------------------------------------- parsers
def _get(d: dict[str, Any], *names: str, default: Any = None) -> Any:
    low = {k.lower(): v for k, v in d.items()} if isinstance(d, dict) else {}
    for n in names:
        if n.lower() in low:
            return low[n.lower()]
    return default


def _json(text: str) -> Any:
    text = (text or "").strip()
    if not text:
        return None
    return json.loads(text)


def parse_version(text: str) -> NvmeVersion:
    """``nvme version`` (2.x prints a libnvme line; 3.x merged libnvme into nvme-cli)."""
    m = re.search(r"nvme version\s+v?([0-9][^\s(]*)", text or "")
    if not m:
        raise ValueError(f"unrecognised nvme version output: {(text or '').strip()[:80]!r}")
    lib = re.search(r"libnvme version\s+v?([0-9][^\s(]*)", text)
    return NvmeVersion(nvme=m.group(1), libnvme=lib.group(1) if lib else None)


def parse_discover_json(text: str) -> list[DiscoveryRecord]:
    doc = _json(text)
    if doc is None:
        return []
    records = _get(doc, "records", default=[]) if isinstance(doc, dict) else doc
    out = []
    for r in records or []:
        portid = _get(r, "portid")
        out.append(DiscoveryRecord(
            trtype=str(_get(r, "trtype", default="")).strip(),
            adrfam=(str(_get(r, "adrfam")).strip() if _get(r, "adrfam") is not None else None),
            subtype=str(_get(r, "subtype", default="")).strip(),
            traddr=str(_get(r, "traddr", default="")).strip(),
            trsvcid=str(_get(r, "trsvcid", default="")).strip(),
            subnqn=str(_get(r, "subnqn", default="")).strip(),
            portid=int(portid) if isinstance(portid, (int, str)) and str(portid).strip().isdigit() else None,
            treq=_get(r, "treq"),
            sectype=_get(r, "sectype"),
        ))
    return out


def _paths_of(sub: dict[str, Any]) -> list[SubsysPath]:
    nh = host_utils()
    found: dict[str, SubsysPath] = {}

    def add(p: dict[str, Any], ana: str | None = None) -> None:
        name = _get(p, "Name", "Controller")
        if not name:
            return
        path = SubsysPath(
            name=str(name),
            transport=_get(p, "Transport"),
            address=nh.parse_address(_get(p, "Address", default="") or ""),
            state=_get(p, "State"),
            ana_state=_get(p, "ANAState") or ana,
        )
        if name not in found or (path.ana_state and not found[name].ana_state):
            found[name] = path

    for p in _get(sub, "Paths", default=[]) or []:
        add(p)
    for key in ("Controllers", "Ctrls"):
        for p in _get(sub, key, default=[]) or []:
            inner = [_get(x, "ANAState") for x in _get(p, "Paths", default=[]) or []]
            add(p, next((a for a in inner if a), None))
    return sorted(found.values(), key=lambda p: (len(p.name), p.name))


def parse_list_subsys_json(text: str) -> list[HostSubsystems]:
    """``nvme list-subsys -o json``: 2.3 ``[{HostNQN, HostID, Subsystems: [{Name, NQN, Paths}]}]``,
    2.11+ adds IOPolicy/Model/... (verbose) and ANAState per path, ``list -v``-style trees use
    ``Subsystem``/``SubsystemNQN``/``Controllers``; a top-level object is unwrapped."""
    doc = _json(text)
    if doc is None:
        return []
    if isinstance(doc, dict):
        doc = _get(doc, "Hosts", "Devices", default=None) or [doc]
    out = []
    for host in doc:
        subs = []
        for s in _get(host, "Subsystems", default=[]) or []:
            subs.append(Subsystem(
                name=str(_get(s, "Name", "Subsystem", default="")),
                nqn=str(_get(s, "NQN", "SubsystemNQN", default="")).strip(),
                iopolicy=_get(s, "IOPolicy"),
                paths=tuple(_paths_of(s)),
            ))
        out.append(HostSubsystems(hostnqn=_get(host, "HostNQN"), hostid=_get(host, "HostID"),
                                  subsystems=tuple(subs)))
    return out


def parse_connect_json(text: str) -> str | None:
    """``nvme connect -o json`` -> the device name it reports (a hint only: confirm in sysfs)."""
    try:
        doc = _json(text)
    except ValueError:
        m = re.search(r"\b(nvme\d+)\b", text or "")
        return m.group(1) if m else None
    if isinstance(doc, dict):
        dev = _get(doc, "device", "Device")
        return str(dev).removeprefix("/dev/") if dev else None
    return None


_DHHC_RE = re.compile(r"^DHHC-1:0[0-3]:[A-Za-z0-9+/]+=*:$")


def dhchap_config_json(hostnqn: str, hostid: str, dhchap_key: str) -> str:
    """nvme-cli's JSON config giving this host's DH-HMAC-CHAP key (write it 0600; holds the key)."""
    return json.dumps([{"hostnqn": hostnqn, "hostid": hostid, "dhchap_key": dhchap_key}])


def parse_dhchap_key(text: str) -> DhchapKey:
    for line in (text or "").splitlines():
        line = line.strip()
        if _DHHC_RE.match(line):
            return DhchapKey(line)
    raise ValueError("nvme gen-dhchap-key printed no DHHC-1 key")


# --------------------------------------------------------------------------- runners
def local_runner(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run argv here with ``sh``; raises TimeoutError after ``timeout`` seconds.

    The process group is killed but not waited for: an ``nvme connect`` blocked in the kernel
    (D state) cannot exit until its write returns.
    """
    import sh  # local import: remote-only users need not have it

    try:
        cmd = sh.Command(argv[0])
    except sh.CommandNotFound:
        return 127, "", f"{argv[0]}: command not found"
    proc = cmd(*argv[1:], _bg=True, _bg_exc=False, _ok_code=list(range(256)), _new_session=True,
               _timeout=timeout + 5, _env=dict(os.environ, LC_ALL="C", LANG="C"))
    try:
        proc.wait(timeout=timeout)
    except sh.TimeoutException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        raise TimeoutError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''}: timed out after {timeout:g}s") from None
    return (proc.exit_code,
            (proc.stdout or b"").decode("utf-8", "replace"),
            (proc.stderr or b"").decode("utf-8", "replace"))


class NvmeCli:
    """nvme-cli on one host. ``runner`` defaults to this machine."""

    def __init__(self, runner: Runner | None = None, *, nvme: str = "nvme", timeout: float = 30.0) -> None:
        self.runner = runner or local_runner
        self.nvme = nvme
        self.timeout = timeout

    def _call(self, args: list[str], timeout: float | None = None) -> tuple[int | None, str, str, bool]:
        t = self.timeout if timeout is None else timeout
        try:
            rc, out, err = self.runner([self.nvme, *args], t)
        except TimeoutError:
            return None, "", "", True
        if rc == TIMEOUT_RC:
            return None, out, err, True
        return rc, out, err, False

    def _check(self, what: str, args: list[str], timeout: float | None = None, secrets: Iterable[str] = ()) -> str:
        rc, out, err, timed_out = self._call(args, timeout)
        if timed_out or rc != 0:
            c = host_utils().classify(rc, out, err, timed_out, list(secrets))
            raise NvmeCliError(what, c["category"], c["message"], c["hint"])
        return out

    def version(self) -> NvmeVersion:
        return parse_version(self._check("nvme version", ["version"], 10))

    def discover(self, transport: str, traddr: str, trsvcid: str = "4420", *, hostnqn: str | None = None,
                 hostid: str | None = None, host_traddr: str | None = None,
                 timeout: float | None = None) -> list[DiscoveryRecord]:
        args = ["discover", "-t", transport, "-a", traddr, "-s", str(trsvcid)]
        args += [f"--hostnqn={hostnqn}"] if hostnqn else []
        args += [f"--hostid={hostid}"] if hostid else []
        args += [f"--host-traddr={host_traddr}"] if host_traddr else []
        out = self._check(f"discover {transport}://{traddr}:{trsvcid}", args + ["-o", "json"], timeout)
        return parse_discover_json(out)

    def connect(self, transport: str, traddr: str, subsysnqn: str, trsvcid: str = "4420", *,
                hostnqn: str | None = None, hostid: str | None = None, host_traddr: str | None = None,
                ctrl_loss_tmo: int | None = None, reconnect_delay: int | None = None,
                keep_alive_tmo: int | None = None, nr_io_queues: int | None = None,
                queue_size: int | None = None, config: str | None = None,
                timeout: float | None = None) -> ConnectResult:
        """Never raises for nvme-cli failures: returns the classified result (no secrets).

        ``config``: path (on the host that runs nvme) of a 0600 nvme-cli JSON config holding
        this host's DH-HMAC-CHAP key (``dhchap_config_json``); the key never goes in argv.
        """
        nh = host_utils()
        conn = {"subsysnqn": subsysnqn, "transport": transport, "traddr": traddr, "trsvcid": str(trsvcid),
                "host_traddr": host_traddr}
        opts = {"hostnqn": hostnqn, "hostid": hostid, "ctrl_loss_tmo": ctrl_loss_tmo,
                "reconnect_delay": reconnect_delay, "keep_alive_tmo": keep_alive_tmo,
                "nr_io_queues": nr_io_queues, "queue_size": queue_size}
        argv = nh.connect_argv(conn, opts, self.nvme)[1:]
        if config:
            argv[-2:-2] = [f"--config={config}"]
        rc, out, err, timed_out = self._call(argv, timeout)
        c = nh.classify(rc, out, err, timed_out)
        return ConnectResult(ok=c["ok"], category=c["category"],
                             device=parse_connect_json(out) if c["category"] == "ok" else None,
                             rc=rc, message=c["message"], hint=c["hint"])

    def disconnect(self, device: str, timeout: float | None = None) -> None:
        """Disconnect one controller by name (``nvme3`` or ``/dev/nvme3``), never by NQN."""
        name = device.removeprefix("/dev/")
        if not re.fullmatch(r"nvme\d+", name):
            raise ValueError(f"not a controller name: {device!r}")
        self._check(f"disconnect {name}", ["disconnect", "-d", name], timeout or 60)

    def list_subsys(self, timeout: float | None = None) -> list[HostSubsystems]:
        return parse_list_subsys_json(self._check("list-subsys", ["list-subsys", "-o", "json"], timeout))

    def gen_dhchap_key(self, nqn: str, *, hmac: int = 1, key_length: int | None = None) -> DhchapKey:
        args = ["gen-dhchap-key", f"--hmac={hmac}", f"--nqn={nqn}"]
        args += [f"--key-length={key_length}"] if key_length else []
        out = self._check("gen-dhchap-key", args, 10)
        return parse_dhchap_key(out)
