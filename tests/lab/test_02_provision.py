"""Provision the lab from its spec over RoCE v2 (Soft-RoCE), and prove it on the VMs themselves.

One ordered story on the shared lab (the tests depend on each other's state, as an operator's
session would): apply -> what each GPU node sees -> ACLs -> data -> idempotence -> plan/check of
an edit -> apply of the edit without disturbing live connections -> back, in order.
"""

from __future__ import annotations

import json
import time

import pytest

from nvmeofctl.spec import load_spec

from .conftest import nvmeofctl, nvmeofctl_json, spec_with_scratch

pytestmark = pytest.mark.lab

NVMET = "/sys/kernel/config/nvmet"


@pytest.fixture(scope="module")
def spec(lab):
    return load_spec(lab.spec)


def nqn_of(spec, name: str) -> str:
    return next(s.nqn for s in spec.subsystems if s.nqn.endswith(":" + name))


def ns_uuid(spec, name: str) -> str:
    return next(str(n.uuid) for s in spec.subsystems for n in s.namespaces if n.name == name)


def controllers(vm) -> dict[str, dict[str, str]]:
    """Fabrics controllers as the kernel sees them (sysfs), by name."""
    out = vm.run(
        "for c in /sys/class/nvme/nvme*; do [ -e $c/transport ] || continue; "
        "echo \"$(basename $c)|$(cat $c/transport)|$(cat $c/subsysnqn)|$(cat $c/state)|$(cat $c/cntlid)|"
        "$(cat $c/address | tr ',' ' ')\"; done"
    )
    ctrls = {}
    for line in out.strip().splitlines():
        name, transport, nqn, state, cntlid, address = line.split("|")
        ctrls[name] = {"transport": transport, "nqn": nqn, "state": state, "cntlid": cntlid, "address": address}
    return ctrls


def by_uuid(vm, uuid: str) -> str | None:
    """The block device the namespace UUID resolves to (never a /dev/nvmeXnY guess)."""
    rc, out, _ = vm.rc(f"readlink -f /dev/disk/by-id/nvme-uuid.{uuid}")
    dev = out.strip()
    return dev if rc == 0 and dev.startswith("/dev/nvme") else None


def write_random(vm, dev: str, mib: int) -> str:
    """Write `mib` MiB of random data at the start of `dev` with O_DIRECT; returns its sha256."""
    return vm.run(
        f"head -c {mib * 1048576} /dev/urandom > /root/data-{mib}.bin && dd if=/root/data-{mib}.bin of={dev} "
        f"bs=1M oflag=direct conv=fsync status=none && sha256sum < /root/data-{mib}.bin"
    ).split()[0]


def read_sha(vm, path: str, mib: int) -> str:
    return vm.run(f"dd if={path} bs=1M count={mib} iflag=direct status=none | sha256sum").split()[0]


def wait_for(predicate, timeout: float, what: str, interval: float = 3.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def test_apply_fresh_lab(lab, spec):
    code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))
    assert code == 0, err
    assert {h["host"]: h["status"] for h in data["hosts"]} == {"tgt1": "changed", "gpu1": "changed", "gpu2": "changed"}
    # the DH-HMAC-CHAP keys never reach the output
    secrets = [p.read_text().strip() for p in (lab.dir / "secrets").iterdir()]
    for s in secrets:
        assert s not in err and s not in json.dumps(data)


