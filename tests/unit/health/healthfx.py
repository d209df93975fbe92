"""Shared helpers for the health tests (imported by conftest.py and test modules by this unique name).

Every probe output the health tests feed the checks comes from a REAL capture (provenance of each file
in ``tests/fixtures/health/PROVENANCE.md``):

- ``probe/lab-real/*.txt``: the probe's stdout captured over SSH from the provisioned lab VMs
  (tgt1, gpu1, gpu2; Debian 12, kernel 6.12.95, soft-RoCE), with the module dump sections
  (``nvme_host``, ``nvmet``, ``rdma``) that plan captured for real from the same lab
  (``tests/fixtures/health/build_probe_v2.py``), and ``probe/lab-real/cluster.yaml``, the spec they
  were provisioned from;
- ``real/``, ``real-extra/``: outputs real ConnectX (mlx5) / E810 hosts printed (public sources);
- ``gpu-node/h100-node-probe.txt``: a real H100 node (no RDMA NIC).

Fault cases are derived from a healthy capture by the explicit edits below (``edit``,
``edit_section``, ``set_section``...): each one names the exact text it replaces and fails loudly when
that text is not in the capture exactly as often as expected, so a test can never silently run on
unedited (healthy) text. Expected values in the tests are literals, never computed by the code under
test.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from nvmeofctl.facts.probe import parse_probe_output
from nvmeofctl.health.expect import expectations_from_spec
from nvmeofctl.spec import parse_spec

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "health"
sys.path.insert(0, str(FIX))
from gpu_probe import dash_sections as _dash_sections, h100_gpu_node  # noqa: E402,F401  (shared with tests/unit/facts)
LAB_REAL = FIX / "probe" / "lab-real"
LAB_SPEC = LAB_REAL / "cluster.yaml"

# Values as the lab captures hold them (used to write literal edits and expectations).
GPU1_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:bce6f754-ea93-5cb5-89d7-177f392bcd4b"
GPU1_HOSTID = "bce6f754-ea93-5cb5-89d7-177f392bcd4b"
GPU2_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:452a16fc-bb18-5cfa-ba28-8e97503bc225"
GPU2_HOSTID = "452a16fc-bb18-5cfa-ba28-8e97503bc225"
TRAIN = "nqn.2024-01.io.nvmeofctl.lab:train"
CKPT = "nqn.2024-01.io.nvmeofctl.lab:ckpt"


def read(rel: str) -> str:
    return (FIX / rel).read_text(encoding="utf-8", errors="surrogateescape")


@functools.lru_cache(maxsize=None)
def lab(host: str, state: str = "healthy") -> str:
    """The real probe output of a lab VM: ``tgt1|gpu1|gpu2`` x ``healthy`` (or ``gpu2``, ``rxe-removed``)."""
    return (LAB_REAL / f"{host}-{state}.txt").read_text(encoding="utf-8")


def facts(host: str, text: str):
    return parse_probe_output(host, text)


# ---- explicit edits of real text ----------------------------------------------------------------
def edit(text: str, old: str, new: str, count: int = 1) -> str:
    """Replace ``old`` (which must occur exactly ``count`` times) by ``new``."""
    found = text.count(old)
    assert found == count, f"capture edit: expected {count}x {old!r}, found {found}"
    return text.replace(old, new)


def _bounds(lines: list[str], header: str) -> tuple[int, int]:
    hits = [i for i, line in enumerate(lines) if line == f"### {header}"]
    assert len(hits) == 1, f"capture edit: expected one '### {header}' section, found {len(hits)}"
    start = hits[0]
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("### ")), len(lines))
    return start, end


def section(text: str, header: str) -> str:
    lines = text.split("\n")
    start, end = _bounds(lines, header)
    body = "\n".join(lines[start + 1:end]).strip("\n")
    return body + "\n" if body else ""


def set_section(text: str, header: str, body: str) -> str:
    """Replace the body of the section ``### header`` (the header stays)."""
    lines = text.split("\n")
    start, end = _bounds(lines, header)
    new = [lines[start], *body.rstrip("\n").split("\n"), ""] if body.strip() else [lines[start], ""]
    return "\n".join(lines[:start] + new + lines[end:])


def edit_section(text: str, header: str, old: str, new: str, count: int = 1) -> str:
    """``edit`` restricted to one section's body."""
    return set_section(text, header, edit(section(text, header), old, new, count))


