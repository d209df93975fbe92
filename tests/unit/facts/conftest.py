from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "health"


@pytest.fixture
def fx():
    def read(rel: str) -> str:
        return (FIX / rel).read_text(encoding="utf-8", errors="surrogateescape")

    return read
