"""Choose the QEMU accelerator: KVM when it really boots a guest, else software emulation (TCG).

On some machines /dev/kvm opens but cannot run a stock guest (nested hypervisors: QEMU aborts
on an MSR, or the kernel hangs in its decompressor), so ``auto`` boots the lab kernel once with
KVM and watches the serial console; no sign of life within a few seconds means TCG. The verdict
is cached per (QEMU binary, kernel) so the probe runs once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROBE_TIMEOUT = 20.0
_ALIVE = ("Run /init", "Freeing unused kernel", "Kernel panic", "Run /bin/false", "No working init")


@dataclass
class AccelChoice:
    accel: str  # kvm | tcg
    note: str


def _probe_kvm(kernel: Path, initrd: Path, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible to this user"
    with tempfile.TemporaryDirectory(prefix="nvmeofctl-kvm-") as tmp:
        console = Path(tmp) / "console.log"
        argv = [
            "qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "host", "-m", "256",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 rdinit=/bin/false init=/bin/false root=/dev/null",
            "-serial", f"file:{console}",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                text = console.read_text(errors="replace") if console.exists() else ""
                if any(marker in text for marker in _ALIVE):
                    return True, "KVM boots the lab kernel"
                if proc.poll() is not None:
                    err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
                    text = console.read_text(errors="replace") if console.exists() else ""
                    if any(marker in text for marker in _ALIVE):
                        return True, "KVM boots the lab kernel"
                    return False, f"QEMU with KVM exited: {err[-1] if err else 'no output'}"
                time.sleep(0.2)
            return False, f"a KVM guest showed no sign of life in {timeout:.0f}s (nested or broken KVM)"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def choose_accel(requested: str, kernel: Path, initrd: Path, cache_dir: Path) -> AccelChoice:
    """``requested`` is auto | kvm | tcg."""
    if requested == "tcg":
        return AccelChoice("tcg", "software emulation (TCG) as requested")
    if requested == "kvm":
        return AccelChoice("kvm", "KVM as requested")
    key = hashlib.sha256(f"{kernel.stat().st_size}:{kernel.name}:{os.uname().release}".encode()).hexdigest()[:16]
    cache = cache_dir / f"kvm-probe-{key}.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        ok, reason = data["ok"], data["reason"]
    else:
        ok, reason = _probe_kvm(kernel, initrd)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"ok": ok, "reason": reason}))
    if ok:
        return AccelChoice("kvm", reason)
    return AccelChoice("tcg", f"KVM not usable ({reason}): using software emulation (TCG), VMs are slow")
