"""Every malformed spec gives exactly the expected `FILE:LINE PATH: message` lines (snapshots)."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid5

import pytest
from conftest import BASE, FIXTURES, SAMPLE_CTRL_KEY, SAMPLE_HOST_KEY, edit, make_key

from nvmeofctl.errors import SpecError
from nvmeofctl.spec import PROJECT_NAMESPACE, ClusterSpec, SpecValidationError, load_spec, parse_spec

K = SAMPLE_HOST_KEY
BAD_CRC = K[:12] + ("A" if K[12] != "A" else "B") + K[13:]
DH = "(expected DHHC-1:<00-03>:<base64 of 32/48/64-byte key + CRC-32>:)"
NQN = "(expected nqn.YYYY-MM.reverse.domain:name or nqn.2014-08.org.nvmexpress:uuid:<uuid>)"
GPU1_ID = uuid5(PROJECT_NAMESPACE, "host-id\0t\0gpu1")
SUB_B = "  - nqn: nqn.2024-01.io.nvmeofctl.t:b\n"
NS_A1 = "        backing: {device: /dev/nvme1n1}\n"
NS_B1 = "size: 256MiB}\n"
GPU2_SSH = "    ssh: {address: 127.0.0.1, port: 2203}\n"
RDMA = "transport rdma needs an RDMA device: set rdma_device, or fabric.soft_roce: true, or fabric.transport: tcp"

CASES: list[tuple[str, str, list[str]]] = [
    ("typo-key", edit(("  - name: stor1\n", "  - nmae: stor1\n")), [
        "cluster.yaml:6 hosts[0].name: field required",
        "cluster.yaml:6 hosts[0].nmae: unknown field 'nmae' (did you mean 'name'? allowed: name, role, ssh, fabric, rails, host_nqn, host_id)",
    ]),
    ("typo-nested", edit(("  soft_roce: true\n", "  soft_roce: true\n  roce:\n    pfc_prio: 3\n")), [
        "cluster.yaml:6 fabric.roce.pfc_prio: unknown field 'pfc_prio' (did you mean 'pfc_priority'? allowed: pfc_priority, dscp, tos, ecn)",
    ]),
    ("bad-role", edit(("    role: target\n", "    role: storage\n")), [
        "cluster.yaml:7 hosts[0].role: input should be 'target' or 'gpu_node'",
    ]),
    # rdma_link sets at most 9216 (module_utils/validators.py MTU_MAX): the spec refuses what apply would
    ("mtu-above-rdma-link", edit(("  soft_roce: true\n", "  soft_roce: true\n  mtu: 9978\n")), [
        "cluster.yaml:5 fabric.mtu: MTU 9978 is outside 576..9216 (the range rdma_link sets; jumbo frames are "
        "usually 9000)",
    ]),
    ("bad-transport", edit(("transport: rdma", "transport: roce")), [
        "cluster.yaml:3 fabric.transport: input should be 'rdma' or 'tcp'",
    ]),
    ("bad-ip", edit(("[10.9.0.3]", "[10.9.0.300]")), [
        "cluster.yaml:17 hosts[2].fabric.ips[0]: expected an IPv4 address",
    ]),
    ("bad-hostname", edit(("  - name: gpu2\n", "  - name: gpu_2\n")), [
        "cluster.yaml:14 hosts[2].name: not a valid host name (letters, digits and '-', dot-separated labels of 1-63)",
        # cross-field checks still run on the valid parts: the reference to 'gpu2' is dangling now
        "cluster.yaml:21 subsystems[0].allowed_gpu_nodes[1]: unknown host 'gpu2' (hosts: stor1, gpu1, gpu_2)",
    ]),
    ("missing-field", edit(("{address: 127.0.0.1, port: 2202}", "{port: 2202}")), [
        "cluster.yaml:12 hosts[1].ssh.address: field required",
    ]),
    ("missing-top-field", edit(("name: t\n", "")), ["cluster.yaml:1 name: field required"]),
    ("hosts-not-a-list", "name: t\nhosts: {a: 1}\n", ["cluster.yaml:2 hosts: expected a list"]),
    ("bad-nqn", edit(("nqn.2024-01.io.nvmeofctl.t:b", "nqn.2024-01.nvmeofctl:b")), [
        "cluster.yaml:28 subsystems[1].nqn: not a valid NQN (expected nqn.YYYY-MM.reverse.domain:name or "
        "nqn.2014-08.org.nvmexpress:uuid:<uuid>; after the ':' only letters, digits and . _ : - + @ =, "
        "no '/', spaces or other symbols)",
    ]),
    ("nqn-month", edit(("nqn.2024-01.io.nvmeofctl.t:b", "nqn.2024-13.io.nvmeofctl.t:b")), [
        f"cluster.yaml:28 subsystems[1].nqn: not a valid NQN: month 13 is not 01-12 {NQN}",
    ]),
    ("nqn-uuid-form", edit(("nqn.2024-01.io.nvmeofctl.t:b", "nqn.2014-08.org.nvmexpress:uuid:1234")), [
        "cluster.yaml:28 subsystems[1].nqn: not a valid NQN: the part after 'nqn.2014-08.org.nvmexpress:uuid:' must be a UUID (8-4-4-4-12 hex digits)",
    ]),
    ("nqn-too-long", edit(("nqn.2024-01.io.nvmeofctl.t:b", "nqn.2024-01.io.nvmeofctl.t:" + "x" * 200)), [
        "cluster.yaml:28 subsystems[1].nqn: NQN is 227 bytes, the limit is 223",
    ]),
    ("nsid-0", edit(("      - nsid: 1\n        name: b1", "      - nsid: 0\n        name: b1")), [
        "cluster.yaml:32 subsystems[1].namespaces[0].nsid: input should be greater than or equal to 1",
    ]),
    ("serial-too-long", edit((SUB_B, SUB_B + "    serial: abcdefghijklmnopqrstu\n")), [
        "cluster.yaml:29 subsystems[1].serial: serial must be 1-20 printable ASCII characters",
    ]),
    ("serial-number", edit((SUB_B, SUB_B + "    serial: 1234\n")), [
        "cluster.yaml:29 subsystems[1].serial: YAML read the serial as a number: quote it",
    ]),
    ("tos-vs-dscp", edit(("  soft_roce: true\n", "  soft_roce: true\n  roce: {dscp: 24}\n")), [
        "cluster.yaml:5 fabric.roce.tos: tos 106 carries DSCP 26, but dscp is 24 (tos = dscp << 2 | ECN bits, e.g. 98)",
    ]),
    ("empty-allowed", edit(("allowed_gpu_nodes: [gpu1]\n", "allowed_gpu_nodes: []\n")), [
        "cluster.yaml:30 subsystems[1].allowed_gpu_nodes: list should have at least 1 item after validation, not 0",
    ]),
    # backing
    ("file-without-size", edit((", size: 256MiB}", "}")), [
        "cluster.yaml:34 subsystems[1].namespaces[0].backing.size: a file backing needs a size",
    ]),
    ("device-and-file", edit(("{device: /dev/nvme1n1}", "{device: /dev/nvme1n1, file: /x.img, size: 1G}")), [
        "cluster.yaml:27 subsystems[0].namespaces[0].backing.file: set only one of device or file",
    ]),
    ("relative-backing", edit(("{device: /dev/nvme1n1}", "{device: vdb}")), [
        "cluster.yaml:27 subsystems[0].namespaces[0].backing.device: must be an absolute path",
    ]),
    ("bad-size", edit(("size: 256MiB", "size: 12XB")), [
        "cluster.yaml:34 subsystems[1].namespaces[0].backing.size: not a size (expected bytes or a number with a unit: 512M, 10G, 256MiB, 1GiB (binary), 500GB (decimal))",
    ]),
    ("odd-size", edit(("size: 256MiB", "size: 5000")), [
        "cluster.yaml:34 subsystems[1].namespaces[0].backing.size: size must be a multiple of 4096 bytes",
    ]),
    # cross-field: references
    ("unknown-target", edit((SUB_B + "    target: stor1", SUB_B + "    target: stor9")), [
        "cluster.yaml:29 subsystems[1].target: unknown host 'stor9' (hosts: stor1, gpu1, gpu2)",
    ]),
    ("target-not-a-target", edit((SUB_B + "    target: stor1", SUB_B + "    target: gpu1")), [
        "cluster.yaml:29 subsystems[1].target: host 'gpu1' is a gpu_node, not a target",
    ]),
    ("allowed-not-a-gpu-node", edit(("allowed_gpu_nodes: [gpu1]\n", "allowed_gpu_nodes: [gpu1, stor1]\n")), [
        "cluster.yaml:30 subsystems[1].allowed_gpu_nodes[1]: host 'stor1' is a target, not a gpu_node",
    ]),
    ("allowed-unknown", edit(("allowed_gpu_nodes: [gpu1]\n", "allowed_gpu_nodes: [gpu1, gpu7]\n")), [
        "cluster.yaml:30 subsystems[1].allowed_gpu_nodes[1]: unknown host 'gpu7' (hosts: stor1, gpu1, gpu2)",
    ]),
    ("dhchap-not-allowed", edit(("allowed_gpu_nodes: [gpu1, gpu2]", "allowed_gpu_nodes: [gpu2]")), [
        "cluster.yaml:23 subsystems[0].dhchap.gpu1: dhchap for 'gpu1', which is not in allowed_gpu_nodes",
    ]),
    ("dhchap-unknown-host", edit(("      gpu1: {secret:", "      gpu9: {secret:")), [
        "cluster.yaml:23 subsystems[0].dhchap.gpu9: unknown host 'gpu9' (hosts: stor1, gpu1, gpu2)",
    ]),
    # cross-field: duplicates
    ("dup-host-name", edit(("  - name: gpu2\n", "  - name: gpu1\n")), [
        "cluster.yaml:14 hosts[2].name: duplicate host name 'gpu1' (also hosts[1].name)",
        "cluster.yaml:21 subsystems[0].allowed_gpu_nodes[1]: unknown host 'gpu2' (hosts: stor1, gpu1)",
    ]),
    ("dup-fabric-ip", edit(("[10.9.0.3]", "[10.9.0.2]")), [
        "cluster.yaml:17 hosts[2].fabric.ips[0]: duplicate fabric IP 10.9.0.2 (also hosts[1].fabric.ips[0])",
    ]),
    ("dup-ssh-endpoint", edit(("port: 2203", "port: 2202")), [
        "cluster.yaml:16 hosts[2].ssh.address: duplicate SSH endpoint 127.0.0.1:2202 (also hosts[1].ssh.address)",
    ]),
    ("dup-host-nqn-given-vs-generated", edit((GPU2_SSH, GPU2_SSH + f"    host_nqn: nqn.2014-08.org.nvmexpress:uuid:{GPU1_ID}\n")), [
        f"cluster.yaml:17 hosts[2].host_nqn: duplicate host NQN nqn.2014-08.org.nvmexpress:uuid:{GPU1_ID} (also hosts[1].host_nqn)",
    ]),
    ("dup-host-id-given-vs-generated", edit((GPU2_SSH, GPU2_SSH + f"    host_id: {GPU1_ID}\n")), [
        f"cluster.yaml:17 hosts[2].host_id: duplicate host ID {GPU1_ID} (also hosts[1].host_id)",
    ]),
    ("host-nqn-vs-host-id", edit((GPU2_SSH, GPU2_SSH + "    host_nqn: nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555\n"
                                             "    host_id: 11111111-2222-4333-8444-666666666666\n")), [
        "cluster.yaml:17 hosts[2].host_nqn: the UUID in host_nqn differs from host_id (the kernel pins one to the other)",
    ]),
    ("dup-nqn", edit(("nqn.2024-01.io.nvmeofctl.t:b", "nqn.2024-01.io.nvmeofctl.t:a")), [
        "cluster.yaml:28 subsystems[1].nqn: duplicate NQN nqn.2024-01.io.nvmeofctl.t:a (also subsystems[0].nqn)",
    ]),
    ("dup-nsid", edit((NS_A1, NS_A1 + "      - nsid: 1\n        name: a2\n        backing: {device: /dev/nvme2n1}\n")), [
        "cluster.yaml:28 subsystems[0].namespaces[1].nsid: duplicate nsid 1 in this subsystem (also subsystems[0].namespaces[0].nsid)",
    ]),
    ("dup-namespace-name", edit(("name: b1", "name: a1")), [
        "cluster.yaml:33 subsystems[1].namespaces[0].name: duplicate namespace name 'a1' (also subsystems[0].namespaces[0].name)",
    ]),
    ("dup-uuid", edit((NS_A1, NS_A1 + "        uuid: 6a1d2c4e-8b0f-4c3a-9e5d-7f1a2b3c4d5e\n"),
                      (NS_B1, NS_B1 + "        uuid: 6a1d2c4e-8b0f-4c3a-9e5d-7f1a2b3c4d5e\n")), [
        "cluster.yaml:36 subsystems[1].namespaces[0].uuid: duplicate namespace UUID 6a1d2c4e-8b0f-4c3a-9e5d-7f1a2b3c4d5e (also subsystems[0].namespaces[0].uuid)",
    ]),
    ("dup-nguid", edit((NS_A1, NS_A1 + "        nguid: 6a1d2c4e-8b0f-4c3a-9e5d-7f1a2b3c4d5e\n"),
                       (NS_B1, NS_B1 + "        nguid: 6a1d2c4e-8b0f-4c3a-9e5d-7f1a2b3c4d5e\n")), [
        "cluster.yaml:36 subsystems[1].namespaces[0].nguid: duplicate namespace NGUID 6a1d2c4e-8b0f-4c3a-9e5d-7f1a2b3c4d5e (also subsystems[0].namespaces[0].nguid)",
    ]),
    ("file-path-reused", edit(("{device: /dev/nvme1n1}", "{file: /var/lib/nvmeofctl/b1.img, size: 1G}")), [
        "cluster.yaml:34 subsystems[1].namespaces[0].backing.file: duplicate backing file /var/lib/nvmeofctl/b1.img on target 'stor1' (also subsystems[0].namespaces[0].backing.file)",
    ]),
    ("rdma-without-rdma-path", edit(("  soft_roce: true\n", "  soft_roce: false\n")), [
        f"cluster.yaml:9 hosts[0].fabric.rdma_device: {RDMA}",
        f"cluster.yaml:13 hosts[1].fabric.rdma_device: {RDMA}",
        f"cluster.yaml:17 hosts[2].fabric.rdma_device: {RDMA}",
    ]),
    # DH-HMAC-CHAP
    ("secret-bad-crc", edit((K, BAD_CRC)), [
        f"cluster.yaml:23 subsystems[0].dhchap.gpu1.secret: not a valid DH-HMAC-CHAP secret: CRC-32 does not match the key {DH}",
    ]),
    ("secret-bad-format", edit((K, "hunter2")), [
        f"cluster.yaml:23 subsystems[0].dhchap.gpu1.secret: not a valid DH-HMAC-CHAP secret: wrong format {DH}",
    ]),
    ("secret-hash-vs-length", edit((K, make_key("02", 32))), [
        f"cluster.yaml:23 subsystems[0].dhchap.gpu1.secret: not a valid DH-HMAC-CHAP secret: hash id 02 needs a 48-byte key, got 32 bytes {DH}",
    ]),
    ("ctrl-secret-without-secret", edit((f'{{secret: "{K}"}}', f'{{ctrl_secret: "{SAMPLE_CTRL_KEY}"}}')), [
        "cluster.yaml:23 subsystems[0].dhchap.gpu1.secret: ctrl_secret needs a host secret too: set secret or secret_file",
    ]),
    ("no-secret", edit((f'{{secret: "{K}"}}', "{}")), [
        "cluster.yaml:23 subsystems[0].dhchap.gpu1.secret: set one of secret or secret_file",
    ]),
    ("ctrl-equals-host", edit((f'{{secret: "{K}"}}', f'{{secret: "{K}", ctrl_secret: "{K}"}}')), [
        "cluster.yaml:23 subsystems[0].dhchap.gpu1.ctrl_secret: ctrl_secret must differ from the host secret",
    ]),
    ("conflicting-keys-on-one-target", edit(("    allowed_gpu_nodes: [gpu1]\n",
                                              f'    allowed_gpu_nodes: [gpu1]\n    dhchap:\n      gpu1: {{secret: "{SAMPLE_CTRL_KEY}"}}\n')), [
        "cluster.yaml:32 subsystems[1].dhchap.gpu1.secret: conflicting DH-HMAC-CHAP secret for 'gpu1' on target 'stor1': subsystems[0] gives a different one (nvmet keeps one key per host per target)",
    ]),
    ("secret-file-missing", edit((f'{{secret: "{K}"}}', "{secret_file: secrets/nope.key}")), [
        "cluster.yaml:23 subsystems[0].dhchap.gpu1.secret_file: secret file /nonexistent/spec/secrets/nope.key does not exist",
    ]),
    ("secret-type", edit((f'{{secret: "{K}"}}', "{secret: 12345}")), [
        "cluster.yaml:23 subsystems[0].dhchap.gpu1.secret: expected a string",
    ]),
    # YAML level
    ("yaml-syntax", edit(("[10.9.0.3]", "[10.9.0.3")), ["cluster.yaml:17: invalid YAML: expected ',' or ']', but got '}'"]),
    ("yaml-dup-key", edit(("    role: target\n", "    role: target\n    role: target\n")), [
        'cluster.yaml:8: invalid YAML: duplicate key "role"',
    ]),
    ("yaml-dup-secret-key", edit((f'{{secret: "{K}"}}', f'{{secret: "{K}", secret: "{SAMPLE_CTRL_KEY}"}}')), [
        'cluster.yaml:23: invalid YAML: duplicate key "secret"',
    ]),
    ("empty", "# nothing here\n", ["cluster.yaml:1: the spec is empty (expected a mapping with name, fabric, hosts, subsystems)"]),
    ("top-level-list", "# x\n- a\n- b\n", ["cluster.yaml:2: the top level must be a mapping with name, fabric, hosts, subsystems, not a list"]),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_lines(text: str, expected: list[str]) -> None:
    with pytest.raises(SpecValidationError) as err:
        parse_spec(text, source="cluster.yaml", base_dir="/nonexistent/spec")
    assert err.value.issues == expected
    assert str(err.value).splitlines() == expected  # what run() prints after "error: "
    assert [str(d) for d in err.value.details] == expected


def test_secrets_never_in_messages() -> None:
    forbidden = [K, SAMPLE_CTRL_KEY, BAD_CRC, "hunter2", K.split(":")[2][:16], SAMPLE_CTRL_KEY.split(":")[2][:16]]
    for name, text, _ in CASES:
        with pytest.raises(SpecError) as err:
            parse_spec(text, source="cluster.yaml", base_dir="/nonexistent/spec")
        for line in err.value.issues:
            assert not any(f in line for f in forbidden), (name, line)


def test_errors_collected_not_stopped_at_first() -> None:
    text = edit(("role: target", "role: storage"), ("[10.9.0.3]", "[10.9.0.300]"), ("nsid: 1\n        name: b1", "nsid: 9999\n        name: b1"))
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="c.yaml")
    assert [i.split(" ")[0] for i in err.value.issues] == ["c.yaml:7", "c.yaml:17", "c.yaml:32"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("empty.yaml", ["empty.yaml:1: the spec is empty (expected a mapping with name, fabric, hosts, subsystems)"]),
        ("syntax.yaml", ["syntax.yaml:4: invalid YAML: found character '\\t' that cannot start any token"]),
        ("not-a-mapping.yaml", ["not-a-mapping.yaml:2: the top level must be a mapping with name, fabric, hosts, subsystems, not a list"]),
        ("missing.yaml", ["missing.yaml:1: cannot read the spec: file not found"]),
        ("secret-files.yaml", [
            "secret-files.yaml:18 subsystems[0].dhchap.gpu1.secret_file: secret file {d}/secrets/garbage.key: "
            f"not a valid DH-HMAC-CHAP secret: wrong format {DH}",
            "secret-files.yaml:19 subsystems[0].dhchap.gpu1.ctrl_secret_file: secret file {d}/secrets/empty.key is empty",
        ]),
    ],
)
def test_bad_fixture_files(name: str, expected: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bad = FIXTURES / "bad"
    monkeypatch.chdir(bad)
    with pytest.raises(SpecError) as err:
        load_spec(name)
    assert err.value.issues == [e.replace("{d}", str(bad)) for e in expected]
    assert "not-really-a-key" not in str(err.value)


def test_model_validate_without_loader_runs_the_same_checks(tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(edit(("[10.9.0.3]", "[10.9.0.2]")))
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        ClusterSpec.model_validate(data)
    assert [(e["loc"], e["msg"]) for e in err.value.errors()] == [
        (("hosts", 2, "fabric", "ips", 0), "duplicate fabric IP 10.9.0.2 (also hosts[1].fabric.ips[0])")
    ]
    assert BASE  # the unmodified base is valid
    assert ClusterSpec.model_validate(YAML(typ="safe").load(BASE), context={"base_dir": tmp_path}).name == "t"


def test_yaml_anchors_merge_keys_and_x_keys(tmp_path: Path) -> None:
    head = "x-ssh: &ssh {address: 127.0.0.1, user: root}\n"
    text = head + BASE.replace("ssh: {address: 127.0.0.1, port:", "ssh: {<<: *ssh, port:")
    assert parse_spec(text, base_dir=tmp_path).host("gpu2").ssh.user == "root"
    # an error inside merged values points at the mapping that merges them
    bad = "defaults: &d {address: 127.0.0.1, user: 5}\n" + BASE.replace(
        "    ssh: {address: 127.0.0.1, port: 2201}\n", "    ssh:\n      <<: *d\n      port: 2201\n")
    with pytest.raises(SpecError) as err:
        parse_spec(bad, source="c.yaml")
    assert err.value.issues == [
        "c.yaml:1 defaults: unknown field 'defaults' (allowed: name, fabric, hosts, subsystems, backing_prefixes; "
        "keys for YAML anchors only start with 'x-')",
        "c.yaml:9 hosts[0].ssh.user: expected a string",
    ]
