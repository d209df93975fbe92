"""`--limit HOSTS`: the one option and the one parser for every command that takes it."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from nvmeofctl.errors import UsageError

LimitOpt = typer.Option(None, "--limit", "-l", metavar="HOSTS", help="Only these hosts (comma-separated names).")


def parse_limit(limit: str | None, known: Sequence[str]) -> list[str]:
    """The host names a command covers, in spec order: those `--limit` names, or every host in
    ``known`` when the option is absent.

    A value that names no host (`--limit ,`, `--limit ''`) is a usage error, never "all hosts"
    and never "no hosts": either would make the command do something other than what was asked.
    """
    if limit is None:
        return list(known)
    names = [n.strip() for n in limit.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--limit {limit!r} names no host (hosts: {', '.join(known)})")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--limit: unknown host(s) {', '.join(unknown)} (hosts: {', '.join(known)})")
    return [n for n in known if n in names]
