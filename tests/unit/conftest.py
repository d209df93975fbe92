"""Shared by every unit test."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _private_fixture_secrets() -> None:
    """The loader refuses DH-HMAC-CHAP secret files open to group/other, and git records no mode
    but the x bit (a checkout makes them 0644): give the committed sample keys mode 0600."""
    for key in FIXTURES.glob("**/secrets/*.key"):
        key.chmod(0o600)


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch) -> None:
    """`apply` leaves a run record in nvmeofctl's state directory: keep the developer's own
    history out of unit tests (each test gets an empty one)."""
    monkeypatch.setenv("NVMEOFCTL_STATE", str(tmp_path / "nvmeofctl-state"))
