"""module_utils/persist.py: the one persistence loop (files, unit, systemctl) of every domain."""

from __future__ import annotations

import os

from nvmeofctl.resources import load_module_utils

persist = load_module_utils("persist")


class Module:
    """The part of AnsibleModule persist uses; records commands."""

    def __init__(self, systemctl="/usr/bin/systemctl"):
        self.cmds, self.warnings, self.exe = [], [], systemctl

    def get_bin_path(self, name):
        return self.exe if name == "systemctl" else None

    def run_command(self, cmd):
        self.cmds.append(cmd)
        return 0, "", ""

    def warn(self, msg):
        self.warnings.append(msg)


def test_systemd_root_however_the_unit_dir_is_spelled():
    assert persist.systemd_root("/etc/systemd/system") == "/"
    assert persist.systemd_root("/etc/systemd/system/") == "/"
    assert persist.systemd_root("/etc//systemd/system") == "/"
    assert persist.systemd_root("/srv/img/etc/systemd/system/") == "/srv/img"
    assert persist.systemd_root("/tmp/units") is None


def test_a_trailing_slash_still_enables_the_unit(tmp_path):
    """Issue #9: unit_dir '/etc/systemd/system/' used to skip systemctl enable."""
    m = Module()
    run = persist.systemctl_for(m, "/etc/systemd/system/")
    assert run("daemon-reload") is None and run("enable", "x.service") is None
    assert m.cmds == [["/usr/bin/systemctl", "daemon-reload"], ["/usr/bin/systemctl", "enable", "x.service"]]


def test_plan_then_apply_writes_enables_and_is_then_current(tmp_path):
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    files = [(str(tmp_path / "lib" / "prog"), b"\x00bytes", 0o644, "the program"),
             (str(units / "x.service"), "[Unit]\n", 0o644, None)]
    changes, states = persist.plan(files, str(units), "x.service")
    assert [s for _p, s in states] == ["absent", "absent"]
    assert [(c["object"], c["action"]) for c in changes] == [
        ("file %s" % files[0][0], "create"), ("file %s" % files[1][0], "create"), ("systemd x.service", "update")]
    assert "op" in changes[0] and all("op" not in load_module_utils("change").public(c) for c in changes)
    m = Module()
    done, failures = persist.apply(changes, persist.systemctl_for(m, str(units)))
    assert failures == [] and done == changes
    assert m.cmds == [["/usr/bin/systemctl", "--root=%s" % root, "enable", "x.service"]]  # offline: no reload
    assert os.path.islink(units / "multi-user.target.wants" / "x.service")  # made if systemctl did not
    assert persist.plan(files, str(units), "x.service")[0] == []
    removal = persist.plan_removal([files[1][0], str(tmp_path / "absent")], str(units), "x.service")
    assert [(c["object"], c["action"]) for c in removal] == [("systemd x.service", "disable"),
                                                            ("file %s" % files[1][0], "remove")]
    done, failures = persist.apply(removal, persist.systemctl_for(m, str(units)))
    assert failures == [] and not (units / "x.service").exists()
    assert not os.path.lexists(units / "multi-user.target.wants" / "x.service")
