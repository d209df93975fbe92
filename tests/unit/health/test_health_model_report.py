import json
import re

import pytest
from rich.console import Console

from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.health.model import Finding, Status, exit_code_for, overall_status, sort_findings
from nvmeofctl.report import health as rh
from nvmeofctl.report import prometheus


def F(host, check, status, device=None):
    return Finding(host, check, Status(status), "obs", "exp", "fix it" if status in ("warn", "fail") else "", device)


@pytest.mark.parametrize(
    "statuses,code",
    [
        ([], ExitCode.UNHEALTHY),  # nothing checked is never healthy
        (["na"], ExitCode.UNHEALTHY),
        (["ok", "na"], ExitCode.OK),
        (["ok", "warn", "na"], ExitCode.DEGRADED),
        (["warn", "fail"], ExitCode.UNHEALTHY),
        (["fail", "unreachable"], ExitCode.UNREACHABLE),
        (["ok", "unreachable"], ExitCode.UNREACHABLE),
        # a host that refused SSH (host key, login): 4, as `apply` says for it; incomplete too
        (["ok", "warn", "fail", "refused"], ExitCode.PREFLIGHT),
        (["refused", "unreachable"], ExitCode.UNREACHABLE),
    ],
)
def test_exit_code_mapping(statuses, code):
    fs = [F("h", f"c{i}", s) for i, s in enumerate(statuses)]
    assert exit_code_for(fs) == code
    assert int(code) in (0, 4, 6, 10, 11)


def test_refused_host_in_json_and_prometheus():
    fs = [F("tgt1", "ssh", "refused"), F("gpu1", "mtu", "ok")]
    p = rh.payload(fs, None, ["tgt1", "gpu1"], 3.0)
    assert (p["status"], p["exit_code"], p["counts"]["refused"]) == ("refused", 4, 1)
    text = prometheus.render(fs, None, ["tgt1", "gpu1"])
    assert 'nvmeofctl_health_check{host="tgt1",check="ssh",device=""} 4' in text
    assert 'nvmeofctl_health_host_up{host="tgt1"} 0' in text and "nvmeofctl_health_exit_code 4" in text


def test_overall_status_words():
    assert overall_status([F("h", "c", "warn")]) == "degraded"
    assert overall_status([F("h", "c", "fail")]) == "unhealthy"


def test_sort_groups_by_host_problems_first():
    fs = [F("b", "x", "ok"), F("a", "y", "na"), F("a", "z", "warn"), F("b", "w", "fail"), F("a", "v", "fail")]
    out = sort_findings(fs, ["b", "a"])
    assert [(f.host, f.status.value) for f in out] == [("b", "fail"), ("b", "ok"), ("a", "fail"), ("a", "warn"),
                                                        ("a", "na")]


def test_json_payload_shape():
    p = rh.payload([F("gpu1", "pfc", "fail", "eth1"), F("gpu1", "mtu", "ok")], None, ["gpu1"], 3.0)
    assert p["status"] == "unhealthy" and p["exit_code"] == 11 and p["perf"] is None
    assert p["counts"]["fail"] == 1 and p["findings"][0]["check"] == "pfc"
    assert set(p["findings"][0]) == {"host", "check", "status", "observed", "expected", "remedy", "device"}
    json.dumps(p)


def test_table_renders_remedy_and_hides_ok():
    console = Console(record=True, width=200, no_color=True)
    rh.render_table(console, [F("gpu1", "pfc", "fail", "eth1"), F("gpu1", "mtu", "ok")], None, ["gpu1"],
                    show_ok=False)
    text = console.export_text()
    assert "pfc" in text and "fix it" in text and " mtu " not in text and "unhealthy: 1 ok, 1 fail" in text


PROM_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$')


def test_prometheus_format():
    fs = [F("gpu1", "pfc", "fail", "eth1"), F("gpu1", "mtu", "ok"), F("gpu1", "ecn", "na", 'we"ird\\dev'),
          F("stor1", "ssh", "unreachable"), F("gpu1", "mtu", "ok")]
    text = prometheus.render(fs, None, ["stor1", "gpu1"])
    assert text.endswith("\n")
    families = {}
    for line in text.splitlines():
        if line.startswith("# HELP") or line.startswith("# TYPE"):
            _, kind, name, *_ = line.split(" ", 3)
            families.setdefault(name, set()).add(kind)
            continue
        assert PROM_LINE.match(line), line
    assert all(v == {"HELP", "TYPE"} for v in families.values())
    assert 'nvmeofctl_health_check{host="gpu1",check="pfc",device="eth1"} 2' in text
    assert 'nvmeofctl_health_check{host="gpu1",check="mtu",device=""} 0' in text
    assert 'device="we\\"ird\\\\dev"} -1' in text
    assert 'nvmeofctl_health_check{host="stor1",check="ssh",device=""} 3' in text
    assert text.count('check="mtu"') == 1  # duplicate series dropped
    assert 'nvmeofctl_health_host_up{host="stor1"} 0' in text and 'nvmeofctl_health_host_up{host="gpu1"} 1' in text
    assert "nvmeofctl_health_exit_code 6" in text
    # a family's samples are contiguous (exposition format requirement)
    names = [ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if not ln.startswith("#")]
    seen, prev = set(), None
    for n in names:
        if n != prev:
            assert n not in seen
            seen.add(n)
        prev = n