def edit_block(text: str, start: str, old: str, new: str) -> str:
    """``edit`` restricted to the paragraph that begins at the (unique) line ``start`` and ends at the
    next blank line, e.g. one ``hca_id:`` block of ``ibv_devinfo``."""
    assert text.count(start) == 1, f"capture edit: expected one {start!r}"
    i = text.index(start)
    j = text.find("\n\n", i)
    j = len(text) if j < 0 else j
    return text[:i] + edit(text[i:j], old, new) + text[j:]


def drop_lines(text: str, header: str, needle: str, count: int) -> str:
    """Remove the lines of section ``header`` that contain ``needle`` (exactly ``count`` of them), e.g.
    one controller's ``D``/``F`` lines of the nvme_host dump."""
    lines = section(text, header).split("\n")
    kept = [x for x in lines if needle not in x]
    assert len(lines) - len(kept) == count, f"capture edit: expected {count} lines with {needle!r}"
    return set_section(text, header, "\n".join(kept))


def sysfs_as_dump(name: str, sysfs_kv: str) -> str:
    """A controller's sysfs ``attr=value`` lines (``lab/sysfs-nvme0.txt``, the old probe's sections) as the
    nvme_host dump prints the same files: ``D<TAB>dir`` then ``F<TAB>path<TAB>value``."""
    rows = [f"D\t/sys/class/nvme/{name}"]
    attrs = (x.partition("=") for x in sysfs_kv.splitlines())
    rows += [f"F\t/sys/class/nvme/{name}/{k}\t{v}" for k, _, v in attrs if k]
    return "\n".join(rows)


def insert_lines(text: str, header: str, before: str, new: str) -> str:
    """Insert ``new`` lines into section ``header`` just before its (unique) line ``before``."""
    body = section(text, header)
    assert body.count(before + "\n") == 1, f"capture edit: expected one line {before!r}"
    return set_section(text, header, body.replace(before + "\n", new.rstrip("\n") + "\n" + before + "\n"))


def drop_section(text: str, header: str) -> str:
    lines = text.split("\n")
    start, end = _bounds(lines, header)
    return "\n".join(lines[:start] + lines[end:])


def rename_section(text: str, header: str, new_header: str) -> str:
    """Change a section header's arguments (probe framing, e.g. the interface the probe was run for)."""
    lines = text.split("\n")
    start, _ = _bounds(lines, header)
    lines[start] = f"### {new_header}"
    return "\n".join(lines)


def add_section(text: str, header: str, body: str, before: str) -> str:
    """Insert ``### header`` + body just before the section ``### before``."""
    lines = text.split("\n")
    start, _ = _bounds(lines, before)
    return "\n".join(lines[:start] + [f"### {header}", *body.rstrip("\n").split("\n"), ""] + lines[start:])


# ---- real outputs of other tools, written the way the probe prints the same kernel files ----------
def rdma_link_as_json(text: str) -> str:
    """``rdma link show`` lines as ``rdma -j link show`` prints the same netlink attributes (ifname, port,
    state, physical_state, netdev; what the text does not show, like ifindex, is left out)."""
    out = []
    for line in text.splitlines():
        tok = line.split()
        if len(tok) < 2 or tok[0] != "link":
            continue
        dev, _, port = tok[1].partition("/")
        attrs = dict(zip(tok[2::2], tok[3::2]))
        d = {"ifname": dev, "port": int(port), "state": attrs["state"], "physical_state": attrs["physical_state"]}
        if "netdev" in attrs:
            d["netdev"] = attrs["netdev"]
        out.append(d)
    return json.dumps(out, separators=(",", ":"))



def show_gids_as_probe(text: str, dev: str) -> str:
    """``show_gids`` rows of one device as the probe's GID lines (``IDX GID type="T" ndev=N``).

    show_gids reads the same sysfs files the probe reads (ports/1/gids/N, gid_attrs/types/N,
    gid_attrs/ndevs/N) and abbreviates the kernel's type strings: v1 = "IB/RoCE v1", v2 = "RoCE v2"."""
    out = []
    for line in text.splitlines():
        tok = line.split()
        if len(tok) < 5 or tok[0] != dev or not tok[2].isdigit():
            continue
        ver_at = next(i for i, t in enumerate(tok) if t in ("v1", "v2"))
        ndev = tok[ver_at + 1] if len(tok) > ver_at + 1 else ""
        kind = "RoCE v2" if tok[ver_at] == "v2" else "IB/RoCE v1"
        out.append(f'{tok[2]} {tok[3]} type="{kind}" ndev={ndev}')
    assert out, f"no show_gids rows for {dev}"
    return "\n".join(out)


