"""Valid specs load; derived values are concrete, stable and unique; the convenience API."""

from __future__ import annotations

import shutil
from pathlib import Path
from uuid import UUID

import pytest
from conftest import BASE, FIXTURES, REPO, SAMPLE_CTRL_KEY, SAMPLE_HOST_KEY, edit, make_key

from nvmeofctl.errors import SpecError
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.spec import (
    PROJECT_NAMESPACE,
    ClusterSpec,
    Export,
    dhchap_secret_problem,
    load_spec,
    parse_size,
    parse_spec,
)


def _example_with_dhchap(dest: Path) -> Path:
    """inventory/example.yaml with its commented DH-HMAC-CHAP block switched on."""
    text = (REPO / "inventory" / "example.yaml").read_text()
    for old, new in (("    # dhchap:", "    dhchap:"), ("    #   gpu1:", "      gpu1:"),
                     ("    #     secret_file", "        secret_file"),
                     ("    #     ctrl_secret_file", "        ctrl_secret_file")):
        assert old in text
        text = text.replace(old, new)
    dest.write_text(text)
    return dest


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """inventory/example.yaml with DH-HMAC-CHAP on and the secret files it names."""
    _example_with_dhchap(tmp_path / "example.yaml")
    shutil.copytree(FIXTURES / "good" / "secrets", tmp_path / "secrets")
    for key in (tmp_path / "secrets").iterdir():
        key.chmod(0o600)  # secret files must not be open to group/other
    return tmp_path / "example.yaml"


def test_example_spec_loads(example: Path) -> None:
    spec = load_spec(example)
    assert spec.source_path == example.resolve()
    assert [h.name for h in spec.targets] == ["stor1"]
    assert [h.name for h in spec.gpu_nodes] == ["gpu1", "gpu2"]
    assert spec.fabric.transport == "rdma" and spec.fabric.mtu == 9000 and spec.fabric.nr_io_queues == 8
    assert spec.host("gpu1").ssh.key == example.parent / "id_ed25519"
    assert spec.host("gpu1").ssh.known_hosts == example.parent / "known_hosts"
    gpu2 = spec.host("gpu2")
    assert gpu2.host_id == UUID("3b8e5c1a-4f2d-4e6b-9a7c-1d2e3f4a5b6c")
    assert gpu2.host_nqn == "nqn.2014-08.org.nvmexpress:uuid:3b8e5c1a-4f2d-4e6b-9a7c-1d2e3f4a5b6c"
    ckpt = spec.subsystems[1]
    assert ckpt.serial == "0c4b7e2f9a1d3e56"
    assert ckpt.namespaces[0].backing.size == 512 * 2**30
    auth = ckpt.dhchap["gpu1"]
    assert auth.secret.get_secret_value() == SAMPLE_HOST_KEY
    assert auth.ctrl_secret.get_secret_value() == SAMPLE_CTRL_KEY
    assert auth.secret_file == example.parent / "secrets" / "gpu1.key"


def test_example_as_shipped_is_valid() -> None:
    spec = load_spec(REPO / "inventory" / "example.yaml")
    assert [s.nqn.rsplit(":", 1)[1] for s in spec.subsystems] == ["train", "ckpt"]


def test_example_without_secret_files_names_them(tmp_path: Path) -> None:
    _example_with_dhchap(tmp_path / "example.yaml")
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "example.yaml")
    assert err.value.exit_code == ExitCode.INVALID_SPEC
    assert [i.split(": ", 1)[0].split(" ", 1)[1] for i in err.value.issues] == [
        "subsystems[1].dhchap.gpu1.secret_file",
        "subsystems[1].dhchap.gpu1.ctrl_secret_file",
    ]
    assert err.value.issues[0].endswith(f"secret file {tmp_path / 'secrets' / 'gpu1.key'} does not exist")


def test_lab_like_spec_loads() -> None:
    spec = load_spec(FIXTURES / "good" / "lab.yaml")
    assert spec.fabric.soft_roce and spec.fabric.iopolicy == "round-robin"
    assert spec.fabric.reconnect.ctrl_loss_tmo == 600 and spec.fabric.reconnect.keep_alive_tmo == 5
    assert spec.fabric.roce.tos == 106  # defaults filled
    assert [n.backing.size for n in spec.subsystems[0].namespaces] == [256 * 2**20, 2**30]
    assert spec.host("stor1").ssh.key == FIXTURES / "good" / "ssh" / "id_ed25519"
    assert spec.host("stor1").host_nqn is None  # targets get no generated host identity


