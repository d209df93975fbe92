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
