"""cli.gcpause: the cyclic GC is off inside a pause and back on after it, never turned on by a
resume it did not pause (the whole start-up in a fresh interpreter: test_startup_imports.py)."""

from __future__ import annotations

import gc

import pytest

from nvmeofctl.cli import gcpause


@pytest.fixture(autouse=True)
def gc_on():
    assert gc.isenabled()
    yield
    gc.enable()


def test_paused_turns_the_gc_off_for_the_block_and_back_on_after():
    with gcpause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_nested_pause_leaves_the_outer_one_in_charge():
    gcpause.pause()
    with gcpause.paused():  # what cli.lazy.bind does while run() has paused start-up
        assert not gc.isenabled()
    assert not gc.isenabled()
    gcpause.resume()
    assert gc.isenabled()


def test_the_gc_is_on_again_when_the_block_raises():
    with pytest.raises(RuntimeError), gcpause.paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_gc_turned_off_by_someone_else_stays_off():
    gc.disable()
    gcpause.pause()
    gcpause.resume()
    with gcpause.paused():
        pass
    assert not gc.isenabled()
