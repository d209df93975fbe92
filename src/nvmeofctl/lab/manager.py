"""Lab lifecycle: up (cold boot, or restore a saved VM state in seconds), down, status, destroy.

State lives in ``~/.cache/nvmeofctl/labs/<name>/`` (lab.json, one folder per VM with its qcow2
overlay on the shared image, pid file, monitor socket, serial console log and host key; one vde
switch per fabric rail; with ``--shared-disk`` the raw disk every target VM shares).
Snapshots inside each overlay:
  ``booted``  the VM right after its first cold boot (pristine): ``lab up --fresh`` returns to it;
  ``saved``   the VM as ``lab down`` left it: the next ``lab up`` resumes from it.
A VM with the shared disk takes and loads these over QMP for its root disk only (``savevm`` and
``-loadvm`` refuse a writable raw disk); the shared disk's contents are never part of a snapshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from nvmeofctl.errors import LabError, UsageError
from nvmeofctl.lab import image as image_mod
from nvmeofctl.lab.accel import choose_accel
from nvmeofctl.lab.clusterspec import render_lab_spec
from nvmeofctl.lab.keys import known_hosts_line, write_ed25519_keypair
from nvmeofctl.lab.layout import (
    FABRIC_IFS, FABRIC_NETS, MAX_RAILS, ROOT_DISK_NODE, SHARED_DISK_FILE, SHARED_DISK_GUEST,
    SHARED_DISK_MIB, SHARED_DISK_SERIAL, LabLayout, VmFiles, VmSpec, make_layout, qemu_argv,
)
from nvmeofctl.lab.paths import cache_root, lab_dir
from nvmeofctl.lab.process import Qmp, QmpError, monitor_command, pid_alive, read_pid, running, terminate
from nvmeofctl.remote.ssh import SshTarget, run_on

Progress = Callable[[str], None]
BOOT_TIMEOUT = float(os.environ.get("NVMEOFCTL_LAB_BOOT_TIMEOUT", "420"))
RESTORE_TIMEOUT = 90.0
SNAP_BOOTED = "booted"
SNAP_SAVED = "saved"


@dataclass
class VmStatus:
    name: str
    role: str
    running: bool
    pid: int | None
    ssh_ready: bool
    ssh: str
    fabric_ip: str
    snapshots: list[str]
    detail: str = ""
    fabric_ips: tuple[str, ...] = ()  # one per rail (fabric_ip is rail 1)
    shared_disk: bool = False

    def to_dict(self) -> dict:
        return {
            "name": self.name, "role": self.role, "running": self.running, "pid": self.pid,
            "ssh_ready": self.ssh_ready, "ssh": self.ssh, "fabric_ip": self.fabric_ip,
            "fabric_ips": list(self.fabric_ips), "shared_disk": self.shared_disk,
            "snapshots": self.snapshots, "detail": self.detail,
        }


class Lab:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = lab_dir(name)

    # ----- files -------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def spec_file(self) -> Path:
        return self.dir / "cluster.yaml"

    @property
    def fabric_sock(self) -> Path:
        return self.fabric_sock_for(1)

    @property
    def switch_pidfile(self) -> Path:
        return self.switch_pidfile_for(1)

    # one vde switch per rail: rail 1 keeps the names of 1-rail labs, rail 2 adds a "2"
    def _rail_suffix(self, rail: int) -> str:
        return "" if rail == 1 else str(rail)

    def fabric_sock_for(self, rail: int) -> Path:
        return self.dir / f"fabric{self._rail_suffix(rail)}.vde"

    def switch_pidfile_for(self, rail: int) -> Path:
        return self.dir / f"vde_switch{self._rail_suffix(rail)}.pid"

    def switch_mgmt_for(self, rail: int) -> Path:
        return self.dir / f"vde_switch{self._rail_suffix(rail)}.mgmt"

    @property
    def shared_disk(self) -> Path:
        return self.dir / SHARED_DISK_FILE

    def vm_files(self, vm: VmSpec) -> VmFiles:
        return VmFiles(self.dir / vm.name)

    def exists(self) -> bool:
        return self.state_file.exists()

    def load_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            raise UsageError(f"no lab named {self.name!r}: run `nvmeofctl lab up --name {self.name}`") from None

    def save_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def layout(self) -> LabLayout:
        return LabLayout.from_dict(self.load_state()["layout"])

    def ssh_target(self, vm: VmSpec) -> SshTarget:
        return SshTarget(vm.name, "127.0.0.1", vm.ssh_port, "root", self.client_key, self.known_hosts)

    # ----- processes ---------------------------------------------------------------------------
    def vm_pid(self, vm: VmSpec) -> int | None:
        return running(self.vm_files(vm).pidfile, f"nvmeofctl-{vm.name}")

    def switch_pid(self, rail: int = 1) -> int | None:
        return running(self.switch_pidfile_for(rail), "vde_switch")

    def snapshots(self, vm: VmSpec) -> list[str]:
        overlay = self.vm_files(vm).overlay
        if not overlay.exists():
            return []
        out = subprocess.run(
            ["qemu-img", "snapshot", "-U", "-l", str(overlay)], capture_output=True, text=True
        ).stdout
        names = []
        for line in out.splitlines()[2:]:
            parts = line.split()
            if len(parts) >= 2:
                names.append(parts[1])
        return names

    def ssh_ready(self, vm: VmSpec, timeout: float = 10.0, set_clock: bool = False) -> tuple[bool, str]:
        """Does the VM answer SSH (pinned host key) as itself? With ``set_clock``, the same
        session also sets the guest clock to now: a restored guest resumes from its snapshot."""
        command = f"date -u -s @{time.time():.3f} >/dev/null && hostname" if set_clock else "hostname"
        res = run_on(self.ssh_target(vm), command, timeout=timeout, connect_timeout=timeout)
        if not res.ok:
            return False, getattr(res, "reason", "") or getattr(res, "stderr", "")
        name = res.stdout.strip()  # type: ignore[union-attr]
        if name != vm.name:
            return False, f"answers as {name!r}, not {vm.name!r}"
        return True, ""


_TAG_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


def _check_tag(tag: str) -> None:
    if not _TAG_RE.fullmatch(tag or "") or tag in (SNAP_BOOTED, SNAP_SAVED):
        raise LabError(f"checkpoint name {tag!r}: letters, digits, '_' and '-' (not {SNAP_BOOTED!r} or {SNAP_SAVED!r})")


def describe_shape(layout: LabLayout) -> str:
    have_t = sum(v.role == "target" for v in layout.vms)
    disk = "a shared disk" if layout.shared_disk else "no shared disk"
    return (f"{have_t} target(s), {len(layout.vms) - have_t} GPU node(s), {layout.rails} rail(s) and {disk}")


def check_shape(
    name: str, layout: LabLayout, targets: int | None, gpu_nodes: int | None,
    rails: int | None, shared_disk: bool | None,
) -> None:
    """An existing lab keeps the shape it was created with: asking for another one is an error
    (never a lab silently different from the request). ``None`` asks for nothing."""
    have_t = sum(v.role == "target" for v in layout.vms)
    have_g = len(layout.vms) - have_t
    wanted = [(targets, have_t), (gpu_nodes, have_g), (rails, layout.rails), (shared_disk, layout.shared_disk)]
    if any(want is not None and want != have for want, have in wanted):
        raise LabError(
            f"lab {name!r} exists with {describe_shape(layout)}: "
            f"`nvmeofctl lab destroy --name {name} --yes` it first, or choose another --name"
        )


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _free_ports(n: int, lab_name: str, avoid: set[int] = frozenset()) -> list[int]:
    """Free loopback ports below the ephemeral range (outgoing connections cannot steal them),
    starting from a per-lab base so two labs rarely collide."""
    lo, _ = _ephemeral_range()
    top = min(lo, 32768) - 1
    base = 20000 + (zlib.crc32(lab_name.encode()) % 400) * 20
    ports: list[int] = []
    port = base
    while len(ports) < n:
        if port > top:
            port = 10000
        if port not in avoid and _port_free(port):
            ports.append(port)
        port += 1
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # QEMU's hostfwd binds with SO_REUSEADDR: connections in TIME_WAIT do not block it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _job_id(op: str, tag: str) -> str:
    """A QMP job id unique within the VM's life."""
    return f"{op}-{tag}-{time.monotonic_ns()}"


