"""Shared by every unit test."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _private_fixture_secrets() -> None:
    """The loader refuses DH-HMAC-CHAP secret files open to group/other, and git records no mode
    but the x bit (a checkout makes them 0644): give the committed sample keys mode 0600."""
    for key in FIXTURES.glob("**/secrets/*.key"):
        key.chmod(0o600)


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch) -> None:
    """`apply` leaves a run record in nvmeofctl's state directory: keep the developer's own
    history out of unit tests (each test gets an empty one)."""
    monkeypatch.setenv("NVMEOFCTL_STATE", str(tmp_path / "nvmeofctl-state"))


# --------------------------------------------------------------------------- the real lab's read
REAL = FIXTURES / "plan" / "lab-real"  # plan's one read of the provisioned lab (see its README)


@pytest.fixture(scope="session")
def real_spec():
    """The lab spec the captures in fixtures/plan/lab-real were read with."""
    from nvmeofctl.spec import load_spec

    return load_spec(REAL / "cluster.yaml")


@pytest.fixture
def real_states():
    """``states(spec, edits=None)``: HostState per host of ``spec`` from the real captures, fresh
    each call; ``edits[host][section]`` replaces a section's text."""
    from nvmeofctl.facts.hoststate import HostState, parse_kv, split_sections

    def states(spec, edits=None):
        out = {}
        for h in spec.hosts:
            sections = split_sections((REAL / f"{h.name}.txt").read_text())
            sections.update((edits or {}).get(h.name, {}))
            out[h.name] = HostState(h.name, h.role, h.fabric.interface, True,
                                    preflight=parse_kv(sections["preflight"]), sections=sections)
        return out

    return states


@pytest.fixture
def real_observed(real_spec, real_states):
    """Observed state per host of the real lab (a fresh copy: tests may edit it)."""
    return {name: st.observed() for name, st in real_states(real_spec).items()}


@pytest.fixture
def run_cli(capsys):
    """``run_cli(args) -> (exit code, stdout, stderr)``: the console entry point (its error
    handling and exit codes included), in process."""
    from nvmeofctl.cli.main import run

    def call(args):
        try:
            rc = run(list(args))
        except SystemExit as exc:
            rc = exc.code
        out, err = capsys.readouterr()
        return rc, out, err

    return call
