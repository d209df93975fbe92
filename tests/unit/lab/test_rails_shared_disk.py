"""`lab up --rails 2` and `--shared-disk`: QEMU command lines, the layout record, a lab keeping
the shape it was created with."""

import json
from pathlib import Path

import pytest

from nvmeofctl.errors import LabError
from nvmeofctl.lab.layout import (
    FABRIC_IFS, SHARED_DISK_GUEST, LabLayout, VmFiles, make_layout, qemu_argv,
)

# The command line of tgt1 in a 1-rail lab without the shared disk, exactly as the versions
# before rails and the shared disk wrote it (so the VM states they saved still load).
ONE_RAIL_TGT1 = [
    "qemu-system-x86_64", "-name", "nvmeofctl-tgt1", "-machine", "q35,accel=tcg", "-cpu", "max",
    "-smp", "1", "-m", "768", "-nodefaults", "-display", "none",
    "-kernel", "/img/vmlinuz", "-initrd", "/img/initrd.img",
    "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet systemd.show_status=0",
    "-drive", "file=/lab/tgt1/disk.qcow2,if=virtio,format=qcow2,discard=unmap",
    "-netdev", "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:2201-:22",
    "-device", "virtio-net-pci,netdev=mgmt,mac=52:54:00:0a:00:01",
    "-netdev", "vde,id=fabric,sock=/lab/fabric.vde",
    "-device", "virtio-net-pci,netdev=fabric,mac=52:54:00:fa:00:01",
    "-fw_cfg", "name=opt/nvmeofctl/hostname,string=tgt1",
    "-fw_cfg", "name=opt/nvmeofctl/fabric_cidr,string=192.168.100.11/24",
    "-fw_cfg", "name=opt/nvmeofctl/fabric_mtu,string=1500",
    "-fw_cfg", "name=opt/nvmeofctl/authorized_keys,file=/lab/id.pub",
    "-fw_cfg", "name=opt/nvmeofctl/ssh_host_ed25519_key,file=/lab/tgt1/ssh_host_ed25519_key",
    "-fw_cfg", "name=opt/nvmeofctl/ssh_host_ed25519_key.pub,file=/lab/tgt1/ssh_host_ed25519_key.pub",
    "-serial", "file:/lab/tgt1/console.log",
    "-monitor", "unix:/lab/tgt1/monitor.sock,server=on,wait=off",
    "-pidfile", "/lab/tgt1/qemu.pid", "-daemonize", "-loadvm", "saved",
]


def _argv(layout, name="tgt1", loadvm="saved", **extra):
    vm = layout.vm(name)
    return qemu_argv(
        vm, VmFiles(Path("/lab") / name), kernel=Path("/img/vmlinuz"), initrd=Path("/img/initrd.img"),
        accel="tcg", fabric_sock=Path("/lab/fabric.vde"), authorized_keys=Path("/lab/id.pub"),
        loadvm=loadvm, **extra,
    )


def _pairs(argv):
    return list(zip(argv[::1], argv[1::1]))


def test_one_rail_argv_is_byte_identical_to_earlier_versions():
    layout = make_layout("lab", 1, 1, [2201, 2202])
    assert _argv(layout) == ONE_RAIL_TGT1
    assert _argv(layout, loadvm=None) == ONE_RAIL_TGT1[:-2]


def test_two_rails_add_eth2_on_a_second_switch():
    layout = make_layout("lab", 2, 1, [2201, 2202, 2203], rails=2)
    assert [(v.name, v.fabric_ips) for v in layout.vms] == [
        ("tgt1", ("192.168.100.11", "192.168.101.11")),
        ("tgt2", ("192.168.100.12", "192.168.101.12")),
        ("gpu1", ("192.168.100.21", "192.168.101.21")),
    ]
    macs = [m for v in layout.vms for m in (v.mgmt_mac, v.fabric_mac, v.fabric2_mac)]
    assert len(set(macs)) == len(macs) and layout.vms[0].fabric2_mac == "52:54:00:fb:00:01"
    argv = _argv(layout, "gpu1", fabric2_sock=Path("/lab/fabric2.vde"))
    # the rail-2 NIC comes right after the rail-1 NIC: the guest names NICs in PCI order (eth2)
    fabric = argv.index("virtio-net-pci,netdev=fabric,mac=52:54:00:fa:00:03")
    assert argv[fabric + 1:fabric + 5] == [
        "-netdev", "vde,id=fabric2,sock=/lab/fabric2.vde",
        "-device", "virtio-net-pci,netdev=fabric2,mac=52:54:00:fb:00:03",
    ]
    assert ("-fw_cfg", "name=opt/nvmeofctl/fabric2_cidr,string=192.168.101.21/24") in _pairs(argv)
    # everything else is the 1-rail command line
    one = make_layout("lab", 2, 1, [2201, 2202, 2203])
    rest = [a for a in argv if "fabric2" not in a]
    assert [a for a in rest if a not in ("-netdev", "-device", "-fw_cfg")] == \
        [a for a in _argv(one, "gpu1") if a not in ("-netdev", "-device", "-fw_cfg")]
    assert "-S" not in argv and argv[-2:] == ["-loadvm", "saved"]
    assert FABRIC_IFS == ("eth1", "eth2")