def _console_tail(path: Path, n: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no console output"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no console output"


class LabManager:
    def __init__(self, name: str = "lab", progress: Progress = lambda s: None) -> None:
        self.lab = Lab(name)
        self.progress = progress

    # ----- create ------------------------------------------------------------------------------
    def _create(
        self, targets: int, gpu_nodes: int, memory_mb: int, image: image_mod.Image, accel: str,
        rails: int = 1, shared_disk: bool = False,
    ) -> dict:
        lab = self.lab
        lab.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(lab.dir, 0o700)
        n = targets + gpu_nodes
        layout = make_layout(lab.name, targets, gpu_nodes, _free_ports(n, lab.name), memory_mb, rails, shared_disk)
        if shared_disk and not lab.shared_disk.exists():
            with open(lab.shared_disk, "wb") as fh:  # sparse: takes no space until written
                fh.truncate(SHARED_DISK_MIB * 1024 * 1024)
        write_ed25519_keypair(lab.client_key, f"nvmeofctl-lab-{lab.name}")
        known = []
        for vm in layout.vms:
            files = lab.vm_files(vm)
            files.dir.mkdir(parents=True, exist_ok=True)
            pub = write_ed25519_keypair(files.host_key, f"root@{vm.name}")
            known.append(known_hosts_line("127.0.0.1", vm.ssh_port, pub))
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk), str(files.overlay)],
                check=True, capture_output=True,
            )
        lab.known_hosts.write_text("\n".join(known) + "\n")
        state = {
            "name": lab.name, "image": str(image.dir), "kernel_release": image.kernel_release,
            "accel": accel, "layout": layout.to_dict(), "created": time.time(),
        }
        lab.save_state(state)
        return state

    # ----- up ----------------------------------------------------------------------------------
    def up(
        self,
        targets: int | None = None,
        gpu_nodes: int | None = None,
        accel: str = "auto",
        fresh: bool = False,
        memory_mb: int = 768,
        mirror: str | None = None,
        rails: int | None = None,
        shared_disk: bool | None = None,
    ) -> list[VmStatus]:
        """Start the lab, creating it first if needed. ``None`` for targets, GPU nodes, rails or
        the shared disk means: as the existing lab was created (a new lab: 1, 2, 1, no)."""
        lab = self.lab
        if rails is not None and not 1 <= rails <= MAX_RAILS:
            raise UsageError(f"--rails must be 1-{MAX_RAILS}, not {rails}")
        if lab.exists():
            # refuse a different shape before anything slow (an image build) happens
            check_shape(lab.name, lab.layout(), targets, gpu_nodes, rails, shared_disk)
        image = image_mod.ensure_image(mirror, self.progress)
        if lab.exists():
            state = lab.load_state()
            layout = LabLayout.from_dict(state["layout"])
            if state["image"] != str(image.dir):
                self.progress("the lab image recipe changed: recreating the lab's VMs on the new image")
                have_t = sum(v.role == "target" for v in layout.vms)
                self.destroy()
                return self.up(have_t, len(layout.vms) - have_t, accel, fresh, memory_mb, mirror,
                               layout.rails, layout.shared_disk)
        else:
            choice = choose_accel(accel, image.kernel, image.initrd, cache_root())
            self.progress(f"accelerator: {choice.accel} ({choice.note})")
            state = self._create(targets if targets is not None else 1, gpu_nodes if gpu_nodes is not None else 2,
                                 memory_mb, image, choice.accel, rails or 1, bool(shared_disk))
            layout = LabLayout.from_dict(state["layout"])
        if accel in ("kvm", "tcg") and accel != state["accel"]:
            if any(lab.vm_pid(vm) for vm in layout.vms):
                raise LabError(f"lab {lab.name!r} runs under {state['accel']}: `nvmeofctl lab down` it first")
            self.progress(f"switching the lab to {accel}: saved VM states do not carry across accelerators")
            state["accel"] = accel
            lab.save_state(state)
            for vm in layout.vms:
                self._delete_snapshots(vm, [SNAP_BOOTED, SNAP_SAVED])

        for rail in range(1, layout.rails + 1):
            self._ensure_switch(rail)
        to_start = [vm for vm in layout.vms if not lab.vm_pid(vm)]
        if fresh:
            running_vms = [vm for vm in layout.vms if vm not in to_start]
            if running_vms:
                self.progress("--fresh: stopping running VMs to restore their pristine state")
                self._stop(running_vms, save=False)
                to_start = list(layout.vms)
        verified: set[str] = set()
        if not to_start:
            self.progress(f"lab {lab.name!r} is already up: nothing to do")
        else:
            verified = self._start(to_start, state, image, fresh)
        if not lab.spec_file.exists():
            lab.spec_file.write_text(render_lab_spec(layout, lab.dir))
        return self.status(known_ready=verified)

    def _ensure_switch(self, rail: int = 1) -> None:
        """Start rail ``rail``'s vde switch (its own socket folder, pid file, management socket)."""
        lab = self.lab
        if lab.switch_pid(rail):
            return
        if shutil.which("vde_switch") is None:
            raise LabError("vde_switch not found: run `make setup` (Debian package vde2)")
        sock = lab.fabric_sock_for(rail)
        if sock.exists():
            shutil.rmtree(sock, ignore_errors=True)
        lab.switch_mgmt_for(rail).unlink(missing_ok=True)
        subprocess.run(
            ["vde_switch", "-s", str(sock), "-d", "-p", str(lab.switch_pidfile_for(rail)),
             "-M", str(lab.switch_mgmt_for(rail))],
            check=True, capture_output=True,
        )
        for _ in range(50):
            if lab.switch_pid(rail) and (sock / "ctl").exists():
                return
            time.sleep(0.1)
        raise LabError(f"the lab fabric switch of rail {rail} (vde_switch) did not start")

    def _start(self, vms: list[VmSpec], state: dict, image: image_mod.Image, fresh: bool) -> set[str]:
        """Start ``vms`` (restoring saved states where they exist); returns the names of the VMs
        verified SSH-ready."""
        lab = self.lab
        plans: dict[str, str | None] = {}
        for vm in vms:
            snaps = lab.snapshots(vm)
            if not fresh and SNAP_SAVED in snaps:
                plans[vm.name] = SNAP_SAVED
            elif SNAP_BOOTED in snaps:
                plans[vm.name] = SNAP_BOOTED
                if SNAP_SAVED in snaps:
                    self._delete_snapshots(vm, [SNAP_SAVED])
            else:
                plans[vm.name] = None
        busy = [vm for vm in vms if not _port_free(vm.ssh_port)]
        if busy:
            vms = self._reassign_ports(busy, vms, state)
        layout = LabLayout.from_dict(state["layout"])
        for vm in vms:
            snap = plans[vm.name]
            how = f"restoring saved state '{snap}'" if snap else "cold boot"
            self.progress(f"{vm.name}: starting ({how}, {state['accel']})")
            plans[vm.name] = self._launch(vm, layout, state, image, snap)
        start = time.monotonic()

        def wait(vm: VmSpec) -> tuple[VmSpec, float]:
            timeout = RESTORE_TIMEOUT if plans[vm.name] else BOOT_TIMEOUT
            deadline = time.monotonic() + timeout
            reason = ""
            while time.monotonic() < deadline:
                if not lab.vm_pid(vm):
                    raise LabError(f"{vm.name}: QEMU exited during boot: {_console_tail(lab.vm_files(vm).console)}")
                ok, reason = lab.ssh_ready(vm, timeout=10, set_clock=bool(plans[vm.name]))
                if ok:
                    return vm, time.monotonic() - start
                time.sleep(2)
            raise LabError(
                f"{vm.name}: not SSH-ready after {timeout:.0f}s ({reason}); console: "
                f"{_console_tail(lab.vm_files(vm).console)}"
            )

        with ThreadPoolExecutor(max_workers=len(vms)) as pool:
            for vm, elapsed in pool.map(wait, vms):
                self.progress(f"{vm.name}: ssh-ready after {elapsed:.0f}s")
        cold = [vm for vm in vms if not plans[vm.name]]
        if cold:
            self.progress("saving the booted state so the next `lab up` takes seconds")
            with ThreadPoolExecutor(max_workers=len(cold)) as pool:
                list(pool.map(lambda vm: self._savevm(vm, SNAP_BOOTED), cold))
        return {vm.name for vm in vms}

    def _argv(self, vm: VmSpec, layout: LabLayout, state: dict, image: image_mod.Image,
              loadvm: str | None) -> list[str]:
        lab = self.lab
        return qemu_argv(
            vm, lab.vm_files(vm), kernel=image.kernel, initrd=image.initrd, accel=state["accel"],
            fabric_sock=lab.fabric_sock, authorized_keys=lab.client_key.with_name(lab.client_key.name + ".pub"),
            loadvm=loadvm,
            fabric2_sock=lab.fabric_sock_for(2) if layout.rails >= 2 else None,
            shared_disk=lab.shared_disk if layout.has_shared_disk(vm) else None,
        )

    def _launch(self, vm: VmSpec, layout: LabLayout, state: dict, image: image_mod.Image,
                snap: str | None) -> str | None:
        """Start one VM's QEMU, restoring ``snap`` if given; when that state does not load, the
        VM's saved states are dropped and it cold-boots. Returns the state restored (or None)."""
        lab = self.lab
        files = lab.vm_files(vm)
        for stale in (files.pidfile, files.monitor, files.qmp):
            stale.unlink(missing_ok=True)
        argv = self._argv(vm, layout, state, image, snap)
        files.cmdline.write_text(" ".join(argv) + "\n")
        if not snap:
            files.console.write_text("")
        proc = subprocess.run(argv, capture_output=True, text=True)
        failed = ""
        if proc.returncode != 0:
            failed = (proc.stderr.strip().splitlines() or [""])[-1]
        elif snap and layout.has_shared_disk(vm):
            # started paused (-S): load the root disk's state over QMP, then run
            failed = self._loadvm(vm, snap)
            if not failed:
                try:
                    monitor_command(files.monitor, "cont", timeout=30)
                except OSError as exc:
                    failed = f"cont: {exc}"
            if failed:
                self._kill(vm)
        if failed and snap:
            self.progress(f"{vm.name}: could not restore '{snap}' ({failed}): cold boot instead")
            self._delete_snapshots(vm, [SNAP_SAVED, SNAP_BOOTED])
            return self._launch(vm, layout, state, image, None)
        if failed or proc.returncode != 0:
            raise LabError(f"{vm.name}: qemu failed to start: {failed or 'no error message'}")
        return snap

    def _kill(self, vm: VmSpec) -> None:
        """Stop a VM's QEMU without saving (monitor ``quit``, else a signal)."""
        files = self.lab.vm_files(vm)
        pid = self.lab.vm_pid(vm)
        try:
            monitor_command(files.monitor, "quit", timeout=30)
        except OSError:
            pass
        deadline = time.monotonic() + 15
        while pid and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid and pid_alive(pid):
            terminate(pid)
        files.pidfile.unlink(missing_ok=True)

    def _reassign_ports(self, busy: list[VmSpec], vms: list[VmSpec], state: dict) -> list[VmSpec]:
        """Another program took a VM's SSH port: move the forward (not part of the saved VM
        state) and update known_hosts and the lab's cluster spec to match."""
        lab = self.lab
        layout = LabLayout.from_dict(state["layout"])
        taken = {v.ssh_port for v in layout.vms}
        new_ports = _free_ports(len(busy), lab.name, avoid=taken)
        moved = {vm.name: port for vm, port in zip(busy, new_ports)}
        spec_text = lab.spec_file.read_text() if lab.spec_file.exists() else None
        known = lab.known_hosts.read_text()
        for vm in busy:
            new = moved[vm.name]
            self.progress(f"{vm.name}: SSH port {vm.ssh_port} is taken by another program: using {new}")
            known = known.replace(f"[127.0.0.1]:{vm.ssh_port} ", f"[127.0.0.1]:{new} ")
            if spec_text is not None:
                spec_text = spec_text.replace(f"port: {vm.ssh_port},", f"port: {new},")
        layout.vms = [replace(v, ssh_port=moved.get(v.name, v.ssh_port)) for v in layout.vms]
        state["layout"] = layout.to_dict()
        lab.save_state(state)
        lab.known_hosts.write_text(known)
        if spec_text is not None:
            lab.spec_file.write_text(spec_text)
        return [layout.vm(v.name) for v in vms]

    def _has_shared_disk(self, vm: VmSpec) -> bool:
        return self.lab.layout().has_shared_disk(vm)

    def _savevm(self, vm: VmSpec, tag: str) -> None:
        """Save the VM's state as ``tag`` (replacing one of that name). A running VM pauses
        while it saves and then runs again; a paused one stays paused."""
        files = self.lab.vm_files(vm)
        if self._has_shared_disk(vm):
            try:
                with Qmp(files.qmp) as qmp:
                    qmp.run_job("snapshot-delete", _job_id("del", tag), tag=tag, devices=[ROOT_DISK_NODE])
                    qmp.run_job("snapshot-save", _job_id("save", tag), tag=tag,
                                vmstate=ROOT_DISK_NODE, devices=[ROOT_DISK_NODE])
            except (OSError, QmpError) as exc:
                raise LabError(f"{vm.name}: saving state {tag!r} failed: {exc}") from None
            return
        monitor_command(files.monitor, f"delvm {tag}", timeout=60)
        out = monitor_command(files.monitor, f"savevm {tag}", timeout=300)
        if "Error" in out or "error" in out:
            raise LabError(f"{vm.name}: savevm {tag} failed: {out.strip()}")

    def _loadvm(self, vm: VmSpec, tag: str) -> str:
        """Load state ``tag`` into a paused VM; returns an error text ('' when it loaded)."""
        files = self.lab.vm_files(vm)
        if self._has_shared_disk(vm):
            try:
                with Qmp(files.qmp) as qmp:
                    qmp.run_job("snapshot-load", _job_id("load", tag), tag=tag,
                                vmstate=ROOT_DISK_NODE, devices=[ROOT_DISK_NODE])
            except (OSError, QmpError) as exc:
                return str(exc) or type(exc).__name__
            return ""
        out = monitor_command(files.monitor, f"loadvm {tag}", timeout=300)
        return out.strip() if "rror" in out else ""

    def _delete_snapshots(self, vm: VmSpec, tags: list[str]) -> None:
        overlay = self.lab.vm_files(vm).overlay
        for tag in tags:
            if tag in self.lab.snapshots(vm):
                subprocess.run(["qemu-img", "snapshot", "-d", tag, str(overlay)], capture_output=True)

    # ----- checkpoints: one consistent moment of the whole lab -----------------------------------
    def _running(self) -> list[VmSpec]:
        return [vm for vm in self.lab.layout().vms if self.lab.vm_pid(vm)]

    def _each(self, vms: list[VmSpec], fn) -> list:
        with ThreadPoolExecutor(max_workers=max(1, len(vms))) as pool:
            return list(pool.map(fn, vms))

    def describe(self) -> dict:
        """The lab's shape for `lab status --output json`: rails (interface and network each)
        and the shared disk (host file, guest device, serial, size, VMs), or None."""
        layout = self.lab.layout()
        shared = None
        if layout.shared_disk:
            shared = {
                "path": str(self.lab.shared_disk), "guest_device": SHARED_DISK_GUEST,
                "serial": SHARED_DISK_SERIAL, "size_mib": SHARED_DISK_MIB,
                "vms": [vm.name for vm in layout.vms if layout.has_shared_disk(vm)],
            }
        return {
            "rails": layout.rails,
            "fabric": [{"rail": i + 1, "interface": FABRIC_IFS[i], "network": str(FABRIC_NETS[i])}
                       for i in range(layout.rails)],
            "shared_disk": shared,
        }

    def checkpoint(self, tag: str) -> float:
        """Save the state of every running VM under ``tag``, all paused at the same moment (the
        fabric's connections are consistent across VMs). Returns the seconds it took."""
        _check_tag(tag)
        vms = self._running()
        if not vms:
            raise LabError(f"lab {self.lab.name!r} has no running VM to checkpoint")
        t0 = time.monotonic()
        self._each(vms, lambda vm: monitor_command(self.lab.vm_files(vm).monitor, "stop", timeout=30))
        try:
            self._each(vms, lambda vm: self._savevm(vm, tag))
        finally:
            self._each(vms, lambda vm: monitor_command(self.lab.vm_files(vm).monitor, "cont", timeout=30))
        return time.monotonic() - t0

    def restore(self, tag: str, ssh_timeout: float = 120) -> float:
        """Bring every running VM back to checkpoint ``tag`` (seconds, not a reboot), reset the
        guest clocks, and wait until each answers SSH. Returns the seconds it took."""
        _check_tag(tag)
        vms = self._running()
        missing = [vm.name for vm in vms if tag not in self.lab.snapshots(vm)]
        if missing or not vms:
            raise LabError(f"no checkpoint {tag!r} for {', '.join(missing) or 'any VM'}")
        t0 = time.monotonic()
        self._each(vms, lambda vm: monitor_command(self.lab.vm_files(vm).monitor, "stop", timeout=30))
        try:
            outs = self._each(vms, lambda vm: (vm, self._loadvm(vm, tag)))
        finally:
            self._each(vms, lambda vm: monitor_command(self.lab.vm_files(vm).monitor, "cont", timeout=30))
        bad = [f"{vm.name}: {err}" for vm, err in outs if err]
        if bad:
            raise LabError("loadvm failed: " + "; ".join(bad))

        def ready(vm: VmSpec) -> None:
            deadline = time.monotonic() + ssh_timeout
            reason = ""
            while time.monotonic() < deadline:
                ok, reason = self.lab.ssh_ready(vm, timeout=10, set_clock=True)
                if ok:
                    return
                time.sleep(1)
            raise LabError(f"{vm.name}: not SSH-ready {ssh_timeout:.0f}s after restoring {tag!r} ({reason})")

        self._each(vms, ready)
        return time.monotonic() - t0

    # ----- down / destroy ----------------------------------------------------------------------
    def _stop(self, vms: list[VmSpec], save: bool) -> None:
        lab = self.lab

        def stop(vm: VmSpec) -> None:
            pid = lab.vm_pid(vm)
            if not pid:
                return
            files = lab.vm_files(vm)
            try:
                if save:
                    self._savevm(vm, SNAP_SAVED)
                monitor_command(files.monitor, "quit", timeout=30)
            except (OSError, LabError) as exc:
                self.progress(f"{vm.name}: monitor unavailable ({exc}); terminating")
            deadline = time.monotonic() + 15
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                terminate(pid)
            files.pidfile.unlink(missing_ok=True)

        if vms:
            with ThreadPoolExecutor(max_workers=len(vms)) as pool:
                list(pool.map(stop, vms))

    def down(self, save: bool = True) -> list[VmStatus]:
        lab = self.lab
        layout = lab.layout()
        up = [vm for vm in layout.vms if lab.vm_pid(vm)]
        if up:
            self.progress(
                f"stopping {', '.join(vm.name for vm in up)}" + (" (saving their state)" if save else "")
            )
        self._stop(up, save)
        for rail in range(1, MAX_RAILS + 1):
            pid = lab.switch_pid(rail)
            if pid:
                terminate(pid)
            lab.switch_pidfile_for(rail).unlink(missing_ok=True)
        return self.status(probe_ssh=False)

    def destroy(self) -> None:
        lab = self.lab
        if not lab.dir.exists():
            return
        if lab.exists():
            self.down(save=False)
        else:  # half-created lab: stop whatever pid files name
            for pidfile in lab.dir.glob("*/qemu.pid"):
                pid = read_pid(pidfile)
                if pid_alive(pid, "nvmeofctl-"):
                    terminate(pid)  # type: ignore[arg-type]
        shutil.rmtree(lab.dir)
        self.progress(f"lab {lab.name!r} destroyed")

    # ----- status ------------------------------------------------------------------------------
    def status(self, probe_ssh: bool = True, known_ready: set[str] = frozenset()) -> list[VmStatus]:
        """Per VM: running, SSH-ready (probed, unless just verified: ``known_ready``), saved states."""
        lab = self.lab
        layout = lab.layout()

        def one(vm: VmSpec) -> VmStatus:
            pid = lab.vm_pid(vm)
            if pid and vm.name in known_ready:
                ready, detail = True, ""
            else:
                ready, detail = (lab.ssh_ready(vm, timeout=8) if (pid and probe_ssh) else (False, ""))
            if not pid:
                detail = "stopped"
            return VmStatus(
                name=vm.name, role=vm.role, running=bool(pid), pid=pid, ssh_ready=ready,
                ssh=f"root@127.0.0.1:{vm.ssh_port}", fabric_ip=vm.fabric_ip,
                snapshots=lab.snapshots(vm), detail=detail,
                fabric_ips=vm.fabric_ips, shared_disk=layout.has_shared_disk(vm),
            )

        with ThreadPoolExecutor(max_workers=max(1, len(layout.vms))) as pool:
            return list(pool.map(one, layout.vms))
