"""The JSON Schemas (draft 2020-12) of every document `--output json` prints, one file per kind.

Each document starts with ``schema_version`` (``report.output.SCHEMA_VERSION``). Fields may be
added within a version; a field removed or renamed, or a changed meaning, bumps the version and
the schema's ``$id`` (``urn:nvmeofctl:output:KIND:vN``). `nvmeofctl schemas [KIND]` prints them.

``validate(kind, doc)`` checks a document against its schema (for tests, lab tests and scripts).
It needs the ``jsonschema`` package (the ``test`` extra), which the CLI itself never imports.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from nvmeofctl.errors import UsageError
from nvmeofctl.resources import output_schemas_dir

# kind -> the commands that print it with --output json; `nvmeofctl schemas` lists them in this order
KINDS: dict[str, tuple[str, ...]] = {
    "plan": ("plan",),
    "apply": ("apply",),
    "health": ("health",),
    "status": ("status",),
    "node-op": ("connect", "disconnect"),
    "teardown": ("teardown",),
    "rollout": ("rollout",),
    "bench": ("bench",),
    "export": ("export",),
    "history-list": ("history",),
    "history-show": ("history --show ID",),
    "spec-validate": ("spec validate",),
    "lab-status": ("lab status", "lab up"),
    "schemas": ("schemas",),
}
MAX_SHOWN = 20  # problems named in one OutputSchemaError message


class UnknownKind(UsageError):
    """No schema of that name (exit 2)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"no output schema {kind!r} (kinds: {', '.join(KINDS)}); `nvmeofctl schemas` lists them")


class OutputSchemaError(ValueError):
    """A document that does not match its kind's schema; ``problems``: one line each."""

    def __init__(self, kind: str, schema_id: str, problems: list[str]) -> None:
        self.kind, self.schema_id, self.problems = kind, schema_id, problems
        shown = problems[:MAX_SHOWN]
        more = [f"... and {len(problems) - len(shown)} more"] if len(problems) > len(shown) else []
        super().__init__(f"{kind} document does not match {schema_id}: {len(problems)} problem(s)\n  "
                         + "\n  ".join(shown + more))


@cache
def _text(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownKind(kind)
    return (output_schemas_dir() / f"{kind}.schema.json").read_text(encoding="utf-8")


def schema(kind: str) -> dict[str, Any]:
    """The schema of ``kind`` (a fresh copy); UnknownKind when there is none."""
    return json.loads(_text(kind))


def catalogue() -> list[dict[str, Any]]:
    """Every kind: name, title, $id and the commands that print it."""
    out = []
    for kind, commands in KINDS.items():
        doc = schema(kind)
        out.append({"kind": kind, "title": doc["title"], "id": doc["$id"], "commands": list(commands)})
    return out


def where(path) -> str:
    """A JSON path for people: ``$.hosts[0].role``."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@cache
def _validator(kind: str):
    try:
        from jsonschema import Draft202012Validator
    except ImportError:  # pragma: no cover - the test extra is missing
        raise RuntimeError("validating output needs the jsonschema package: pip install 'nvmeofctl[test]'") from None
    return Draft202012Validator(schema(kind))


def problems(kind: str, doc: Any) -> list[str]:
    """Every way ``doc`` differs from the schema of ``kind``, one line each (``$.path: message``)."""
    errors = sorted(_validator(kind).iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{where(e.absolute_path)}: {e.message}" for e in errors]


def validate(kind: str, doc: Any) -> None:
    """Raise OutputSchemaError, naming each problem, when ``doc`` does not match the schema of
    ``kind``; UnknownKind for a kind without one."""
    found = problems(kind, doc)
    if found:
        raise OutputSchemaError(kind, schema(kind)["$id"], found)
