"""Image recipe identity, mirror discovery, lab keys and the lab's demo spec secrets."""

import base64
import struct
import zlib

from nvmeofctl.lab import image
from nvmeofctl.lab.clusterspec import generate_dhchap_secret
from nvmeofctl.lab.keys import known_hosts_line, write_ed25519_keypair


def test_recipe_hash_depends_on_mirror_and_is_stable():
    a = image.recipe_hash("http://deb.debian.org/debian")
    assert a == image.recipe_hash("http://deb.debian.org/debian")
    assert a != image.recipe_hash("http://mirror.example/debian")


def test_configured_mirror_reads_deb822(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.local/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.local/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    assert image.configured_mirror(tmp_path) == "http://mirror.local/debian"


def test_configured_mirror_reads_one_line_format(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://ftp.example/debian bookworm main\n")
    assert image.configured_mirror(tmp_path) == "http://ftp.example/debian"


def test_configured_mirror_default(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    assert image.configured_mirror(tmp_path) == image.DEFAULT_MIRROR


def test_keypair_is_private_and_stable(tmp_path):
    key = tmp_path / "id"
    line = write_ed25519_keypair(key, "c")
    assert line.startswith("ssh-ed25519 ") and line.endswith(" c")
    assert (key.stat().st_mode & 0o777) == 0o600
    assert write_ed25519_keypair(key, "c") == line  # not regenerated
    assert known_hosts_line("127.0.0.1", 2222, line) == "[127.0.0.1]:2222 " + " ".join(line.split()[:2])
    assert known_hosts_line("host", 22, line).startswith("host ssh-ed25519 ")


def test_generated_dhchap_secret_has_valid_crc():
    s = generate_dhchap_secret()
    head, hmac_id, b64, tail = s.split(":")
    assert (head, hmac_id, tail) == ("DHHC-1", "01", "")
    raw = base64.b64decode(b64)
    key, crc = raw[:-4], raw[-4:]
    assert len(key) == 32 and struct.unpack("<I", crc)[0] == zlib.crc32(key)
    assert generate_dhchap_secret() != s


def test_rendered_lab_spec_is_a_valid_cluster_spec(tmp_path):
    from nvmeofctl.lab.clusterspec import render_lab_spec
    from nvmeofctl.lab.layout import make_layout
    from nvmeofctl.spec import load_spec

    (tmp_path / "cluster.yaml").write_text(render_lab_spec(make_layout("lab", 1, 2, [2201, 2202, 2203]), tmp_path))
    spec = load_spec(tmp_path / "cluster.yaml")
    assert [h.name for h in spec.targets] == ["tgt1"] and [h.name for h in spec.gpu_nodes] == ["gpu1", "gpu2"]
    assert spec.fabric.soft_roce and spec.fabric.transport == "rdma"
    train, ckpt = spec.subsystems
    assert train.allowed_gpu_nodes == ["gpu1", "gpu2"] and ckpt.allowed_gpu_nodes == ["gpu1"]
    auth = ckpt.dhchap["gpu1"]
    assert auth.secret is not None and auth.ctrl_secret is not None
    for key in (tmp_path / "secrets").iterdir():
        assert key.stat().st_mode & 0o777 == 0o600
    # a lab without GPU nodes has no exports
    (tmp_path / "solo.yaml").write_text(render_lab_spec(make_layout("solo", 1, 0, [2201]), tmp_path))
    assert load_spec(tmp_path / "solo.yaml").subsystems == []
