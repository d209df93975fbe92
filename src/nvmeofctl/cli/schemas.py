"""`nvmeofctl schemas [KIND]`: the JSON Schemas of what `--output json` prints."""

from __future__ import annotations

from typing import Optional

import typer

from nvmeofctl.cli.context import stdout_console
from nvmeofctl.cli.output import output_option
from nvmeofctl.report.output import OutputFormat, emit_json

HELP = """List the kinds of JSON document `--output json` prints, or print the JSON Schema (draft 2020-12) of one KIND.

Every document starts with "schema_version": 1. New fields may appear within a version (ignore those you do not know); a field removed or renamed, or a changed meaning, bumps schema_version and the schema's $id. With KIND the schema is printed as JSON, whatever --output says.

\b
Exit codes:
  0    listed or printed
  2    no such KIND

\b
Example:
  nvmeofctl schemas
  nvmeofctl schemas plan > plan.schema.json
"""


def register(app: typer.Typer) -> None:
    app.command("schemas", help=HELP)(schemas_cmd)


def _kinds(incomplete: str) -> list[str]:
    from nvmeofctl.report.schemas import KINDS

    return [k for k in KINDS if k.startswith(incomplete)]


def schemas_cmd(
    kind: Optional[str] = typer.Argument(None, metavar="KIND", autocompletion=_kinds,
                                         help="The document kind (plan, apply, health, ...); none: list them."),
    output: OutputFormat = output_option(help="The list: table (people) or json (scripts)."),
) -> None:
    import json

    from nvmeofctl.report import schemas

    if kind is not None:
        typer.echo(json.dumps(schemas.schema(kind), indent=2, ensure_ascii=False))
        return
    kinds = schemas.catalogue()
    if output == OutputFormat.json:
        emit_json({"kinds": kinds})
        return
    from rich.table import Table

    table = Table(title="--output json documents (nvmeofctl schemas KIND prints one)", title_justify="left")
    for col in ("kind", "title", "printed by", "$id"):
        table.add_column(col, overflow="fold")
    for k in kinds:
        table.add_row(k["kind"], k["title"], ", ".join(k["commands"]), k["id"])
    stdout_console().print(table)
