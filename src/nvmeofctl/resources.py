"""One resolver for the files nvmeofctl ships beside its code: playbooks, templates, inventory.

In a source checkout they are the repository's top-level folders; in an installed wheel they
live under ``nvmeofctl/_data/``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """Return the folder ``name`` (``playbooks``, ``templates`` or ``inventory``)."""
    for candidate in (_PKG / "_data" / name, _PKG.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"packaged folder {name!r} not found next to {_PKG}")


def playbooks_dir() -> Path:
    return data_dir("playbooks")


def templates_dir() -> Path:
    return data_dir("templates")


def collections_dir() -> Path:
    return playbooks_dir() / "collections"


def module_utils_dir() -> Path:
    return collections_dir() / "ansible_collections" / "nvmeofctl" / "fabric" / "plugins" / "module_utils"
