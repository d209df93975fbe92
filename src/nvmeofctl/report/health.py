"""Renderers for ``nvmeofctl health``: a rich table for people, a JSON payload for machines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from nvmeofctl.health.model import Finding, Status, exit_code_for, overall_status, sort_findings

STYLE = {Status.ok: "green", Status.warn: "yellow", Status.fail: "bold red", Status.na: "dim",
         Status.unreachable: "bold magenta", Status.refused: "bold magenta"}


def payload(findings: list[Finding], perf: list | None = None, host_order: list[str] | None = None,
            window_s: float | None = None) -> dict[str, Any]:
    """The JSON document (``emit_json`` adds ``schema_version``)."""
    counts = {s.value: 0 for s in Status}
    for f in findings:
        counts[f.status.value] += 1
    return {
        "status": overall_status(findings),
        "exit_code": int(exit_code_for(findings)),
        "window_s": window_s,
        "counts": counts,
        "findings": [f.to_dict() for f in sort_findings(findings, host_order)],
        "perf": None if perf is None else [p.to_dict() for p in perf],
    }


def render_table(console: Console, findings: list[Finding], perf: list | None = None,
                 host_order: list[str] | None = None, show_ok: bool = True) -> None:
    table = Table(title="nvmeofctl health", show_lines=False, expand=False)
    for col in ("host", "check", "device", "status", "observed", "expected", "remedy"):
        table.add_column(col, overflow="fold")
    last = None
    for f in sort_findings(findings, host_order):
        if not show_ok and f.status in (Status.ok, Status.na):
            continue
        if last is not None and f.host != last:
            table.add_section()
        table.add_row(
            f.host if f.host != last else "",
            f.check,
            f.device or "",
            Text(f.status.value, style=STYLE[f.status]),
            f.observed,
            f.expected,
            f.remedy,
        )
        last = f.host
    console.print(table)
    if perf:
        console.print(perf_matrix(perf))
    counts = {s: sum(1 for f in findings if f.status == s) for s in Status}
    console.print(
        f"{overall_status(findings)}: " + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n),
        markup=False,
    )


def perf_matrix(perf: list) -> Table:
    """Rows GPU nodes, columns targets; each cell ``Gb/s status``."""
    gpus = sorted({p.gpu_node for p in perf})
    tgts = sorted({p.target for p in perf})
    cell = {(p.gpu_node, p.target): p for p in perf}
    t = Table(title="RDMA write bandwidth (ib_write_bw -R, Gb/s)")
    t.add_column("GPU node \\ target")
    for tg in tgts:
        t.add_column(tg, overflow="fold")
    for g in gpus:
        row: list[Any] = [g]
        for tg in tgts:
            p = cell.get((g, tg))
            if p is None:
                row.append("")
                continue
            bw = f"{p.bw.bw_avg_gbps:.2f}" if p.bw else "-"
            thr = f" (>= {p.threshold_gbps:g})" if p.threshold_gbps else ""
            row.append(Text(f"{bw}{thr} {p.status.value}", style=STYLE[p.status]))
        t.add_row(*row)
    return t
