"""Every `--output json` document has a JSON Schema (src/nvmeofctl/report/schemas/), and the real
documents match it.

The schema files are read here as files (not through the code under test) and checked as draft
2020-12 schemas; `nvmeofctl schemas` must list and print each one. Each document kind is then
printed by the real CLI, in process, on the captures the other unit tests use: the lab's one read
(tests/fixtures/plan/lab-real), its health probes (tests/fixtures/health/probe/lab-real), fio's
output and the block devices' users on gpu1 (tests/fixtures/bench, tests/fixtures/facts/blockusers).
Every document printed must match its schema, and the same document with a required field removed
(at the top and one level down) or with another schema_version must not.

Checked only structurally (no capture of the real thing exists, nothing here makes one):
- apply (and the history records it leaves), and the `disconnect` that runs: the CLI's own
  documents, but ansible-runner's result is a stub (per-host counts and one module change written
  out below); the read, preflight, plan and rows around it are real;
- lab-status: `lab status` of a lab whose VMs are not running (no QEMU here): a running VM's
  pid and ssh_ready are typed by the schema but never seen true;
- bench: `baseline` and `efficiency` stay empty (no --baseline: the target's fio was not captured);
- health: the perf entries come from the captured rping and ib_write_bw of the lab (Soft-RoCE:
  no threshold), so a measured-against-threshold entry is not seen.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from nvmeofctl.facts import hoststate
from nvmeofctl.facts.hoststate import HostState
from nvmeofctl.report.schemas import KINDS, OutputSchemaError, validate

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "src" / "nvmeofctl" / "report" / "schemas"
FIXTURES = ROOT / "tests" / "fixtures"
REAL = FIXTURES / "plan" / "lab-real"
SPEC = str(REAL / "cluster.yaml")
HEALTH = FIXTURES / "health"
HEALTH_SPEC = str(HEALTH / "probe" / "lab-real" / "cluster.yaml")
DRAFT = "https://json-schema.org/draft/2020-12/schema"
FILES = sorted(SCHEMAS.glob("*.schema.json"))


def read_schema(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))


def kind_of(path: Path) -> str:
    return path.name[: -len(".schema.json")]


# --------------------------------------------------------------------------- the schema files


def _undescribed(node, where: str = "$") -> list[str]:
    """Every property (at any depth) without a description (an ``if`` only tests, declares none)."""
    out = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if not (isinstance(sub, dict) and sub.get("description")):
                out.append(f"{where}.{name}")
        for key, sub in node.items():
            if key != "if":
                out += _undescribed(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            out += _undescribed(sub, f"{where}[{i}]")
    return out


def test_there_is_one_schema_file_per_kind():
    assert sorted(kind_of(p) for p in FILES) == sorted(KINDS) == sorted([
        "apply", "bench", "export", "health", "history-list", "history-show", "lab-status", "node-op",
        "plan", "rollout", "schemas", "spec-validate", "status", "teardown"])


@pytest.mark.parametrize("path", FILES, ids=kind_of)
def test_each_file_is_a_draft_2020_12_schema_naming_kind_and_version(path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(doc)
    kind = kind_of(path)
    assert doc["$schema"] == DRAFT
    assert doc["$id"] == f"urn:nvmeofctl:output:{kind}:v1"
    assert doc["title"].startswith("nvmeofctl ") and doc["description"]
    assert doc["type"] == "object" and doc["required"][0] == "schema_version"
    assert doc["properties"]["schema_version"]["const"] == 1
    assert '"additionalProperties": false' not in json.dumps(doc)  # fields may be added within a version
    assert _undescribed(doc) == []


def test_the_version_rule_is_written_in_every_schema():
    for path in FILES:
        text = json.loads(path.read_text(encoding="utf-8"))["description"]
        assert "Fields may be added within a version" in text and "bumps schema_version" in text, path.name


# --------------------------------------------------------------------------- the command


def test_schemas_lists_every_kind_with_its_title(run_cli):
    rc, out, err = run_cli(["schemas", "-o", "json"])
    assert rc == 0, err
    doc = json.loads(out)
    listed = {k["kind"]: (k["title"], k["id"]) for k in doc["kinds"]}
    assert listed == {kind_of(p): (read_schema(kind_of(p))["title"], read_schema(kind_of(p))["$id"]) for p in FILES}
    rc, out, err = run_cli(["schemas"])
    assert rc == 0, err
    for path in FILES:
        assert kind_of(path) in out and read_schema(kind_of(path))["title"] in out


@pytest.mark.parametrize("path", FILES, ids=kind_of)
def test_schemas_kind_prints_that_file(run_cli, path):
    rc, out, err = run_cli(["schemas", kind_of(path)])
    assert rc == 0, err
    assert json.loads(out) == json.loads(path.read_text(encoding="utf-8"))


def test_an_unknown_kind_is_one_line_and_exit_2(run_cli):
    rc, out, err = run_cli(["schemas", "plans"])
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [
        ("error: no output schema 'plans' (kinds: plan, apply, health, status, node-op, teardown, rollout, bench, export, "
         "history-list, history-show, spec-validate, lab-status, schemas); `nvmeofctl schemas` lists them")]


def test_schemas_help_has_an_example(run_cli):
    rc, out, _ = run_cli(["schemas", "--help"])
    assert rc == 0 and "Example" in out and "nvmeofctl schemas plan" in out


# --------------------------------------------------------------------------- real documents


@pytest.fixture
def hosts(monkeypatch, real_states):
    """The hosts answer as the real lab did: gather() from the captures (``edits[host]`` replaces
    sections, ``down`` hosts are unreachable), gpu1's extra reads (its block devices' users, the
    bench's device facts) from their captures; a playbook run answers with ``ctl["result"]``."""
    from nvmeofctl.bench import device_facts
    from nvmeofctl.cli import provision as provision_cli
    from nvmeofctl.facts import blockusers
    from nvmeofctl.run import runner

    extra_captures = {("gpu1", blockusers.SECTION): FIXTURES / "facts" / "blockusers" / "lab-gpu1-mounted-and-open.txt",
                      ("gpu1", device_facts.SECTION): FIXTURES / "bench" / "lab-gpu1-devices.txt"}
    ctl = {"edits": {}, "down": set(), "playbooks": [], "result": None}

    def gather(spec_obj, names=None, timeout=120.0, extra=None):
        states = real_states(spec_obj, ctl["edits"])
        for name, st in states.items():
            for section, _command in (extra or {}).get(name, []):
                if (name, section) in extra_captures:
                    st.sections[section] = extra_captures[(name, section)].read_text()
        for name in ctl["down"]:
            h = spec_obj.host(name)
            states[name] = HostState(name, h.role, h.fabric.interface, False,
                                     "ssh 127.0.0.1:22: timed out after 15s", "unreachable")
        return {n: st for n, st in states.items() if names is None or n in names}

    def run_playbook(playbook, inventory, **kwargs):
        ctl["playbooks"].append((playbook, kwargs.get("limit"), kwargs.get("check")))
        assert ctl["result"] is not None, "no playbook may run here"
        return ctl["result"]

    monkeypatch.setattr(hoststate, "gather", gather)
    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    monkeypatch.setattr(provision_cli, "gather", gather)
    monkeypatch.setattr(provision_cli, "run_playbook", run_playbook)
    return ctl


