"""`--accel auto` must detect a KVM that cannot boot a guest and fall back to TCG, never hang."""

import os
import stat
import time

import pytest

from nvmeofctl.lab import accel


def _fake_qemu(tmp_path, body: str):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "qemu-system-x86_64"
    script.write_text("#!/bin/bash\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


@pytest.fixture
def kernel(tmp_path):
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    i = tmp_path / "initrd.img"
    i.write_bytes(b"i")
    return k, i


def _with_kvm_device(monkeypatch):
    real_exists, real_access = os.path.exists, os.access
    monkeypatch.setattr(accel.os.path, "exists", lambda p: True if p == "/dev/kvm" else real_exists(p))
    monkeypatch.setattr(accel.os, "access", lambda p, m: True if p == "/dev/kvm" else real_access(p, m))


def test_hanging_kvm_guest_falls_back_within_timeout(tmp_path, monkeypatch, kernel):
    bindir = _fake_qemu(tmp_path, "sleep 60\n")  # like the nested-KVM decompressor hang
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    _with_kvm_device(monkeypatch)
    start = time.monotonic()
    ok, reason = accel._probe_kvm(*kernel, timeout=2)
    assert not ok and "no sign of life" in reason
    assert time.monotonic() - start < 10


def test_kvm_abort_falls_back(tmp_path, monkeypatch, kernel):
    bindir = _fake_qemu(tmp_path, 'echo "qemu: error: failed to set MSR 0x10a to 0x0" >&2; exit 1\n')
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    _with_kvm_device(monkeypatch)
    ok, reason = accel._probe_kvm(*kernel, timeout=5)
    assert not ok and "MSR 0x10a" in reason


def test_booting_kvm_guest_is_used(tmp_path, monkeypatch, kernel):
    # the fake QEMU writes a kernel banner to its -serial file:PATH argument
    body = 'for a in "$@"; do case "$a" in file:*) echo "Run /init as init process" > "${a#file:}";; esac; done; sleep 30\n'
    bindir = _fake_qemu(tmp_path, body)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    _with_kvm_device(monkeypatch)
    ok, _ = accel._probe_kvm(*kernel, timeout=10)
    assert ok
    choice = accel.choose_accel("auto", *kernel, cache_dir=tmp_path / "cache")
    assert choice.accel == "kvm"


def test_auto_caches_the_verdict_and_explains_fallback(tmp_path, monkeypatch, kernel):
    calls = []
    monkeypatch.setattr(accel, "_probe_kvm", lambda k, i: calls.append(1) or (False, "no /dev/kvm"))
    c1 = accel.choose_accel("auto", *kernel, cache_dir=tmp_path)
    c2 = accel.choose_accel("auto", *kernel, cache_dir=tmp_path)
    assert c1.accel == c2.accel == "tcg" and "no /dev/kvm" in c1.note and "TCG" in c1.note
    assert calls == [1]


def test_explicit_choice_skips_probe(tmp_path, kernel):
    assert accel.choose_accel("tcg", *kernel, cache_dir=tmp_path).accel == "tcg"
    assert accel.choose_accel("kvm", *kernel, cache_dir=tmp_path).accel == "kvm"
