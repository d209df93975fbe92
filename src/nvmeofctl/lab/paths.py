"""Where the lab keeps its cache (images) and state (VM overlays, keys, sockets): outside the repo."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("NVMEOFCTL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nvmeofctl"
    )
    return Path(base)


def images_dir() -> Path:
    return cache_root() / "images"


def lab_dir(name: str) -> Path:
    return cache_root() / "labs" / name
