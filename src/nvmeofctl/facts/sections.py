"""Split a probe's output into ``### name arg...`` sections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
HEADER = "### "


@dataclass
class Section:
    name: str
    args: tuple[str, ...] = ()
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences (nvidia-smi underlines its topo header on a TTY)."""
    return _ANSI.sub("", text)


def split_sections(text: str) -> list[Section]:
    """Sections in order; text before the first header is ignored."""
    out: list[Section] = []
    cur: Section | None = None
    for raw in text.splitlines():
        if raw.startswith(HEADER):
            parts = raw[len(HEADER):].split()
            if not parts:
                continue
            cur = Section(parts[0], tuple(parts[1:]))
            out.append(cur)
        elif cur is not None:
            cur.lines.append(raw)
    for s in out:  # the probe adds a blank line before every header
        while s.lines and not s.lines[-1].strip():
            s.lines.pop()
    return out


def parse_kv(text: str, sep: str = "=") -> dict[str, str]:
    """``name=value`` lines (the first separator splits); values are stripped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if sep not in line:
            continue
        k, v = line.split(sep, 1)
        k = k.strip()
        if k:
            out[k] = v.strip()
    return out


def to_int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    try:
        return int(value, 0) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None
