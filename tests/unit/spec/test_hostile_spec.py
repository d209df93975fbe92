"""A cluster spec is hostile input: the exact attacks of the security issue are refused at load.

Each case edits one field of a valid spec and expects exit-3-style refusal naming that field.
The values are the ones an attacker with commit rights to a spec tried (issue: Security).
"""

from __future__ import annotations

import copy
import json

import pytest

from nvmeofctl.spec import SpecValidationError, parse_spec
from nvmeofctl.spec.models import MAX_BACKING_SIZE

LOOKUP = "{{ lookup('pipe', 'touch /tmp/nvmeofctl-pwned') }}"

BASE = {
    "name": "c",
    "fabric": {"transport": "tcp"},
    "hosts": [
        {"name": "tgt1", "role": "target", "ssh": {"address": "10.0.0.1"},
         "fabric": {"interface": "eth1", "ips": ["10.9.0.1"]}},
        {"name": "gpu1", "role": "gpu_node", "ssh": {"address": "gpu1.example.com", "user": "ops"},
         "fabric": {"interface": "eth1", "ips": ["10.9.0.2"]}},
    ],
    "subsystems": [
        {"nqn": "nqn.2024-01.io.x:train", "target": "tgt1", "allowed_gpu_nodes": ["gpu1"],
         "namespaces": [{"nsid": 1, "name": "train",
                         "backing": {"file": "/var/lib/nvmeofctl/train.img", "size": "1GiB"}}]},
        {"nqn": "nqn.2024-01.io.x:raw", "target": "tgt1", "allowed_gpu_nodes": ["gpu1"],
         "namespaces": [{"nsid": 1, "name": "raw", "backing": {"device": "/dev/disk/by-id/nvme-eui.0025388b"}}]},
    ],
}


def load(spec: dict):
    return parse_spec(json.dumps(spec), source="c.yaml")


def edited(path: tuple, value) -> dict:
    spec = copy.deepcopy(BASE)
    node = spec
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return spec


def refused(path: tuple, value) -> list[str]:
    with pytest.raises(SpecValidationError) as exc:
        load(edited(path, value))
    return [str(i) for i in exc.value.details]


def test_the_base_spec_is_valid():
    spec = load(BASE)
    assert spec.host("gpu1").ssh.user == "ops"


# 1. template injection: a Jinja2 expression in any field that names something is refused
# (free text such as serial and control-machine paths may hold it: see the inventory tests and
# the lab test, which show it is never evaluated)
STRING_FIELDS = [
    ("name",),
    ("hosts", 0, "name"),
    ("hosts", 0, "ssh", "address"),
    ("hosts", 1, "ssh", "user"),
    ("hosts", 0, "fabric", "interface"),
    ("hosts", 0, "fabric", "rdma_device"),
    ("hosts", 1, "host_nqn"),
    ("subsystems", 0, "nqn"),
    ("subsystems", 0, "target"),
    ("subsystems", 0, "allowed_gpu_nodes", 0),
    ("subsystems", 0, "namespaces", 0, "name"),
    ("subsystems", 0, "namespaces", 0, "backing", "file"),
    ("subsystems", 1, "namespaces", 0, "backing", "device"),
]


@pytest.mark.parametrize("path", STRING_FIELDS, ids=lambda p: ".".join(map(str, p)))
def test_jinja_in_a_named_field_is_refused(path):
    issues = refused(path, LOOKUP)
    assert issues and all(i.startswith("c.yaml:") for i in issues)


# 2. option injection into ssh
@pytest.mark.parametrize("field,value", [
    ("address", "-oProxyCommand=touch /tmp/x"),
    ("address", "-oProxyCommand=sh"),
    ("address", "host name"),
    ("address", "fe80::1%$(id)"),
    ("address", "10.0.0.1\n"),
    ("user", "-oProxyCommand=touch /tmp/x"),
    ("user", "-l"),
    ("user", "root;id"),
    ("user", "root\n"),
])
def test_ssh_address_and_user_cannot_be_options(field, value):
    issues = refused(("hosts", 1, "ssh", field), value)
    assert any(f"hosts[1].ssh.{field}:" in i for i in issues), issues


