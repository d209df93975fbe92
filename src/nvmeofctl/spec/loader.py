"""Load a cluster spec from YAML; every problem becomes one `FILE:LINE PATH: message` line."""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from nvmeofctl.errors import SpecError
from nvmeofctl.spec.models import (
    DEFAULT_BACKING_PREFIXES,
    ClusterSpec,
    FabricSpec,
    HostSpec,
    Loc,
    SubsystemSpec,
    V,
    _path,
    derive_and_check,
)

TOP_KEYS = "name, fabric, hosts, subsystems"

# Limits on what a spec file may cost to read (documented in README "Cluster spec limits"): a
# real cluster spec is a few KiB, a few levels deep and a few thousand values even at 1000 hosts.
MAX_SPEC_BYTES = 4 << 20  # 4 MiB
MAX_DEPTH = 32  # nested mappings/lists
MAX_NODES = 200_000  # values after YAML aliases are expanded (stops "billion laughs")


class _TooBig(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class SpecIssue:
    file: str
    line: int  # 1-based
    path: str  # e.g. subsystems[0].namespaces[1].nsid; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class SpecValidationError(SpecError):
    """SpecError whose issues also come structured (`details`) for JSON output."""

    def __init__(self, details: list[SpecIssue]) -> None:
        self.details = list(details)
        super().__init__([str(d) for d in self.details])


def load_spec(path: str | Path, *, insecure_secret_perms: bool = False) -> ClusterSpec:
    """Read, validate and complete a cluster spec file. Raises SpecValidationError (a SpecError).

    insecure_secret_perms: accept DH-HMAC-CHAP secret files open to group/other or owned by
    another user (by default they are refused, as ssh refuses such private keys)."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecValidationError([SpecIssue(shown, 1, "", "cannot read the spec: file not found")]) from None
    except IsADirectoryError:
        raise SpecValidationError([SpecIssue(shown, 1, "", "cannot read the spec: it is a directory")]) from None
    except UnicodeDecodeError as exc:
        message = f"cannot read the spec: not UTF-8 text ({exc.reason})"
        raise SpecValidationError([SpecIssue(shown, 1, "", message)]) from None
    except OSError as exc:
        raise SpecValidationError([SpecIssue(shown, 1, "", f"cannot read the spec: {exc.strerror}")]) from None
    spec = parse_spec(text, source=shown, base_dir=path.resolve().parent, insecure_secret_perms=insecure_secret_perms)
    spec._source_path = path.resolve()
    return spec


def parse_spec(
    text: str, *, source: str = "<string>", base_dir: str | Path | None = None, insecure_secret_perms: bool = False
) -> ClusterSpec:
    """Validate spec YAML text; relative paths resolve against base_dir (default: current folder)."""
    size = len(text.encode("utf-8"))
    if size > MAX_SPEC_BYTES:
        raise SpecValidationError([SpecIssue(source, 1, "", f"the spec is {size} bytes, more than the limit of "
                                                           f"{MAX_SPEC_BYTES} bytes")])
    deep = _too_deep(text)
    if deep is not None:
        raise SpecValidationError([SpecIssue(source, deep, "", f"nesting deeper than {MAX_DEPTH} levels")])
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except RecursionError:  # a shape the scan above did not see: still one line, never a traceback
        raise SpecValidationError([SpecIssue(source, 1, "", f"nesting deeper than {MAX_DEPTH} levels")]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or type(exc).__name__
        dup = re.match(r'found duplicate key "(.*?)" with value', problem, re.S)
        if dup:  # ruamel's text repeats both values: one may be a secret
            problem = f'duplicate key "{dup[1]}"'
        raise SpecValidationError([SpecIssue(source, line, "", f"invalid YAML: {problem}")]) from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecValidationError([SpecIssue(source, 1, "", f"invalid YAML: {first}")]) from None
    if tree is None:
        raise SpecValidationError([SpecIssue(source, 1, "", f"the spec is empty (expected a mapping with {TOP_KEYS})")])
    if not isinstance(tree, CommentedMap):
        line = tree.lc.line + 1 if hasattr(tree, "lc") and tree.lc.line is not None else 1
        kind = "a list" if isinstance(tree, list) else f"a {type(tree).__name__}"
        raise SpecValidationError(
            [SpecIssue(source, line, "", f"the top level must be a mapping with {TOP_KEYS}, not {kind}")]
        )
    context = {
        "base_dir": Path(base_dir) if base_dir is not None else Path.cwd(),
        "insecure_secret_perms": bool(insecure_secret_perms),
    }
    # top-level `x-*` keys are free for YAML anchors (`x-ssh: &ssh {...}`), as in compose files
    try:
        plain = _plain(tree, [0], 0, 1)
    except _TooBig as exc:
        raise SpecValidationError([SpecIssue(source, exc.line, "", str(exc))]) from None
    data = {k: v for k, v in plain.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        return ClusterSpec.model_validate(data, context=context)
    except ValidationError as exc:
        issues = issues_from(exc, tree, source)
    # Field errors stop pydantic before the cross-field checks: run those on the parts that are
    # valid on their own, so one report holds both kinds.
    extra = [SpecIssue(source, line_of(tree, loc), _path(loc), msg) for loc, msg in _cross_check_parts(data, context)]
    known = {str(i) for i in issues}
    issues += [i for i in extra if str(i) not in known]
    raise SpecValidationError(sorted(issues, key=lambda i: (i.line, i.path)))


def _cross_check_parts(data: dict[str, Any], context: dict[str, Any]) -> list[tuple[Loc, str]]:
    def valid(model: type[BaseModel], raw: Any) -> Any:
        try:
            return model.model_validate(raw, context=context)
        except ValidationError:
            return None

    def items(key: str) -> list[Any]:
        raw = data.get(key)
        return raw if isinstance(raw, list) else []

    raw_hosts = items("hosts")
    hosts = [valid(HostSpec, h) for h in raw_hosts]
    bad = [h for h, ok in zip(raw_hosts, hosts) if ok is None]
    names = [h.get("name") if isinstance(h, dict) else None for h in bad]
    unchecked = frozenset(names) if all(isinstance(n, str) for n in names) else None
    subsystems = [valid(SubsystemSpec, s) for s in items("subsystems")]
    fabric = valid(FabricSpec, data.get("fabric", {}))
    name = data.get("name") if isinstance(data.get("name"), str) else ""
    prefixes = data.get("backing_prefixes")
    extra = tuple(p for p in prefixes if isinstance(p, str) and V.prefix_problem(p) is None) \
        if isinstance(prefixes, list) else ()
    return derive_and_check(name, fabric, hosts, subsystems, unchecked,
                            prefixes=tuple(DEFAULT_BACKING_PREFIXES) + extra)


def issues_from(exc: ValidationError, tree: Any, source: str) -> list[SpecIssue]:
    """One SpecIssue per pydantic error, sorted by line; never carries input values."""
    out: dict[str, SpecIssue] = {}
    for err in exc.errors(include_input=False, include_url=False):
        loc: Loc = tuple(err["loc"])
        issue = SpecIssue(source, line_of(tree, loc), _path(loc), _message(err, loc))
        out.setdefault(str(issue), issue)
    return sorted(out.values(), key=lambda i: (i.line, i.path))


def line_of(tree: Any, loc: Loc) -> int:
    """1-based line of the deepest key/item of loc present in the YAML tree (the parent when missing)."""
    node = tree
    line = (tree.lc.line + 1) if isinstance(tree, (CommentedMap, CommentedSeq)) else 1
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            try:
                line = node.lc.key(part)[0] + 1
            except KeyError:  # merged in with `<<: *anchor`: keep the merging mapping's line
                pass
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


_FRIENDLY = {
    "missing": "field required",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "uuid_type": "expected a UUID",
    "uuid_parsing": "expected a UUID (8-4-4-4-12 hex digits)",
    "ip_v4_address": "expected an IPv4 address",
    "path_type": "expected a path",
}


def _message(err: dict[str, Any], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_field(loc)
    if kind in _FRIENDLY:
        return _FRIENDLY[kind]
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg[:1].lower() + msg[1:] if msg[:2] != msg[:2].upper() else msg


def _unknown_field(loc: Loc) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown field '{key}'"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    top = "; keys for YAML anchors only start with 'x-'" if len(loc) == 1 else ""
    return f"unknown field '{key}' ({hint}allowed: {', '.join(allowed)}{top})"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at loc, walking ClusterSpec's annotations."""
    current: Any = ClusterSpec
    for part in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if origin is list:
            current = typing.get_args(current)[0]
        elif origin is dict:
            current = typing.get_args(current)[1]
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[str(part)].annotation
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional / Annotated."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
            continue
        return tp


def _too_deep(text: str) -> int | None:
    """The line where nesting passes MAX_DEPTH, found by a scan that costs far less than the
    parser (which recurses per level): flow brackets outside quotes, and indentation."""
    depth, quote = 0, ""
    for n, line in enumerate(text.splitlines(), 1):
        body = line.lstrip(" ")
        if not quote and (len(line) - len(body)) > 8 * MAX_DEPTH and body and not body.startswith("#"):
            return n
        for ch in line:
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "#":
                break
            elif ch in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return n
            elif ch in "]}":
                depth -= 1
    return None


def _plain(node: Any, count: list[int], depth: int, line: int) -> Any:
    """ruamel round-trip nodes -> plain dict / list / str / int / float / bool, within the limits
    (aliases are expanded here: each expansion counts)."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _TooBig(f"the spec expands to more than {MAX_NODES} values (YAML aliases?)", line)
    if isinstance(node, (dict, list)):
        if depth >= MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", line)
        lc = getattr(node, "lc", None)
        line = lc.line + 1 if lc is not None and lc.line is not None else line
    if isinstance(node, dict):
        return {(_plain(k, count, depth + 1, line) if not isinstance(k, str) else str(k)):
                _plain(v, count, depth + 1, line) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, count, depth + 1, line) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node
