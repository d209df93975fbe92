"""plugins/modules/nvmet_target.py run in-process (main(), SystemExit, stdout JSON) against a fake
configfs tree, with modprobe/systemctl recorded instead of run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "collection" / "target"))
sys.path.insert(0, str(REPO / "playbooks" / "collections"))
import faketarget  # noqa: E402
from modrun import TEST_PYTHON, run_module  # noqa: E402
from faketarget import CTRL_KEY, HOSTNQN, KEY, SUBNQN  # noqa: E402

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.modules import nvmet_target as module  # noqa: E402


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Fake target: configfs root, state/lib/unit dirs; commands recorded, all succeed."""
    e = {"root": tmp_path / "nvmet", "state": tmp_path / "etc", "lib": tmp_path / "lib",
         "unit": tmp_path / "root" / "etc" / "systemd" / "system", "data": tmp_path / "data", "cmds": []}
    e["root"].mkdir()
    # the kernel modules are loaded (/sys/module stand-in): no modprobe unless a test unloads them
    for m in ("nvmet", "nvmet_rdma", "nvmet_tcp"):
        (tmp_path / "sys-module" / m).mkdir(parents=True)
    monkeypatch.setattr(module, "SYS_MODULE_DIR", str(tmp_path / "sys-module"))
    # configfs over a plain tree: the kernel's part emulated, the module's own code path run
    monkeypatch.setattr(module, "configfs", faketarget.make_plain_fs(sys.modules[module.ConfigFS.__module__]))

    def run_command(self, args, **kw):
        e["cmds"].append([os.path.basename(args[0])] + list(args[1:]))
        if os.path.basename(args[0]) == "systemctl" and args[1:3] == ["--root=%s" % (tmp_path / "root"), "enable"]:
            wants = e["unit"] / "multi-user.target.wants"
            wants.mkdir(parents=True, exist_ok=True)
            (wants / args[-1]).symlink_to(e["unit"] / args[-1])  # enable [--no-reload] UNIT
        return 0, "", ""

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: "/usr/sbin/" + name)
    return e


def params(e, **over):
    p = {
        "configfs_root": str(e["root"]), "state_dir": str(e["state"]), "lib_dir": str(e["lib"]),
        "unit_dir": str(e["unit"]), "backing_prefixes": [str(e["data"].parent) + "/"],
        "hosts": [{"nqn": HOSTNQN, "dhchap_key": KEY, "dhchap_ctrl_key": CTRL_KEY}],
        "subsystems": [{"nqn": SUBNQN, "serial": "0123456789abcdef", "allowed_hosts": [HOSTNQN],
                        "namespaces": [{"nsid": 1, "device_path": str(e["data"] / "pool1.img"), "size": 1 << 20,
                                        "create_file": True, "uuid": "fbd61f08-fde1-48e3-b431-57fda06e7aa9"}]}],
        "ports": [{"id": 1, "trtype": "rdma", "traddr": "192.168.100.1", "trsvcid": 4420, "subsystems": [SUBNQN]}],
    }
    p.update(over)
    return p


def run(monkeypatch, capsys, args, check=False, diff=False):
    return run_module(module, monkeypatch, capsys, args, check, diff)


def snapshot(*dirs):
    out = {}
    for d in dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            for n in filenames + dirnames:
                p = os.path.join(dirpath, n)
                st = os.lstat(p)
                out[p] = (st.st_mode, st.st_ino, st.st_mtime_ns, os.readlink(p) if os.path.islink(p) else None)
    return out