def json_of(run_cli, args, rc):
    code, out, err = run_cli([*args, "-o", "json"])
    assert code == rc, (args, code, err)
    return json.loads(out)


def _runner_result(hosts_run, gpu2_disconnects=False):
    """ansible-runner's answer for ``hosts_run``: every host ok; with ``gpu2_disconnects`` gpu2
    reports the one disconnect its module makes when `train` is no longer exported to it (the
    change as nvme_host words it)."""
    from nvmeofctl.run.runner import RunResult, TaskResult

    counts = {"ok": 4, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 1}
    stats = {h: dict(counts) for h in hosts_run}
    tasks = []
    if gpu2_disconnects:
        stats["gpu2"]["changed"] = 1
        tasks.append(TaskResult("gpu2", "NVMe-oF connections", "nvmeofctl.fabric.nvme_host", "changed", changes=[{
            "object": "controller:nvme0", "action": "disconnect",
            "detail": "rdma://192.168.100.11:4420/nqn.2024-01.io.nvmeofctl.lab:train", "disruptive": True,
            "reason": "the spec no longer exports nqn.2024-01.io.nvmeofctl.lab:train to this host; "
                      "I/O on its namespaces stops"}]))
    return RunResult(rc=0, stats=stats, tasks=tasks)


@pytest.fixture
def dropped(tmp_path):
    """The real lab spec with gpu2 dropped from `train`: disruptive for plan, status and apply."""
    text = (REAL / "cluster.yaml").read_text().replace(
        "../../specs/good/secrets", str(FIXTURES / "specs" / "good" / "secrets"))
    assert "allowed_gpu_nodes: [gpu1, gpu2]" in text
    path = tmp_path / "dropped.yaml"
    path.write_text(text.replace("allowed_gpu_nodes: [gpu1, gpu2]", "allowed_gpu_nodes: [gpu1]", 1))
    return str(path)


