"""The kernel modules nvmeofctl needs: the controller side's one list (pure).

``facts.hoststate`` probes ``PROBED`` on every host; ``plan.preflight`` refuses a host whose
kernel lacks one of ``needed(...)``; ``health`` reports which of them are not loaded. (On the
hosts, the collection's modules load what they use themselves: module_utils nvmet, nvme_host,
rdma.)
"""

from __future__ import annotations

# target side, GPU-node side, Soft-RoCE, DH-HMAC-CHAP (the fallback when /boot/config-* is absent)
PROBED = ("nvmet", "nvmet_rdma", "nvmet_tcp", "nvme_rdma", "nvme_tcp", "nvme_fabrics", "rdma_rxe", "nvme_auth")


def needed(role: str, transport: str, soft_roce: bool) -> tuple[str, ...]:
    """The modules a ``target`` or ``gpu_node`` needs loaded (or loadable), in load order."""
    if transport not in ("rdma", "tcp"):
        raise ValueError(f"transport rdma or tcp expected, got {transport!r}")
    if role not in ("target", "gpu_node"):
        raise ValueError(f"role target or gpu_node expected, got {role!r}")
    mods: list[str] = []
    if transport == "rdma" and soft_roce:
        mods.append("rdma_rxe")
    if role == "target":
        mods += ["nvmet", f"nvmet_{transport}"]
    else:
        mods.append(f"nvme_{transport}")
    return tuple(mods)


def modprobe_command(mods) -> str:
    """``modprobe -a`` for a remedy text, with the names modinfo shows (nvmet-rdma, not nvmet_rdma)."""
    return "modprobe -a " + " ".join(m.replace("_", "-") if m.startswith("nvme") else m for m in mods)
