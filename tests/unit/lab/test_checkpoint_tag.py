"""Checkpoint names reach the QEMU monitor (`savevm NAME`): one plain word, never the lab's own."""

import pytest

from nvmeofctl.errors import LabError
from nvmeofctl.lab.manager import _check_tag


@pytest.mark.parametrize("tag", ["provisioned", "before-fault_2", "a"])
def test_plain_names_pass(tag):
    _check_tag(tag)


@pytest.mark.parametrize("tag", ["", "booted", "saved", "two words", "x\ninfo", "-x", "a;quit", "é", "x" * 33])
def test_other_names_are_refused(tag):
    with pytest.raises(LabError):
        _check_tag(tag)