def docs_plan(run_cli, hosts, dropped, tmp_path, monkeypatch):
    yield json_of(run_cli, ["plan", "-f", SPEC], 0)
    doc = json_of(run_cli, ["plan", "-f", dropped], 0)
    assert doc["disruptive"] > 0
    yield doc
    hosts["down"].add("gpu2")
    doc = json_of(run_cli, ["plan", "-f", SPEC], 6)
    assert [s["host"] for s in doc["skipped"]] == ["gpu2"]
    yield doc


def docs_apply(run_cli, hosts, dropped, tmp_path, monkeypatch):
    hosts["result"] = _runner_result(["tgt1", "gpu1", "gpu2"])
    yield json_of(run_cli, ["apply", "-f", SPEC, "--check"], 0)
    hosts["result"] = _runner_result(["tgt1", "gpu1", "gpu2"], gpu2_disconnects=True)
    doc = json_of(run_cli, ["apply", "-f", dropped, "--allow-disruptive"], 0)
    assert doc["order"]["release"] == ["gpu2"]  # ordered: gpu2 releases its path first
    yield doc
    hosts["down"].add("gpu2")
    hosts["result"] = _runner_result(["tgt1", "gpu1"])
    yield json_of(run_cli, ["apply", "-f", SPEC], 6)  # gpu2 left out, the others run
    assert [p[0] for p in hosts["playbooks"]] == ["site.yml", "site_ordered.yml", "site.yml"]


def docs_history_list(run_cli, hosts, dropped, tmp_path, monkeypatch):
    yield json_of(run_cli, ["history"], 0)  # nothing recorded yet
    docs = list(docs_apply(run_cli, hosts, dropped, tmp_path, monkeypatch))
    assert len(docs) == 3
    (tmp_path / "nvmeofctl-state" / "runs" / "20240101T000000Z-1-abcd.json").write_text("{}")  # unreadable
    doc = json_of(run_cli, ["history"], 0)
    assert doc["total"] == 3 and len(doc["problems"]) == 1
    yield doc


def docs_history_show(run_cli, hosts, dropped, tmp_path, monkeypatch):
    for _ in docs_apply(run_cli, hosts, dropped, tmp_path, monkeypatch):
        pass
    runs = json_of(run_cli, ["history"], 0)["runs"]
    assert len(runs) == 3
    for run in runs:
        yield json_of(run_cli, ["history", "--show", run["id"]], 0)


def docs_status(run_cli, hosts, dropped, tmp_path, monkeypatch):
    yield json_of(run_cli, ["status", "-f", SPEC], 0)
    doc = json_of(run_cli, ["status", "-f", dropped], 10)
    assert [u["node"] for u in doc["unexpected"]] == ["gpu2"]  # a path the spec no longer wants
    yield doc
    hosts["down"].add("gpu2")
    yield json_of(run_cli, ["status", "-f", SPEC], 6)


def docs_node_op(run_cli, hosts, dropped, tmp_path, monkeypatch):
    yield json_of(run_cli, ["connect", "-f", SPEC, "--node", "gpu2"], 0)  # nothing to do
    doc = json_of(run_cli, ["disconnect", "-f", SPEC, "--node", "gpu1", "--check"], 0)
    assert doc["in_use"] == ["mounted on /mnt/ckpt", "open by pid 1480 (sleep)"]  # the capture's users
    yield doc
    hosts["result"] = _runner_result(["gpu2"], gpu2_disconnects=True)
    yield json_of(run_cli, ["disconnect", "-f", SPEC, "--node", "gpu2"], 0)  # runs


def docs_teardown(run_cli, hosts, dropped, tmp_path, monkeypatch):
    doc = json_of(run_cli, ["teardown", "-f", SPEC, "--check"], 0)
    assert [u["device"] for u in doc["in_use"]] == ["/dev/nvme1n1", "/dev/nvme0n1"]
    yield doc
    yield json_of(run_cli, ["teardown", "-f", SPEC, "--limit", "gpu2", "--check"], 0)


