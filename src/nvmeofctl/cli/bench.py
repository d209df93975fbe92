"""`nvmeofctl bench`: fio on the GPU nodes against their connected namespaces."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from nvmeofctl.cli.context import finish, progress_printer, stderr_console, stdout_console
from nvmeofctl.cli.output import output_option
from nvmeofctl.cli.spec import InsecureSecretPermsOpt
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.report.output import OutputFormat, emit_json


class Profile(str, Enum):
    training = "training"
    inference = "inference"
    checkpoint = "checkpoint"
    all = "all"


HELP = """Benchmark the fabric for AI work: fio on the GPU nodes against their connected namespaces,
all nodes at once, one profile after the other.

\b
Profiles (O_DIRECT, libaio, on the raw namespace):
  training     sequential 1 MiB reads, QD32 x 4 jobs: throughput
  inference    random 4 KiB reads at QD1 and QD32: p50/p99/p99.9 latency and IOPS
  checkpoint   sequential 1 MiB writes of --size bytes ending in fsync: throughput, time to write
  all          the three in turn

Only namespaces the spec marks `bench_ok: true` (scratch: their data is lost) are used; any other
is refused unless --destructive, and so is a write to a device holding a filesystem or RAID
signature. --baseline runs the same profile on each namespace's backing store on its target
(after the fabric runs) and prints the fabric efficiency ratio. Results go to --out
(results.json and chart.svg) and, per node and cluster-wide, to the terminal; a progress line per
node is shown while fio runs. fio comes from the hosts' distribution: a host without it is a
preflight error.

\b
Exit codes:
  0    measured
  2    nothing to bench (no connected bench_ok namespace on the chosen nodes)
  3    invalid spec
  4    preflight failed (fio missing, host key, SSH login)
  5    fio failed on some node
  6    some node unreachable
  7    refused: a namespace is not bench_ok, or holds a filesystem (--destructive)

\b
Example:
  nvmeofctl bench -f cluster.yaml --profile all --baseline --out bench-results
