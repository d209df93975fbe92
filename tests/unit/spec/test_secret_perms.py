"""Secret files must be ours and closed to group/other (like ssh private keys), unless the user
says --insecure-secret-perms; no message ever carries the secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import SAMPLE_HOST_KEY, edit
from typer.testing import CliRunner

from nvmeofctl.cli import provision as provision_cli
from nvmeofctl.cli.main import app
from nvmeofctl.health import expect as expect_mod
from nvmeofctl.spec import SpecValidationError, load_spec
from nvmeofctl.spec.secrets import read_secret_file, secret_file_perms_problem

runner = CliRunner()
KEY_B64 = SAMPLE_HOST_KEY.split(":")[2]


def secret_file(tmp_path: Path, mode: int, name: str = "gpu1.key") -> Path:
    d = tmp_path / "secrets"
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_text(SAMPLE_HOST_KEY + "\n")
    path.chmod(mode)
    return path


def spec_with_secret_file(tmp_path: Path, mode: int) -> tuple[Path, Path]:
    key = secret_file(tmp_path, mode)
    spec = tmp_path / "cluster.yaml"
    spec.write_text(edit((f'{{secret: "{SAMPLE_HOST_KEY}"}}', "{secret_file: secrets/gpu1.key}")))
    return spec, key


def assert_no_secret(text: str) -> None:
    assert SAMPLE_HOST_KEY not in text and KEY_B64[:12] not in text and "DHHC" not in text


@pytest.mark.parametrize(
    ("mode", "who"),
    [(0o644, "group and other"), (0o640, "group"), (0o604, "other"), (0o660, "group"), (0o601, "other")],
)
def test_open_to_group_or_other_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    path = secret_file(tmp_path, mode)
    with pytest.raises(ValueError) as err:
        read_secret_file(path)
    msg = str(err.value)
    assert msg == (f"secret file {path} is open to {who} (mode {mode:04o}): run `chmod 600 {path}`, "
                   "or pass --insecure-secret-perms to accept it (not recommended)")
    assert_no_secret(msg)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_file_is_read(tmp_path: Path, mode: int) -> None:
    assert read_secret_file(secret_file(tmp_path, mode)) == SAMPLE_HOST_KEY


def test_insecure_perms_accepts_a_world_readable_file(tmp_path: Path) -> None:
    assert read_secret_file(secret_file(tmp_path, 0o644), insecure_perms=True) == SAMPLE_HOST_KEY


def test_other_owner_is_refused_with_chown_hint() -> None:
    euid = os.geteuid()
    other = euid + 1
    st = os.stat_result((stat.S_IFREG | 0o600, 1, 1, 1, other, other, 60, 0, 0, 0))
    path = Path("/keys/gpu1.key")
    msg = secret_file_perms_problem(path, st)
    assert msg == (f"secret file {path} is owned by uid {other}, not by you (uid {euid}): "
                   f"run `chown {euid} {path}` and `chmod 600 {path}`, "
                   "or pass --insecure-secret-perms to accept it (not recommended)")
    mine = os.stat_result((stat.S_IFREG | 0o600, 1, 1, 1, euid, euid, 60, 0, 0, 0))
    assert secret_file_perms_problem(path, mine) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ValueError, match=r"owned by uid 65534, not by you \(uid 0\)"):
        read_secret_file(path)
    assert read_secret_file(path, insecure_perms=True) == SAMPLE_HOST_KEY


def test_the_opened_file_is_checked_not_the_symlink(tmp_path: Path) -> None:
    target = secret_file(tmp_path, 0o644, "real.key")
    link = tmp_path / "secrets" / "link.key"
    link.symlink_to(target)
    with pytest.raises(ValueError, match=r"open to group and other \(mode 0644\)"):
        read_secret_file(link)


def test_checks_of_missing_and_empty_files_still_come_first_or_after(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_secret_file(tmp_path / "nope.key")
    empty = tmp_path / "empty.key"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(ValueError, match="is empty"):
        read_secret_file(empty)


def test_spec_with_world_readable_secret_file_is_invalid(tmp_path: Path) -> None:
    spec, key = spec_with_secret_file(tmp_path, 0o644)
    with pytest.raises(SpecValidationError) as err:
        load_spec(spec)
    assert err.value.issues == [
        f"{spec}:23 subsystems[0].dhchap.gpu1.secret_file: secret file {key} is open to group and other "
        f"(mode 0644): run `chmod 600 {key}`, or pass --insecure-secret-perms to accept it (not recommended)"
    ]
    assert_no_secret(str(err.value))


def test_spec_with_private_secret_file_or_insecure_flag_loads(tmp_path: Path) -> None:
    spec, key = spec_with_secret_file(tmp_path, 0o600)
    assert load_spec(spec).subsystems[0].dhchap["gpu1"].secret.get_secret_value() == SAMPLE_HOST_KEY
    key.chmod(0o644)
    loaded = load_spec(spec, insecure_secret_perms=True)
    assert loaded.subsystems[0].dhchap["gpu1"].secret.get_secret_value() == SAMPLE_HOST_KEY


def test_validate_cli_refuses_then_accepts_with_flag(tmp_path: Path) -> None:
    spec, key = spec_with_secret_file(tmp_path, 0o644)
    refused = runner.invoke(app, ["spec", "validate", str(spec)])
    assert refused.exit_code == 3
    assert f"run `chmod 600 {key}`" in refused.stderr and "--insecure-secret-perms" in refused.stderr
    assert_no_secret(refused.stdout + refused.stderr)
    ok = runner.invoke(app, ["spec", "validate", str(spec), "--insecure-secret-perms"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"{spec}: valid")
    assert_no_secret(ok.stdout + ok.stderr)


class _Loaded(Exception):
    pass


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize("flag", [True, False])
def test_plan_and_apply_pass_the_flag_to_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, flag: bool
) -> None:
    seen: dict = {}

    def fake_load(path, **kwargs):
        seen.update(kwargs)
        raise _Loaded  # stop before any host is contacted

    monkeypatch.setattr(provision_cli, "load_spec", fake_load)
    args = [command, "-f", str(tmp_path / "c.yaml")] + (["--insecure-secret-perms"] if flag else [])
    result = runner.invoke(app, args)
    assert isinstance(result.exception, _Loaded), result.output
    assert seen == {"insecure_secret_perms": flag}


@pytest.mark.parametrize("flag", [True, False])
def test_health_passes_the_flag_to_the_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool) -> None:
    seen: dict = {}

    def fake_load(path, **kwargs):
        seen.update(kwargs)
        raise _Loaded

    spec, _ = spec_with_secret_file(tmp_path, 0o600)
    monkeypatch.setattr(expect_mod, "load_spec", fake_load)
    result = runner.invoke(app, ["health", "-f", str(spec)] + (["--insecure-secret-perms"] if flag else []))
    assert isinstance(result.exception, _Loaded), result.output
    assert seen == {"insecure_secret_perms": flag}


def test_health_loader_refuses_and_accepts(tmp_path: Path) -> None:
    spec, key = spec_with_secret_file(tmp_path, 0o640)
    with pytest.raises(SpecValidationError, match=r"open to group \(mode 0640\)"):
        expect_mod.load_spec(str(spec))
    assert expect_mod.load_spec(str(spec), insecure_secret_perms=True).subsystems[0].dhchap["gpu1"].secret
