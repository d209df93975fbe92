"""`nvmeofctl spec validate|schema` (placeholder until the spec models land)."""

import typer

app = typer.Typer(help="Validate a cluster spec or print its JSON Schema.", no_args_is_help=True)
