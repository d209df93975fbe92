"""The lab image: built once from a recipe script, cached by the recipe's hash outside the repo."""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nvmeofctl.errors import LabError
from nvmeofctl.lab.paths import images_dir

RECIPE = Path(__file__).with_name("recipe") / "build-image.sh"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
REQUIRED_TOOLS = ("debootstrap", "mkfs.ext4", "qemu-img", "qemu-system-x86_64", "vde_switch")


@dataclass(frozen=True)
class Image:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "rootfs.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def kernel_release(self) -> str:
        return (self.dir / "kernel-release").read_text().strip()

    def complete(self) -> bool:
        return all(p.exists() for p in (self.disk, self.kernel, self.initrd, self.dir / "kernel-release"))


def configured_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt already uses here (deb822 ``URIs:`` or one-line ``deb`` entries)."""
    candidates: list[str] = []
    for f in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        text = f.read_text(errors="replace")
        for block in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", block, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", block, re.M)
            if uris and suites and re.search(r"\bbookworm\b", suites.group(1)):
                candidates.append(uris.group(1))
    lists = [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]
    for f in lists:
        if f.exists():
            for line in f.read_text(errors="replace").splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
                if m:
                    candidates.append(m.group(1))
    for uri in candidates:
        if "security" not in uri:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def recipe_hash(mirror: str) -> str:
    h = hashlib.sha256(RECIPE.read_bytes())
    h.update(mirror.encode())
    return h.hexdigest()[:16]


def image_for(mirror: str) -> Image:
    return Image(images_dir() / recipe_hash(mirror))


def ensure_image(mirror: str | None = None, progress: Callable[[str], None] = lambda s: None) -> Image:
    """Return the cached image for the current recipe, building it (a few minutes) if needed."""
    mirror = mirror or configured_mirror()
    image = image_for(mirror)
    if image.complete():
        return image
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"building the lab image needs {', '.join(missing)}: run `make setup` (or apt-get install "
            "qemu-system-x86 qemu-utils debootstrap vde2 e2fsprogs)"
        )
    image.dir.mkdir(parents=True, exist_ok=True)
    with open(image.dir.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.complete():  # built by someone else while we waited
            return image
        progress(f"building the lab image from {mirror} (Debian bookworm + backports kernel; ~2-5 min)")
        proc = subprocess.Popen(
            ["bash", str(RECIPE), str(image.dir), mirror],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        step = "start"
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("STEP "):
                step = line.split(None, 1)[1].strip()
                progress(f"image: {step}")
        err = proc.stderr.read() if proc.stderr else ""
        if proc.wait() != 0:
            tail = " | ".join(err.strip().splitlines()[-3:])
            raise LabError(f"lab image build failed at step '{step}': {tail or 'see ' + str(image.dir)}")
    return image