def test_rail_two_needs_an_address():
    with pytest.raises(ValueError):
        _argv(make_layout("lab", 1, 0, [2201]), fabric2_sock=Path("/lab/fabric2.vde"))
    with pytest.raises(ValueError):
        make_layout("lab", 1, 0, [2201], rails=3)


def test_shared_disk_argv_pins_both_disks_and_restores_over_qmp():
    layout = make_layout("lab", 2, 1, [2201, 2202, 2203], shared_disk=True)
    argv = _argv(layout, shared_disk=Path("/lab/shared.raw"))
    pairs = _pairs(argv)
    assert ("-drive", "file=/lab/tgt1/disk.qcow2,if=none,id=vd0,format=qcow2,discard=unmap,node-name=root0") in pairs
    assert ("-device", "virtio-blk-pci,drive=vd0,addr=0x8") in pairs
    assert ("-drive", "file=/lab/shared.raw,if=none,id=sh0,format=raw,cache=none,file.locking=off") in pairs
    assert ("-device", "virtio-blk-pci,drive=sh0,share-rw=on,serial=SHARED0,addr=0x9") in pairs
    assert ("-qmp", "unix:/lab/tgt1/qmp.sock,server=on,wait=off") in pairs
    # -loadvm would snapshot the raw disk too and refuse: start paused, load over QMP
    assert "-loadvm" not in argv and argv[-1] == "-S"
    assert "-S" not in _argv(layout, loadvm=None, shared_disk=Path("/lab/shared.raw"))
    assert SHARED_DISK_GUEST == "/dev/vdb"


def test_shared_disk_goes_to_targets_only(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path))
    from nvmeofctl.lab.image import Image
    from nvmeofctl.lab.manager import LabManager

    mgr = LabManager("sd")
    layout = make_layout("sd", 2, 1, [2201, 2202, 2203], rails=2, shared_disk=True)
    state = {"accel": "tcg", "layout": layout.to_dict()}
    image = Image(tmp_path / "img")
    lab_dir = tmp_path / "labs" / "sd"
    for vm in layout.vms:
        argv = " ".join(mgr._argv(vm, layout, state, image, "saved"))
        assert (f"file={lab_dir}/shared.raw" in argv) == (vm.role == "target"), vm.name
        assert ("-qmp" in argv) == (vm.role == "target")
        assert ("-loadvm saved" in argv) == (vm.role != "target")
        assert f"vde,id=fabric2,sock={lab_dir}/fabric2.vde" in argv
        assert f"vde,id=fabric,sock={lab_dir}/fabric.vde" in argv
    assert [vm.name for vm in layout.vms if layout.has_shared_disk(vm)] == ["tgt1", "tgt2"]


def test_layout_round_trip_records_rails_and_shared_disk():
    layout = make_layout("sd", 2, 1, [2201, 2202, 2203], rails=2, shared_disk=True)
    data = json.loads(json.dumps(layout.to_dict()))
    assert data["rails"] == 2 and data["shared_disk"] is True
    back = LabLayout.from_dict(data)
    assert back == layout and back.vms[0].fabric_ips == ("192.168.100.11", "192.168.101.11")


def test_layout_of_a_lab_created_before_rails_reads_as_one_rail():
    old = {"name": "lab", "vms": [{"name": "tgt1", "role": "target", "index": 0, "ssh_port": 2201,
                                   "fabric_ip": "192.168.100.11", "memory_mb": 768}]}
    layout = LabLayout.from_dict(old)
    assert (layout.rails, layout.shared_disk) == (1, False)
    assert layout.vms[0].fabric2_ip is None and layout.vms[0].fabric_ips == ("192.168.100.11",)


