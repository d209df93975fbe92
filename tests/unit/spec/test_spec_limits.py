"""YAML limits: a small hostile file cannot make the loader hang or crash (documented numbers in
spec/loader.py and the README). Each violation is one `file:line` error, exit 3."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nvmeofctl.spec import SpecValidationError, parse_spec
from nvmeofctl.spec.loader import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES


def alias_bomb(levels: int = 12) -> str:
    """'Billion laughs': ~400 bytes that expand to 10**levels values."""
    lines = ['x-a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for i in range(levels):
        refs = ", ".join([f"*{prev}"] * 10)
        lines.append(f"x-b{i}: &b{i} [{refs}]")
        prev = f"b{i}"
    lines.append(f"name: c\nhosts: [*{prev}]")
    return "\n".join(lines) + "\n"


def issue(text: str) -> str:
    with pytest.raises(SpecValidationError) as exc:
        parse_spec(text, source="c.yaml")
    assert len(exc.value.details) == 1
    return str(exc.value.details[0])


def test_alias_expansion_is_bounded():
    text = alias_bomb()
    assert len(text) < 1200
    assert issue(text) == f"c.yaml:1: the spec expands to more than {MAX_NODES} values (YAML aliases?)"


def test_aliases_that_stay_small_are_fine():
    text = "x-ssh: &ssh {address: 10.0.0.1}\nname: c\nfabric: {transport: tcp}\nhosts:\n" \
           "  - {name: t1, role: target, ssh: *ssh, fabric: {interface: eth1, ips: [10.9.0.1]}}\n"
    assert parse_spec(text).host("t1").ssh.address == "10.0.0.1"


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5000])
def test_flow_nesting_is_bounded(levels):
    text = "name: c\nhosts: " + "[" * levels + "]" * levels + "\n"
    assert issue(text) == f"c.yaml:2: nesting deeper than {MAX_DEPTH} levels"


def test_block_nesting_is_bounded():
    text = "name: c\nhosts:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300)) + "  " * 301 + "v: 1\n"
    assert "nesting deeper than" in issue(text)


def test_brackets_inside_quotes_do_not_count():
    text = "name: c\nfabric: {transport: tcp}\nx-note: \"" + "[" * 100 + "\"\nhosts:\n" \
           "  - {name: t1, role: target, ssh: {address: 10.0.0.1}, fabric: {interface: eth1, ips: [10.9.0.1]}}\n"
    assert parse_spec(text).name == "c"


def test_file_size_is_bounded():
    text = "name: c\n# " + "x" * MAX_SPEC_BYTES + "\n"
    assert issue(text) == f"c.yaml:1: the spec is {len(text.encode())} bytes, more than the limit of {MAX_SPEC_BYTES} bytes"


@pytest.mark.parametrize("kind", ["bomb", "deep"])
def test_cli_answers_exit_3_in_one_line(tmp_path, kind):
    path = tmp_path / "c.yaml"
    path.write_text(alias_bomb() if kind == "bomb" else "name: c\nhosts: " + "[" * 5000 + "]" * 5000 + "\n")
    proc = subprocess.run([sys.executable, "-m", "nvmeofctl", "spec", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:") and "Traceback" not in proc.stderr
