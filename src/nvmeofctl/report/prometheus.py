"""node_exporter textfile-collector output for ``nvmeofctl health --output prometheus``.

Values of ``nvmeofctl_health_check``: ok=0 warn=1 fail=2 na=-1 unreachable=3 refused=4."""

from __future__ import annotations

from nvmeofctl.health.model import METRIC_VALUE, Finding, Status, exit_code_for, sort_findings


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: str | None) -> str:
    return "{" + ",".join(f'{k}="{_esc(str(v))}"' for k, v in kv.items() if v is not None) + "}"


def render(findings: list[Finding], perf: list | None = None, host_order: list[str] | None = None,
           now: float | None = None) -> str:
    """The exposition; ``now`` (seconds since the epoch): when the check ran, for staleness alerts."""
    lines = [
        "# HELP nvmeofctl_health_check Result of one health check: 0 ok, 1 warn, 2 fail, -1 not applicable, "
        "3 unreachable, 4 refused (SSH host key or login).",
        "# TYPE nvmeofctl_health_check gauge",
    ]
    seen: set[str] = set()
    for f in sort_findings(findings, host_order):
        lab = _labels(host=f.host, check=f.check, device=f.device or "")
        if lab in seen:  # duplicate series are invalid in one exposition
            continue
        seen.add(lab)
        lines.append(f"nvmeofctl_health_check{lab} {METRIC_VALUE[f.status]}")
    hosts = list(dict.fromkeys([*(host_order or []), *(f.host for f in findings)]))
    lines += [
        "# HELP nvmeofctl_health_host_up 1 if the host answered the probe over SSH, else 0.",
        "# TYPE nvmeofctl_health_host_up gauge",
    ]
    down = {f.host for f in findings if f.status in (Status.unreachable, Status.refused)}
    for h in hosts:
        if h == "fleet":
            continue
        lines.append(f"nvmeofctl_health_host_up{_labels(host=h)} {0 if h in down else 1}")
    if perf:
        lines += [
            "# HELP nvmeofctl_perf_rdma_write_gbps ib_write_bw average bandwidth between a GPU node and a target.",
            "# TYPE nvmeofctl_perf_rdma_write_gbps gauge",
        ]
        for p in perf:
            if p.bw is not None:
                lines.append(f"nvmeofctl_perf_rdma_write_gbps{_labels(gpu_node=p.gpu_node, target=p.target)} "
                             f"{p.bw.bw_avg_gbps:.6g}")
    lines += [
        "# HELP nvmeofctl_health_exit_code Exit code of the health run: 0 healthy, 10 degraded, 11 unhealthy, "
        "6 unreachable, 4 refused.",
        "# TYPE nvmeofctl_health_exit_code gauge",
        f"nvmeofctl_health_exit_code {int(exit_code_for(findings))}",
    ]
    if now is not None:
        lines += [
            "# HELP nvmeofctl_health_last_run_timestamp_seconds When this health check ran (Unix time).",
            "# TYPE nvmeofctl_health_last_run_timestamp_seconds gauge",
            f"nvmeofctl_health_last_run_timestamp_seconds {now:.0f}",
        ]
    return "\n".join(lines) + "\n"
