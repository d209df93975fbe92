"""The cluster spec's JSON Schema (`nvmeofctl spec schema`, committed as inventory/cluster.schema.json
for editors): current with the models, accepts every spec the project ships and tests with, and
rejects what the loader rejects on a sample of structurally bad specs (issue #12)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import BASE, REPO
from ruamel.yaml import YAML
from test_spec_errors import CASES

from nvmeofctl.spec import SpecValidationError, parse_spec

SCHEMA_FILE = REPO / "inventory" / "cluster.schema.json"
SPECS = sorted([*(REPO / "inventory").glob("*.yaml"), *(REPO / "tests" / "fixtures" / "specs" / "good").glob("*.yaml"),
                REPO / "tests" / "fixtures" / "health" / "probe" / "lab-real" / "cluster.yaml"])
# bad specs whose fault is structural (a field, a type, an enum, a bound): a schema can see them
STRUCTURAL = ["typo-key", "typo-nested", "bad-role", "bad-transport", "missing-field", "missing-top-field",
              "hosts-not-a-list", "nsid-0", "mtu-above-rdma-link"]


def _data(text: str):
    return YAML(typ="safe").load(io.StringIO(text))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_what_spec_schema_prints():
    out = subprocess.run([sys.executable, "-m", "nvmeofctl", "spec", "schema"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert json.loads(out) == json.loads(SCHEMA_FILE.read_text()), \
        "regenerate: nvmeofctl spec schema > inventory/cluster.schema.json"


def test_it_has_descriptions_and_examples_for_editors(validator):
    props = validator.schema["$defs"]["HostFabricSpec"]["properties"]
    assert props["interface"]["description"] and props["interface"]["examples"] == ["eth1", "ens1f0np0"]
    assert validator.schema["properties"]["name"]["examples"] == ["train-a"]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_and_test_spec_is_valid_against_it(validator, path):
    errors = [e.message for e in validator.iter_errors(_data(path.read_text()))]
    assert errors == []


def test_the_unit_tests_base_spec_is_valid_against_it(validator):
    assert [e.message for e in validator.iter_errors(_data(BASE))] == []


@pytest.mark.parametrize("name", STRUCTURAL)
def test_it_rejects_what_the_loader_rejects(validator, name):
    text = next(t for n, t, _ in CASES if n == name)
    with pytest.raises(SpecValidationError):
        parse_spec(text, source="cluster.yaml")
    assert not validator.is_valid(_data(text)), name


def test_the_example_points_editors_at_it():
    first = (REPO / "inventory" / "example.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=cluster.schema.json"
