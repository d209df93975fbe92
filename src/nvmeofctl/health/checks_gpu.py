"""GPU-node checks: the GPU list and GPU-NIC PCIe affinity from ``nvidia-smi topo -m``."""

from __future__ import annotations

from nvmeofctl.facts.gpu import rank
from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.health.common import finding, resolve_device
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na
NOT_GPU = "not a GPU host (no nvidia-smi)"
NO_NIC = "no RDMA NIC: GPU-NIC affinity not applicable"


def check_gpus(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    if not h.is_gpu_node:
        return []
    if not facts.nvidia_smi:
        return [finding(facts, "gpus", NA, NOT_GPU), finding(facts, "gpu_nic_affinity", NA, NOT_GPU)]
    if not facts.gpus:
        return [finding(facts, "gpus", FAIL, "nvidia-smi lists no GPU", ">= 1 GPU",
                        "check the NVIDIA driver (nvidia-smi, dmesg)"),
                finding(facts, "gpu_nic_affinity", NA, "no GPUs")]
    names: dict[str, int] = {}
    for g in facts.gpus:
        names[g.name] = names.get(g.name, 0) + 1
    out = [finding(facts, "gpus", OK, ", ".join(f"{n}x {m}" for m, n in names.items()), ">= 1 GPU")]
    return out + _affinity(facts, exp)


def _affinity(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    topo = facts.topology
    has_rdma = bool(facts.ib_devices) or bool(topo and topo.nics)
    if not has_rdma:
        return [finding(facts, "gpu_nic_affinity", NA, NO_NIC)]
    r = resolve_device(facts, h)
    if r.soft:
        return [finding(facts, "gpu_nic_affinity", NA, f"soft-RoCE device {r.name} has no PCIe position")]
    if topo is None or not topo.gpus:
        return [finding(facts, "gpu_nic_affinity", NA, "nvidia-smi topo -m gave no matrix")]
    if not topo.nics:
        return [finding(facts, "gpu_nic_affinity", NA, NO_NIC)]
    dev = r.name or h.rdma_device
    if dev not in topo.nics.values():
        return [finding(facts, "gpu_nic_affinity", WARN, f"{dev} not in nvidia-smi topo -m ({', '.join(topo.nics.values())})",
                        f"{dev} listed", "check hosts[].fabric.rdma_device against `nvidia-smi topo -m`")]
    out = []
    for gpu in topo.gpus:
        rel = topo.relation(gpu, dev)
        best = min(topo.nics.values(), key=lambda n: rank(topo.relation(gpu, n)))
        best_rel = topo.relation(gpu, best)
        hint = f"; nearest RDMA NIC {best} ({best_rel})" if best != dev and rank(best_rel) < rank(rel) else ""
        if rel in ("PIX", "PXB") or (rel or "").startswith("NV"):
            st = OK
        elif rel in ("NODE", "PHB"):
            st = WARN
        else:
            st = FAIL
        out.append(finding(facts, "gpu_nic_affinity", st, f"{gpu}-{dev}: {rel}{hint}", "PIX or PXB",
                           "put storage traffic on a NIC under the GPU's PCIe switch (GPUDirect Storage), "
                           "or pin the job to the NIC's NUMA node", gpu))
    return out
