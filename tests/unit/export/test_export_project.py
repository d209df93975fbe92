"""`nvmeofctl export` (export/project.py): the project's layout, keys never in clear, the vault
decrypting to the spec's keys, and the inventory resolving them for Ansible (checked with
ansible-core itself: `ansible-playbook --syntax-check`, and the `debug` action printing a digest)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SPEC = REPO / "tests" / "fixtures" / "plan" / "lab-real" / "cluster.yaml"
KEYS = REPO / "tests" / "fixtures" / "specs" / "good" / "secrets"


@pytest.fixture
def project(tmp_path, run_cli):
    pw = tmp_path / "vault-pass"
    pw.write_text("correct horse\n")
    to = tmp_path / "project"
    rc, out, err = run_cli(["export", "-f", str(SPEC), "--to", str(to), "--vault-password-file", str(pw), "-o", "json"])
    assert rc == 0, err
    return to, pw, json.loads(out)


def test_layout_and_no_key_in_clear(project):
    to, _pw, doc = project
    assert doc["written"] == ["site.yml", "inventory/hosts.yml", "ansible.cfg",
                              "collections/ansible_collections/nvmeofctl/fabric", "group_vars/all/vault.yml"]
    assert doc["secrets"] == ["nvmeofctl_dhchap_ctrl_key_tgt1_gpu1", "nvmeofctl_dhchap_ctrl_secret_gpu1_ckpt",
                              "nvmeofctl_dhchap_ctrl_secret_gpu1_train", "nvmeofctl_dhchap_key_tgt1_gpu1",
                              "nvmeofctl_dhchap_secret_gpu1_ckpt", "nvmeofctl_dhchap_secret_gpu1_train"]
    assert (to / "site.yml").read_text() == (REPO / "playbooks" / "site.yml").read_text()
    assert (to / "collections/ansible_collections/nvmeofctl/fabric/plugins/action/nvmet_target.py").is_file()
    assert (to / "collections/ansible_collections/nvmeofctl/fabric/templates/nvmeofctl-rdma.sh.j2").is_file()
    keys = [p.read_text().strip() for p in KEYS.glob("*.key")]
    for path in to.rglob("*"):
        if path.is_file() and "collections" not in path.parts:
            text = path.read_text(errors="replace")
            assert not any(k in text for k in keys), path
    assert (to / "group_vars/all/vault.yml").read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert oct((to / "group_vars/all/vault.yml").stat().st_mode & 0o777) == "0o600"


def test_the_vault_decrypts_to_the_specs_keys(project):
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    to, _pw, _doc = project
    plain = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(b"correct horse"))]).decrypt(
        (to / "group_vars/all/vault.yml").read_bytes()).decode()
    values = dict(line.split(": ", 1) for line in plain.splitlines())
    assert json.loads(values["nvmeofctl_dhchap_secret_gpu1_train"]) == (KEYS / "gpu1.key").read_text().strip()
    assert json.loads(values["nvmeofctl_dhchap_ctrl_key_tgt1_gpu1"]) == (KEYS / "stor1.key").read_text().strip()


def test_ansible_runs_the_project_and_resolves_the_keys(project):
    to, pw, _doc = project
    syntax = subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "--syntax-check", "--vault-password-file",
                             str(pw)], cwd=to, capture_output=True, text=True, timeout=120)
    assert syntax.returncode == 0, syntax.stderr
    digest = subprocess.run(
        [str(BIN / "ansible"), "gpu1", "-m", "debug", "-a",
         "msg={{ nvmeofctl_nvme_host.connections[1].dhchap_secret | hash('sha256') }}",
         "--vault-password-file", str(pw)], cwd=to, capture_output=True, text=True, timeout=120)
    want = hashlib.sha256((KEYS / "gpu1.key").read_text().strip().encode()).hexdigest()
    assert digest.returncode == 0 and want in digest.stdout, digest.stdout + digest.stderr
    # every other inventory string is data, never a template
    hosts = (to / "inventory/hosts.yml").read_text()
    assert hosts.count("!unsafe") > 20 and hosts.count('"{{ nvmeofctl_') == 6


def test_without_a_vault_password_the_keys_are_left_out(tmp_path, run_cli):
    rc, out, err = run_cli(["export", "-f", str(SPEC), "--to", str(tmp_path / "p")])
    assert rc == 0 and "6 key(s) left out" in out
    example = (tmp_path / "p/group_vars/all/secrets.yml.example").read_text()
    assert 'nvmeofctl_dhchap_secret_gpu1_train: ""   # dhchap_secret of GPU node gpu1 for' in example
    assert "DHHC-1:01" not in example and not (tmp_path / "p/group_vars/all/vault.yml").exists()
    rc, out, err = run_cli(["export", "-f", str(SPEC), "--to", str(tmp_path / "p")])
    assert rc == 2 and "--force" in err
