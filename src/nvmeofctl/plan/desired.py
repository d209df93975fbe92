"""Desired state per host, as the collection's module options, built from the cluster spec (pure).

These dicts are the contract with ``nvmeofctl.fabric.rdma_link``, ``nvmet_target`` and
``nvme_host``: the playbooks pass them through unchanged, and the planner feeds the same dicts
to the modules' own diff functions, so plan and apply can never disagree.
"""

from __future__ import annotations

from typing import Any


CONNECT_WAIT = 120  # seconds a GPU node retries a target that is not listening yet


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


def rdma_args(spec, host) -> dict[str, Any]:
    """rdma_link options, or {} when the host needs no RDMA (TCP transport)."""
    if spec.fabric.transport != "rdma":
        return {}
    args: dict[str, Any] = {
        "interface": host.fabric.interface,
        "mtu": spec.fabric.mtu,
        "soft_roce": bool(spec.fabric.soft_roce),
        "roce_mode": "RoCE v2",
        "roce_tos": spec.fabric.roce.tos,
    }
    if host.fabric.rdma_device:
        args["rdma_device"] = host.fabric.rdma_device
    return args


def nvmet_args(spec, target, in_run=None) -> dict[str, Any]:
    """nvmet_target options for one target host.

    ``in_run``: the GPU nodes this run configures (None: all). Their hosts get ``reauth``: a
    key change is then not disruptive, because the node re-authenticates with the same new key
    (it comes from the same spec entry) later in the same, ordered, run."""
    subsystems = spec.subsystems_on(target.name)
    gpu_names: list[str] = []
    for sub in subsystems:
        for g in sub.allowed_gpu_nodes:
            if g not in gpu_names:
                gpu_names.append(g)
    hosts = []
    for g in gpu_names:
        gpu = spec.host(g)
        key, ctrl = spec.dhchap_keys(g, target.name)
        entry: dict[str, Any] = {"nqn": gpu.host_nqn}
        if key is not None:
            entry["dhchap_key"] = _secret(key)
        if ctrl is not None:
            entry["dhchap_ctrl_key"] = _secret(ctrl)
        if key is not None and (in_run is None or g in in_run):
            entry["reauth"] = True
        hosts.append(entry)
    subs = []
    for sub in subsystems:
        namespaces = []
        for ns in sub.namespaces:
            b = ns.backing
            item: dict[str, Any] = {
                "nsid": ns.nsid,
                "name": ns.name,
                "device_path": b.file or b.device,
                "uuid": str(ns.uuid),
                "nguid": str(ns.nguid),
                "create_file": bool(b.file),
            }
            if b.file and b.size:
                item["size"] = int(b.size)
            if b.signature:
                item["signature"] = b.signature
            namespaces.append(item)
        subs.append({
            "nqn": sub.nqn,
            "serial": sub.serial,
            "allowed_hosts": [spec.host(g).host_nqn for g in sub.allowed_gpu_nodes],
            "namespaces": namespaces,
        })
    ports = [
        {
            "id": i + 1,
            "trtype": spec.fabric.transport,
            "adrfam": "ipv4",
            "traddr": str(ip),
            "trsvcid": int(spec.fabric.port),
            "subsystems": [s.nqn for s in subsystems],
        }
        for i, ip in enumerate(target.fabric.ips)
    ]
    # the module re-checks every backing path against the same allow-list on the target
    return {"hosts": hosts, "subsystems": subs, "ports": ports,
            "backing_prefixes": list(spec.allowed_backing_prefixes)}


def nvme_host_args(spec, gpu) -> dict[str, Any]:
    """nvme_host options for one GPU node."""
    rc = spec.fabric.reconnect
    connections = []
    for e in spec.exports_for(gpu.name):
        conn: dict[str, Any] = {
            "subsysnqn": e.nqn,
            "transport": e.transport,
            "traddr": e.traddr,
            "trsvcid": str(e.trsvcid),
        }
        if e.dhchap_secret is not None:
            conn["dhchap_secret"] = _secret(e.dhchap_secret)
        if e.dhchap_ctrl_secret is not None:
            conn["dhchap_ctrl_secret"] = _secret(e.dhchap_ctrl_secret)
        connections.append(conn)
    args: dict[str, Any] = {
        "hostnqn": gpu.host_nqn,
        "hostid": str(gpu.host_id),
        "connections": connections,
        "ctrl_loss_tmo": rc.ctrl_loss_tmo,
        "reconnect_delay": rc.reconnect_delay,
        "keep_alive_tmo": rc.keep_alive_tmo,
        "iopolicy": spec.fabric.iopolicy,
        # targets are configured in parallel (one play, strategy free): wait for their ports
        "connect_wait": CONNECT_WAIT,
    }
    if spec.fabric.nr_io_queues:
        args["nr_io_queues"] = spec.fabric.nr_io_queues
    if spec.fabric.queue_size:
        args["queue_size"] = spec.fabric.queue_size
    return args


def host_vars(spec, in_run=None) -> dict[str, dict[str, Any]]:
    """Inventory variables per host: ``nvmeofctl_rdma`` plus ``nvmeofctl_nvmet`` or ``nvmeofctl_nvme_host``.
    ``in_run``: the hosts this run configures (None: all), see ``nvmet_args``."""
    out: dict[str, dict[str, Any]] = {}
    for host in spec.hosts:
        hv: dict[str, Any] = {"nvmeofctl_rdma": rdma_args(spec, host)}
        if host.role == "target":
            hv["nvmeofctl_nvmet"] = nvmet_args(spec, host, in_run)
        else:
            hv["nvmeofctl_nvme_host"] = nvme_host_args(spec, host)
        out[host.name] = hv
    return out
