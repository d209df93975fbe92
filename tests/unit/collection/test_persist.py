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
    assert run("daemon-reload") is None and run("enable", "--no-reload", "x.service") is None
    assert m.cmds == [["/usr/bin/systemctl", "daemon-reload"], ["/usr/bin/systemctl", "enable", "--no-reload", "x.service"]]


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
    assert m.cmds == [["/usr/bin/systemctl", "--root=%s" % root, "enable", "--no-reload", "x.service"]]  # offline: no reload
    assert os.path.islink(units / "multi-user.target.wants" / "x.service")  # made if systemctl did not
    assert persist.plan(files, str(units), "x.service")[0] == []
    removal = persist.plan_removal([files[1][0], str(tmp_path / "absent")], str(units), "x.service")
    assert [(c["object"], c["action"]) for c in removal] == [("systemd x.service", "disable"),
                                                            ("file %s" % files[1][0], "remove")]
    done, failures = persist.apply(removal, persist.systemctl_for(m, str(units)))
    assert failures == [] and not (units / "x.service").exists()
    assert not os.path.lexists(units / "multi-user.target.wants" / "x.service")


# --------------------------------------------------------------------------- the planner's view
def _dumped(paths):
    """Run the real state_command in bash over ``paths`` and parse it, as the planner does."""
    import subprocess

    out = subprocess.run(["bash", "-c", persist.state_command(paths)], capture_output=True, text=True,
                         check=True).stdout
    return persist.parse_state(out, paths)


def test_the_dumped_view_sees_what_the_module_sees(tmp_path):
    """plan on the controller (digests and modes read by state_command) and plan in the module
    (the files themselves) must say the same for every kind of path: current, other content,
    other mode, absent, a dangling symlink, a directory, a live symlink."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "cur").write_bytes(b"unit text\n")
    os.chmod(d / "cur", 0o644)
    (d / "mode").write_bytes(b"unit text\n")
    os.chmod(d / "mode", 0o600)
    (d / "other").write_bytes(b"edited by hand\n")
    os.symlink(d / "nowhere", d / "dangling")
    os.symlink(d / "cur", d / "link")
    (d / "dir").mkdir()
    (d / "it's spaced").write_bytes(b"unit text\n")
    os.chmod(d / "it's spaced", 0o644)
    paths = [str(d / n) for n in ("cur", "mode", "other", "absent", "dangling", "dir", "link", "it's spaced")]
    view = _dumped(paths)
    seen = {}
    for p in paths:
        for content, mode in ((b"unit text\n", 0o644), ("unit text\n", 0o600), (b"", 0o644)):
            assert view.state(p, content, mode) == persist.LOCAL.state(p, content, mode), (p, content, mode)
        assert view.lexists(p) == os.path.lexists(p), p
        seen[os.path.basename(p)] = view.state(p, b"unit text\n", 0o644)
    # and the states are the ones a person would name (not all "outdated")
    assert seen == {"cur": "current", "mode": "outdated", "other": "outdated", "absent": "absent",
                    "dangling": "absent", "dir": "outdated", "link": "current", "it's spaced": "current"}


def test_plan_through_the_dumped_view_equals_plan_on_the_files(tmp_path):
    units = tmp_path / "etc" / "systemd" / "system"
    files = [(str(tmp_path / "lib" / "prog"), b"\x00bytes", 0o644, "the program"),
             (str(units / "x.service"), "[Unit]\n", 0o644, None)]
    paths = [f[0] for f in files] + [persist.wants_path(str(units), "x.service")]
    changes, _ = persist.plan(files, str(units), "x.service")
    assert persist.plan(files, str(units), "x.service", fs=_dumped(paths))[0] == changes
    persist.apply(changes)
    assert persist.plan(files, str(units), "x.service", fs=_dumped(paths)) == persist.plan(files, str(units), "x.service")
    assert persist.plan(files, str(units), "x.service", fs=_dumped(paths))[0] == []
    os.remove(persist.wants_path(str(units), "x.service"))  # drift: the unit disabled by hand
    got = persist.plan(files, str(units), "x.service", fs=_dumped(paths))[0]
    assert [(c["object"], c["action"]) for c in got] == [("systemd x.service", "update")]
    assert got == persist.plan(files, str(units), "x.service")[0]


def test_a_path_the_dump_did_not_cover_is_an_error_not_a_guess(tmp_path):
    view = _dumped([str(tmp_path / "a")])
    try:
        view.state(str(tmp_path / "b"), b"", 0o644)
    except persist.UnreadPath as exc:
        assert str(tmp_path / "b") in str(exc)
    else:
        raise AssertionError("an unread path must not read as absent or current")
    rec = persist.Recorder()
    persist.plan([(str(tmp_path / "u"), "x", 0o644, None)], str(tmp_path), "u", fs=rec)
    persist.plan_removal([str(tmp_path / "old")], fs=rec)
    assert rec.paths == {str(tmp_path / "u"), persist.wants_path(str(tmp_path), "u"), str(tmp_path / "old")}


def test_daemon_reload_only_for_a_unit_systemd_may_hold_loaded(tmp_path):
    """A new unit needs no daemon-reload (systemd loads it when first referenced), a rewritten
    one does; enable never reloads implicitly (--no-reload). Each reload costs seconds on a slow
    host (5-10 s on the emulated lab)."""
    units = tmp_path / "units"
    calls = []

    def systemctl(*args):
        calls.append(args)
        if args[0] == "enable":  # what systemctl enable does on disk
            link = units / persist.WANTS / args[-1]
            link.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(units / args[-1], link)
        return None

    files = [(str(units / "x.service"), "[Unit]\n", 0o644, None)]
    changes, _ = persist.plan(files, str(units), "x.service")
    assert persist.apply(changes, systemctl)[1] == []
    assert calls == [("enable", "--no-reload", "x.service")]
    calls.clear()
    files = [(str(units / "x.service"), "[Unit]\nDescription=new\n", 0o644, None)]
    changes, _ = persist.plan(files, str(units), "x.service")
    assert "daemon-reload" in changes[0]["detail"]
    assert persist.apply(changes, systemctl)[1] == []
    assert calls == [("daemon-reload",), ("enable", "--no-reload", "x.service")]
    assert persist.plan(files, str(units), "x.service")[0] == []
