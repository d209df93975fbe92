"""Machine-readable output: one JSON shape convention for every query (``schema_version`` first)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Any

SCHEMA_VERSION = 1


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def to_json(payload: dict[str, Any]) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, **payload}, indent=2, sort_keys=False, default=str)


def emit_json(payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON (with ``schema_version``) to stdout."""
    sys.stdout.write(to_json(payload) + "\n")
    sys.stdout.flush()
