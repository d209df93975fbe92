"""`--output/-o FORMAT`: the one option for every command that prints data.

One enum (``report.output.OutputFormat``); each command names the formats it can write, and any
other value is a usage error naming those (`plan -o prometheus` -> "choose table | json")."""

from __future__ import annotations

from typing import Any

import typer

from nvmeofctl.report.output import OutputFormat

QUERY_FORMATS = (OutputFormat.table, OutputFormat.json)


def output_option(*formats: OutputFormat, help: str = "table (people) or json (scripts).") -> Any:
    """The `--output/-o` option accepting ``formats`` (default: table, json); the first is the default."""
    formats = formats or QUERY_FORMATS
    names = [f.value for f in formats]

    def parse(value: Any) -> OutputFormat:
        raw = value.value if isinstance(value, OutputFormat) else str(value)
        if raw not in names:
            raise typer.BadParameter(f"{raw!r} (choose {' | '.join(names)})")
        return OutputFormat(raw)

    return typer.Option(formats[0], "--output", "-o", parser=parse, metavar="|".join(names), help=help)
