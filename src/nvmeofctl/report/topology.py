"""`nvmeofctl topology`: targets -> subsystems -> namespaces -> GPU nodes, with the fabric links,
as text, Graphviz DOT or SVG (drawn here, no dependency); PNG through Graphviz's `dot` when it is
installed. Pure: it draws a ClusterStatus (status/model.py) and the spec's fabric addresses."""

from __future__ import annotations

from xml.sax.saxutils import escape

from nvmeofctl.report.status import _size
from nvmeofctl.status.model import ClusterStatus

# path state -> (colour, dash); "spec": drawn from the spec alone (no host read)
_EDGE = {"connected": ("#2e7d32", ""), "degraded": ("#ef6c00", "6,3"), "missing": ("#c62828", "4,4"),
         "unknown": ("#757575", "2,3"), "spec": ("#37474f", "")}


def _model(spec, st: ClusterStatus):
    """(targets, subsystems, namespaces, nodes, edges): what every format draws."""
    targets = [(h.name, ", ".join(str(ip) for ip in h.fabric_ips)) for h in spec.targets]
    nodes = [(h.name, ", ".join(str(ip) for ip in h.fabric_ips)) for h in spec.gpu_nodes]
    subsystems = [(s.nqn, tuple(s.served_by)) for s in spec.subsystems]  # dual-controller: 2+ targets
    namespaces = [(f"{ns.subsystem}/{ns.nsid}", ns.name, ns.subsystem, _size(ns.size), ns.exported)
                  for ns in st.namespaces]
    edges = [(f"{ns.subsystem}/{ns.nsid}", p.node, p.state, p.device or "") for ns in st.namespaces for p in ns.paths]
    return targets, subsystems, namespaces, nodes, edges


def text(spec, st: ClusterStatus, live: bool = True) -> str:
    targets, subsystems, namespaces, nodes, edges = _model(spec, st)
    lines = [f"cluster {spec.name}: {spec.fabric.transport} fabric, port {spec.fabric.port}, mtu {spec.fabric.mtu}"]
    for tname, tips in targets:
        lines.append(f"{tname} (target, {tips})")
        for nqn, ts in subsystems:
            if tname not in ts:
                continue
            lines.append(f"  subsystem {nqn}" + (f" (dual-controller: {', '.join(ts)})" if len(ts) > 1 else ""))
            for key, name, sub, size, exported in namespaces:
                if sub != nqn:
                    continue
                lines.append(f"    namespace {name} ({size})" + ("" if exported == "yes" or not live else f" [export {exported}]"))
                for ekey, node, state, dev in edges:
                    if ekey == key:
                        where = f" {dev}" if dev else ""
                        lines.append(f"      -> {node}{where}" + (f" {state}" if live else ""))
    lines.append("GPU nodes: " + ", ".join(f"{n} ({ips})" for n, ips in nodes))
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(spec, st: ClusterStatus, live: bool = True) -> str:
    targets, subsystems, namespaces, nodes, edges = _model(spec, st)
    out = [f"digraph {_q('nvmeofctl ' + spec.name)} {{", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for tname, tips in targets:
        out.append(f"  {_q('t:' + tname)} [label={_q(tname + chr(10) + tips)}, style=filled, fillcolor=\"#e3f2fd\"];")
    for nqn, ts in subsystems:
        out.append(f"  {_q('s:' + nqn)} [label={_q(nqn)}, shape=component];")
        for t in ts:
            out.append(f"  {_q('t:' + t)} -> {_q('s:' + nqn)};")
    for key, name, sub, size, exported in namespaces:
        out.append(f"  {_q('n:' + key)} [label={_q(name + chr(10) + size)}, shape=cylinder];")
        out.append(f"  {_q('s:' + sub)} -> {_q('n:' + key)};")
    for n, ips in nodes:
        out.append(f"  {_q('g:' + n)} [label={_q(n + chr(10) + ips)}, style=filled, fillcolor=\"#f1f8e9\"];")
    for key, node, state, dev in edges:
        colour, dash = _EDGE[state if live else "spec"]
        label = " ".join(x for x in (dev, state if live else "") if x)
        style = ", style=dashed" if dash else ""
        out.append(f"  {_q('n:' + key)} -> {_q('g:' + node)} [label={_q(label)}, color={_q(colour)}{style}];")
    out.append("}")
    return "\n".join(out) + "\n"


def svg(spec, st: ClusterStatus, live: bool = True) -> str:
    """Four columns (targets, subsystems, namespaces, GPU nodes), boxes joined by lines; a path's
    line is coloured by its state (green connected, orange degraded, red missing, grey unknown)."""
    targets, subsystems, namespaces, nodes, edges = _model(spec, st)
    col_x, box_w, box_h, gap = (20, 250, 560, 800), 210, 46, 18
    pos: dict[str, tuple[float, float]] = {}
    items: list[str] = []

    def column(x: int, entries: list[tuple[str, str, str, str]]) -> float:
        y = 60.0
        for ident, title, sub, fill in entries:
            pos[ident] = (x, y)
            items.append(f'<g><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" '
                         f'stroke="#455a64"/><text x="{x + 8}" y="{y + 19}" font-size="13" font-weight="bold">'
                         f'{escape(title)}</text><text x="{x + 8}" y="{y + 36}" font-size="11">{escape(sub)}</text></g>')
            y += box_h + gap
        return y

    heights = [
        column(col_x[0], [("t:" + n, n, ips, "#e3f2fd") for n, ips in targets]),
        column(col_x[1], [("s:" + nqn, nqn.rsplit(":", 1)[-1], _short(nqn), "#fffde7") for nqn, _t in subsystems]),
        column(col_x[2], [("n:" + key, name, size + ("" if exported == "yes" or not live else f", export {exported}"),
                           "#fce4ec" if live and exported != "yes" else "#f3e5f5")
                          for key, name, _sub, size, exported in namespaces]),
        column(col_x[3], [("g:" + n, n, ips, "#f1f8e9") for n, ips in nodes]),
    ]
    lines: list[str] = []

    def link(a: str, b: str, colour: str = "#90a4ae", dash: str = "", label: str = "") -> None:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        x1, y1, y2 = x1 + box_w, y1 + box_h / 2, y2 + box_h / 2
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        lines.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        if label:
            lines.append(f'<text x="{(x1 + x2) / 2 - 30}" y="{(y1 + y2) / 2 - 4}" font-size="10" fill="{colour}">'
                         f'{escape(label)}</text>')

    for nqn, ts in subsystems:
        for t in ts:
            link("t:" + t, "s:" + nqn)
    for key, _name, sub, _size, _exp in namespaces:
        link("s:" + sub, "n:" + key)
    for key, node, state, dev in edges:
        colour, dash = _EDGE[state if live else "spec"]
        link("n:" + key, "g:" + node, colour, dash, " ".join(x for x in (dev, state if live else "") if x))
    width, height = col_x[3] + box_w + 20, int(max(heights)) + 20
    title = f"cluster {spec.name}: {spec.fabric.transport} fabric, port {spec.fabric.port}, mtu {spec.fabric.mtu}"
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f"<title>{escape(title)}</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="20" y="30" font-size="15" font-weight="bold">{escape(title)}</text>',
        *lines, *items, "</svg>",
    ]) + "\n"


def _short(nqn: str) -> str:
    return nqn if len(nqn) <= 32 else nqn[:29] + "..."
