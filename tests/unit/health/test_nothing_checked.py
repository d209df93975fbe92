"""`health` that checked nothing is never "healthy" (security issue, item 5)."""

from __future__ import annotations

from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.health.model import Finding, Status, exit_code_for, overall_status


def test_no_findings_is_not_healthy():
    assert exit_code_for([]) == ExitCode.UNHEALTHY
    assert overall_status([]) == "nothing checked"


def test_only_not_applicable_findings_is_not_healthy():
    na = [Finding("gpu1", "pfc", Status.na), Finding("gpu1", "ecn", Status.na)]
    assert exit_code_for(na) == ExitCode.UNHEALTHY
    assert overall_status(na) == "nothing checked"


def test_one_ok_among_na_is_healthy():
    findings = [Finding("gpu1", "pfc", Status.na), Finding("gpu1", "port", Status.ok)]
    assert exit_code_for(findings) == ExitCode.OK and overall_status(findings) == "healthy"
