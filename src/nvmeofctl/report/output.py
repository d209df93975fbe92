"""Machine-readable output: one JSON shape convention for every query (``schema_version`` first)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any

# the one version of every JSON document nvmeofctl prints; each kind has its JSON Schema in
# report/schemas/ (`nvmeofctl schemas`). Added fields keep the version; a field removed or renamed,
# or a changed meaning, bumps it (and the $id of the schemas concerned)
SCHEMA_VERSION = 1


class OutputFormat(str, Enum):
    """Every output format; each command accepts its own subset (``cli.output.output_option``)."""

    table = "table"
    json = "json"
    prometheus = "prometheus"  # health only: node_exporter textfile format


def to_json(payload: dict[str, Any]) -> str:
    import json  # here, not at the top: `--help` does not need it (issue #9)

    return json.dumps({"schema_version": SCHEMA_VERSION, **payload}, indent=2, sort_keys=False, default=str)


def emit_json(payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON (with ``schema_version``) to stdout."""
    sys.stdout.write(to_json(payload) + "\n")
    sys.stdout.flush()