def ecn_as_probe(text: str) -> str:
    """``.../ecn/roce_np/enable/3 = 1`` lines (spiderpool's ``rdma-qos.sh q``) as the probe's
    ``### ecn`` lines (``roce_np/3=1``): both are the value of the same sysfs file."""
    rows = re.findall(r"/ecn/(roce_np|roce_rp)/enable/(\d+) = (\d)", text)
    assert rows
    return "\n".join(f"{kind}/{prio}={value}" for kind, prio, value in rows)


# ---- the real-NIC (ConnectX) GPU node ---------------------------------------------------------------
REAL_NIC_IF = "eth01"  # the CX-4 Lx host's netdev of mlx5_0 (real/ibdev2netdev_cx4lx_eth0x.txt)
REAL_NIC_IP = "10.108.164.36"  # its IPv4 RoCE v2 GID (real/show_gids_cx4lx_eth01_tabs.txt, index 3)


@functools.lru_cache(maxsize=None)
def real_nic_gpu1() -> str:
    """The lab's gpu1 capture with its soft-RoCE sections replaced by what a real ConnectX host printed.

    The lab cannot produce a real RDMA NIC (no PFC/ECN/hw_counters on rxe), so the RDMA/QoS sections
    come from the real-systems samples, unedited unless said here:
      rdma links=      real/rdma_link_mlx5_vpi_one_eth_active_one_ib_down.txt (rdma_link_as_json) as the
                       rdma dump's ``links=`` line; ONE rename: mlx5_0's netdev ``ens3f0np0`` ->
                       ``eth01`` (the CX-4 Lx host's netdev of mlx5_0)
      ib_gids mlx5_N   real/show_gids_cx4lx_eth01_tabs.txt (show_gids_as_probe)      } one CX-4 Lx host
      ibv_devinfo      real/ibv_devinfo_cx4lx_4ports_one_down.txt                     } (SOURCES.md
      hw_counters t0/t1 real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt (same table } index id
                       twice: flat window)                                            } 60891034733)
      rdma_stat t0/t1  real/rdma_statistic_show_cx4lx_4dev_mlnx_iproute2.txt (twice)  }
      ethtool_S t0/t1  real/ethtool_S_cx4lx_ubuntu1804_k4.15_healthy_TRUNCATED.txt (twice)
      mlnx_qos         real/mlnx_qos_cx5_trust_dscp_pfc3_dcbx_fw.txt
      ecn              real-extra/rdma_qos_sh_q_spiderpool_... (ecn_as_probe: all priorities 1)
      ethtool_a        real-extra/ethtool_a_ice_ens785f0np0_pause_off_with_statistics.txt
      rdma cm_*.mlx5_0 the lab's own rdma_cm values (RoCE v2, ToS 106) of the rdma dump, keys renamed
                       from rxe_eth1
    The rxe_eth1 sections (hw_counters, ib_dev, ib_port, ib_gids) are dropped; headers
    naming the probed interface say ``eth01``. Kernel modules, ``ip`` JSON, NVMe state and the
    timestamps (window 6.127 s) stay gpu1's; fabric_interface/fabric_ip are not judged on this node.
    """
    t = lab("gpu1")
    for h in ("hw_counters rxe_eth1 1 t0", "hw_counters rxe_eth1 1 t1", "ib_dev rxe_eth1", "ib_port rxe_eth1 1",
              "ib_gids rxe_eth1 1"):
        t = drop_section(t, h)
    t = edit_section(t, "meta", "iface=eth1", f"iface={REAL_NIC_IF}")
    links = rdma_link_as_json(edit(read("real/rdma_link_mlx5_vpi_one_eth_active_one_ib_down.txt"),
                                   "netdev ens3f0np0", f"netdev {REAL_NIC_IF}"))
    (lab_links,) = [x for x in section(t, "rdma").split("\n") if x.startswith("links=")]
    t = edit_section(t, "rdma", lab_links, f"links={links}")
    t = edit_section(t, "rdma", "cm_mode.rxe_eth1=RoCE v2\ncm_tos.rxe_eth1=106",
                     "cm_mode.mlx5_0=RoCE v2\ncm_tos.mlx5_0=106")
    gids = read("real/show_gids_cx4lx_eth01_tabs.txt")
    for dev in ("mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"):
        t = add_section(t, f"ib_gids {dev} 1", show_gids_as_probe(gids, dev), before="ibv_devinfo")
    t = set_section(t, "ibv_devinfo", read("real/ibv_devinfo_cx4lx_4ports_one_down.txt"))
    for s in ("t0", "t1"):
        t = add_section(t, f"hw_counters mlx5_0 1 {s}", read("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt"),
                        before=f"rdma_stat {s}")
        t = set_section(t, f"rdma_stat {s}", read("real/rdma_statistic_show_cx4lx_4dev_mlnx_iproute2.txt"))
        t = rename_section(t, f"ethtool_S eth1 {s}", f"ethtool_S {REAL_NIC_IF} {s}")
        t = set_section(t, f"ethtool_S {REAL_NIC_IF} {s}",
                        read("real/ethtool_S_cx4lx_ubuntu1804_k4.15_healthy_TRUNCATED.txt"))
    t = rename_section(t, "netif eth1", f"netif {REAL_NIC_IF}")
    t = rename_section(t, "ethtool_a eth1", f"ethtool_a {REAL_NIC_IF}")
    ecn = read("real-extra/rdma_qos_sh_q_spiderpool_eth0_mlx5_0_trust_dscp_pfc5_ecn_all_on.txt")
    t = add_section(t, f"ecn {REAL_NIC_IF}", ecn_as_probe(ecn), before=f"ethtool_a {REAL_NIC_IF}")
    t = add_section(t, f"mlnx_qos {REAL_NIC_IF}", read("real/mlnx_qos_cx5_trust_dscp_pfc3_dcbx_fw.txt"),
                    before=f"ethtool_a {REAL_NIC_IF}")
    t = set_section(t, f"ethtool_a {REAL_NIC_IF}",
                    read("real-extra/ethtool_a_ice_ens785f0np0_pause_off_with_statistics.txt"))
    return t


