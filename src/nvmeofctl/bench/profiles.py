"""The bench's profiles, the fio script each node runs, and what is read back. Pure.

Profiles follow what AI clusters ask of their storage (MLPerf Storage / DLIO practice):

- training: large sequential reads at high queue depth from several jobs: throughput;
- inference: 4 KiB random reads at QD1 and QD32: p50/p99/p99.9 latency and IOPS;
- checkpoint: large sequential writes ending in fsync: throughput, and the time to write N bytes.

Every job is O_DIRECT on the raw namespace (libaio), reported per job (fio --group_reporting).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

PROGRESS_MARK = "### nvmeofctl-job "
SECTION_MARK = "### nvmeofctl-section "
WORKDIR = "/tmp/nvmeofctl-bench"
_DEVICE_RE = re.compile(r"/dev/nvme[0-9]+n[0-9]+")
# fio's eta line (fio 3.33 without a terminal runs them together, with no newline before ours):
# "Jobs: 4 (f=4): [R(4)][60.0%][eta 00m:02s]", "... [r(1)][-.-%][r=1073KiB/s][r=268 IOPS][eta 00m:00s]"
_ETA_RE = re.compile(r"\[(?P<pct>[0-9.]+|-\.-)%\](?P<rates>(?:\[[^\]]*\])*?)\[eta (?P<eta>[^\]]+)\]")


@dataclass(frozen=True)
class Job:
    name: str
    rw: str  # read | randread | write
    bs: str
    iodepth: int
    numjobs: int = 1

    @property
    def writes(self) -> bool:
        return "write" in self.rw


PROFILES: dict[str, tuple[Job, ...]] = {
    "training": (Job("seqread-1m", "read", "1m", 32, 4),),
    "inference": (Job("randread-4k-qd1", "randread", "4k", 1), Job("randread-4k-qd32", "randread", "4k", 32)),
    "checkpoint": (Job("seqwrite-1m-fsync", "write", "1m", 8),),
}
PROFILE_NAMES = tuple(PROFILES)


def jobs_for(profile: str) -> list[tuple[str, Job]]:
    """[(profile, job)] for a profile name or ``all``."""
    names = PROFILE_NAMES if profile == "all" else (profile,)
    return [(p, j) for p in names for j in PROFILES[p]]


def job_id(profile: str, job: Job, target: str) -> str:
    """A name for one run of one job on one file or device (letters, digits, '.', '-', '_')."""
    return f"{profile}.{job.name}.{re.sub(r'[^A-Za-z0-9]+', '_', target).strip('_')}"


def fio_argv(job: Job, filename: str, runtime: int, size: int | None) -> list[str]:
    """fio's arguments for ``job`` on ``filename``: reads run ``runtime`` seconds; writes write
    ``size`` bytes (then fsync) and report the time it took."""
    argv = ["fio", f"--name={job.name}", f"--filename={filename}", "--direct=1", "--ioengine=libaio",
            f"--rw={job.rw}", f"--bs={job.bs}", f"--iodepth={job.iodepth}", f"--numjobs={job.numjobs}",
            "--group_reporting=1", "--percentile_list=50:99:99.9", "--eta=always", "--eta-newline=1"]
    if job.writes:
        argv += [f"--size={size}", "--end_fsync=1"]
    else:
        argv += ["--time_based=1", f"--runtime={runtime}"]
        if size:
            argv.append(f"--size={size}")
    return argv


def script(runs: list[tuple[str, Job, str, int | None]], runtime: int) -> str:
    """The shell script one host runs: each (profile, job, file or device, size) in turn, a
    progress mark before each, then every job's JSON in its own section."""
    lines = ["set -u", f"mkdir -p {WORKDIR} && cd {WORKDIR} || exit 1",
             "command -v fio >/dev/null 2>&1 || { echo 'fio is not installed' >&2; exit 127; }"]
    ids = []
    for profile, job, filename, size in runs:
        jid = job_id(profile, job, filename)
        ids.append(jid)
        argv = fio_argv(job, filename, runtime, size) + ["--output-format=json", f"--output={jid}.json"]
        # fio ends its eta output without a newline: every mark starts on a line of its own
        lines += [f"printf '\\n%s\\n' {shlex.quote(PROGRESS_MARK + jid)}",
                  " ".join(shlex.quote(a) for a in argv) + " || true"]
    for jid in ids:
        lines += [f"printf '\\n%s\\n' {shlex.quote(SECTION_MARK + jid)}",
                  f"cat {shlex.quote(jid + '.json')} 2>/dev/null || true"]
        lines.append(f"rm -f {shlex.quote(jid + '.json')}")
    return "\n".join(lines) + "\n"


