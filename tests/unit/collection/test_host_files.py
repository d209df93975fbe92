"""The boot files rendered from the collection's templates/ (plugin_utils/host_files.py): what each
says, the RDMA restore script run for real by /bin/sh, and the action plugin's choice of values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "playbooks" / "collections"))

from ansible_collections.nvmeofctl.fabric.plugins.module_utils import nvme_host, nvmet, rdma  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.plugin_utils import host_files, host_files_calls  # noqa: E402


def render(wanted):
    return host_files.render_all(wanted)


def test_nvmet_unit_runs_the_boot_program_after_the_rdma_link():
    unit = render(nvmet.template_vars("/usr/bin/python3", "/etc/nvmeofctl", "/usr/local/lib/nvmeofctl"))["nvmet_unit"]
    lines = unit.splitlines()
    assert lines[0].startswith("# Written by nvmeofctl (nvmeofctl.fabric.nvmet_target)")
    for line in ("[Unit]", "Description=nvmeofctl: restore the NVMe-oF target (nvmet) configuration",
                 "Wants=network-online.target",
                 "After=nvmeofctl-rdma.service network-online.target local-fs.target sys-kernel-config.mount",
                 "Type=oneshot", "RemainAfterExit=yes", "TimeoutStartSec=300", "WantedBy=multi-user.target",
                 "ExecStart=/usr/bin/python3 /usr/local/lib/nvmeofctl/nvmeofctl-boot.pyz nvmet --config "
                 "/etc/nvmeofctl/nvmet.json"):
        assert line in lines
    assert "Before=" not in unit and unit.endswith("WantedBy=multi-user.target\n")


def test_connect_unit_orders_after_network_and_rdma():
    u = render(nvme_host.template_vars("/usr/bin/python3", "/etc/nvmeofctl", "/usr/local/lib/nvmeofctl"))["connect_unit"]
    for line in ("After=network-online.target nvmeofctl-rdma.service", "Wants=network-online.target",
                 "Type=oneshot", "RemainAfterExit=yes", "WantedBy=multi-user.target",
                 "ExecStart=/usr/bin/python3 /usr/local/lib/nvmeofctl/nvmeofctl-boot.pyz nvme-host connect-all "
                 "/etc/nvmeofctl/connections.json --retry-for 600", "TimeoutStartSec=900"):
        assert line in u.splitlines()


def test_rdma_unit_orders_before_nvmet_and_connect_and_escapes_the_interface():
    unit = render(rdma.template_vars(rdma.normalize({"interface": "enp1s0-fab"})))["rdma_unit"]
    assert "Before=nvmeofctl-nvmet.service nvmeofctl-connect.service" in unit
    assert "After=network-online.target sys-subsystem-net-devices-enp1s0\\x2dfab.device sys-kernel-config.mount" in unit
    assert "ExecStart=/bin/sh /usr/local/lib/nvmeofctl/rdma-restore.sh" in unit
    assert host_files.systemd_escape("eth1") == "eth1" and host_files.systemd_escape(".a-b") == "\\x2ea\\x2db"


def test_an_unset_value_is_an_error_never_an_empty_line():
    with pytest.raises(Exception, match="program_path"):
        host_files.render("nvmet_unit", {"python": "/usr/bin/python3", "config_path": "/etc/x.json"})


def _fake_bin(tmp_path):
    """ip, modprobe and rdma that log their argv (one line each)."""
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    bindir.mkdir()
    for name in ("ip", "modprobe", "rdma"):
        (bindir / name).write_text('#!/bin/sh\necho "%s $*" >> "%s"\n' % (name, log))
        (bindir / name).chmod(0o755)
    return bindir, log


def _run_script(tmp_path, opts, device_text):
    """Render the restore script for ``opts`` (configfs under tmp) and run it with /bin/sh."""
    lib, cfg = tmp_path / "lib", tmp_path / "config"
    lib.mkdir()
    desired = rdma.normalize(opts)
    script = render(rdma.template_vars(desired, str(lib), str(cfg)))["rdma_script"]
    if device_text is not None:
        (lib / rdma.DEVICE_FILE).write_text(device_text)
    bindir, log = _fake_bin(tmp_path)
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]))
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls, cfg


def test_restore_script_recreates_the_recorded_soft_roce_device(tmp_path):
    """The script run for real (interface lo, which exists here; no MTU asked): it loads the
    modules, creates the device the module recorded and writes the rdma_cm defaults."""
    port = tmp_path / "config" / "rdma_cm" / "rxe_lo" / "ports" / "1"
    port.mkdir(parents=True)  # configfs makes ports/1 with the device folder; a plain tree needs it
    proc, calls, _cfg = _run_script(tmp_path, {"interface": "lo", "soft_roce": True, "roce_tos": 106},
                                    "rxe_lo\n")
    assert proc.returncode == 0, proc.stderr
    assert calls == ["modprobe -a rdma_rxe rdma_cm", "rdma link add rxe_lo type rxe netdev lo"]  # no MTU: no ip
    assert (port / "default_roce_mode").read_text() == "RoCE v2"
    assert (port / "default_roce_tos").read_text() == "106"


def test_restore_script_sets_a_different_mtu(tmp_path):
    proc, calls, _cfg = _run_script(tmp_path, {"interface": "lo", "mtu": 1280, "soft_roce": True}, "rxe_lo\n")
    assert "ip link set dev lo mtu 1280" in calls
    assert proc.returncode == 0, proc.stderr  # rdma_cm configfs absent here: logged, not an error
    assert "rdma_cm configfs not exposed" in proc.stderr


@pytest.mark.parametrize("device_text", [None, "", "rxe0; touch /tmp/pwned\n", "-rf\n"])
def test_restore_script_refuses_a_missing_or_hostile_device_file(tmp_path, device_text):
    proc, calls, _cfg = _run_script(tmp_path, {"interface": "lo", "soft_roce": True}, device_text)
    assert proc.returncode == 1 and "no valid RDMA device name in" in proc.stderr
    assert calls == []


def test_hardware_script_waits_for_the_nic_and_never_creates_one(tmp_path):
    desired = rdma.normalize({"interface": "ens1f0", "rdma_device": "mlx5_0"})
    script = render(rdma.template_vars(desired))["rdma_script"]
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert "rdma link add" not in script and "rdma_rxe" not in script
    assert 'RDMA device $DEV not found' in script


def test_hostile_values_stay_quoted(tmp_path):
    """A value with shell syntax (here through configfs_root, a module option) is one word."""
    desired = rdma.normalize({"interface": "lo", "soft_roce": True})
    script = render(rdma.template_vars(desired, str(tmp_path / "lib"), "/x'; touch /tmp/pwned; '"))["rdma_script"]
    assert "CM='/x'\"'\"'; touch /tmp/pwned; '\"'\"'/rdma_cm'" in script


def test_action_plugin_values_follow_the_module_arguments():
    """What the action plugin renders for each module: only the files that call writes, at the
    paths its arguments name."""
    args = {"persist": True, "state_dir": "/srv/state", "lib_dir": "/srv/lib",
            "rdma": {"interface": "eth1", "soft_roce": True, "lib_dir": "/srv/rlib"}}
    w = host_files_calls.wanted("nvmet_target", args, "/opt/py/bin/python3")
    assert sorted(w) == ["nvmet_unit", "rdma_script", "rdma_unit"]
    assert w["nvmet_unit"] == {"python": "/opt/py/bin/python3", "program_path": "/srv/lib/nvmeofctl-boot.pyz",
                               "config_path": "/srv/state/nvmet.json"}
    assert w["rdma_script"]["device_file"] == "/srv/rlib/rdma-device"
    assert sorted(host_files_calls.wanted("nvme_host", {"persist": "no"}, "/usr/bin/python3")) == []
    assert sorted(host_files_calls.wanted("nvme_host", {}, "/usr/bin/python3")) == ["connect_unit"]
    assert sorted(host_files_calls.wanted("rdma_link", {"interface": "eth1", "persist": False}, "/p")) == []
    assert host_files_calls.host_files("rdma_link", {"interface": "bad name!"}, "/p") == {}  # the module says why


def test_rail_2_keys_render_from_the_rdma_templates_with_its_own_names():
    """An RDMA rail 2..N: keys rdma_script@<interface>, rdma_unit@<interface>, the same templates,
    its own script, device file and unit; rail 1 renders exactly as before."""
    d1 = rdma.normalize({"interface": "eth1", "soft_roce": True})
    d2 = rdma.normalize({"interface": "eth2", "soft_roce": True, "rail": 2})
    one, two = render(rdma.template_vars(d1)), render(rdma.template_vars(d2))
    assert sorted(one) == ["rdma_script", "rdma_unit"] and sorted(two) == ["rdma_script@eth2", "rdma_unit@eth2"]
    assert "ExecStart=/bin/sh /usr/local/lib/nvmeofctl/rdma-restore.sh" in one["rdma_unit"].splitlines()
    unit = two["rdma_unit@eth2"].splitlines()
    for line in ("Description=nvmeofctl: restore the RDMA fabric link on eth2 (MTU, Soft-RoCE, rdma_cm)",
                 "ExecStart=/bin/sh /usr/local/lib/nvmeofctl/rdma-restore-eth2.sh",
                 "After=network-online.target sys-subsystem-net-devices-eth2.device sys-kernel-config.mount",
                 "Before=nvmeofctl-nvmet.service nvmeofctl-connect.service"):
        assert line in unit
    script = two["rdma_script@eth2"].splitlines()
    assert "IF=eth2" in script and "DEVFILE=/usr/local/lib/nvmeofctl/rdma-device-eth2" in script
    assert host_files.render("rdma_unit@eth2", rdma.template_vars(d2)["rdma_unit@eth2"]) == two["rdma_unit@eth2"]
    with pytest.raises(KeyError):
        host_files.render("nope@eth2", {})


def test_action_plugin_values_for_rdma_rails():
    """nvme_host (and nvmet_target) with rdma_rails: rail 1's keys as before, then each rail's
    own keys (element i is rail i + 2, whatever it says), only those with persist on."""
    args = {"persist": False,
            "rdma": {"interface": "eth1", "soft_roce": True},
            "rdma_rails": [{"interface": "eth2", "soft_roce": True, "rail": 9, "lib_dir": "/srv/rlib"},
                           {"interface": "eth3", "mtu": 9000},
                           {"interface": "eth4", "persist": False}]}
    for name in ("nvme_host", "nvmet_target"):
        w = host_files_calls.wanted(name, args, "/usr/bin/python3")
        assert sorted(w) == ["rdma_script", "rdma_script@eth2", "rdma_script@eth3", "rdma_unit",
                             "rdma_unit@eth2", "rdma_unit@eth3"], name
    w = host_files_calls.wanted("nvme_host", args, "/usr/bin/python3")
    assert w["rdma_script"]["device_file"] == "/usr/local/lib/nvmeofctl/rdma-device"
    assert w["rdma_script@eth2"]["device_file"] == "/srv/rlib/rdma-device-eth2"
    assert w["rdma_unit@eth2"] == {"interface": "eth2", "script_path": "/srv/rlib/rdma-restore-eth2.sh"}
    assert w["rdma_script@eth3"]["mtu"] == 9000
    assert w["rdma_unit@eth3"]["script_path"] == "/usr/local/lib/nvmeofctl/rdma-restore-eth3.sh"
    texts = host_files_calls.host_files("nvme_host", args, "/usr/bin/python3")
    assert sorted(texts) == sorted(w) and "IF=eth3" in texts["rdma_script@eth3"]
    only_rails = host_files_calls.wanted("nvme_host", {"persist": False, "rdma_rails": [{"interface": "eth2"}]}, "/p")
    assert sorted(only_rails) == ["rdma_script@eth2", "rdma_unit@eth2"]
    # rdma_link is one link: its own `rail` names its files, there is no rdma_rails
    assert sorted(host_files_calls.wanted("rdma_link", {"interface": "eth2", "rail": 2}, "/p")) == [
        "rdma_script@eth2", "rdma_unit@eth2"]
