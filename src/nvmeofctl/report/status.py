"""`nvmeofctl status` for people: one row per namespace and GPU node, drift marked."""

from __future__ import annotations

from nvmeofctl.status.model import ClusterStatus


def _size(n: int | None) -> str:
    if n is None:
        return "device"
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


_STYLE = {"connected": "green", "degraded": "yellow", "missing": "red", "unknown": "magenta"}


def render_table(console, st: ClusterStatus) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"cluster {st.cluster}", title_justify="left")
    for col in ("namespace", "target / backing", "node", "device", "path", "controllers", "state", "drift"):
        table.add_column(col)
    for ns in st.namespaces:
        where = f"{','.join(ns.targets or [ns.target])}:{ns.backing} ({_size(ns.size)})"
        if ns.exported != "yes":
            where += f" [export {ns.exported}]"
        first = True
        for p in ns.paths or [None]:
            drift = list(ns.drift if first else [])
            if p is None:
                table.add_row(ns.name, where, "", "", "", "", Text("not exported to any node"), "; ".join(drift))
                continue
            drift += p.drift
            path = f"{p.transport}://{p.traddr}:{p.trsvcid}" if p.traddr else p.transport
            ctrls = " ".join(f"{c['name']}={c['state']}" for c in p.controllers)
            policy = f" {p.iopolicy}" if p.iopolicy else ""
            table.add_row(ns.name if first else "", where if first else "", p.node, p.device or "-",
                          path + policy, ctrls or "-", Text(p.state, style=_STYLE.get(p.state, "")),
                          Text("; ".join(drift), style="yellow" if drift else ""))
            first = False
    console.print(table)
    for u in st.unexpected:
        console.print(f"unexpected: {u.node} {u.controller} -> {u.subsysnqn} ({u.transport} {u.traddr}, "
                      f"{u.state}): {u.note}", markup=False)
    for h in st.hosts:
        if not h.read or h.error:
            console.print(f"{h.host} ({h.role}): {'not read' if not h.read else 'cannot plan'}: {h.error}",
                          markup=False)
    console.print(f"{st.drift} difference{'s' if st.drift != 1 else ''} from the spec"
                  + (" (run `nvmeofctl plan` for the changes, `apply` or `connect` to fix)" if st.drift else ""),
                  markup=False)
