"""perftest (``ib_write_bw``) and ``rping`` output parsers."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class BwResult:
    bw_avg_gbps: float
    bw_peak_gbps: float | None = None
    msg_bytes: int | None = None
    iterations: int | None = None
    device: str | None = None
    gid_index: int | None = None
    mtu: int | None = None
    link_type: str | None = None
    bidirectional: bool = False
    rdma_cm: bool | None = None


def parse_ib_bw(text: str) -> BwResult | None:
    """``ib_write_bw`` (client or server side, -a sweeps, indented docs, warnings inside the table).

    Gb/sec when run with ``--report_gbits``, MB/sec otherwise (converted). For a sweep the row
    with the largest message is the result. None when no result row is present."""
    unit_gbits = True
    in_table = False
    rows: list[tuple[int, int, float, float]] = []
    info: dict[str, str] = {}
    bidir = False
    for raw in text.splitlines():
        s = raw.strip()
        if "Bidirectional" in s and "BW Test" in s:
            bidir = True
        for part in re.split(r"\t+|\s{3,}(?=[A-Z])", re.sub(r"\s+:", " :", s)):
            if ":" in part and not part.startswith("#"):
                k, v = part.split(":", 1)
                info.setdefault(k.strip(), v.strip())
        if s.startswith("#bytes"):
            in_table = True
            unit_gbits = "Gb/sec" in s
            continue
        if in_table:
            tok = s.split()
            if len(tok) >= 4 and tok[0].isdigit() and tok[1].isdigit():
                try:
                    rows.append((int(tok[0]), int(tok[1]), float(tok[2]), float(tok[3])))
                except ValueError:
                    continue
    if not rows:
        return None
    size, iters, peak, avg = max(rows, key=lambda r: r[0])
    factor = 1.0 if unit_gbits else 8 / 1000.0
    mtu = re.match(r"(\d+)", info.get("Mtu", ""))
    gid = info.get("GID index", "")
    cm = info.get("rdma_cm QPs")
    return BwResult(
        bw_avg_gbps=avg * factor,
        bw_peak_gbps=peak * factor if peak else None,
        msg_bytes=size,
        iterations=iters,
        device=info.get("Device"),
        gid_index=int(gid) if gid.isdigit() else None,
        mtu=int(mtu.group(1)) if mtu else None,
        link_type=info.get("Link type"),
        bidirectional=bidir,
        rdma_cm=None if cm is None else cm.upper() == "ON",
    )


@dataclass
class RpingResult:
    ok: bool
    pings: int
    error: str | None = None


_RPING_ERR = re.compile(r"(error|failed|REJECTED|UNREACHABLE|ADDR_ERROR|ROUTE_ERROR|No such device|refused)",
                        re.IGNORECASE)


def parse_rping(stdout: str, stderr: str = "", rc: int | None = 0) -> RpingResult:
    """``rping -c -v -C N``: one ``ping data:`` line per completed ping; DISCONNECT is normal."""
    pings = sum(1 for line in stdout.splitlines() if "ping data:" in line)
    err = None
    for line in (stderr + "\n" + stdout).splitlines():
        if _RPING_ERR.search(line):
            err = line.strip()
            break
    if rc == 124 and err is None:
        err = "timed out"
    return RpingResult(ok=pings > 0 and err is None and rc in (0, None), pings=pings, error=err)
