"""nvmeofctl.remote.nvme_cli: parsers over captured nvme-cli output, the shared classifier, the
local (sh) runner's hard timeout, and an injected remote runner."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from nvmeofctl.remote import nvme_cli
from nvmeofctl.remote.nvme_cli import NvmeCli, NvmeCliError, dhchap_config_json

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "nvme"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b"
NQN = "nqn.2024-01.io.lab:gpu-pool-1"
SECRET = "DHHC-1:01:+Xoos2iDZZi3X2WV4wjk0sxdPHyYCnAq/aUCMnojytKVzPTD:"


def fx(name: str) -> str:
    return (FIX / name).read_text()


def before_rc(name: str) -> str:
    """Captured stdout up to the lab's appended `rc=` / dmesg lines."""
    return fx(name).split("\nrc=")[0]


class FakeRunner:
    """Replays (rc, stdout, stderr) and records argv."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls: list[tuple[list[str], float]] = []

    def __call__(self, argv, timeout):
        self.calls.append((argv, timeout))
        r = self.results.pop(0)
        if isinstance(r, BaseException):
            raise r
        return r


def test_shares_the_modules_classifier():
    nh = nvme_cli.host_utils()
    assert nh.classify(114)["category"] == "already_connected"
    assert Path(nh.__file__).name == "nvme_host.py"


def test_parse_version_23_and_3x():
    v = nvme_cli.parse_version(fx("nvme-version.txt"))
    assert (v.nvme, v.libnvme, v.major_minor) == ("2.3", "1.3", (2, 3))
    v3 = nvme_cli.parse_version("nvme version 3.0 (git 3.0)\n")
    assert v3.major_minor == (3, 0) and v3.libnvme is None
    with pytest.raises(ValueError):
        nvme_cli.parse_version("bash: nvme: command not found")


@pytest.mark.parametrize("fixture,trtype,sectype", [("nvme-discover-rdma.json", "rdma", None),
                                                    ("nvme-discover-tcp.json", "tcp", "none")])
def test_parse_discover(fixture, trtype, sectype):
    recs = nvme_cli.parse_discover_json(fx(fixture))
    assert len(recs) == 2 and recs[0].is_discovery and not recs[1].is_discovery
    r = recs[1]
    assert (r.trtype, r.traddr, r.trsvcid, r.subnqn, r.sectype) == (trtype, "192.168.100.1", "4420", NQN, sectype)
    assert r.portid in (1, 2)


def test_parse_list_subsys_23_single_and_multipath():
    [host] = nvme_cli.parse_list_subsys_json(fx("nvme-list-subsys.json"))
    assert host.hostnqn == HOSTNQN
    [sub] = host.subsystems
    assert (sub.name, sub.nqn, sub.iopolicy) == ("nvme-subsys0", NQN, None)
    assert [(p.name, p.transport, p.traddr, p.trsvcid, p.state) for p in sub.paths] == [
        ("nvme0", "rdma", "192.168.100.1", "4420", "live")]
    [host] = nvme_cli.parse_list_subsys_json(fx("k612-nvme-list-subsys-multipath-rdma+tcp.json"))
    paths = host.subsystems[0].paths
    assert [p.name for p in paths] == ["nvme0", "nvme1"]
    assert paths[1].address == {"traddr": "192.168.100.1", "trsvcid": "4420", "src_addr": "192.168.100.2"}


def test_parse_list_subsys_empty_outputs():
    assert nvme_cli.parse_list_subsys_json(fx("nvme-list-subsys-empty.json")) == []
    assert nvme_cli.parse_list_subsys_json("") == []


def test_parse_list_subsys_211_shape_with_iopolicy_and_ana():
    # 2.11+: same tree, IOPolicy (verbose) and ANAState per path (nvme-print-json.c
    # json_print_nvme_subsystem_list); built from the 2.3 capture plus those keys.
    doc = json.loads(fx("k612-nvme-list-subsys-multipath-rdma+tcp.json"))
    doc[0]["Subsystems"][0]["IOPolicy"] = "round-robin"
    for p in doc[0]["Subsystems"][0]["Paths"]:
        p["ANAState"] = "optimized"
    [host] = nvme_cli.parse_list_subsys_json(json.dumps(doc))
    s = host.subsystems[0]
    assert s.iopolicy == "round-robin" and {p.ana_state for p in s.paths} == {"optimized"}


def test_parse_list_v_tree_real_multipath_with_inaccessible_path():
    hosts = nvme_cli.parse_list_subsys_json(
        fx("nvme_list_v_o_json_v2x_tcp_multipath_inaccessible_optimized_lightbits_plus_pcie.json"))
    subs = {s.nqn: s for s in hosts[0].subsystems}
    light = subs["nqn.2016-01.com.lightbitslabs:uuid:696-aa11-4912-acf9-eb2cfcd"]
    ana = {p.name: p.ana_state for p in light.paths}
    assert ana == {"nvme0": "inaccessible", "nvme9": None, "nvme10": None, "nvme11": "optimized"}
    assert light.paths[0].address == {"traddr": "10.50.4.15", "trsvcid": "4421"}
    pcie = subs["nqn.2016-08.com.micron:nvme:nvm-subsystem-sn-2402473F6E8C"]
    assert pcie.paths[0].transport == "pcie" and pcie.paths[0].traddr == "0000:4f:00.0"


def test_parse_connect_json():
    assert nvme_cli.parse_connect_json(before_rc("dhchap-connect-rdma-ok.txt")) == "nvme0"
    assert nvme_cli.parse_connect_json(fx("nvme-connect-rdma.txt")) == "nvme0"
    assert nvme_cli.parse_connect_json("") is None


def test_parse_dhchap_key_hides_the_value():
    k = nvme_cli.parse_dhchap_key(fx("nvme-gen-dhchap-key-host.txt"))
    assert k.reveal() == SECRET
    assert SECRET not in repr(k) and SECRET not in str(k)
    with pytest.raises(ValueError):
        nvme_cli.parse_dhchap_key("")


# --------------------------------------------------------------------------- NvmeCli with a runner
@pytest.mark.parametrize("stdout,stderr,rc,category,ok", [
    (before_rc("dhchap-connect-rdma-ok.txt"), "", 0, "ok", True),
    ("", fx("nvme-connect-rdma-host-not-allowed.txt.stderr"), 1, "refused", False),
    ("", fx("dhchap-connect-rdma-no-secret.txt.stderr"), 1, "missing_secret", False),
    ("", fx("dhchap-connect-rdma-wrong-secret.txt.stderr"), 1, "refused", False),
    ("", before_rc("dhchap-connect-tcp-wrong-secret.txt"), 1, "auth_failed", False),
    ("", fx("nvme-discover-rdma-no-listener.txt.stderr"), 1, "no_listener", False),
    ("", fx("nvme-discover-no-nvme-modules.stderr"), 1, "no_modules", False),
    ("", "already connected\n", 1, "already_connected", True),
    ("", "", 114, "already_connected", True),
    ("", "", 70, "already_connected", True),
])
def test_connect_classifies_captured_outputs(stdout, stderr, rc, category, ok):
    runner = FakeRunner((rc, stdout, stderr))
    res = NvmeCli(runner).connect("rdma", "192.168.100.1", NQN, hostnqn=HOSTNQN, config="/run/nvmeofctl/key.json",
                                  ctrl_loss_tmo=600, reconnect_delay=10)
    assert (res.category, res.ok) == (category, ok)
    assert res.device == ("nvme0" if category == "ok" else None)
    argv, timeout = runner.calls[0]
    assert argv[:2] == ["nvme", "connect"] and "--config=/run/nvmeofctl/key.json" in argv and timeout == 30
    assert argv[-2:] == ["-o", "json"] and not any("DHHC-1" in a for a in argv)


def test_dhchap_key_goes_in_the_json_config_never_in_argv():
    text = dhchap_config_json(HOSTNQN, "f4a3064a-a702-4134-ab62-ed4d001ffe8b", SECRET)
    assert json.loads(text) == [{"hostnqn": HOSTNQN, "hostid": "f4a3064a-a702-4134-ab62-ed4d001ffe8b",
                                 "dhchap_key": SECRET}]
    with pytest.raises(TypeError):
        NvmeCli(FakeRunner((0, "", ""))).connect("rdma", "192.168.100.1", NQN, dhchap_secret=SECRET)


def test_connect_timeout_from_remote_runner_rc_124_or_exception():
    for r in ((124, "", ""), TimeoutError("ssh")):
        res = NvmeCli(FakeRunner(r)).connect("rdma", "192.168.100.1", NQN, timeout=5)
        assert res.category == "timeout" and not res.ok


def test_disconnect_by_name_only_and_errors_are_one_line():
    runner = FakeRunner((0, "", ""), (1, "", "Failed to disconnect by device name: nvme9\n"))
    cli = NvmeCli(runner)
    cli.disconnect("/dev/nvme3")
    assert runner.calls[0][0] == ["nvme", "disconnect", "-d", "nvme3"]
    with pytest.raises(NvmeCliError) as e:
        cli.disconnect("nvme9")
    assert "\n" not in str(e.value) and "nvme9" in str(e.value)
    with pytest.raises(ValueError):
        cli.disconnect(NQN)


def test_discover_without_modules_raises_classified_error():
    cli = NvmeCli(FakeRunner((1, "", fx("nvme-discover-no-nvme-modules.stderr"))))
    with pytest.raises(NvmeCliError) as e:
        cli.discover("rdma", "192.168.100.1")
    assert e.value.category == "no_modules" and "modprobe" in str(e.value)


def test_list_subsys_and_version_and_gen_key_through_runner():
    cli = NvmeCli(FakeRunner((0, fx("nvme-list-subsys-tcp.json"), ""), (0, fx("nvme-version.txt"), ""),
                             (0, fx("nvme-gen-dhchap-key-ctrl.txt"), "")))
    assert cli.list_subsys()[0].subsystems[0].paths[0].transport == "tcp"
    assert cli.version().nvme == "2.3"
    assert cli.gen_dhchap_key(NQN).reveal().startswith("DHHC-1:01:")


# --------------------------------------------------------------------------- local runner (sh)
def _fake_nvme(tmp_path, body):
    p = tmp_path / "nvme"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def test_local_runner_honours_the_timeout(tmp_path):
    nvme = _fake_nvme(tmp_path, "sleep 30\n")
    cli = NvmeCli(nvme=str(nvme), timeout=1)
    t0 = time.monotonic()
    res = cli.connect("rdma", "192.168.100.1", NQN)
    assert res.category == "timeout"
    assert time.monotonic() - t0 < 5


def test_local_runner_exit_codes_and_streams(tmp_path):
    nvme = _fake_nvme(tmp_path, 'echo "already connected" >&2; exit 114\n')
    res = NvmeCli(nvme=str(nvme)).connect("tcp", "192.168.100.1", NQN)
    assert res.category == "already_connected" and res.rc == 114
    rc, out, err = nvme_cli.local_runner(["/nonexistent/nvme"], 5)
    assert rc == 127