def test_check_mode_predicts_apply_then_rerun_is_a_noop(env, monkeypatch, capsys):
    pred, _ = run(monkeypatch, capsys, params(env), check=True, diff=True)
    assert pred["changed"] is True
    assert os.listdir(env["root"]) == [] and not env["state"].exists() and not env["data"].exists()  # nothing written
    assert env["cmds"] == []

    res, _ = run(monkeypatch, capsys, params(env), diff=True)
    assert res["changed"] is True and "failed" not in res
    assert res["changes"] == pred["changes"]  # the prediction is exactly what was done
    assert res["diff"] == pred["diff"]
    objects = [c["object"] for c in res["changes"]]
    assert objects[:6] == ["host %s" % HOSTNQN, "subsystem %s" % SUBNQN, "file %s" % (env["data"] / "pool1.img"),
                           "subsystem %s / namespace 1" % SUBNQN, "subsystem %s / allowed host %s" % (SUBNQN, HOSTNQN),
                           "port 1"]
    assert {"file %s" % (env["state"] / "nvmet.json"), "file %s" % (env["lib"] / "nvmeofctl-boot.pyz"),
            "file %s" % (env["unit"] / "nvmeofctl-nvmet.service")} <= set(objects)
    # the backing file it created is recorded: later runs may grow and export it
    assert res["managed"] == {"hosts": [HOSTNQN], "subsystems": [SUBNQN], "ports": ["1"],
                              "files": [str(env["data"] / "pool1.img")]}

    again, _ = run(monkeypatch, capsys, params(env), diff=True)
    assert again["changed"] is False and again["changes"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    check_again, _ = run(monkeypatch, capsys, params(env), check=True)
    assert check_again["changed"] is False


def test_diff_only_in_diff_mode(env, monkeypatch, capsys):
    for check in (True, False):
        res, _ = run(monkeypatch, capsys, params(env), check=check)
        assert "failed" not in res and res["changes"] and "diff" not in res
    res, _ = run(monkeypatch, capsys, params(env), diff=True)
    assert "failed" not in res and set(res["diff"]) == {"before", "after"}
    assert "subsystem %s" % SUBNQN in res["diff"]["after"]


def test_secrets_never_leave_the_module(env, monkeypatch, capsys):
    _, raw1 = run(monkeypatch, capsys, params(env), check=True, diff=True)
    _, raw2 = run(monkeypatch, capsys, params(env), diff=True)
    rotated = params(env, hosts=[{"nqn": HOSTNQN, "dhchap_key": CTRL_KEY, "dhchap_ctrl_key": KEY}],
                     allow_disruptive=True)  # a changed key re-authenticates
    res, raw3 = run(monkeypatch, capsys, rotated, diff=True)
    for raw in (raw1, raw2, raw3):
        for secret in (KEY, CTRL_KEY, KEY[10:40], CTRL_KEY[10:40]):
            assert secret not in raw
    host_change = [c for c in res["changes"] if c["object"] == "host %s" % HOSTNQN][0]
    assert host_change["disruptive"] is True and "<changed>" in host_change["detail"]
    assert "<changed>" in res["diff"]["after"]
    # the key file on disk holds them, mode 0600
    cfg = env["state"] / "nvmet.json"
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"
    assert json.loads(cfg.read_text())["desired"]["hosts"][HOSTNQN]["dhchap_key"] == CTRL_KEY


def test_persistence_written_once_and_unchanged_on_rerun(env, monkeypatch, capsys):
    run(monkeypatch, capsys, params(env))
    unit = env["unit"] / "nvmeofctl-nvmet.service"
    text = unit.read_text()
    assert "Type=oneshot" in text and "RemainAfterExit=yes" in text
    assert "After=nvmeofctl-rdma.service network-online.target local-fs.target" in text
    assert "ExecStart=%s %s nvmet --config %s" % (  # the interpreter the action plugin rendered in
        TEST_PYTHON, env["lib"] / "nvmeofctl-boot.pyz", env["state"] / "nvmet.json") in text
    program = env["lib"] / "nvmeofctl-boot.pyz"
    assert program.read_bytes() == module.bootapp.build()
    assert os.listdir(env["lib"]) == ["nvmeofctl-boot.pyz"]
    before = snapshot(env["state"], env["lib"], env["unit"])
    res, _ = run(monkeypatch, capsys, params(env))
    assert res["changed"] is False
    assert snapshot(env["state"], env["lib"], env["unit"]) == before  # not even rewritten
    # persist: false writes no persistence (managed state still recorded)
    # (another data dir: etc2 does not record pool1.img, which a fresh state would refuse to adopt)
    env2 = dict(env, state=env["state"].parent / "etc2", lib=env["lib"].parent / "lib2", unit=env["unit"].parent / "u2",
                data=env["data"].parent / "data2")
    run(monkeypatch, capsys, params(env2, persist=False, allow_disruptive=True))  # data2: another device
    assert sorted(os.listdir(env2["state"])) == ["nvmet-managed.json"]
    assert not env2["lib"].exists() and not env2["unit"].exists()


def test_modprobe_once_and_systemctl_only_when_the_unit_changes(env, monkeypatch, capsys, tmp_path):
    # nothing loaded yet (systemctl always runs: with --root for this unit tree)
    monkeypatch.setattr(module, "SYS_MODULE_DIR", str(tmp_path / "sysmodule"))
    os.rmdir(env["root"])  # nvmet not loaded yet: no configfs tree

    real_run = basic.AnsibleModule.run_command

    def run_command(self, args, **kw):
        if os.path.basename(args[0]) == "modprobe":
            env["root"].mkdir()  # loading nvmet creates its configfs tree
            for m in args[2:]:
                (tmp_path / "sysmodule" / m).mkdir(parents=True)
        return real_run(self, args, **kw)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    p = params(env)
    p["ports"].append({"id": 2, "trtype": "tcp", "traddr": "192.168.100.1", "subsystems": [SUBNQN]})
    pred, _ = run(monkeypatch, capsys, p, check=True)
    assert pred["changes"][0]["object"] == "kernel modules"
    assert pred["changes"][0]["detail"] == "modprobe -a nvmet nvmet_rdma nvmet_tcp"
    assert env["cmds"] == []
    res, _ = run(monkeypatch, capsys, p)
    assert res["changes"] == pred["changes"]
    assert env["cmds"] == [["modprobe", "-a", "nvmet", "nvmet_rdma", "nvmet_tcp"],
                           ["systemctl", "--root=%s" % (tmp_path / "root"), "enable", "--no-reload", "nvmeofctl-nvmet.service"]]
    env["cmds"].clear()
    res, _ = run(monkeypatch, capsys, p)
    assert res["changed"] is False and env["cmds"] == []  # no-op: no command at all


def test_disruptive_changes_refused_when_not_allowed(env, monkeypatch, capsys):
    run(monkeypatch, capsys, params(env))
    p = params(env, allow_disruptive=False)
    p["ports"][0]["traddr"] = "192.168.100.2"
    res, _ = run(monkeypatch, capsys, p)
    assert res["failed"] is True and "disruptive change(s) refused" in res["msg"] and "update port 1" in res["msg"]
    assert (env["root"] / "ports" / "1" / "addr_traddr").read_text() == "192.168.100.1"


def test_bad_spec_fails_with_one_line_message(env, monkeypatch, capsys):
    p = params(env)
    p["ports"][0]["subsystems"] = ["nqn.2024-01.io.lab:nope"]
    res, _ = run(monkeypatch, capsys, p)
    assert res["failed"] is True
    assert res["msg"] == "nvmet_target: ports[0].subsystems: nqn.2024-01.io.lab:nope is not in subsystems"


def test_apply_failure_reports_what_was_done(env, monkeypatch, capsys):
    p = params(env)
    # the fake tree cannot fail like the kernel; make the namespace dir a file to force an error
    (env["root"] / "subsystems" / SUBNQN / "namespaces").mkdir(parents=True)
    (env["root"] / "subsystems" / SUBNQN / "namespaces" / "1").write_text("")
    res, raw = run(monkeypatch, capsys, p)
    assert res["failed"] is True
    assert res["msg"].startswith("nvmet_target: subsystem %s / namespace 1: create failed" % SUBNQN)
    assert [c["object"] for c in res["changes"]] == ["host %s" % HOSTNQN, "subsystem %s" % SUBNQN,
                                                     "file %s" % (env["data"] / "pool1.img")]
    assert KEY not in raw


def test_site_playbook_calls_each_module_once_with_safe_output():
    import yaml

    plays = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    assert len(plays) == 1
    play = plays[0]
    assert play["gather_facts"] is False and play["strategy"] == "free"
    # one module run per host: the role module also reconciles the RDMA link (its `rdma` option)
    assert [next(k for k in t if k.startswith("nvmeofctl.fabric.")) for t in play["tasks"]] == [
        "nvmeofctl.fabric.nvmet_target", "nvmeofctl.fabric.nvme_host"]
    nvmet_task = play["tasks"][0]
    assert all("rdma" in next(v for k, v in t.items() if k.startswith("nvmeofctl.fabric.")) for t in play["tasks"])
    # secrets are masked by the module's no_log options; task no_log would hide `changes`
    assert all("no_log" not in t for t in play["tasks"])
    spec = module.ARGUMENT_SPEC["hosts"]["options"]
    assert spec["dhchap_key"]["no_log"] is True and spec["dhchap_ctrl_key"]["no_log"] is True
    # every option the play passes exists in the module's argument spec
    assert set(nvmet_task["nvmeofctl.fabric.nvmet_target"]) <= set(module.ARGUMENT_SPEC)


def test_playbooks_pass_the_rdma_rails_to_both_role_modules():
    """site.yml and site_ordered.yml: every role-module task that passes `rdma` (rail 1) also
    passes `rdma_rails` (rails 2..N) from the host variable nvmeofctl_rdma_rails, omitted when
    empty; site.yml documents that variable."""
    import yaml

    from ansible_collections.nvmeofctl.fabric.plugins.modules import nvme_host

    want = "{{ nvmeofctl_rdma_rails if (nvmeofctl_rdma_rails | default([]) | length) > 0 else omit }}"
    seen = []
    for name in ("site.yml", "site_ordered.yml"):
        text = (REPO / "playbooks" / name).read_text()
        for play in yaml.safe_load(text):
            for task in play["tasks"]:
                mod = next(k for k in task if k.startswith("nvmeofctl.fabric."))
                if "rdma" in task[mod]:
                    assert task[mod]["rdma_rails"] == want, (name, task["name"])
                    seen.append((name, mod))
    assert sorted(seen) == [("site.yml", "nvmeofctl.fabric.nvme_host"), ("site.yml", "nvmeofctl.fabric.nvmet_target"),
                            ("site_ordered.yml", "nvmeofctl.fabric.nvme_host"),
                            ("site_ordered.yml", "nvmeofctl.fabric.nvmet_target")]
    assert "#   nvmeofctl_rdma_rails: " in (REPO / "playbooks" / "site.yml").read_text()
    assert "rdma_rails" in module.ARGUMENT_SPEC and "rdma_rails=dict(" in Path(nvme_host.__file__).read_text()


def test_the_copied_restore_program_of_earlier_versions_is_removed(env, monkeypatch, capsys):
    """Earlier versions copied module_utils/nvmet.py to lib_dir; the unit now runs the boot
    program (nvmeofctl-boot.pyz nvmet), and the next apply removes the copy."""
    env["lib"].mkdir()
    (env["lib"] / "nvmet.py").write_text("# nvmeofctl restore program, old version\n")
    pred, _ = run(monkeypatch, capsys, params(env), check=True)
    res, _ = run(monkeypatch, capsys, params(env))
    gone = ("file %s" % (env["lib"] / "nvmet.py"), "remove")
    assert gone in [(c["object"], c["action"]) for c in pred["changes"]]
    assert res["changes"] == pred["changes"]
    assert os.listdir(env["lib"]) == ["nvmeofctl-boot.pyz"]
    again, _ = run(monkeypatch, capsys, params(env))
    assert again["changed"] is False


def test_without_its_unit_text_the_module_changes_nothing(env, monkeypatch, capsys):
    """Called without the action plugin's host_files (persist on), the module fails before it
    touches configfs, a backing file or a boot file."""
    res, _ = run(monkeypatch, capsys, dict(params(env), host_files={}))
    assert res["failed"] is True and "host_files.nvmet_unit not given" in res["msg"]
    assert os.listdir(env["root"]) == [] and env["cmds"] == []
    assert not env["data"].exists() and not env["state"].exists() and not env["lib"].exists()


def test_persist_false_removes_the_boot_files_and_nothing_else(env, monkeypatch, capsys):
    """teardown's target step: exporting nothing with persist false removes what apply wrote for
    reboots (unit disabled, nvmet.json with the keys, the boot program) and the objects it
    recorded; the backing file (data) stays; a second run changes nothing."""
    run(monkeypatch, capsys, params(env))
    assert (env["unit"] / "multi-user.target.wants" / "nvmeofctl-nvmet.service").is_symlink()
    env["cmds"].clear()
    gone = dict(params(env), hosts=[], subsystems=[], ports=[], persist=False, allow_disruptive=True)
    res, _ = run(monkeypatch, capsys, gone)
    assert not res.get("failed"), res
    files = sorted((c["action"], c["object"].replace(str(env["root"].parent), "")) for c in res["changes"]
                   if c["object"].startswith(("file ", "systemd ")))
    assert files == [("disable", "systemd nvmeofctl-nvmet.service"),
                     ("remove", "file /etc/nvmet.json"),
                     ("remove", "file /lib/nvmeofctl-boot.pyz"),
                     ("remove", "file /root/etc/systemd/system/nvmeofctl-nvmet.service"),
                     ("update", "file /etc/nvmet-managed.json")]
    assert [c[1:3] for c in env["cmds"] if c[0] == "systemctl"] == [
        ["--root=%s" % (env["unit"].parents[2]), "disable"]]
    assert not (env["state"] / "nvmet.json").exists() and os.listdir(env["lib"]) == []
    assert not (env["unit"] / "nvmeofctl-nvmet.service").exists()
    assert os.listdir(env["root"] / "subsystems") == [] and os.listdir(env["root"] / "ports") == []
    assert (env["data"] / "pool1.img").exists()  # data kept
    again, _ = run(monkeypatch, capsys, gone)
    assert again["changed"] is False and again["changes"] == []