def test_target_configfs_matches_the_spec(lab, spec):
    tgt = lab.vm("tgt1")
    train, ckpt = nqn_of(spec, "train"), nqn_of(spec, "ckpt")
    gpu1, gpu2 = spec.host("gpu1").host_nqn, spec.host("gpu2").host_nqn
    out = tgt.run(
        f"cd {NVMET}; ls subsystems; echo --; ls subsystems/{train}/allowed_hosts; echo --; "
        f"ls subsystems/{ckpt}/allowed_hosts; echo --; cat subsystems/*/attr_allow_any_host; echo --; "
        f"cat ports/1/addr_trtype ports/1/addr_traddr ports/1/addr_trsvcid; ls ports/1/subsystems; echo --; "
        # configfs attributes always claim 4096 bytes: look at the content, not the size
        f"cat hosts/{gpu1}/dhchap_hash; grep -q '^DHHC-1:' hosts/{gpu1}/dhchap_ctrl_key && echo ctrl-key-set; "
        f"grep -q . hosts/{gpu2}/dhchap_key && echo gpu2-has-key || echo gpu2-no-key"
    )
    subs, train_hosts, ckpt_hosts, any_host, rest, auth = out.split("--\n")
    assert sorted(subs.split()) == sorted([train, ckpt])
    assert sorted(train_hosts.split()) == sorted([gpu1, gpu2])
    assert ckpt_hosts.split() == [gpu1]
    assert set(any_host.split()) == {"0"}  # never allow-any-host
    assert rest.split()[:3] == ["rdma", "192.168.100.11", "4420"]
    assert sorted(rest.split()[3:]) == sorted([train, ckpt])
    assert auth.split() == ["hmac(sha256)", "ctrl-key-set", "gpu2-no-key"]


def test_gpu1_sees_both_namespaces_by_uuid_over_rdma(lab, spec):
    gpu1 = lab.vm("gpu1")
    assert gpu1.run("cat /etc/nvme/hostnqn").strip() == spec.host("gpu1").host_nqn
    assert gpu1.run("cat /etc/nvme/hostid").strip() == str(spec.host("gpu1").host_id)
    ctrls = controllers(gpu1)
    assert sorted(c["nqn"] for c in ctrls.values()) == sorted([nqn_of(spec, "train"), nqn_of(spec, "ckpt")])
    assert all(c["transport"] == "rdma" and c["state"] == "live" for c in ctrls.values()), ctrls
    assert all("traddr=192.168.100.11" in c["address"] for c in ctrls.values())
    assert by_uuid(gpu1, ns_uuid(spec, "train")) and by_uuid(gpu1, ns_uuid(spec, "ckpt"))
    # the NGUID the spec fixed is what the namespace reports
    nguid = next(str(n.nguid) for s in spec.subsystems for n in s.namespaces if n.name == "ckpt")
    dev = by_uuid(gpu1, ns_uuid(spec, "ckpt")).rsplit("/", 1)[1]
    assert gpu1.run(f"cat /sys/block/{dev}/nguid").strip() == nguid
    # DH-HMAC-CHAP is in use on the ckpt controller (bidirectional: both secrets set)
    ckpt_ctrl = next(n for n, c in ctrls.items() if c["nqn"] == nqn_of(spec, "ckpt"))
    assert gpu1.run(f"cat /sys/class/nvme/{ckpt_ctrl}/dhchap_ctrl_secret").strip().startswith("DHHC-1:")


def test_gpu2_sees_only_train(lab, spec):
    gpu2 = lab.vm("gpu2")
    ctrls = controllers(gpu2)
    assert [c["nqn"] for c in ctrls.values()] == [nqn_of(spec, "train")]
    assert by_uuid(gpu2, ns_uuid(spec, "train")) and not by_uuid(gpu2, ns_uuid(spec, "ckpt"))
    assert spec.host("gpu1").host_nqn != spec.host("gpu2").host_nqn


def test_gpu2_cannot_connect_to_ckpt_by_hand(lab, spec):
    """The ACL refuses gpu2, and says so: the kernel names the subsystem and gpu2's host NQN
    (the real refusal, tests/fixtures/nvme/nvme-connect-rdma-host-not-allowed.txt), not a
    timeout or any other error."""
    gpu2 = lab.vm("gpu2")
    ckpt = nqn_of(spec, "ckpt")
    rc, out, err = gpu2.rc(
        f"timeout 60 nvme connect -t rdma -a 192.168.100.11 -s 4420 -n {ckpt}", timeout=90
    )
    assert rc == 1 and "Input/output error" in out + err, (rc, out + err)
    log = gpu2.run("dmesg | tail -20")  # the refusal is gpu2's latest kernel message
    assert f"Connect for subsystem {ckpt} is not allowed, hostnqn: {spec.host('gpu2').host_nqn}" in log, log
    assert [c["nqn"] for c in controllers(gpu2).values()] == [nqn_of(spec, "train")]
    assert not by_uuid(gpu2, ns_uuid(spec, "ckpt"))


