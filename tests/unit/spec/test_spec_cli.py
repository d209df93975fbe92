"""`nvmeofctl spec validate|schema` through the root app and through run()."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, SAMPLE_CTRL_KEY, SAMPLE_HOST_KEY, edit
from typer.testing import CliRunner

from nvmeofctl.cli.main import app, run

LAB = FIXTURES / "good" / "lab.yaml"
runner = CliRunner()


def test_validate_valid_table() -> None:
    result = runner.invoke(app, ["spec", "validate", str(LAB)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{LAB}: valid (3 hosts: 1 target, 2 GPU nodes; 2 subsystems, 3 namespaces)\n"
    assert result.stderr == ""


def test_validate_valid_json_has_derived_ids_and_no_secrets() -> None:
    result = runner.invoke(app, ["spec", "validate", str(LAB), "--output", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["valid"] is True and doc["file"] == str(LAB)
    assert doc["counts"] == {"hosts": 3, "targets": 1, "gpu_nodes": 2, "subsystems": 2, "namespaces": 3}
    gpu1 = doc["hosts"][1]
    assert gpu1["host_nqn"] == f"nqn.2014-08.org.nvmexpress:uuid:{gpu1['host_id']}"
    assert doc["subsystems"][1]["dhchap"] == {"gpu1": {"bidirectional": True}}
    assert doc["subsystems"][0]["namespaces"][0]["backing"] == {"file": "/var/lib/nvmeofctl/data0.img", "size": 256 << 20}
    for secret in (SAMPLE_HOST_KEY, SAMPLE_CTRL_KEY, SAMPLE_HOST_KEY.split(":")[2][:12]):
        assert secret not in result.stdout
    assert "DHHC" not in result.stdout


def test_validate_invalid_table_exit_3_errors_on_stderr(tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(edit(("role: target", "role: storage"), ("port: 2203", "port: 2202")))
    result = runner.invoke(app, ["spec", "validate", str(spec)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {spec}:7 hosts[0].role: input should be 'target' or 'gpu_node'",
        f"error: {spec}:16 hosts[2].ssh.address: duplicate SSH endpoint 127.0.0.1:2202 (also hosts[1].ssh.address)",
    ]


def test_validate_invalid_json_exit_3_on_stdout(tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    bad = SAMPLE_HOST_KEY[:-3] + "x=:"
    spec.write_text(edit((SAMPLE_HOST_KEY, bad), ("[10.9.0.3]", "[10.9.0.2]")))
    result = runner.invoke(app, ["spec", "validate", str(spec), "-o", "json"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["valid"] is False
    assert [(e["file"], e["line"], e["path"]) for e in doc["errors"]] == [
        (str(spec), 17, "hosts[2].fabric.ips[0]"),
        (str(spec), 23, "subsystems[0].dhchap.gpu1.secret"),
    ]
    assert doc["errors"][1]["message"].startswith("not a valid DH-HMAC-CHAP secret:")
    assert bad not in result.output and SAMPLE_HOST_KEY not in result.output


def test_run_maps_invalid_spec_to_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text("- not a mapping\n")
    with pytest.raises(SystemExit) as exc:
        run(["spec", "validate", str(spec)])
    assert exc.value.code == 3
    assert capsys.readouterr().err == f"error: {spec}:1: the top level must be a mapping with name, fabric, hosts, subsystems, not a list\n"
    with pytest.raises(SystemExit) as exc:
        run(["spec", "validate", str(tmp_path / "missing.yaml"), "--output", "json"])
    assert exc.value.code == 3
    assert json.loads(capsys.readouterr().out)["errors"][0]["message"] == "cannot read the spec: file not found"


def test_run_valid_returns_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(LAB.parent, tmp_path / "good")
    assert run(["spec", "validate", str(tmp_path / "good" / "lab.yaml")]) == 0
    assert "valid (3 hosts" in capsys.readouterr().out


def test_schema_prints_json_schema() -> None:
    result = runner.invoke(app, ["spec", "schema"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["$schema"].startswith("https://json-schema.org/")
    assert doc["title"] == "ClusterSpec"
    assert doc["$defs"]["FabricSpec"]["properties"]["transport"]["enum"] == ["rdma", "tcp"]
    assert doc["$defs"]["HostSpec"]["additionalProperties"] is False


@pytest.mark.parametrize("args", [["spec", "--help"], ["spec", "validate", "--help"], ["spec", "schema", "--help"]])
def test_help_has_an_example(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Example: nvmeofctl spec" in result.stdout