def test_ssh_address_accepts_ips_and_names():
    for addr in ("192.168.1.10", "fd00::10", "storage-1.dc1.example.com"):
        assert load(edited(("hosts", 0, "ssh", "address"), addr)).host("tgt1").ssh.address == addr


# 3. configfs traversal through NQNs
@pytest.mark.parametrize("nqn", [
    "nqn.2024-01.io.x:train/../../../../tmp/y",
    "nqn.2024-01.io.x:a/b",
    "nqn.2024-01.io.x:a b",
    "nqn.2024-01.io.x:a\n",
    "nqn.2024-01.io.x:$(id)",
])
def test_nqn_with_a_path_or_symbols_is_refused(nqn):
    issues = refused(("subsystems", 0, "nqn"), nqn)
    assert any("subsystems[0].nqn: not a valid NQN" in i for i in issues), issues
    issues = refused(("hosts", 1, "host_nqn"), nqn)
    assert any("hosts[1].host_nqn: not a valid NQN" in i for i in issues), issues


def test_real_world_nqns_still_pass():
    for nqn in ("nqn.2016-06.io.spdk:cnode1", "nqn.1994-11.com.samsung:nvme:PM1725a:HHHL:S3RVNA0J300208",
                "nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b",
                "nqn.2024-01.io.nvmeofctl.lab:train_v2.0"):
        assert load(edited(("subsystems", 0, "nqn"), nqn)).subsystems[0].nqn == nqn


# 4. arbitrary host files as namespaces
@pytest.mark.parametrize("kind,path,why", [
    ("file", "/etc/passwd", "not under an allowed backing prefix"),
    ("device", "/etc/shadow", "not under an allowed backing prefix"),
    ("file", "/var/lib/nvmeofctl/../../../etc/passwd", "normalised"),
    ("file", "/var/lib/nvmeofctl/./a.img", "normalised"),
    ("file", "/var/lib/nvmeofctl//a.img", "normalised"),
    ("file", "/var/lib/nvmeofctl/a b.img", "path components"),
    ("file", "/var/lib/nvmeofctl/a\n.img", "path components"),
    ("file", "/var/lib/nvmeofctl/$(id).img", "path components"),
    ("file", "/var/lib/nvmeofctl/a;reboot", "path components"),
    ("file", "/var/lib/nvmeofctl/`id`", "path components"),
    ("file", "/var/lib/nvmeofctl/-rf", "path components"),
    ("device", "/dev/sda", "not under an allowed backing prefix"),
    ("device", "/dev/nvme0n1/../sda", "normalised"),
    ("file", "var/lib/nvmeofctl/a.img", "absolute"),
])
def test_backing_paths_are_plain_and_allow_listed(kind, path, why):
    ns = 0 if kind == "file" else 1
    issues = refused(("subsystems", ns, "namespaces", 0, "backing", kind), path)
    hits = [i for i in issues if f"subsystems[{ns}].namespaces[0].backing.{kind}:" in i]
    assert hits and why in hits[0], issues


def test_backing_prefixes_extend_the_allow_list_and_are_checked():
    spec = edited(("subsystems", 1, "namespaces", 0, "backing", "device"), "/dev/sdb")
    spec["backing_prefixes"] = ["/dev/sd*"]
    assert load(spec).subsystems[1].namespaces[0].backing.device == "/dev/sdb"
    for bad in ("/", "etc/", "/srv/../etc/", "/srv/a b/", "/srv"):
        spec["backing_prefixes"] = [bad]
        with pytest.raises(SpecValidationError, match=r"backing_prefixes\[0\]: not a backing prefix"):
            load(spec)


