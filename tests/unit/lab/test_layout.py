"""The lab's addressing and QEMU command lines (pure)."""

from pathlib import Path

import pytest

from nvmeofctl.lab.layout import LabLayout, VmFiles, make_layout, qemu_argv


def test_default_layout_names_roles_and_addresses():
    layout = make_layout("lab", 1, 2, [2201, 2202, 2203])
    assert [(v.name, v.role, v.fabric_ip, v.ssh_port) for v in layout.vms] == [
        ("tgt1", "target", "192.168.100.11", 2201),
        ("gpu1", "gpu_node", "192.168.100.21", 2202),
        ("gpu2", "gpu_node", "192.168.100.22", 2203),
    ]
    assert len({v.mgmt_mac for v in layout.vms}) == 3
    assert len({v.fabric_mac for v in layout.vms}) == 3
    assert LabLayout.from_dict(layout.to_dict()) == layout


@pytest.mark.parametrize("t,g", [(0, 2), (10, 1), (1, 10)])
def test_layout_bounds(t, g):
    with pytest.raises(ValueError):
        make_layout("lab", t, g, list(range(2200, 2200 + max(t + g, 0))))


def _argv(accel="tcg", loadvm=None):
    layout = make_layout("lab", 1, 1, [2201, 2202])
    vm = layout.vms[1]
    return qemu_argv(
        vm, VmFiles(Path("/lab/gpu1")), kernel=Path("/img/vmlinuz"), initrd=Path("/img/initrd.img"),
        accel=accel, fabric_sock=Path("/lab/fabric.vde"), authorized_keys=Path("/lab/id.pub"), loadvm=loadvm,
    )


def test_qemu_argv_isolates_networks():
    argv = _argv()
    joined = " ".join(argv)
    # management: user networking restricted to the VM, SSH forwarded from loopback only
    assert "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:2202-:22" in joined
    # fabric: the lab's private vde switch, never a host bridge, tap or multicast socket
    assert "vde,id=fabric,sock=/lab/fabric.vde" in joined
    assert "mcast" not in joined and "tap" not in joined and "bridge" not in joined
    assert "name=opt/nvmeofctl/fabric_cidr,string=192.168.100.21/24" in joined
    assert "name=opt/nvmeofctl/hostname,string=gpu1" in joined


def test_qemu_argv_accel_and_restore():
    assert "q35,accel=tcg" in _argv("tcg") and "max" in _argv("tcg")
    kvm = _argv("kvm")
    assert "q35,accel=kvm" in kvm and kvm[kvm.index("-cpu") + 1] == "host"
    assert "-loadvm" not in _argv()
    restored = _argv(loadvm="booted")
    assert restored[restored.index("-loadvm") + 1] == "booted"
