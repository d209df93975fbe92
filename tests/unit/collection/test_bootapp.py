"""The boot-time program: one deterministic zipapp built from module_utils' own sources
(module_utils/bootapp.py), run by nvmeofctl-nvmet.service and nvmeofctl-connect.service."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
COLLECTIONS = REPO / "playbooks" / "collections"
MODULE_UTILS = COLLECTIONS / "ansible_collections" / "nvmeofctl" / "fabric" / "plugins" / "module_utils"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.nvmeofctl.fabric.plugins.module_utils import bootapp  # noqa: E402

from nvmeofctl.resources import load_module_utils  # noqa: E402


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    path = tmp_path_factory.mktemp("lib") / "nvmeofctl-boot.pyz"
    path.write_bytes(bootapp.build())
    return path


def boot(pyz, *args):
    # -I: no user site, no PYTHONPATH, no cwd: the program has only what is in the archive
    return subprocess.run([sys.executable, "-I", str(pyz), *args], capture_output=True, text=True, timeout=60)


def test_build_is_deterministic_and_the_same_from_every_import_path():
    first = bootapp.build()
    assert bootapp.build() == first
    # the controller imports module_utils as its own package: same sources, same bytes
    assert load_module_utils("bootapp").build() == first


def test_archive_holds_the_sources_verbatim_stored_sorted_with_fixed_dates():
    import io

    zf = zipfile.ZipFile(io.BytesIO(bootapp.build()))
    names = zf.namelist()
    assert names == sorted(names)
    assert set(names) == {"__main__.py", "nvmeofctl_boot/__init__.py"} | {
        "nvmeofctl_boot/%s.py" % n for n in ("change", "fileio", "nvme_host", "nvme_host_ops", "nvme_host_plan",
                                              "nvme_host_state", "nvmet", "nvmet_apply", "nvmet_diff",
                                              "nvmet_model", "nvmet_observe", "persist")}
    for info in zf.infolist():
        assert info.date_time == (1980, 1, 1, 0, 0, 0) and info.compress_type == zipfile.ZIP_STORED
        assert (info.external_attr >> 16) & 0o777 == 0o644
        if info.filename.startswith("nvmeofctl_boot/") and not info.filename.endswith("__init__.py"):
            assert zf.read(info).decode() == (MODULE_UTILS / Path(info.filename).name).read_text()


def test_build_from_a_zip_like_ansiballz_gives_the_same_bytes(tmp_path):
    """Inside AnsiballZ the module_utils are imported from a zip: the sources come from the
    zip importer's get_source, and the program is byte for byte the same."""
    payload = tmp_path / "payload.zip"
    with zipfile.ZipFile(payload, "w") as zf:
        pkg = "ansible_collections/nvmeofctl/fabric/plugins/module_utils"
        parts = pkg.split("/")
        for i in range(1, len(parts) + 1):
            zf.writestr("/".join(parts[:i]) + "/__init__.py", "")
        for src in sorted(MODULE_UTILS.glob("*.py")):
            zf.writestr("%s/%s" % (pkg, src.name), src.read_text())
    out = tmp_path / "built.pyz"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from ansible_collections.nvmeofctl.fabric.plugins.module_utils import bootapp as b; "
            "assert 'zip' in type(b.__loader__).__name__.lower(), b.__loader__; "
            "open(sys.argv[2], 'wb').write(b.build())")
    r = subprocess.run([sys.executable, "-I", "-c", code, str(payload), str(out)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == bootapp.build()


def test_usage_and_unknown_command(pyz):
    r = boot(pyz, "--help")
    assert r.returncode == 0 and "nvmet" in r.stdout and "nvme-host connect-all" in r.stdout
    r = boot(pyz)
    assert r.returncode == 2 and "usage" in r.stderr
    r = boot(pyz, "rm", "-rf")
    assert r.returncode == 2 and "unknown command 'rm'" in r.stderr


def test_nvmet_command_runs_from_the_archive(pyz, tmp_path):
    r = boot(pyz, "nvmet", "--help")
    assert r.returncode == 0 and "--config" in r.stdout and "--configfs-root" in r.stdout
    # no config yet: nothing to restore, nothing touched
    r = boot(pyz, "nvmet", "--config", str(tmp_path / "absent.json"), "--no-modprobe",
             "--configfs-root", str(tmp_path / "nvmet"))
    assert r.returncode == 0 and "nothing to restore" in r.stdout


def test_nvme_host_command_runs_from_the_archive(pyz):
    r = boot(pyz, "nvme-host", "--help")
    assert r.returncode == 0 and "connect-all CONFIG.json" in r.stdout
    r = boot(pyz, "nvme-host")
    assert r.returncode == 2 and "usage" in r.stderr


def _ast_sibling_imports(text):
    import ast

    out = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module} if node.module else {a.name for a in node.names}
    return out


@pytest.mark.parametrize("path", sorted(MODULE_UTILS.glob("*.py")), ids=lambda p: p.name)
def test_the_line_scan_finds_exactly_the_relative_imports_ast_finds(path):
    """bootapp reads sibling imports with a line scan (fast on slow hosts); ast is the reference."""
    text = path.read_text()
    assert bootapp._sibling_imports(text) == _ast_sibling_imports(text)


def test_the_line_scan_reads_the_import_forms_in_use():
    text = ("from .a import x\ndef f():\n    from .b import (\n        y)\n"
            "from . import c, d as e  # comment\nx = 'from .z'\n")
    assert bootapp._sibling_imports(text) == {"a", "b", "c", "d"} == _ast_sibling_imports(text)
