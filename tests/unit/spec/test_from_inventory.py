"""`nvmeofctl spec init --from-inventory` (spec/from_inventory.py): INI and YAML inventories read
by ansible-core's own loader (groups, children, group and host vars), inventory values checked
like spec values, and a result whose every TODO `spec validate` names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from nvmeofctl.errors import UsageError
from nvmeofctl.spec.from_inventory import read_inventory, render_spec

INI = """\
[storage]
stor1 ansible_host=10.0.0.11 ansible_user=deploy

[gpus]
gpu-a01 ansible_host=10.0.1.21
gpu-a02 ansible_host="{{ lookup('pipe', 'id') }}"
gpu-a03

[gpus:vars]
ansible_user=ops
ansible_port=2222
ansible_ssh_private_key_file=/etc/keys/fleet_ed25519

[monitoring]
prom1 ansible_host=10.0.9.1
"""

YAML_INV = """\
all:
  vars:
    ansible_user: root
  children:
    targets:
      hosts:
        stor1: {ansible_host: 10.0.0.11, ansible_port: 22}
    gpu_nodes:
      children:
        rack_a:
          hosts:
            gpu1: {ansible_host: 10.0.1.21}
        rack_b:
          vars: {ansible_user: "bad user;"}
          hosts:
            gpu2: {ansible_host: 10.0.1.22, ansible_ssh_private_key_file: "/keys/%h"}
"""


def test_ini_groups_group_vars_and_templates(tmp_path):
    inv = tmp_path / "hosts.ini"
    inv.write_text(INI)
    hosts, others = read_inventory(inv, "storage", "gpus")
    got = [(h.name, h.role, h.address, h.port, h.user, h.key, h.todo) for h in hosts]
    assert got == [
        ("stor1", "target", "10.0.0.11", None, "deploy", None, []),
        ("gpu-a01", "gpu_node", "10.0.1.21", 2222, "ops", "/etc/keys/fleet_ed25519", []),
        ("gpu-a02", "gpu_node", None, 2222, "ops", "/etc/keys/fleet_ed25519",
         ["ansible_host: a Jinja2 template (evaluated by Ansible, not copied)",
          "ssh.address: the inventory gives no usable ansible_host"]),
        ("gpu-a03", "gpu_node", "gpu-a03", 2222, "ops", "/etc/keys/fleet_ed25519", []),  # Ansible uses the name
    ]
    assert others == ["prom1"]


def test_yaml_children_and_values_that_fail_the_specs_checks(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(YAML_INV)
    hosts, _ = read_inventory(inv, "targets", "gpu_nodes")
    by = {h.name: h for h in hosts}
    assert (by["stor1"].address, by["stor1"].port, by["stor1"].user) == ("10.0.0.11", 22, "root")
    assert (by["gpu1"].role, by["gpu1"].user) == ("gpu_node", "root")
    assert by["gpu2"].user is None and by["gpu2"].key is None
    assert [t.split(":")[0] for t in by["gpu2"].todo] == ["ansible_user", "ansible_ssh_private_key_file"]


def test_the_written_spec_is_yaml_whose_todos_validate_names(tmp_path, run_cli):
    inv = tmp_path / "hosts.ini"
    inv.write_text(INI)
    out = tmp_path / "cluster.yaml"
    rc, _o, err = run_cli(["spec", "init", "--from-inventory", str(inv), "--targets", "storage",
                                "--gpu-nodes", "gpus", "--name", "train-a", "--out", str(out)])
    assert rc == 0 and "4 host(s)" in err, err
    doc = YAML(typ="safe").load(out.read_text())
    assert doc["name"] == "train-a" and [h["name"] for h in doc["hosts"]] == ["stor1", "gpu-a01", "gpu-a02", "gpu-a03"]
    assert doc["hosts"][1]["ssh"] == {"address": "10.0.1.21", "port": 2222, "user": "ops",
                                      "key": "/etc/keys/fleet_ed25519"}
    assert "lookup" not in out.read_text()  # the template is never copied
    rc, _o, err = run_cli(["spec", "validate", str(out)])
    assert rc == 3
    flagged = {int(m[1]) for m in re.finditer(r"cluster\.yaml:(\d+) ", err)}
    todo_lines = {i for i, line in enumerate(out.read_text().splitlines(), 1) if "TODO:" in line and not
                  line.lstrip().startswith("#") and "# TODO" not in line.split('"')[0]}
    assert len(todo_lines) == 7 and todo_lines <= flagged, (todo_lines, err)  # 4 fabrics, 1 address, nqn, namespace
    rc, _o, err = run_cli(["spec", "init", "--from-inventory", str(inv), "--targets", "storage",
                                "--gpu-nodes", "gpus", "--out", str(out)])
    assert rc == 2 and "--force" in err


@pytest.mark.parametrize("inventory, groups, message", [
    ("[a]\nh1\n[b]\nh1\n", ("a", "b"), "h1: in both a and b"),
    ("[a]\nh1\n", ("a", "gpus"), "--gpu-nodes gpus: no such group"),
    ("[a]\nh_1\n[b]\nh2\n", ("a", "b"), "inventory host 'h_1'"),
])
def test_what_cannot_be_a_spec_is_refused(tmp_path, inventory, groups, message):
    inv = tmp_path / "hosts.ini"
    inv.write_text(inventory)
    with pytest.raises(UsageError, match=message):
        read_inventory(inv, *groups)


def test_render_quotes_every_value():
    from nvmeofctl.spec.from_inventory import InventoryHost

    text = render_spec("c", [InventoryHost("t1", "target", "10.0.0.1")], Path("inv"), [])
    assert '  - name: "t1"' in text and 'ssh: {address: "10.0.0.1"}' in text


def test_inventory_gives_the_ssh_settings_of_plan_apply_and_health(tmp_path, real_spec):
    """`--inventory`: the spec's hosts found in the inventory connect as the inventory says (what
    health, plan and apply hand to SSH and to Ansible); the others keep the spec's settings."""
    import copy

    from nvmeofctl.health import runner
    from nvmeofctl.run.inventory import ssh_host_vars
    from nvmeofctl.spec.from_inventory import with_inventory

    spec = copy.deepcopy(real_spec)
    known = spec.host("gpu1").ssh.known_hosts
    inv = tmp_path / "hosts.ini"
    inv.write_text("[gpus]\ngpu1 ansible_host=10.9.9.21 ansible_port=2201 ansible_user=ops "
                   "ansible_ssh_private_key_file=keys/ops_ed25519\n")
    assert with_inventory(spec, inv) == ["gpu1"]
    target = runner.ssh_targets(spec, ["gpu1", "gpu2"])
    assert (target["gpu1"].address, target["gpu1"].port, target["gpu1"].user) == ("10.9.9.21", 2201, "ops")
    assert target["gpu1"].key_file == tmp_path / "keys" / "ops_ed25519"  # relative to the inventory
    assert target["gpu1"].known_hosts == known  # still the spec's pinned keys
    assert target["gpu2"].address == real_spec.host("gpu2").ssh.address
    hv = ssh_host_vars(spec.host("gpu1"))
    assert (hv["ansible_host"], hv["ansible_port"], hv["ansible_user"]) == ("10.9.9.21", 2201, "ops")
    inv.write_text("[gpus]\ngpu1 ansible_host=\"{{ lookup('pipe','id') }}\"\n")
    with pytest.raises(UsageError, match="host gpu1: ansible_host: a Jinja2 template"):
        with_inventory(copy.deepcopy(real_spec), inv)
