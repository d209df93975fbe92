"""Spec strings are data, never templates: the real playbook, run by the real ansible-playbook on
an inventory whose every string is a Jinja2 `lookup('pipe', ...)`, runs nothing on this machine.

The hosts are unreachable (a closed port on 127.0.0.1), which is exactly when the issue showed
the injection: ansible templates inventory strings before it connects.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nvmeofctl.plan.desired import host_vars
from nvmeofctl.run import runner
from nvmeofctl.run.inventory import build_inventory, unsafe_yaml
from nvmeofctl.spec import parse_spec

HERE = Path(__file__).resolve().parent

SPEC = """
name: t
fabric: {transport: rdma, soft_roce: true}
hosts:
  - {name: tgt1, role: target, ssh: {address: 127.0.0.1, port: PORT}, fabric: {interface: eth1, ips: [10.9.0.1]}}
  - {name: gpu1, role: gpu_node, ssh: {address: 127.0.0.1, port: PORT2}, fabric: {interface: eth1, ips: [10.9.0.2]}}
subsystems:
  - nqn: nqn.2024-01.io.x:train
    target: tgt1
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - {nsid: 1, name: train, backing: {file: /var/lib/nvmeofctl/train.img, size: 1GiB}}
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poison(data, marker_dir: Path, connection: bool, counter: list[int]):
    """Every string leaf -> a lookup that would create a marker file (one per field)."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            keep = not connection and isinstance(k, str) and k.startswith("ansible_")
            out[k] = v if keep else _poison(v, marker_dir, connection, counter)
        return out
    if isinstance(data, list):
        return [_poison(v, marker_dir, connection, counter) for v in data]
    if isinstance(data, str):
        counter[0] += 1
        return "{{ lookup('pipe', 'touch %s/m%d') }}" % (marker_dir, counter[0])
    return data


def _hostile_inventory(tmp_path: Path, connection: bool) -> tuple[dict, Path, int]:
    text = SPEC.replace("PORT2", str(_closed_port())).replace("PORT", str(_closed_port()))
    spec = parse_spec(text, base_dir=tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    counter = [0]
    inv = _poison(build_inventory(spec, host_vars(spec)), markers, connection, counter)
    return inv, markers, counter[0]


@pytest.mark.parametrize("check", [True, False], ids=["check", "apply"])
@pytest.mark.parametrize("connection", [False, True], ids=["module-options", "all-strings"])
def test_real_playbook_templates_no_inventory_string(tmp_path, check, connection, monkeypatch):
    inv, markers, n = _hostile_inventory(tmp_path, connection)
    assert n > 15  # the poison reached the desired state, not only a field or two
    monkeypatch.setenv("HOME", str(tmp_path))  # ansible's local tmp and caches stay in the test dir
    result = runner.run_playbook("site.yml", inv, check=check)
    assert sorted(p.name for p in markers.iterdir()) == []
    # the play did run: every host was tried (and is unreachable), none was skipped
    assert {h: s["unreachable"] for h, s in result.stats.items()} == {"tgt1": 1, "gpu1": 1}


def test_ordered_playbook_templates_no_inventory_string_either(tmp_path, monkeypatch):
    """site_ordered.yml (release, targets, GPU nodes) on the same poisoned inventory with gpu1
    in the release group: no marker, and the release play stops the run (any_errors_fatal)
    before the targets play, as it must when a GPU node cannot drop its paths."""
    text = SPEC.replace("PORT2", str(_closed_port())).replace("PORT", str(_closed_port()))
    spec = parse_spec(text, base_dir=tmp_path)
    markers = tmp_path / "markers"
    markers.mkdir()
    counter = [0]
    inv = _poison(build_inventory(spec, host_vars(spec), release=["gpu1"]), markers, True, counter)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = runner.run_playbook("site_ordered.yml", inv)
    assert sorted(p.name for p in markers.iterdir()) == []
    assert [(t.host, t.status) for t in result.tasks] == [("gpu1", "unreachable")]


def test_the_same_inventory_as_plain_json_would_run_the_lookups(tmp_path):
    """The threat is real: without the !unsafe marks ansible runs the lookups (this test fails
    if the poison never reaches a templating step, which would make the test above vacuous)."""
    inv, markers, _n = _hostile_inventory(tmp_path, connection=False)
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(inv))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--host", "tgt1", "--vars"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # ansible-inventory shows vars without templating them; the plain playbook run below does
    play = tmp_path / "play.yml"
    play.write_text("- hosts: targets\n  gather_facts: false\n  tasks:\n"
                    "    - debug: {msg: \"{{ nvmeofctl_nvmet.subsystems[0].nqn }}\"}\n"
                    "      delegate_to: localhost\n")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "ANSIBLE_LOCALHOST_WARNING": "False"}
    subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(path), str(play),
                    "-e", "ansible_connection=local ansible_python_interpreter=" + sys.executable],
                   capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert list(markers.iterdir()), "the lookup did not run: this test no longer proves the threat"


def test_unsafe_yaml_tags_every_string_and_round_trips(tmp_path):
    data = {"all": {"hosts": {"h": {"s": "{{ x }}\n\"'", "n": 3, "b": True, "z": None,
                                    "l": ["é", {"k": "v"}]}}}}
    text = unsafe_yaml(data)
    assert text.count("!unsafe") == 3
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.constructor.add_constructor("!unsafe", lambda loader, node: ("U", loader.construct_scalar(node)))
    back = yaml.load(text)
    h = back["all"]["hosts"]["h"]
    assert h["s"] == ("U", "{{ x }}\n\"'") and h["n"] == 3 and h["b"] is True and h["z"] is None
    assert h["l"] == [("U", "é"), {"k": ("U", "v")}]
