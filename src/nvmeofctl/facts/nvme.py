"""NVMe-oF parsers over sysfs/configfs only (nvme-cli's JSON changes shape between versions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nvmeofctl.facts.sections import parse_kv, to_int

DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"


def parse_address(value: str | None) -> dict[str, str]:
    """``traddr=192.168.100.1,trsvcid=4420[,src_addr=...]`` -> dict; PCIe addresses -> {}."""
    out: dict[str, str] = {}
    for part in (value or "").replace("\n", ",").split(","):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _tmo(value: str | None) -> int | None:
    """sysfs prints ``off`` for ctrl_loss_tmo -1 (reconnect forever)."""
    if value is None:
        return None
    if value.strip().lower() == "off":
        return -1
    return to_int(value)


@dataclass
class NvmeCtrl:
    name: str
    transport: str | None = None
    traddr: str | None = None
    trsvcid: str | None = None
    state: str | None = None
    subsysnqn: str | None = None
    hostnqn: str | None = None
    hostid: str | None = None
    ctrl_loss_tmo: int | None = None  # -1 = forever ("off")
    reconnect_delay: int | None = None
    kato: int | None = None
    cntrltype: str | None = None

    @property
    def is_fabrics(self) -> bool:
        return (self.transport or "") in ("rdma", "tcp", "fc", "loop")

    @property
    def is_discovery(self) -> bool:
        return self.subsysnqn == DISCOVERY_NQN or self.cntrltype == "discovery"


def parse_nvme_ctrl(name: str, text: str) -> NvmeCtrl:
    """``/sys/class/nvme/nvmeN/*`` as the probe's (or the lab sample's) ``name=value`` lines."""
    kv = parse_kv(text)
    addr = parse_address(kv.get("address"))
    return NvmeCtrl(
        name=name,
        transport=kv.get("transport"),
        traddr=addr.get("traddr"),
        trsvcid=addr.get("trsvcid"),
        state=kv.get("state"),
        subsysnqn=kv.get("subsysnqn"),
        hostnqn=kv.get("hostnqn"),
        hostid=kv.get("hostid"),
        ctrl_loss_tmo=_tmo(kv.get("ctrl_loss_tmo")),
        reconnect_delay=to_int(kv.get("reconnect_delay")),
        kato=to_int(kv.get("kato")),
        cntrltype=kv.get("cntrltype"),
    )


@dataclass
class NvmeSubsys:
    name: str
    nqn: str | None = None
    iopolicy: str | None = None


def parse_nvme_subsys(name: str, text: str) -> NvmeSubsys:
    kv = parse_kv(text)
    return NvmeSubsys(name, kv.get("subsysnqn"), kv.get("iopolicy"))


@dataclass
class NvmetPort:
    id: str
    trtype: str | None = None
    traddr: str | None = None
    trsvcid: str | None = None
    adrfam: str | None = None
    subsystems: list[str] = field(default_factory=list)


def parse_nvmet_port(port_id: str, text: str) -> NvmetPort:
    kv = parse_kv(text)
    return NvmetPort(
        id=port_id,
        trtype=kv.get("addr_trtype"),
        traddr=kv.get("addr_traddr"),
        trsvcid=kv.get("addr_trsvcid"),
        adrfam=kv.get("addr_adrfam"),
        subsystems=kv.get("subsystems", "").split(),
    )


@dataclass
class NvmetSubsys:
    nqn: str
    allow_any_host: bool | None = None
    allowed_hosts: list[str] = field(default_factory=list)
    namespaces: dict[int, bool] = field(default_factory=dict)  # nsid -> enabled


def parse_nvmet_subsys(nqn: str, text: str) -> NvmetSubsys:
    kv = parse_kv(text)
    aah = kv.get("attr_allow_any_host")
    ns: dict[int, bool] = {}
    for k, v in kv.items():
        if k.startswith("ns.") and k.endswith(".enable"):
            nsid = to_int(k[3:-7])
            if nsid is not None:
                ns[nsid] = v.strip() == "1"
    return NvmetSubsys(
        nqn=nqn,
        allow_any_host=None if aah is None else aah.strip() == "1",
        allowed_hosts=kv.get("allowed_hosts", "").split(),
        namespaces=ns,
    )


def parse_nvmet_attrs_dump(text: str) -> tuple[dict[str, NvmetPort], dict[str, NvmetSubsys]]:
    """The ``find . -type f | cat`` dump of ``/sys/kernel/config/nvmet`` (lab samples).

    It has no symlinks, so ports' linked subsystems stay empty. Secret attributes are dropped."""
    ports: dict[str, NvmetPort] = {}
    subs: dict[str, NvmetSubsys] = {}
    for line in text.splitlines():
        path, sep, value = line.partition("=")
        if not sep:
            continue
        parts = path.strip().lstrip("./").split("/")
        value = value.strip()
        if len(parts) == 3 and parts[0] == "ports":
            p = ports.setdefault(parts[1], NvmetPort(parts[1]))
            attr = parts[2]
            if attr in ("addr_trtype", "addr_traddr", "addr_trsvcid", "addr_adrfam"):
                setattr(p, attr[5:], value)
        elif len(parts) >= 3 and parts[0] == "subsystems":
            s = subs.setdefault(parts[1], NvmetSubsys(parts[1]))
            if parts[2] == "attr_allow_any_host":
                s.allow_any_host = value == "1"
            elif parts[2] == "namespaces" and len(parts) == 5 and parts[4] == "enable":
                nsid = to_int(parts[3])
                if nsid is not None:
                    s.namespaces[nsid] = value == "1"
    return ports, subs
