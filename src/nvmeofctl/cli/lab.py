import typer

app = typer.Typer(help="The built-in QEMU lab.", no_args_is_help=True)
