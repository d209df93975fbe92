"""The bench read back from real lab captures (tests/fixtures/bench/PROVENANCE.md): fio's JSON for
every profile, its eta lines as progress, the devices' sizes and signatures, and the users of a
namespace (facts/blockusers.py)."""

from __future__ import annotations

from pathlib import Path

from nvmeofctl.bench import device_facts
from nvmeofctl.bench import profiles as P
from nvmeofctl.facts import blockusers
from nvmeofctl.facts.hoststate import split_sections

FIX = Path(__file__).resolve().parents[2] / "fixtures"
RUN = (FIX / "bench" / "lab-gpu1-all-profiles.txt").read_text()
DEV = "/dev/nvme1n1"


def test_every_profile_parses_from_fio_3_33_json():
    sections = split_sections(RUN)
    got = {}
    for profile, job in P.jobs_for("all"):
        r = P.parse_fio(sections[P.job_id(profile, job, DEV)], "gpu1", profile, job, DEV)
        assert r.error == "", r
        got[job.name] = r
    qd32 = got["randread-4k-qd32"]  # values as fio wrote them in the capture
    assert qd32.iops == 660.84788 and qd32.bw_mib_s == 2706832 / 1048576
    assert qd32.runtime_s == 2.005 and qd32.bytes == 5427200
    assert set(qd32.lat_us) == {"p50", "p99", "p99.9"} and qd32.lat_us["p50"] <= qd32.lat_us["p99.9"]
    ckpt = got["seqwrite-1m-fsync"]
    assert ckpt.bytes == 32 << 20 and ckpt.runtime_s == 3.577 and ckpt.bw_mib_s == 9380607 / 1048576
    assert got["seqread-1m"].bw_mib_s > 0 and got["randread-4k-qd1"].iops > 0
    assert got["seqread-1m"].runtime_s == 6.802  # the group's wall time, not its 4 jobs' sum (26.411 s)


def test_a_missing_or_failed_job_is_an_error_not_a_zero():
    job = P.PROFILES["training"][0]
    assert P.parse_fio("", "gpu1", "training", job, DEV).error == "fio printed no result"
    assert P.parse_fio('{"jobs": [{"error": 5}]}', "gpu1", "training", job, DEV).error == "fio error 5"


def test_progress_is_read_from_fios_eta_lines_even_with_marks_glued_on():
    for name in ("lab-gpu1-all-profiles.txt", "lab-gpu1-all-profiles-glued-marks.txt"):
        reader, seen = P.ProgressReader(), []
        text = (FIX / "bench" / name).read_text()
        for i in range(0, len(text), 97):  # streamed in arbitrary chunks, as SSH delivers it
            seen += reader.feed(text[i:i + 97])
        jobs = [p.job for p in seen if not p.eta]
        assert jobs == [P.job_id(p, j, DEV) for p, j in P.jobs_for("all")], name
        ckpt = [p for p in seen if p.job.startswith("checkpoint") and p.eta]
        assert ckpt and ckpt[-1].rates.startswith("w=") and 0 < ckpt[-1].percent <= 100, ckpt


def test_device_sizes_signatures_and_fio_are_read():
    fio, devices = device_facts.parse((FIX / "bench" / "lab-gpu1-devices.txt").read_text())
    assert fio is True
    assert devices["nvme1n1"] == (128 << 20, "ext4") and devices["nvme0n1"] == (256 << 20, None)


def test_who_uses_a_namespace():
    uses = blockusers.parse_users((FIX / "facts" / "blockusers" / "lab-gpu1-mounted-and-open.txt").read_text())
    assert [(u.device, str(u)) for u in uses] == [("nvme1n1", "mounted on /mnt/ckpt"),
                                                  ("nvme0n1", "open by pid 1480 (sleep)")]
    assert blockusers.parse_users("holder nvme2n1p1 dm-0\nmount nvme2n1p2 /data\\040x\n") == [
        blockusers.Use("nvme2n1", "holder", "dm-0"), blockusers.Use("nvme2n1", "mount", "/data x")]
