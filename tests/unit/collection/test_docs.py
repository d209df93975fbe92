"""Every module of the collection documents itself (ansible-doc renders it, fragments included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULES = sorted(p.stem for p in (REPO / "playbooks/collections/ansible_collections/nvmeofctl/fabric/plugins/modules").glob("*.py")
                 if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name):
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "playbooks" / "collections"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), f"nvmeofctl.fabric.{name}"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "ERROR" not in proc.stderr, proc.stderr
    assert f"nvmeofctl.fabric.{name}" in proc.stdout
    if name in ("nvmet_target", "nvme_host"):
        assert "rdma" in proc.stdout  # the shared doc fragment


def _doc_vs_argspec(doc_opts, spec_opts, where=""):
    """Differences between DOCUMENTATION options and an argument_spec (names, type, default,
    choices, no_log never documented as a default), recursively."""
    out = []
    for name in sorted(set(doc_opts) | set(spec_opts)):
        d, s = doc_opts.get(name), spec_opts.get(name)
        path = where + name
        if d is None or s is None:
            out.append("%s: only in %s" % (path, "argument_spec" if d is None else "DOCUMENTATION"))
            continue
        for key in ("type", "default", "choices", "elements"):
            dv, sv = d.get(key), s.get(key)
            if key == "type":
                dv, sv = dv or "str", sv or "str"
            if key == "default" and isinstance(sv, tuple):
                sv = list(sv)
            if dv != sv:
                out.append("%s.%s: documented %r, argument_spec %r" % (path, key, dv, sv))
        if bool(d.get("required")) != bool(s.get("required")):
            out.append("%s.required differs" % path)
        out += _doc_vs_argspec(d.get("suboptions") or {}, s.get("options") or {}, path + ".")
    return out


def test_nvmet_target_documents_exactly_its_argument_spec():
    import yaml

    sys.path.insert(0, str(REPO / "playbooks" / "collections"))
    from ansible_collections.nvmeofctl.fabric.plugins.modules import nvmet_target
    from ansible_collections.nvmeofctl.fabric.plugins.module_utils.validators import DEFAULT_BACKING_PREFIXES

    doc = yaml.safe_load(nvmet_target.DOCUMENTATION)
    spec = {k: v for k, v in nvmet_target.ARGUMENT_SPEC.items()
            if k not in ("rdma", "rdma_rails", "host_files")}  # the doc fragments
    assert _doc_vs_argspec(doc["options"], spec) == []
    assert doc["options"]["backing_prefixes"]["default"] == list(DEFAULT_BACKING_PREFIXES)
    ns = doc["options"]["subsystems"]["suboptions"]["namespaces"]["suboptions"]
    assert {"name", "signature"} <= set(ns)


def test_rdma_fragment_documents_the_link_options_once_for_both_places():
    """The `rdma` suboptions (nvmet_target, nvme_host) and rdma_link's options are the same
    text, and match module_utils/rdma.py's ARGUMENT_SPEC."""
    import yaml

    sys.path.insert(0, str(REPO / "playbooks" / "collections"))
    from ansible_collections.nvmeofctl.fabric.plugins.doc_fragments.rdma import ModuleDocFragment
    from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import ARGUMENT_SPEC

    nested = yaml.safe_load(ModuleDocFragment.DOCUMENTATION.replace("O(rdma.", "O("))["options"]["rdma"]["suboptions"]
    link = yaml.safe_load(ModuleDocFragment.LINK)["options"]
    assert nested == link
    assert _doc_vs_argspec(link, ARGUMENT_SPEC) == []