def test_ckpt_data_survives_reconnect_and_is_in_the_backing_store(lab, spec):
    gpu1, tgt = lab.vm("gpu1"), lab.vm("tgt1")
    dev = by_uuid(gpu1, ns_uuid(spec, "ckpt"))
    written = write_random(gpu1, dev, 4)
    ckpt_ctrl = next(n for n, c in controllers(gpu1).items() if c["nqn"] == nqn_of(spec, "ckpt"))
    gpu1.run(f"nvme disconnect -d {ckpt_ctrl}")
    assert not by_uuid(gpu1, ns_uuid(spec, "ckpt"))
    # apply notices the missing connection and restores exactly that
    code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))
    assert code == 0, err
    changed = {h["host"]: h["changes"] for h in data["hosts"]}
    assert [c["object"] for c in changed["gpu1"] if c["object"].startswith("connection:")] == [
        f"connection:rdma://192.168.100.11:4420/{nqn_of(spec, 'ckpt')}"
    ]
    assert changed["tgt1"] == [] and changed["gpu2"] == []
    dev = wait_for(lambda: by_uuid(gpu1, ns_uuid(spec, "ckpt")), 60, "ckpt block device")
    assert read_sha(gpu1, dev, 4) == written
    assert read_sha(tgt, "/var/lib/nvmeofctl/ckpt.img", 4) == written  # in the target's backing store


def _converged_apply(lab) -> dict:
    """An apply that finds nothing to do: exit 0, every host ok with no change, and no Ansible
    run at all (no playbook phase in its run record, no play stats)."""
    code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))
    assert code == 0, err
    assert {h["host"]: (h["status"], h["changes"]) for h in data["hosts"]} == {
        "tgt1": ("ok", []), "gpu1": ("ok", []), "gpu2": ("ok", [])}, data["hosts"]
    assert data["stats"] == {}, data["stats"]
    assert "not running Ansible there: tgt1, gpu1, gpu2" in err, err
    code, hist, err = nvmeofctl_json("history", "--limit", "1")
    assert code == 0, err
    code, record, err = nvmeofctl_json("history", "--show", hist["runs"][0]["id"])
    assert code == 0, err
    assert [p["name"] for p in record["phases"]] == ["read and plan"], record["phases"]
    return data


UNIT_DIR = "/etc/systemd/system"


def test_second_apply_runs_no_ansible_and_boot_file_drift_is_planned_and_fixed(lab):
    """A converged apply costs one read: no module runs. The plan covers the boot persistence
    files too (read as digests and modes in the same round trip), so a drifted unit, a lost
    wants link or a wrong mode is planned, fixed by the next apply on exactly the hosts that
    drifted, and read back from the VMs."""
    _converged_apply(lab)
    tgt, gpu1 = lab.vm("tgt1"), lab.vm("gpu1")
    connect_unit = f"{UNIT_DIR}/nvmeofctl-connect.service"
    wants = f"{UNIT_DIR}/multi-user.target.wants/nvmeofctl-nvmet.service"
    script = "/usr/local/lib/nvmeofctl/rdma-restore.sh"
    good_unit = gpu1.run(f"cat {connect_unit}")
    gpu1.run(f"echo '# edited by hand' >> {connect_unit}")
    tgt.run(f"rm {wants} && chmod 0600 {script}")
    code, plan, err = nvmeofctl_json("plan", "-f", str(lab.spec))
    assert code == 0, err
    got = {h["host"]: sorted((c["action"], c["object"]) for c in h["changes"]) for h in plan["hosts"]}
    assert got == {
        "tgt1": [("update", f"file {script}"), ("update", "systemd nvmeofctl-nvmet.service")],
        "gpu1": [("update", f"file {connect_unit}"), ("update", "systemd nvmeofctl-connect.service")],
        "gpu2": [],
    }, got
    assert {h["host"]: h["converged"] for h in plan["hosts"]} == {"tgt1": False, "gpu1": False, "gpu2": True}
    code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))
    assert code == 0, err
    rows = {h["host"]: h for h in data["hosts"]}
    assert set(data["stats"]) == {"tgt1", "gpu1"}, data["stats"]  # gpu2 had nothing to do: not run
    assert (rows["gpu2"]["status"], rows["gpu2"]["changes"]) == ("ok", []), rows["gpu2"]
    assert sorted((c["action"], c["object"]) for c in rows["tgt1"]["changes"]) == got["tgt1"], rows["tgt1"]
    assert sorted((c["action"], c["object"]) for c in rows["gpu1"]["changes"]) == got["gpu1"], rows["gpu1"]
    # read back from the VMs
    assert gpu1.run(f"cat {connect_unit}") == good_unit
    assert gpu1.run("systemctl is-enabled nvmeofctl-connect.service").strip() == "enabled"
    assert tgt.run(f"readlink {wants}").strip() == f"{UNIT_DIR}/nvmeofctl-nvmet.service"
    assert tgt.run(f"stat -c %a {script}").strip() == "755"
    _converged_apply(lab)


