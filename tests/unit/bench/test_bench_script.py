"""The bench's pure parts: the script each host runs (checked by /bin/sh), which jobs each
profile runs, totals, efficiency and the chart."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

from nvmeofctl.bench import chart
from nvmeofctl.bench import profiles as P


def test_profiles_model_the_ai_work():
    jobs = {p: [(j.rw, j.bs, j.iodepth, j.numjobs) for _p, j in P.jobs_for(p)] for p in P.PROFILE_NAMES}
    assert jobs == {"training": [("read", "1m", 32, 4)],
                    "inference": [("randread", "4k", 1, 1), ("randread", "4k", 32, 1)],
                    "checkpoint": [("write", "1m", 8, 1)]}
    assert [j.name for _p, j in P.jobs_for("all")] == ["seqread-1m", "randread-4k-qd1", "randread-4k-qd32",
                                                       "seqwrite-1m-fsync"]


def test_reads_are_timed_writes_are_sized_and_fsynced():
    read = P.fio_argv(P.PROFILES["training"][0], "/dev/nvme0n1", 10, None)
    assert "--time_based=1" in read and "--runtime=10" in read and "--direct=1" in read
    assert not any(a.startswith("--size") for a in read)
    write = P.fio_argv(P.PROFILES["checkpoint"][0], "/dev/nvme0n1", 10, 64 << 20)
    assert "--size=67108864" in write and "--end_fsync=1" in write and "--time_based=1" not in write


def test_the_host_script_is_valid_sh_and_quotes_every_path():
    runs = [("training", P.PROFILES["training"][0], "/dev/nvme0n1", None),
            ("checkpoint", P.PROFILES["checkpoint"][0], "/var/lib/nvmeofctl/a b'c.img", 1 << 20)]
    script = P.script(runs, 5)
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert "'--filename=/var/lib/nvmeofctl/a b'\"'\"'c.img'" in script
    assert script.index(P.PROGRESS_MARK + "training.seqread-1m.dev_nvme0n1") < script.index(
        P.SECTION_MARK + "training.seqread-1m.dev_nvme0n1")
    with pytest.raises(ValueError):
        P.check_device("/dev/sda; rm -rf /")


def _r(host, job, bw, iops, target="/dev/nvme0n1", profile="training"):
    return P.Result(host, profile, job, target, bw, iops)


def test_totals_and_efficiency():
    fabric = [_r("gpu1", "seqread-1m", 100.0, 100.0), _r("gpu2", "seqread-1m", 50.0, 50.0, "/dev/nvme1n1"),
              _r("gpu1", "randread-4k-qd32", 10.0, 2500.0, profile="inference")]
    assert P.totals(fabric) == [
        {"profile": "training", "job": "seqread-1m", "hosts": 2, "bw_mib_s": 150.0, "iops": 150.0},
        {"profile": "inference", "job": "randread-4k-qd32", "hosts": 1, "bw_mib_s": 10.0, "iops": 2500.0}]
    base = [_r("tgt1", "seqread-1m", 400.0, 400.0, "/var/lib/x.img"),
            _r("tgt1", "randread-4k-qd32", 20.0, 5000.0, "/var/lib/x.img", "inference")]
    eff = P.efficiency(fabric, base, {("gpu1", "/dev/nvme0n1"): "/var/lib/x.img"})
    assert [(e["host"], e["job"], e["metric"], e["ratio"]) for e in eff] == [
        ("gpu1", "seqread-1m", "bw_mib_s", 0.25), ("gpu1", "randread-4k-qd32", "iops", 0.5)]


def test_chart_is_valid_svg_with_a_bar_per_result():
    fabric = [_r("gpu1", "seqread-1m", 100.0, 100.0), _r("gpu2", "seqread-1m", 50.0, 50.0)]
    root = ET.fromstring(chart.svg("t", fabric, [_r("tgt1", "seqread-1m", 400.0, 400.0)]))
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("height") != "100%"]
    widths = sorted(float(b.get("width")) for b in bars)
    assert widths == [52.5, 105.0, 420.0]  # scaled to the largest of the unit
