"""The same provisioning flow with `fabric.transport: tcp` (the fallback), on pristine VMs."""

from __future__ import annotations

import pytest

from nvmeofctl.spec import load_spec

from .conftest import LAB, nvmeofctl, nvmeofctl_json
from .test_02_provision import by_uuid, controllers, nqn_of, ns_uuid, read_sha, write_random

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def tcp_spec(lab):
    proc = nvmeofctl("lab", "up", "--name", LAB, "--fresh", timeout=900)
    assert proc.returncode == 0, proc.stderr
    text = lab.spec.read_text().replace("  transport: rdma\n", "  transport: tcp\n")
    assert "transport: tcp" in text
    path = lab.dir / "cluster-tcp.yaml"
    path.write_text(text)
    return path, load_spec(path)


def test_tcp_apply_exports_to_the_right_nodes(lab, tcp_spec):
    path, spec = tcp_spec
    code, data, err = nvmeofctl_json("apply", "-f", str(path))
    assert code == 0, err
    tgt = lab.vm("tgt1")
    assert tgt.run("cat /sys/kernel/config/nvmet/ports/1/addr_trtype").strip() == "tcp"
    assert tgt.run("rdma link show | wc -l").strip() == "0"  # no RDMA set up for a TCP fabric
    gpu1, gpu2 = lab.vm("gpu1"), lab.vm("gpu2")
    c1 = controllers(gpu1)
    assert sorted(c["nqn"] for c in c1.values()) == sorted([nqn_of(spec, "train"), nqn_of(spec, "ckpt")])
    assert all(c["transport"] == "tcp" and c["state"] == "live" for c in c1.values()), c1
    assert by_uuid(gpu1, ns_uuid(spec, "train")) and by_uuid(gpu1, ns_uuid(spec, "ckpt"))
    c2 = controllers(gpu2)
    assert [(c["nqn"], c["transport"]) for c in c2.values()] == [(nqn_of(spec, "train"), "tcp")]
    rc, out, err = gpu2.rc(
        f"timeout 60 nvme connect -t tcp -a 192.168.100.11 -s 4420 -n {nqn_of(spec, 'ckpt')}", timeout=90
    )
    assert rc != 0 and not by_uuid(gpu2, ns_uuid(spec, "ckpt")), out + err


def test_tcp_data_round_trip(lab, tcp_spec):
    path, spec = tcp_spec
    gpu1, tgt = lab.vm("gpu1"), lab.vm("tgt1")
    dev = by_uuid(gpu1, ns_uuid(spec, "ckpt"))
    written = write_random(gpu1, dev, 2)
    ctrl = next(n for n, c in controllers(gpu1).items() if c["nqn"] == nqn_of(spec, "ckpt"))
    gpu1.run(f"nvme disconnect -d {ctrl}")
    code, data, err = nvmeofctl_json("apply", "-f", str(path))
    assert code == 0, err
    dev = by_uuid(gpu1, ns_uuid(spec, "ckpt"))
    assert read_sha(gpu1, dev, 2) == written
    assert read_sha(tgt, "/var/lib/nvmeofctl/ckpt.img", 2) == written


def test_tcp_second_apply_changes_nothing(lab, tcp_spec):
    path, _ = tcp_spec
    code, data, err = nvmeofctl_json("apply", "-f", str(path))
    assert code == 0, err
    assert all(s["changed"] == 0 and s["failures"] == 0 for s in data["stats"].values()), data["stats"]
    assert all(h["status"] == "ok" and not h["changes"] for h in data["hosts"]), data["hosts"]