def docs_health(run_cli, hosts, dropped, tmp_path, monkeypatch):
    from nvmeofctl.health import perf as perf_mod
    from nvmeofctl.remote import ssh

    probe = HEALTH / "probe" / "lab-real"
    outputs = {h: (probe / f"{h}-healthy.txt").read_text() for h in ("tgt1", "gpu1", "gpu2")}
    down: set[str] = set()

    def run_many(targets, command, *, stdin=None, timeout=60.0, **kw):
        return {t.name: (ssh.Unreachable(t.name, f"ssh {t.address}:{t.port}: timed out after 15s")
                         if t.name in down else ssh.CommandResult(t.name, 0, outputs[t.name], "", 3.1))
                for t in targets}

    def run_on(target, command, *, stdin=None, timeout=60.0, **kw):
        if "rping -c" in command:
            return ssh.CommandResult(target.name, 0, (HEALTH / "lab" / "rping-client.txt").read_text(), "", 0.2)
        if "ib_write_bw" in command and target.name.startswith("gpu"):
            text = (HEALTH / "lab" / "ib_write_bw-client-rdmacm.txt").read_text()
            return ssh.CommandResult(target.name, 0, text, "", 2.5)
        return ssh.CommandResult(target.name, 0, "", "", 0.1)

    monkeypatch.setattr(perf_mod, "START_DELAY", 0.0)
    monkeypatch.setattr(ssh, "run_many", run_many)
    monkeypatch.setattr(ssh, "run_on", run_on)
    yield json_of(run_cli, ["health", "-f", HEALTH_SPEC], 0)
    doc = json_of(run_cli, ["health", "-f", HEALTH_SPEC, "--perf", "--window", "0"], 0)
    assert [(p["gpu_node"], p["target"]) for p in doc["perf"]] == [("gpu1", "tgt1"), ("gpu2", "tgt1")]
    yield doc
    outputs["gpu2"] = (probe / "gpu2-rxe-removed.txt").read_text()
    yield json_of(run_cli, ["health", "-f", HEALTH_SPEC], 11)
    down.add("tgt1")
    yield json_of(run_cli, ["health", "-f", HEALTH_SPEC], 6)


def docs_bench(run_cli, hosts, dropped, tmp_path, monkeypatch):
    from nvmeofctl.remote import ssh

    fio = (FIXTURES / "bench" / "lab-gpu1-all-profiles.txt").read_text()  # /dev/nvme1n1: ckpt on gpu1
    monkeypatch.setattr(ssh, "run_many", lambda targets, command, **kw: {
        t.name: ssh.CommandResult(t.name, 0, fio, "", 30.0) for t in targets})
    yield json_of(run_cli, ["bench", "-f", SPEC, "--profile", "all", "--nodes", "gpu1", "--namespace", "ckpt",
                            "--destructive", "--runtime", "2", "--size", "32MiB", "--out", str(tmp_path / "b")], 0)


def docs_export(run_cli, hosts, dropped, tmp_path, monkeypatch):
    yield json_of(run_cli, ["export", "-f", SPEC, "--to", str(tmp_path / "project")], 0)


def docs_rollout(run_cli, hosts, dropped, tmp_path, monkeypatch):
    """REAL documents: `rollout --reboot` and the port-move `rollout` of tests/lab/test_13_multipath.py
    (tests/fixtures/rollout/PROVENANCE.md); a rollout needs the lab's targets and GPU node."""
    yield from json.loads((FIXTURES / "rollout" / "lab-records.json").read_text())


def docs_spec_validate(run_cli, hosts, dropped, tmp_path, monkeypatch):
    yield json_of(run_cli, ["spec", "validate", SPEC], 0)
    yield json_of(run_cli, ["spec", "validate", str(ROOT / "inventory" / "example.yaml")], 0)
    bad = tmp_path / "bad.yaml"
    text = (REAL / "cluster.yaml").read_text().replace("../../specs/good/secrets", str(FIXTURES / "specs/good/secrets"))
    assert "  mtu: 1500\n" in text and "    target: tgt1\n" in text
    bad.write_text(text.replace("  mtu: 1500\n", "  mtu: 70000\n")
                   .replace("    target: tgt1\n", "    target: tgt9\n", 1))
    doc = json_of(run_cli, ["spec", "validate", str(bad)], 3)
    assert [e["path"] for e in doc["errors"]] == ["fabric.mtu", "subsystems[0].target"]
    yield doc
    yield json_of(run_cli, ["spec", "validate", str(FIXTURES / "specs" / "bad" / "syntax.yaml")], 3)