"""


def register(app: typer.Typer) -> None:
    app.command("bench", help=HELP)(bench_cmd)


def bench_cmd(
    file: Path = typer.Option(..., "--file", "-f", help="Cluster spec (YAML)."),
    profile: Profile = typer.Option(..., "--profile", help="training | inference | checkpoint | all"),
    nodes: Optional[str] = typer.Option(None, "--nodes", help="GPU nodes, comma-separated (default: every GPU node)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Only this namespace (a name of the spec)."),
    baseline: bool = typer.Option(False, "--baseline", help="Also run on each namespace's backing store on its "
                                                            "target and print fabric/baseline."),
    destructive: bool = typer.Option(False, "--destructive", help="Also bench namespaces without bench_ok, and "
                                                                  "write over filesystems: their data is lost."),
    runtime: int = typer.Option(10, "--runtime", min=1, max=3600, help="Seconds per read job."),
    size: str = typer.Option("1GiB", "--size", help="Bytes the checkpoint profile writes per namespace "
                                                    "(at most the namespace's size)."),
    out: Path = typer.Option(Path("nvmeofctl-bench"), "--out", help="Folder for results.json and chart.svg."),
    output: OutputFormat = output_option(),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    from nvmeofctl.bench import chart, device_facts
    from nvmeofctl.bench import profiles as P
    from nvmeofctl.cli.limit import parse_limit
    from nvmeofctl.errors import DisruptiveRefused, UsageError
    from nvmeofctl.facts.hoststate import gather
    from nvmeofctl.plan.planner import Plan
    from nvmeofctl.plan.selection import require_all
    from nvmeofctl.remote import ssh
    from nvmeofctl.spec import load_spec
    from nvmeofctl.spec.models import parse_size
    from nvmeofctl.status.model import build_status

    try:
        write_size = int(parse_size(size))
    except Exception:  # noqa: BLE001 - the spec's own size parser: one message for every bad value
        raise UsageError(f"--size {size!r}: expected bytes or a number with a unit (512MiB, 10GiB)") from None
    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    gpu_names = [h.name for h in spec.gpu_nodes]
    names = parse_limit(nodes, gpu_names) if nodes else gpu_names
    if namespace is not None and not any(ns.name == namespace for s in spec.subsystems for ns in s.namespaces):
        raise UsageError(f"--namespace {namespace}: no namespace of that name in the spec")
    say = progress_printer()
    say(f"reading {len(names)} GPU node(s): {', '.join(names)}")
    states = gather(spec, names, extra={n: [(device_facts.SECTION, device_facts.DEVICES_COMMAND)] for n in names})
    facts = {n: device_facts.parse(states[n].sections.get(device_facts.SECTION, "")) for n in names
             if states[n].reachable}
    require_all(spec, names, states, [f"{n}: fio is not installed (apt install fio)"
                                      for n, (fio, _d) in facts.items() if not fio])
    observed = {n: states[n].observed() for n in names}
    st = build_status(spec, observed, Plan([]), {})
    jobs = P.jobs_for(profile.value)
    writes = any(j.writes for _p, j in jobs)
    runs: dict[str, list] = {n: [] for n in names}
    backing: dict[tuple[str, str], tuple[str, str, int | None]] = {}  # (node, device) -> (target, path, bytes)
    refused = []
    for ns in st.namespaces:
        if namespace is not None and ns.name != namespace:
            continue
        for p in ns.paths:
            if p.node not in runs or p.state != "connected" or not p.device:
                continue
            dev = P.check_device(p.device)
            nbytes, sig = facts[p.node][1].get(dev[5:], (0, None))
            sub = next(s for s in spec.subsystems if s.nqn == ns.subsystem)
            ok = next(n for n in sub.namespaces if n.nsid == ns.nsid).bench_ok
            if not ok and not destructive:
                refused.append(f"{p.node}: namespace {ns.name} ({dev}) is not bench_ok (mark scratch namespaces "
                               "`bench_ok: true` in the spec)")
                continue
            if writes and sig and not destructive:
                refused.append(f"{p.node}: namespace {ns.name} ({dev}) holds a {sig} signature: the checkpoint "
                               "profile would overwrite it")
                continue
            for prof, job in jobs:
                runs[p.node].append((prof, job, dev, min(write_size, nbytes) if job.writes else None))
            backing[(p.node, dev)] = (ns.target, ns.backing, ns.size or nbytes)
    if refused:
        raise DisruptiveRefused("refusing to bench (nothing ran):\n" + "\n".join(refused)
                                + "\n--destructive benches them anyway (their data is lost)")
    runs = {n: r for n, r in runs.items() if r}
    if not runs:
        raise UsageError("nothing to bench: no connected namespace on " + ", ".join(names)
                         + (f" holds {namespace}" if namespace else "") + " (see `nvmeofctl status`)")

    results = _run(spec, runs, runtime, ssh, P, say, "GPU node")
    base_results: list = []
    backing_of: dict[tuple[str, str], str] = {}
    if baseline:
        per_target: dict[str, list] = {}
        for (node, dev), (target, path, nbytes) in backing.items():
            backing_of[(node, dev)] = path
            for prof, job in jobs:
                item = (prof, job, path, min(write_size, nbytes or write_size) if job.writes else None)
                if item not in per_target.setdefault(target, []):
                    per_target[target].append(item)
        say("baseline: the same jobs on the backing stores, on the targets")
        base_results = _run(spec, per_target, runtime, ssh, P, say, "target")
    eff = P.efficiency(results, base_results, backing_of)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"spec": str(file), "cluster": spec.name, "profile": profile.value, "runtime_s": runtime,
           "checkpoint_bytes": write_size, "results": [r.to_dict() for r in results],
           "totals": P.totals(results), "baseline": [r.to_dict() for r in base_results], "efficiency": eff}
    import json

    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out / "chart.svg").write_text(chart.svg(f"nvmeofctl bench: cluster {spec.name}", results, base_results),
                                   encoding="utf-8")
    failed = [r for r in results + base_results if r.error]
    code = ExitCode.TASK_FAILED if failed else ExitCode.OK
    if output == OutputFormat.json:
        emit_json({**doc, "out": str(out), "exit_code": int(code)})
    else:
        _render(results, base_results, eff, P.totals(results))
        stdout_console().print(f"saved {out / 'results.json'} and {out / 'chart.svg'}", markup=False)
    finish(code)


def _run(spec, runs: dict[str, list], runtime: int, ssh, P, say, what: str) -> list:
    """Run each host's jobs (hosts at once), with a progress line per host; parse the results."""
    import threading
    import time

    hosts = {h.name: h for h in spec.hosts}
    targets = [ssh.SshTarget.from_host_spec(hosts[n]) for n in runs]
    readers = {n: P.ProgressReader() for n in runs}
    last: dict[str, str] = {}
    lock = threading.Lock()
    console = stderr_console()
    start = time.monotonic()

    def on_stdout(host: str, chunk: str) -> None:
        for prog in readers[host].feed(chunk):
            line = f"{host}: {prog.job}" + (f" {prog.percent:.0f}% {prog.rates} eta {prog.eta}" if prog.eta else " started")
            with lock:
                step = f"{prog.job}:{int(prog.percent // 25)}"
                if last.get(host) != step:  # a line per job start and per quarter: readable in logs too
                    last[host] = step
                    console.print(f"[{time.monotonic() - start:6.1f}s] {line}", markup=False, highlight=False)

    budget = sum(runtime + 120 if not job.writes else 900 for r in runs.values() for _p, job, _f, _s in r)
    say(f"fio on {len(runs)} {what}(s): {', '.join(runs)}")
    res = ssh.run_many(targets, lambda t: "sudo -n bash -s" if hosts[t.name].ssh.user != "root" else "bash -s",
                       stdin=lambda t: P.script(runs[t.name], runtime), timeout=budget, on_stdout=on_stdout)
    from nvmeofctl.facts.hoststate import split_sections

    out = []
    for name, items in runs.items():
        r = res[name]
        sections = split_sections(r.stdout) if hasattr(r, "stdout") else {}
        for prof, job, filename, _size in items:
            text = sections.get(P.job_id(prof, job, filename), "")
            result = P.parse_fio(text, name, prof, job, filename)
            if not hasattr(r, "stdout"):
                result.error = f"unreachable: {r.reason}"
            elif r.rc == 127:
                result.error = "fio is not installed"
            out.append(result)
    return out


