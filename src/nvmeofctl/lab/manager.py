"""Lab lifecycle: up (cold boot, or restore a saved VM state in seconds), down, status, destroy.

State lives in ``~/.cache/nvmeofctl/labs/<name>/`` (lab.json, one folder per VM with its qcow2
overlay on the shared image, pid file, monitor socket, serial console log and host key).
Snapshots inside each overlay:
  ``booted``  the VM right after its first cold boot (pristine): ``lab up --fresh`` returns to it;
  ``saved``   the VM as ``lab down`` left it: the next ``lab up`` resumes from it.
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
from nvmeofctl.lab.layout import LabLayout, VmFiles, VmSpec, make_layout, qemu_argv
from nvmeofctl.lab.paths import cache_root, lab_dir
from nvmeofctl.lab.process import monitor_command, pid_alive, read_pid, running, terminate
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

    def to_dict(self) -> dict:
        return {
            "name": self.name, "role": self.role, "running": self.running, "pid": self.pid,
            "ssh_ready": self.ssh_ready, "ssh": self.ssh, "fabric_ip": self.fabric_ip,
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
        return self.dir / "fabric.vde"

    @property
    def switch_pidfile(self) -> Path:
        return self.dir / "vde_switch.pid"

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

    def switch_pid(self) -> int | None:
        return running(self.switch_pidfile, "vde_switch")

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
    def _create(self, targets: int, gpu_nodes: int, memory_mb: int, image: image_mod.Image, accel: str) -> dict:
        lab = self.lab
        lab.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(lab.dir, 0o700)
        n = targets + gpu_nodes
        layout = make_layout(lab.name, targets, gpu_nodes, _free_ports(n, lab.name), memory_mb)
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
    ) -> list[VmStatus]:
        lab = self.lab
        image = image_mod.ensure_image(mirror, self.progress)
        if lab.exists():
            state = lab.load_state()
            layout = LabLayout.from_dict(state["layout"])
            have_t = sum(v.role == "target" for v in layout.vms)
            have_g = sum(v.role == "gpu_node" for v in layout.vms)
            if (targets is not None and targets != have_t) or (gpu_nodes is not None and gpu_nodes != have_g):
                raise LabError(
                    f"lab {lab.name!r} exists with {have_t} target(s) and {have_g} GPU node(s): "
                    f"`nvmeofctl lab destroy` it first, or choose another --name"
                )
            if state["image"] != str(image.dir):
                self.progress("the lab image recipe changed: recreating the lab's VMs on the new image")
                self.destroy()
                return self.up(have_t, have_g, accel, fresh, memory_mb, mirror)
        else:
            choice = choose_accel(accel, image.kernel, image.initrd, cache_root())
            self.progress(f"accelerator: {choice.accel} ({choice.note})")
            state = self._create(targets if targets is not None else 1, gpu_nodes if gpu_nodes is not None else 2,
                                 memory_mb, image, choice.accel)
            layout = LabLayout.from_dict(state["layout"])
        if accel in ("kvm", "tcg") and accel != state["accel"]:
            if any(lab.vm_pid(vm) for vm in layout.vms):
                raise LabError(f"lab {lab.name!r} runs under {state['accel']}: `nvmeofctl lab down` it first")
            self.progress(f"switching the lab to {accel}: saved VM states do not carry across accelerators")
            state["accel"] = accel
            lab.save_state(state)
            for vm in layout.vms:
                self._delete_snapshots(vm, [SNAP_BOOTED, SNAP_SAVED])

        self._ensure_switch()
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

    def _ensure_switch(self) -> None:
        lab = self.lab
        if lab.switch_pid():
            return
        if shutil.which("vde_switch") is None:
            raise LabError("vde_switch not found: run `make setup` (Debian package vde2)")
        if lab.fabric_sock.exists():
            shutil.rmtree(lab.fabric_sock, ignore_errors=True)
        mgmt = lab.dir / "vde_switch.mgmt"
        subprocess.run(
            ["vde_switch", "-s", str(lab.fabric_sock), "-d", "-p", str(lab.switch_pidfile), "-M", str(mgmt)],
            check=True, capture_output=True,
        )
        for _ in range(50):
            if lab.switch_pid() and (lab.fabric_sock / "ctl").exists():
                return
            time.sleep(0.1)
        raise LabError("the lab fabric switch (vde_switch) did not start")

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
        for vm in vms:
            files = lab.vm_files(vm)
            for stale in (files.pidfile, files.monitor):
                stale.unlink(missing_ok=True)
            snap = plans[vm.name]
            how = f"restoring saved state '{snap}'" if snap else "cold boot"
            self.progress(f"{vm.name}: starting ({how}, {state['accel']})")
            argv = qemu_argv(
                vm, files, kernel=image.kernel, initrd=image.initrd, accel=state["accel"],
                fabric_sock=lab.fabric_sock, authorized_keys=lab.client_key.with_name(lab.client_key.name + ".pub"),
                loadvm=snap,
            )
            files.cmdline.write_text(" ".join(argv) + "\n")
            if not snap:
                files.console.write_text("")
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                err = proc.stderr.strip().splitlines()
                if snap and err:
                    self.progress(f"{vm.name}: could not restore '{snap}' ({err[-1]}): cold boot instead")
                    self._delete_snapshots(vm, [SNAP_SAVED, SNAP_BOOTED])
                    plans[vm.name] = None
                    argv = [a for a in argv if a not in ("-loadvm", snap)]
                    proc = subprocess.run(argv, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise LabError(f"{vm.name}: qemu failed to start: {proc.stderr.strip().splitlines()[-1:]}")
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

    def _savevm(self, vm: VmSpec, tag: str) -> None:
        mon = self.lab.vm_files(vm).monitor
        monitor_command(mon, f"delvm {tag}", timeout=60)
        out = monitor_command(mon, f"savevm {tag}", timeout=300)
        if "Error" in out or "error" in out:
            raise LabError(f"{vm.name}: savevm {tag} failed: {out.strip()}")

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
            outs = self._each(vms, lambda vm: (vm, monitor_command(self.lab.vm_files(vm).monitor,
                                                                  f"loadvm {tag}", timeout=300)))
        finally:
            self._each(vms, lambda vm: monitor_command(self.lab.vm_files(vm).monitor, "cont", timeout=30))
        bad = [f"{vm.name}: {out.strip()}" for vm, out in outs if "rror" in out]
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
        pid = lab.switch_pid()
        if pid:
            terminate(pid)
        lab.switch_pidfile.unlink(missing_ok=True)
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
            )

        with ThreadPoolExecutor(max_workers=max(1, len(layout.vms))) as pool:
            return list(pool.map(one, layout.vms))