@pytest.mark.parametrize("size", [2**100, "1267650600228229401496703205376B", MAX_BACKING_SIZE + 4096, "2PiB", 0])
def test_backing_size_is_bounded(size):
    issues = refused(("subsystems", 0, "namespaces", 0, "backing", "size"), size)
    assert any("subsystems[0].namespaces[0].backing.size:" in i for i in issues), issues


def test_the_largest_size_passes():
    assert load(edited(("subsystems", 0, "namespaces", 0, "backing", "size"), "1PiB")).subsystems[0] \
        .namespaces[0].backing.size == 1 << 50


def test_signature_is_a_device_acknowledgement_only():
    spec = edited(("subsystems", 1, "namespaces", 0, "backing", "signature"), "xfs")
    assert load(spec).subsystems[1].namespaces[0].backing.signature == "xfs"
    issues = refused(("subsystems", 0, "namespaces", 0, "backing", "signature"), "xfs")
    assert any("signature applies only to a device backing" in i for i in issues)
    issues = refused(("subsystems", 1, "namespaces", 0, "backing", "signature"), "xfs; rm -rf /")
    assert any("backing.signature: not a signature type" in i for i in issues)


# 6. a trailing newline is not accepted anywhere ($ in re.match accepts one)
@pytest.mark.parametrize("path,value", [
    (("name",), "c\n"),
    (("hosts", 0, "name"), "tgt1\n"),
    (("hosts", 0, "fabric", "interface"), "eth1\n"),
    (("hosts", 0, "fabric", "rdma_device"), "rxe0\n"),
    (("subsystems", 0, "nqn"), "nqn.2024-01.io.x:train\n"),
    (("hosts", 1, "host_nqn"), "nqn.2024-01.io.x:gpu1\n"),
    (("subsystems", 0, "namespaces", 0, "name"), "train\n"),
    (("hosts", 1, "ssh", "address"), "gpu1.example.com\n"),
])
def test_trailing_newline_is_refused(path, value):
    assert refused(path, value)


def test_dhchap_secret_with_trailing_newline_is_refused():
    from nvmeofctl.spec import dhchap_secret_problem

    key = "DHHC-1:01:+Xoos2iDZZi3X2WV4wjk0sxdPHyYCnAq/aUCMnojytKVzPTD:"
    assert dhchap_secret_problem(key) is None
    assert dhchap_secret_problem(key + "\n") == "wrong format"
    spec = copy.deepcopy(BASE)
    spec["subsystems"][0]["dhchap"] = {"gpu1": {"secret": key + "\n"}}
    with pytest.raises(SpecValidationError) as exc:
        load(spec)
    text = str(exc.value)
    assert "dhchap.gpu1.secret: not a valid DH-HMAC-CHAP secret: wrong format" in text
    assert "Xoos2iDZZi3X2WV4wjk0sxdPHyYCnAq" not in text  # never the value


@pytest.mark.parametrize("field", ["key", "known_hosts"])
@pytest.mark.parametrize("path", ['/keys/a"b', "/keys/%d/id", "/keys/a\\b", "/keys/a\nb"])
def test_ssh_paths_that_ssh_would_misread_are_refused(field, path):
    issues = refused(("hosts", 0, "ssh", field), path)
    assert any(f"hosts[0].ssh.{field}: an SSH key or known_hosts path may not hold" in i for i in issues), issues


def test_ssh_paths_with_spaces_and_braces_are_data(tmp_path):
    path = str(tmp_path / "{{ lookup('pipe', 'id') }}" / "known hosts")
    spec = load(edited(("hosts", 0, "ssh", "known_hosts"), path))
    from nvmeofctl.run.inventory import ssh_host_vars

    args = ssh_host_vars(spec.host("tgt1"))["ansible_ssh_common_args"]
    import shlex

    # one ssh option, its value double-quoted for ssh (which would split it on the space)
    assert f'UserKnownHostsFile="{path}"' in shlex.split(args)