def _add_scratch(lab, spec) -> str:
    """A copy of the lab spec with one more namespace, exported to gpu2 only."""
    return str(spec_with_scratch(lab, spec.name, "cluster-scratch.yaml"))


def _snapshot(lab) -> dict[str, str]:
    return {
        "tgt1": lab.vm("tgt1").run(f"cd {NVMET} && find . | sort; ls /var/lib/nvmeofctl"),
        "gpu1": json.dumps(controllers(lab.vm("gpu1")), sort_keys=True),
        "gpu2": json.dumps(controllers(lab.vm("gpu2")), sort_keys=True),
    }


def test_plan_and_check_show_exactly_the_edit_and_change_nothing(lab, spec):
    edited = _add_scratch(lab, spec)
    scratch = f"nqn.2024-01.io.nvmeofctl.{spec.name}:scratch"
    before = _snapshot(lab)
    code, plan, err = nvmeofctl_json("plan", "-f", edited)
    assert code == 0, err
    per_host = {h["host"]: h["changes"] for h in plan["hosts"]}
    assert per_host["gpu1"] == []
    # the new path, and the files that record it (boot-time connections, managed list)
    assert [c["object"] for c in per_host["gpu2"]] == [f"connection:rdma://192.168.100.11:4420/{scratch}",
                                                       "file /etc/nvmeofctl/initiator-managed.json",
                                                       "file /etc/nvmeofctl/connections.json"]
    tgt_objects = [c["object"] for c in per_host["tgt1"]]
    state_files = {"file /etc/nvmeofctl/nvmet-managed.json", "file /etc/nvmeofctl/nvmet.json"}
    assert state_files <= set(tgt_objects), tgt_objects
    assert all(scratch in o or "scratch.img" in o for o in set(tgt_objects) - state_files), tgt_objects
    assert any(o.endswith("namespace 1") for o in tgt_objects)
    assert any("allowed host " + spec.host("gpu2").host_nqn in o for o in tgt_objects)
    assert plan["disruptive"] == 0
    # apply --check predicts the same and changes nothing either
    code, check, err = nvmeofctl_json("apply", "-f", edited, "--check")
    assert code == 0, err
    predicted = {h["host"]: [c["object"] for c in h["changes"]] for h in check["hosts"]}
    assert predicted["gpu1"] == []
    assert f"connection:rdma://192.168.100.11:4420/{scratch}" in predicted["gpu2"]
    # the plan is exact: the modules in check mode predict the same changes, no more
    assert {h: sorted(o) for h, o in predicted.items()} == {
        h: sorted(c["object"] for c in ch) for h, ch in per_host.items()}
    assert _snapshot(lab) == before