def test_generated_ids_are_deterministic_and_unique(tmp_path: Path) -> None:
    a = parse_spec(BASE, source="cluster.yaml", base_dir=tmp_path)
    b = parse_spec(BASE, source="cluster.yaml", base_dir=tmp_path)
    for ha, hb in zip(a.gpu_nodes, b.gpu_nodes):
        assert ha.host_id == hb.host_id and ha.host_nqn == hb.host_nqn
        assert ha.host_nqn == f"nqn.2014-08.org.nvmexpress:uuid:{ha.host_id}"
    assert len({h.host_id for h in a.gpu_nodes}) == 2
    assert len({h.host_nqn for h in a.gpu_nodes}) == 2
    ns_a = [n for s in a.subsystems for n in s.namespaces]
    ns_b = [n for s in b.subsystems for n in s.namespaces]
    assert [(n.uuid, n.nguid) for n in ns_a] == [(n.uuid, n.nguid) for n in ns_b]
    ids = [n.uuid for n in ns_a] + [n.nguid for n in ns_a]
    assert len(set(ids)) == len(ids)
    assert [s.serial for s in a.subsystems] == [s.serial for s in b.subsystems]
    assert all(len(s.serial) == 16 and int(s.serial, 16) >= 0 for s in a.subsystems)
    assert a.subsystems[0].serial != a.subsystems[1].serial
    # the generated host ID is a documented function of (cluster, host): pinned forever
    from uuid import uuid5

    assert a.host("gpu1").host_id == uuid5(PROJECT_NAMESPACE, "host-id\0t\0gpu1")
    # another cluster name gives other IDs
    c = parse_spec(BASE.replace("name: t\n", "name: u\n", 1), base_dir=tmp_path)
    assert c.host("gpu1").host_id != a.host("gpu1").host_id
    assert c.subsystems[0].namespaces[0].uuid != a.subsystems[0].namespaces[0].uuid


def test_host_id_taken_from_uuid_host_nqn(tmp_path: Path) -> None:
    u = "11111111-2222-4333-8444-555555555555"
    spec = parse_spec(
        edit(("    ssh: {address: 127.0.0.1, port: 2203}\n",
              f"    ssh: {{address: 127.0.0.1, port: 2203}}\n    host_nqn: nqn.2014-08.org.nvmexpress:uuid:{u}\n")),
        base_dir=tmp_path,
    )
    assert spec.host("gpu2").host_id == UUID(u)


def test_exports_share_one_key_per_target(tmp_path: Path) -> None:
    spec = parse_spec(BASE, base_dir=tmp_path)
    exports = spec.exports_for("gpu1")
    assert [e.nqn for e in exports] == ["nqn.2024-01.io.nvmeofctl.t:a", "nqn.2024-01.io.nvmeofctl.t:b"]
    for e in exports:
        assert isinstance(e, Export)
        assert (e.target, e.traddr, e.trsvcid, e.transport) == ("stor1", "10.9.0.1", 4420, "rdma")
        assert e.host_nqn == spec.host("gpu1").host_nqn and e.host_id == spec.host("gpu1").host_id
        # subsystem b has no dhchap entry, but nvmet's hosts/<hostnqn>/dhchap_key is per target
        assert e.dhchap_secret.get_secret_value() == SAMPLE_HOST_KEY
        assert e.dhchap_ctrl_secret is None
    assert [n.name for n in exports[1].namespaces] == ["b1"]
    gpu2 = spec.exports_for("gpu2")
    assert [e.nqn for e in gpu2] == ["nqn.2024-01.io.nvmeofctl.t:a"] and gpu2[0].dhchap_secret is None
    assert spec.dhchap_keys("gpu1", "stor1")[0].get_secret_value() == SAMPLE_HOST_KEY
    assert spec.subsystems_on("stor1") == spec.subsystems and spec.subsystems_on("gpu1") == []
    with pytest.raises(KeyError):
        spec.host("nope")


def test_same_key_on_two_subsystems_is_fine(tmp_path: Path) -> None:
    text = edit(("    allowed_gpu_nodes: [gpu1]\n",
                 f'    allowed_gpu_nodes: [gpu1]\n    dhchap:\n      gpu1: {{secret: "{SAMPLE_HOST_KEY}"}}\n'))
    assert parse_spec(text, base_dir=tmp_path).exports_for("gpu1")[1].dhchap_secret is not None


@pytest.mark.parametrize(
    ("text", "size"),
    [("256MiB", 256 << 20), ("1GiB", 1 << 30), ("512M", 512 << 20), ("10G", 10 << 30),
     ("500GB", 500 * 10**9), ("4096", 4096), ("8k", 8192), (1048576, 1 << 20)],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (make_key("00", 32), None),
        (make_key("00", 64), None),
        (make_key("01", 32), None),
        (make_key("02", 48), None),
        (make_key("03", 64), None),
        (SAMPLE_HOST_KEY, None),
        (make_key("02", 32), "hash id 02 needs a 48-byte key, got 32 bytes"),
        (make_key("03", 48), "hash id 03 needs a 64-byte key, got 48 bytes"),
        (make_key("04", 32), "hash id 04 is not one of 00, 01, 02, 03"),
        (make_key("01", 31), "decoded key is 31 bytes, expected 32, 48 or 64 plus a 4-byte CRC-32"),
        (make_key("01", 32)[:-1], "wrong format"),
        ("DHHC-1:01:!!!!:", "wrong format"),
        ("DHHC-1:01:AAAA=AAA:", "key part is not valid base64"),
        (SAMPLE_HOST_KEY[:12] + ("A" if SAMPLE_HOST_KEY[12] != "A" else "B") + SAMPLE_HOST_KEY[13:],
         "CRC-32 does not match the key"),
    ],
)
def test_dhchap_secret_problem(secret: str, problem: str | None) -> None:
    assert dhchap_secret_problem(secret) == problem


def test_schema_is_json_schema_of_cluster_spec() -> None:
    schema = ClusterSpec.model_json_schema()
    assert set(schema["required"]) == {"name", "hosts"}
    assert schema["additionalProperties"] is False
    assert {"HostSpec", "SubsystemSpec", "DhchapSpec", "NamespaceSpec", "BackingSpec"} <= set(schema["$defs"])
