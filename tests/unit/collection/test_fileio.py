"""module_utils/fileio.py: the one atomic write every domain uses (state, configs with secrets,
the boot program, units)."""

from __future__ import annotations

import os

import pytest

from nvmeofctl.resources import load_module_utils

fileio = load_module_utils("fileio")


def test_write_file_only_when_content_or_mode_differs(tmp_path):
    p = tmp_path / "d" / "connections.json"
    assert fileio.file_state(str(p), "x\n", 0o600) == "absent"
    assert fileio.write_file(str(p), "x\n", 0o600) is True
    assert (p.stat().st_mode & 0o777) == 0o600 and p.read_text() == "x\n"
    assert fileio.write_file(str(p), "x\n", 0o600) is False
    os.chmod(p, 0o644)
    assert fileio.file_state(str(p), "x\n", 0o600) == "outdated" and fileio.differs(str(p), "x\n", 0o600)
    assert fileio.write_file(str(p), "x\n", 0o600) is True and (p.stat().st_mode & 0o777) == 0o600
    assert fileio.write_file(str(p), b"\x00\xffbinary", 0o644) is True
    assert p.read_bytes() == b"\x00\xffbinary" and fileio.file_state(str(p), b"\x00\xffbinary", 0o644) == "current"
    assert os.listdir(p.parent) == ["connections.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    p = tmp_path / "nvmet.json"
    p.write_text("old\n")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fileio.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        fileio.write_atomic(str(p), "new secret\n", 0o600)
    assert p.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["nvmet.json"]


def test_the_temporary_file_has_the_mode_before_any_byte(tmp_path, monkeypatch):
    seen = []
    real_write = os.write

    def spy(fd, data):
        seen.append(os.fstat(fd).st_mode & 0o777)
        return real_write(fd, data)

    monkeypatch.setattr(fileio.os, "write", spy)
    fileio.write_atomic(str(tmp_path / "key"), "DHHC-1:00:secret:\n", 0o600)
    assert seen and set(seen) == {0o600}


def test_makedirs_private(tmp_path):
    d = tmp_path / "a" / "b"
    fileio.makedirs_private(str(d))
    assert (os.stat(tmp_path / "a").st_mode & 0o777) == 0o700 and (os.stat(d).st_mode & 0o777) == 0o700
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        fileio.makedirs_private(str(tmp_path / "f" / "x"))