def test_apply_of_the_edit_keeps_existing_connections(lab, spec):
    edited = lab.dir / "cluster-scratch.yaml"
    gpu1_before = controllers(lab.vm("gpu1"))
    gpu2_before = controllers(lab.vm("gpu2"))
    code, data, err = nvmeofctl_json("apply", "-f", str(edited))
    assert code == 0, err
    # a new export and a node that connects to it: the target first, then the node
    assert (data["order"]["playbook"], data["order"]["release"]) == ("site_ordered.yml", []), data["order"]
    gpu1_after = controllers(lab.vm("gpu1"))
    assert gpu1_after == gpu1_before  # same controller instances (names and cntlids), still live
    gpu2_after = controllers(lab.vm("gpu2"))
    for name, c in gpu2_before.items():
        assert gpu2_after[name] == c
    new = [c for n, c in gpu2_after.items() if n not in gpu2_before]
    assert [c["nqn"] for c in new] == [f"nqn.2024-01.io.nvmeofctl.{spec.name}:scratch"]
    # and back to the lab spec: removing an export is disruptive, so it needs the flag (exit 7:
    # disruptive changes refused, nothing changed)
    proc = nvmeofctl("apply", "-f", str(lab.spec))
    assert proc.returncode == 7 and "--allow-disruptive" in proc.stderr, proc.stderr
    assert "scratch" in proc.stderr
    assert len(controllers(lab.vm("gpu2"))) == 2  # refused before touching anything
    gpu2 = lab.vm("gpu2")
    log_from = int(gpu2.run("dmesg | wc -l").strip())
    code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--allow-disruptive")
    assert code == 0, err
    # ordered: gpu2 released the scratch path before tgt1 removed the export
    assert data["order"]["playbook"] == "site_ordered.yml" and data["order"]["release"] == ["gpu2"], data["order"]
    assert [c["nqn"] for c in controllers(gpu2).values()] == [nqn_of(spec, "train")]
    assert "scratch" not in lab.vm("tgt1").run(f"ls {NVMET}/subsystems")
    # the kernel agrees: the scratch controller was removed while its target still answered, so
    # it never went into error recovery or reconnects (the race of the old single play)
    log = gpu2.run(f"dmesg | tail -n +{log_from + 1}")
    scratch = f"nqn.2024-01.io.nvmeofctl.{spec.name}:scratch"
    assert f'Removing ctrl: NQN "{scratch}"' in log, log
    for bad in ("error recovery", "Reconnecting in", "Failed reconnect", "reconnect"):
        assert bad not in log, log


# Reboots (target and GPU node) are proven with checksummed I/O running through them in
# test_08_data_safety.py.


def test_history_records_each_apply_of_this_story_without_a_secret(lab, state_dir):
    """Every apply above left a run record (the state folder is private to this test run): the
    newest is the ordered removal of `scratch`, exit 0, with gpu2's disconnect; no record holds
    a byte of the lab's DH-HMAC-CHAP keys."""
    code, hist, err = nvmeofctl_json("history", "--limit", "100")
    assert code == 0, err
    runs = hist["runs"]
    # test_apply_fresh_lab, the second apply, --check of the edit, the edit, the refused removal,
    # the removal (at least: earlier test files may add more)
    assert len(runs) >= 6, runs
    newest = runs[0]
    assert (newest["mode"], newest["exit_code"]) == ("apply", 0), newest
    refused = runs[1]
    assert refused["exit_code"] == 7 and "--allow-disruptive" in (refused["error"] or ""), refused
    code, record, err = nvmeofctl_json("history", "--show", newest["id"])
    assert code == 0, err
    gpu2 = next(h for h in record["hosts"] if h["host"] == "gpu2")
    # the release play's disconnect first, then the GPU play's rewrite of its managed record and
    # of the boot-time connections file (no scratch in either)
    assert [(c["action"], c["object"]) for c in gpu2["changes"][1:]] == [
        ("update", "file /etc/nvmeofctl/initiator-managed.json"),
        ("update", "file /etc/nvmeofctl/connections.json")], gpu2
    assert gpu2["changes"][0]["action"] == "disconnect", gpu2
    assert gpu2["changes"][0]["object"].startswith("controller:nvme"), gpu2
    assert [c["action"] for c in next(h for h in record["hosts"] if h["host"] == "tgt1")["changes"]][0] == "delete"
    assert any(p["name"] == "playbooks/site_ordered.yml" for p in record["phases"]), record["phases"]
    keys = [p.read_text().strip() for p in (lab.dir / "secrets").glob("*.key")]
    assert keys
    files = list((state_dir / "runs").glob("*.json"))
    assert len(files) == hist["total"]
    for f in files:
        text = f.read_text()
        assert not any(k in text for k in keys), f
        assert f.stat().st_mode & 0o077 == 0, f
