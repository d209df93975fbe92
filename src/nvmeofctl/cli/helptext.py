"""Command help as written in docstrings, shown as paragraphs.

typer (0.29, rich mode) keeps the single line breaks of a docstring's later paragraphs, so a
docstring wrapped at 100 columns shows as ragged half-lines in an 80-column terminal. Paragraphs
are reflowed here (single newlines become spaces); ``\\b`` blocks (exit-code tables, examples)
keep their lines, as click defines.
"""

from __future__ import annotations

import inspect


def reflow(text: str) -> str:
    out = []
    for para in text.split("\n\n"):
        out.append(para if para.startswith("\b") else " ".join(line.strip() for line in para.splitlines()))
    return "\n\n".join(out)


def reflow_commands(app) -> None:
    """Reflow the help of every command of ``app`` and of its sub-apps (before it runs)."""
    for info in app.registered_commands:
        doc = info.help if isinstance(info.help, str) else inspect.getdoc(info.callback)
        if doc:
            info.help = reflow(doc)
    for group in app.registered_groups:
        reflow_commands(group.typer_instance)