def check_device(path: str) -> str:
    """A GPU node's namespace device as nvmeofctl read it from sysfs: /dev/nvmeXnY only."""
    if not _DEVICE_RE.fullmatch(path):
        raise ValueError(f"not an NVMe namespace device: {path!r}")
    return path


@dataclass
class Result:
    host: str
    profile: str
    job: str
    target: str  # the device or file measured
    bw_mib_s: float
    iops: float
    lat_us: dict[str, float] = field(default_factory=dict)  # p50, p99, p99.9 (completion latency)
    runtime_s: float = 0.0
    bytes: int = 0
    error: str = ""

    def to_dict(self) -> dict:
        return {"host": self.host, "profile": self.profile, "job": self.job, "target": self.target,
                "bw_mib_s": round(self.bw_mib_s, 1), "iops": round(self.iops, 1),
                "lat_us": {k: round(v, 1) for k, v in self.lat_us.items()},
                "runtime_s": round(self.runtime_s, 3), "bytes": self.bytes, "error": self.error or None}


def parse_fio(text: str, host: str, profile: str, job: Job, target: str) -> Result:
    """One job's result from fio's JSON output (3.x: ``jobs[0].read|write``)."""
    start = text.find("{")
    try:
        doc = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        doc = None
    if not doc or not doc.get("jobs"):
        return Result(host, profile, job.name, target, 0.0, 0.0, error="fio printed no result")
    j = doc["jobs"][0]
    if j.get("error"):
        return Result(host, profile, job.name, target, 0.0, 0.0, error=f"fio error {j['error']}")
    side = j["write" if job.writes else "read"]
    pct = (side.get("clat_ns") or {}).get("percentile") or {}
    lat = {}
    for key, label in (("50.000000", "p50"), ("99.000000", "p99"), ("99.900000", "p99.9")):
        if key in pct:
            lat[label] = pct[key] / 1000.0
    # the group's wall time (``job_runtime`` adds up the jobs: 4 x for --numjobs=4)
    runtime_s = (side.get("runtime") or j.get("job_runtime") or 0) / 1000.0
    return Result(host, profile, job.name, target, side.get("bw_bytes", 0) / 1048576.0, side.get("iops", 0.0),
                  lat, runtime_s, int(side.get("io_bytes", 0)))


@dataclass(frozen=True)
class Progress:
    job: str
    percent: float
    rates: str
    eta: str


class ProgressReader:
    """Turns one host's streamed stdout (marks and fio's eta lines) into Progress updates."""

    def __init__(self) -> None:
        self.buffer = ""
        self.job = ""

    def feed(self, chunk: str) -> list[Progress]:
        self.buffer += chunk
        *lines, self.buffer = re.split(r"[\r\n]", self.buffer)
        out = []
        for line in lines:
            if PROGRESS_MARK in line:
                self.job = line.split(PROGRESS_MARK, 1)[1].strip()
                out.append(Progress(self.job, 0.0, "", ""))
                continue
            for m in _ETA_RE.finditer(line):
                if self.job:
                    pct = 0.0 if m["pct"] == "-.-" else float(m["pct"])
                    rates = " ".join(r.strip("[]") for r in re.findall(r"\[[^\]]*\]", m["rates"]))
                    out.append(Progress(self.job, pct, rates, m["eta"].strip()))
        return out


def totals(results: list[Result]) -> list[dict]:
    """Cluster totals per (profile, job) over the hosts that ran it at once (GPU nodes)."""
    out: dict[tuple[str, str], dict] = {}
    for r in results:
        if r.error:
            continue
        t = out.setdefault((r.profile, r.job), {"profile": r.profile, "job": r.job, "hosts": 0, "bw_mib_s": 0.0,
                                                "iops": 0.0})
        t["hosts"] += 1
        t["bw_mib_s"] = round(t["bw_mib_s"] + r.bw_mib_s, 1)
        t["iops"] = round(t["iops"] + r.iops, 1)
    return list(out.values())


def efficiency(fabric: list[Result], baseline: list[Result], backing_of: dict[tuple[str, str], str]) -> list[dict]:
    """Fabric efficiency per node result: its bandwidth (IOPS for 4 KiB jobs) over the same job on
    the namespace's own backing store, run on the target. ``backing_of``: (host, device) ->
    the baseline's target."""
    base = {(b.profile, b.job, b.target): b for b in baseline if not b.error}
    out = []
    for r in fabric:
        b = base.get((r.profile, r.job, backing_of.get((r.host, r.target), "")))
        if r.error or b is None:
            continue
        metric = "iops" if r.job.startswith("randread") else "bw_mib_s"
        den = getattr(b, metric)
        out.append({"host": r.host, "profile": r.profile, "job": r.job, "metric": metric,
                    "fabric": round(getattr(r, metric), 1), "baseline": round(den, 1),
                    "ratio": round(getattr(r, metric) / den, 3) if den else None})
    return out
