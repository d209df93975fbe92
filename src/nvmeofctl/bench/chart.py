"""The bench's chart: one horizontal bar per job and host (and baseline), as SVG. Pure."""

from __future__ import annotations

from xml.sax.saxutils import escape

from nvmeofctl.bench.profiles import Result

_COLOURS = {"training": "#1565c0", "inference": "#6a1b9a", "checkpoint": "#2e7d32"}


def _metric(r: Result) -> tuple[float, str]:
    return (r.iops, "IOPS") if r.job.startswith("randread") else (r.bw_mib_s, "MiB/s")


def svg(title: str, results: list[Result], baseline: list[Result]) -> str:
    rows = [(r, False) for r in results if not r.error] + [(b, True) for b in baseline if not b.error]
    rows.sort(key=lambda rb: (rb[0].profile, rb[0].job, rb[1], rb[0].host))
    top: dict[str, float] = {}
    for r, _b in rows:  # each unit scaled on its own: bars of one job compare with each other
        v, unit = _metric(r)
        top[unit] = max(top.get(unit, 0.0), v)
    label_w, bar_w, row_h = 330, 420, 24
    height = 60 + row_h * max(1, len(rows)) + 20
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 140}" height="{height}" '
           'font-family="Helvetica, Arial, sans-serif">', f"<title>{escape(title)}</title>",
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="28" font-size="15" font-weight="bold">{escape(title)}</text>']
    y = 50
    for r, is_base in rows:
        v, unit = _metric(r)
        w = bar_w * (v / top[unit]) if top[unit] else 0
        who = f"baseline {r.host}" if is_base else r.host
        colour = "#9e9e9e" if is_base else _COLOURS.get(r.profile, "#455a64")
        out.append(f'<text x="10" y="{y + 16}" font-size="12">{escape(f"{r.profile} {r.job} @ {who}")}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12">{v:,.1f} {unit}</text>')
        y += row_h
    out.append("</svg>")
    return "\n".join(out) + "\n"
