"""The cyclic garbage collector is paused while nvmeofctl starts (issue #9: fast start-up).

Starting a command imports typer, rich and pydantic and builds the click commands, the option
adapters and the spec models: 25,000 (`--help`) to 33,000 (`spec validate`) objects that nearly
all live until the process exits. With the collector on, CPython ran 57 and 78 collections over
them on the way, which freed some 500 objects, and a last one at exit: 60-85 ms, a fifth of
both commands' time (benchmarks/startup.py). So ``cli.main`` pauses the collector while it is
imported and ``run()`` while typer builds and parses the command line; the root callback resumes
it when a command starts, and the imports a command makes on first use (``cli.lazy.bind``) run
paused too.

``resume`` freezes what exists by then (``gc.freeze``: left out of every later collection, as
the gc documentation suggests for objects made at start-up) and turns the collector back on:
without the freeze it would scan all of it at the next collection and save nothing. Only a
pause made here is undone: a process that turned the collector off itself keeps it off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_paused = False  # the collector was on and pause() turned it off


def pause() -> None:
    """Turn the cyclic collector off until ``resume`` (nothing to do when it is off already)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Undo ``pause``: freeze every object that exists now and turn the collector back on."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    """``pause`` for the block (imports), ``resume`` after it, unless it was paused already."""
    if not gc.isenabled():
        yield
        return
    pause()
    try:
        yield
    finally:
        resume()