def test_rdma_rails_fragment_documents_the_same_link_options_as_a_list():
    """`rdma_rails` (nvmet_target, nvme_host: rails 2..N) is a list of the link's options, the
    same text as `rdma`'s, and both role modules take it with those suboptions."""
    import yaml

    sys.path.insert(0, str(REPO / "playbooks" / "collections"))
    from ansible_collections.nvmeofctl.fabric.plugins.doc_fragments.rdma import ModuleDocFragment
    from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import ARGUMENT_SPEC
    from ansible_collections.nvmeofctl.fabric.plugins.modules import nvmet_target

    rails = yaml.safe_load(ModuleDocFragment.RAILS)["options"]
    assert set(rails) == {"rdma_rails"}
    assert (rails["rdma_rails"]["type"], rails["rdma_rails"]["elements"]) == ("list", "dict")
    link = yaml.safe_load(ModuleDocFragment.LINK)["options"]
    assert yaml.safe_load(ModuleDocFragment.RAILS.replace("O(rdma_rails[].", "O("))["options"]["rdma_rails"][
        "suboptions"] == link
    assert _doc_vs_argspec(rails, {"rdma_rails": dict(type="list", elements="dict", options=ARGUMENT_SPEC)}) == []
    assert _doc_vs_argspec(rails, {"rdma_rails": nvmet_target.ARGUMENT_SPEC["rdma_rails"]}) == []
    for name in ("nvmet_target", "nvme_host"):
        text = (REPO / "playbooks/collections/ansible_collections/nvmeofctl/fabric/plugins/modules" / f"{name}.py").read_text()
        assert "  - nvmeofctl.fabric.rdma.rails\n" in text
        assert 'rdma_rails=dict(type="list", elements="dict", options=dict(RDMA_ARGUMENT_SPEC))' in text, name


def test_host_files_fragment_documents_the_option_the_modules_take():
    """The `host_files` fragment matches persist.HOST_FILES_SPEC, names every template the
    renderer knows, and all three modules use both."""
    import yaml

    sys.path.insert(0, str(REPO / "playbooks" / "collections"))
    from ansible_collections.nvmeofctl.fabric.plugins.doc_fragments.host_files import ModuleDocFragment
    from ansible_collections.nvmeofctl.fabric.plugins.module_utils.persist import HOST_FILES_SPEC
    from ansible_collections.nvmeofctl.fabric.plugins.plugin_utils.host_files import TEMPLATES

    doc = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert _doc_vs_argspec(doc, {"host_files": HOST_FILES_SPEC}) == []
    # free-form (an RDMA rail 2..N adds keys rdma_script@<interface>, rdma_unit@<interface>): the
    # description names every key and its template
    text = " ".join(doc["host_files"]["description"])
    for key, name in TEMPLATES.items():
        assert "C(%s)" % key in text and "C(templates/%s)" % name in text, key
    assert "C(rdma_script@<interface>)" in text and "C(rdma_unit@<interface>)" in text
    for name in ("nvmet_target", "nvme_host", "rdma_link"):
        text = (REPO / "playbooks/collections/ansible_collections/nvmeofctl/fabric/plugins/modules" / f"{name}.py").read_text()
        assert "nvmeofctl.fabric.host_files" in text and "HOST_FILES_SPEC" in text, name
        assert (REPO / "playbooks/collections/ansible_collections/nvmeofctl/fabric/plugins/action" / f"{name}.py").is_file()


def test_safe_defaults_documented_and_in_the_argument_spec():
    """A bare module call never drops an export or a path (allow_disruptive: false), and a lost
    controller keeps reconnecting as the cluster spec's default says (ctrl_loss_tmo: -1)."""
    import yaml

    sys.path.insert(0, str(REPO / "playbooks" / "collections"))
    from ansible_collections.nvmeofctl.fabric.plugins.modules import nvme_host, nvmet_target

    from nvmeofctl.spec.models import ReconnectSpec

    for mod in (nvmet_target, nvme_host):
        doc = yaml.safe_load(mod.DOCUMENTATION)["options"]
        assert doc["allow_disruptive"]["default"] is False, mod.__name__
    assert nvmet_target.ARGUMENT_SPEC["allow_disruptive"]["default"] is False
    doc = yaml.safe_load(nvme_host.DOCUMENTATION)["options"]
    assert doc["ctrl_loss_tmo"]["default"] == ReconnectSpec().ctrl_loss_tmo == -1