# ---- the real H100 node, in the probe's format ------------------------------------------------------
# ---- specs ------------------------------------------------------------------------------------------
@pytest.fixture
def lab_dict():
    """The spec the lab captures were taken with (probe/lab-real/cluster.yaml) as plain data."""
    return copy.deepcopy(yaml.safe_load(LAB_SPEC.read_text()))


def spec_of(d: dict):
    """A spec dict through the real loader (relative secret files resolve beside LAB_SPEC): a
    mutation the spec forbids fails here, as ``nvmeofctl health`` would refuse it."""
    return parse_spec(yaml.safe_dump(d, sort_keys=False), source="cluster.yaml", base_dir=LAB_REAL)


@pytest.fixture
def lab_exp(lab_dict):
    return expectations_from_spec(spec_of(lab_dict))


@pytest.fixture
def make_exp(lab_dict):
    """make_exp(lambda d: ...mutate the spec dict...) -> Expectations (built like health builds them:
    spec -> plan.desired -> expectations)."""

    def build(mutate=None):
        d = copy.deepcopy(lab_dict)
        if mutate:
            mutate(d)
        return expectations_from_spec(spec_of(d))

    return build


def host(d: dict, name: str) -> dict:
    (h,) = [x for x in d["hosts"] if x["name"] == name]
    return h


def pin_identity(d: dict) -> None:
    """Write the host NQN/ID the lab's GPU nodes really carry (the captures' /etc/nvme) into the spec."""
    host(d, "gpu1").update(host_nqn=GPU1_HOSTNQN, host_id=GPU1_HOSTID)
    host(d, "gpu2").update(host_nqn=GPU2_HOSTNQN, host_id=GPU2_HOSTID)


def real_nic(d: dict) -> None:
    """The spec for ``real_nic_gpu1()``: a ConnectX fabric with the lossless-RoCE convention of FACTS.md
    (PFC priority 3, DSCP 26, ToS 106, ECN); gpu1's interface/IP are the CX-4 Lx host's."""
    d["fabric"]["soft_roce"] = False
    d["fabric"]["roce"] = {"pfc_priority": 3, "dscp": 26, "tos": 106, "ecn": True}
    for h in d["hosts"]:
        h["fabric"]["rdma_device"] = "mlx5_0"
    host(d, "gpu1")["fabric"].update(interface=REAL_NIC_IF, ips=[REAL_NIC_IP])


@pytest.fixture
def real_exp(make_exp):
    return make_exp(real_nic)


# ---- facts of the real captures -----------------------------------------------------------------------
@pytest.fixture
def tgt1_facts():
    return facts("tgt1", lab("tgt1"))


@pytest.fixture
def gpu1_facts():
    return facts("gpu1", lab("gpu1"))


@pytest.fixture
def gpu2_facts():
    return facts("gpu2", lab("gpu2"))


@pytest.fixture
def mlx5_gpu():
    return facts("gpu1", real_nic_gpu1())
