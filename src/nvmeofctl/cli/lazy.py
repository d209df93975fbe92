"""Heavy imports of the command modules, made on first use (issue #9: fast `--help`).

Building the Typer app must not import paramiko, ansible-runner, pydantic models, rich tables and
the like: `nvmeofctl --help` needs none of them. A command module lists the names it takes from
heavy modules in a table and gives itself a module ``__getattr__`` from ``lazy_names``; its
command functions call ``bind`` first, which puts those names into the module's globals (unless
something, a test's monkeypatch say, put them there already). So ``module.name`` still works from
outside, and patching it still replaces what the command calls.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from nvmeofctl.cli import gcpause


def bind(namespace: dict[str, Any], table: Mapping[str, str], *names: str) -> None:
    """Import ``names`` (all of ``table`` when none are given) into ``namespace`` unless they
    are there already."""
    with gcpause.paused():  # what these imports make lives until exit (cli.gcpause)
        for name in names or tuple(table):
            if name not in namespace:
                namespace[name] = getattr(importlib.import_module(table[name]), name)


def lazy_names(namespace: dict[str, Any], table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports the names of ``table`` on first access."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        bind(namespace, table, name)
        return namespace[name]

    return __getattr__
