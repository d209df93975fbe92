from nvmeofctl.cli.main import run

run()
