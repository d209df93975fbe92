"""`nvmeofctl bench` on the lab (issue #11): every profile on a scratch namespace marked
`bench_ok`, with the baseline on its backing file, results saved and sensible; a namespace
without `bench_ok` refused. The lab runs under software emulation here (no KVM): the numbers
say what this machine does, not what a fabric can."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from .conftest import PROVISIONED, lab_problems, nvmeofctl, nvmeofctl_json

pytestmark = pytest.mark.lab


def test_bench_all_profiles_with_baseline_and_refusals(healthy_lab, tmp_path):
    import time

    from nvmeofctl.lab.manager import LabManager

    lab = healthy_lab
    scratch_nqn = f"nqn.2024-01.io.nvmeofctl.{lab.name}:scratch"
    text = lab.spec.read_text() + (
        f"  - nqn: {scratch_nqn}\n    target: tgt1\n    allowed_gpu_nodes: [gpu2]\n    namespaces:\n"
        "      - nsid: 1\n        name: scratch\n        bench_ok: true\n"
        "        backing: {file: /var/lib/nvmeofctl/scratch.img, size: 64MiB}\n")
    spec = lab.dir / "cluster-bench.yaml"
    spec.write_text(text)
    try:
        proc = nvmeofctl("apply", "-f", str(spec))
        assert proc.returncode == 0, proc.stderr
        # refused: gpu1's namespaces are not bench_ok; nothing runs
        code, _res, err = nvmeofctl_json("bench", "-f", str(spec), "--profile", "training", "--nodes", "gpu1",
                                         "--out", str(tmp_path / "refused"))
        assert code == 7, err
        assert "gpu1: namespace train" in err and "is not bench_ok" in err
        assert not (tmp_path / "refused").exists()

        out = tmp_path / "bench"
        code, res, err = nvmeofctl_json("bench", "-f", str(spec), "--profile", "all", "--namespace", "scratch",
                                        "--runtime", "3", "--size", "32MiB", "--baseline", "--out", str(out))
        assert code == 0, err
        jobs = [(r["host"], r["job"]) for r in res["results"]]
        assert jobs == [("gpu2", "seqread-1m"), ("gpu2", "randread-4k-qd1"), ("gpu2", "randread-4k-qd32"),
                        ("gpu2", "seqwrite-1m-fsync")]
        for r in res["results"] + res["baseline"]:
            assert r["error"] is None and r["bw_mib_s"] > 0 and r["iops"] > 0, r
        by_job = {r["job"]: r for r in res["results"]}
        for job in ("randread-4k-qd1", "randread-4k-qd32"):
            lat = by_job[job]["lat_us"]
            assert 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"], lat
        assert by_job["seqwrite-1m-fsync"]["bytes"] == 32 << 20 and by_job["seqwrite-1m-fsync"]["runtime_s"] > 0
        assert [b["target"] for b in res["baseline"]] == ["/var/lib/nvmeofctl/scratch.img"] * 4
        assert [(e["job"], e["ratio"] > 0) for e in res["efficiency"]] == [
            ("seqread-1m", True), ("randread-4k-qd1", True), ("randread-4k-qd32", True), ("seqwrite-1m-fsync", True)]
        assert json.loads((out / "results.json").read_text())["results"] == res["results"]
        ET.parse(out / "chart.svg")
        assert "gpu2: training.seqread-1m" in err  # the live progress line
        print("\nlab bench (TCG, no KVM):", json.dumps({"results": res["results"], "baseline": res["baseline"],
                                                        "efficiency": res["efficiency"]}, indent=1))
    finally:
        LabManager(lab.name).restore(PROVISIONED)
        deadline = time.monotonic() + 180
        while lab_problems(lab) and time.monotonic() < deadline:
            time.sleep(3)