# ----------------------------------------------------------------------- an existing lab's shape
@pytest.fixture
def existing_lab(tmp_path, monkeypatch):
    """A created (stopped) 2-target, 0-GPU, 1-rail lab without a shared disk, named 'sd'."""
    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path))
    from nvmeofctl.lab.manager import Lab

    lab = Lab("sd")
    lab.dir.mkdir(parents=True)
    layout = make_layout("sd", 2, 0, [2201, 2202])
    lab.save_state({"name": "sd", "image": str(tmp_path / "img"), "kernel_release": "6.12",
                    "accel": "tcg", "layout": layout.to_dict(), "created": 0})
    return lab


@pytest.mark.parametrize("ask", [{"rails": 2}, {"shared_disk": True}, {"targets": 1}, {"gpu_nodes": 2}])
def test_another_shape_for_an_existing_lab_is_refused_before_any_work(existing_lab, monkeypatch, ask):
    from nvmeofctl.lab import image as image_mod
    from nvmeofctl.lab.manager import LabManager

    monkeypatch.setattr(image_mod, "ensure_image", lambda *a: pytest.fail("must refuse before the image"))
    with pytest.raises(LabError) as exc:
        LabManager("sd").up(**ask)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == ("lab 'sd' exists with 2 target(s), 0 GPU node(s), 1 rail(s) and no shared disk: "
                   "`nvmeofctl lab destroy --name sd --yes` it first, or choose another --name")


def test_the_same_shape_or_no_flags_reuse_the_lab(existing_lab):
    from nvmeofctl.lab.manager import check_shape

    layout = existing_lab.layout()
    check_shape("sd", layout, None, None, None, None)
    check_shape("sd", layout, 2, 0, 1, False)


def test_cli_mismatch_is_one_line_exit_4(existing_lab, run_cli):
    rc, out, err = run_cli(["lab", "up", "--name", "sd", "--rails", "2", "--shared-disk"])
    assert rc == 4 and out == ""
    assert err.strip().splitlines() == [
        "error: lab 'sd' exists with 2 target(s), 0 GPU node(s), 1 rail(s) and no shared disk: "
        "`nvmeofctl lab destroy --name sd --yes` it first, or choose another --name"
    ]


def test_cli_refuses_three_rails(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path))
    rc, _, err = run_cli(["lab", "up", "--name", "sd", "--rails", "3"])
    assert rc == 2 and "--rails" in err


def test_status_json_shows_rails_and_shared_disk(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path))
    from nvmeofctl.lab.manager import Lab

    lab = Lab("sd")
    lab.dir.mkdir(parents=True)
    layout = make_layout("sd", 2, 1, [2201, 2202, 2203], rails=2, shared_disk=True)
    lab.save_state({"name": "sd", "image": "x", "kernel_release": "6.12", "accel": "tcg",
                    "layout": layout.to_dict(), "created": 0})
    rc, out, _ = run_cli(["lab", "status", "--name", "sd", "--output", "json"])
    assert rc == 6  # stopped VMs are not ready
    data = json.loads(out)
    assert data["rails"] == 2
    assert data["fabric"] == [
        {"rail": 1, "interface": "eth1", "network": "192.168.100.0/24"},
        {"rail": 2, "interface": "eth2", "network": "192.168.101.0/24"},
    ]
    assert data["shared_disk"] == {
        "path": str(lab.dir / "shared.raw"), "guest_device": "/dev/vdb", "serial": "SHARED0",
        "size_mib": 256, "vms": ["tgt1", "tgt2"],
    }
    vms = {v["name"]: v for v in data["vms"]}
    assert vms["gpu1"]["fabric_ips"] == ["192.168.100.21", "192.168.101.21"]
    assert (vms["tgt1"]["shared_disk"], vms["gpu1"]["shared_disk"]) == (True, False)


def test_manager_gives_a_one_rail_lab_the_old_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path))
    from nvmeofctl.lab.image import Image
    from nvmeofctl.lab.manager import LabManager

    mgr = LabManager("lab")
    layout = make_layout("lab", 1, 1, [2201, 2202])
    image = Image(Path("/img"))
    argv = mgr._argv(layout.vms[0], layout, {"accel": "tcg", "layout": layout.to_dict()}, image, "saved")
    lab_dir = str(tmp_path / "labs" / "lab")
    assert [a.replace(lab_dir, "/lab").replace("id_ed25519.pub", "id.pub") for a in argv] == ONE_RAIL_TGT1