def _render(results, baseline, eff, totals) -> None:
    from rich.table import Table

    table = Table(title="bench", title_justify="left")
    for col in ("profile", "job", "host", "target", "MiB/s", "IOPS", "p50 us", "p99 us", "p99.9 us", "time s", "error"):
        table.add_column(col)
    for r in results + baseline:
        lat = r.lat_us
        table.add_row(r.profile, r.job, r.host + (" (baseline)" if r in baseline else ""), r.target,
                      f"{r.bw_mib_s:,.1f}", f"{r.iops:,.0f}", *(f"{lat[k]:,.0f}" if k in lat else "-"
                                                               for k in ("p50", "p99", "p99.9")),
                      f"{r.runtime_s:.1f}", r.error)
    console = stdout_console()
    console.print(table)
    for t in totals:
        console.print(f"cluster {t['profile']} {t['job']}: {t['bw_mib_s']:,.1f} MiB/s, {t['iops']:,.0f} IOPS "
                      f"over {t['hosts']} node(s)", markup=False)
    for e in eff:
        ratio = f"{e['ratio']:.2f}" if e["ratio"] is not None else "n/a"
        console.print(f"fabric efficiency {e['host']} {e['profile']} {e['job']}: {ratio} "
                      f"({e['fabric']:,.1f} / {e['baseline']:,.1f} {e['metric']})", markup=False)
