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


@cache
def load_module_utils(name: str):
    """The collection's ``module_utils/<name>.py``, loaded by file path (stdlib only, no Ansible).

    The planner and the nvme-cli wrapper share the modules' own parsers and diff logic this way,
    so plan and apply cannot disagree.
    """
    import importlib.util
    import sys

    path = module_utils_dir() / f"{name}.py"
    modname = f"nvmeofctl._module_utils.{name}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:  # pragma: no cover - packaging error
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod
