"""plan/preflight.py reads nvme-cli's version line (real capture: tests/fixtures/nvme/nvme-version.txt,
`nvme version` on the lab's Debian 12 VM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmeofctl.plan.preflight import _nvme_cli_problems, parse_version

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "nvme"


def test_parse_version_23_and_3x():
    v = parse_version((FIX / "nvme-version.txt").read_text())
    assert (v.nvme, v.libnvme, v.major_minor) == ("2.3", "1.3", (2, 3))
    v3 = parse_version("nvme version 3.0 (git 3.0)\n")
    assert v3.major_minor == (3, 0) and v3.libnvme is None
    with pytest.raises(ValueError):
        parse_version("bash: nvme: command not found")


def test_too_old_or_unreadable_nvme_cli_is_a_preflight_problem():
    assert _nvme_cli_problems("nvme version 2.3 (git 2.3)", dhchap=True) == []
    assert "too old" in _nvme_cli_problems("nvme version 1.16", dhchap=True)[0]
    assert "cannot read" in _nvme_cli_problems("garbage", dhchap=False)[0]