def docs_lab_status(run_cli, hosts, dropped, tmp_path, monkeypatch):
    from nvmeofctl.lab.layout import make_layout

    monkeypatch.setenv("NVMEOFCTL_CACHE", str(tmp_path / "cache"))
    lab = tmp_path / "cache" / "labs" / "t"
    lab.mkdir(parents=True)
    (lab / "lab.json").write_text(json.dumps({"layout": make_layout("t", 1, 2, [2201, 2202, 2203]).to_dict()}))
    yield json_of(run_cli, ["lab", "status", "--name", "t"], 6)  # stopped: no VM answers
    shutil.copy(REAL / "cluster.yaml", lab / "cluster.yaml")
    yield json_of(run_cli, ["lab", "status", "--name", "t"], 6)


def docs_schemas(run_cli, hosts, dropped, tmp_path, monkeypatch):
    yield json_of(run_cli, ["schemas"], 0)


PRODUCE = {"plan": docs_plan, "apply": docs_apply, "health": docs_health, "status": docs_status,
           "node-op": docs_node_op, "teardown": docs_teardown, "rollout": docs_rollout, "bench": docs_bench,
           "export": docs_export,
           "history-list": docs_history_list, "history-show": docs_history_show,
           "spec-validate": docs_spec_validate, "lab-status": docs_lab_status, "schemas": docs_schemas}

# per kind: which of its documents, and a required field one level down in it (a key path)
NESTED = {"plan": (0, ("hosts", 0, "converged")), "apply": (0, ("hosts", 0, "status")),
          "health": (0, ("findings", 0, "status")), "status": (0, ("namespaces", 0, "paths", 0, "state")),
          "node-op": (1, ("changes", 0, "object")), "teardown": (0, ("hosts", 0, "changes", 0, "action")),
          "rollout": (1, ("steps", 0, "step")),
          "bench": (0, ("results", 0, "bw_mib_s")), "export": (0, None), "history-list": (1, ("runs", 0, "exit_code")),
          "history-show": (0, ("hosts", 0, "changed_tasks")), "spec-validate": (0, ("hosts", 0, "role")),
          "lab-status": (0, ("vms", 0, "ssh_ready")), "schemas": (0, ("kinds", 0, "id"))}


@pytest.fixture
def documents(run_cli, hosts, dropped, tmp_path, monkeypatch):
    return lambda kind: list(PRODUCE[kind](run_cli, hosts, dropped, tmp_path, monkeypatch))


def test_every_kind_has_a_producer():
    assert sorted(PRODUCE) == sorted(NESTED) == sorted(kind_of(p) for p in FILES)


@pytest.mark.parametrize("kind", sorted(PRODUCE))
def test_real_documents_match_their_schema(kind, documents):
    docs = documents(kind)
    assert docs
    schema = read_schema(kind)
    validator = Draft202012Validator(schema)
    for doc in docs:
        assert doc["schema_version"] == 1
        assert [e.message for e in validator.iter_errors(doc)] == [], json.dumps(doc, indent=1)[:3000]
        validate(kind, doc)  # the helper lab tests use agrees


def _drop(doc: dict, path: tuple) -> dict:
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return doc


@pytest.mark.parametrize("kind", sorted(PRODUCE))
def test_a_document_without_a_required_field_is_rejected(kind, documents):
    index, path = NESTED[kind]
    doc = documents(kind)[index]
    for field in read_schema(kind)["required"]:
        with pytest.raises(OutputSchemaError, match=f"^{kind} document does not match urn:nvmeofctl:output:{kind}:v1"
                                                    f"(.|\n)*\\$: '{field}' is a required property"):
            validate(kind, _drop(doc, (field,)))
    with pytest.raises(OutputSchemaError, match=r"\$\.schema_version: 1 was expected"):
        validate(kind, {**doc, "schema_version": 2})
    if path is None:  # a flat document
        return
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[:-1])
    with pytest.raises(OutputSchemaError) as exc:
        validate(kind, _drop(doc, path))
    assert f"{where}: '{path[-1]}' is a required property" in exc.value.problems


def test_added_fields_keep_the_version():
    """New fields may appear within a version: a document with an extra field still matches."""
    doc = {"schema_version": 1, "spec": "c.yaml", "to": "p", "written": [], "secrets": [], "vault": False,
           "added_later": {"anything": 1}}
    validate("export", doc)


def test_the_error_names_every_problem():
    with pytest.raises(OutputSchemaError) as exc:
        validate("export", {"schema_version": 1, "spec": 3, "to": "p", "written": ["a", 2], "secrets": []})
    assert exc.value.problems == ["$: 'vault' is a required property", "$.spec: 3 is not of type 'string'",
                                  "$.written[1]: 2 is not of type 'string'"]
    first = str(exc.value).splitlines()[0]
    assert first == "export document does not match urn:nvmeofctl:output:export:v1: 3 problem(s)"
