"""The health probe: ONE read-only bash script per host, sent on stdin over SSH.

It prints ``### <section> [args]`` blocks (see ``probe_script``) and samples counters twice,
``window`` seconds apart, inside the same run, so deltas come back in one round trip.
``parse_probe_output`` turns the text into a ``HostFacts``; it never raises on odd input.

One reader per host domain: the NVMe host state, the nvmet configfs tree and the RDMA link state
are read by the collection's own dump commands (module_utils nvme_host / nvmet / rdma
``dump_command``), embedded as the ``nvme_host``, ``nvmet`` and ``rdma`` sections exactly as
``facts/hoststate.py`` embeds them for plan, and parsed by the same ``parse_dump`` functions, so
plan and health cannot disagree about them (rdma_cm's defaults too: the ``rdma`` dump's). The GID table is parsed by module_utils/rdma.py's
``parse_gid_table``. What only health reads (counters, ethtool, PFC/ECN, GPUs/NUMA, ``ip``, IB
devices and ports) stays in this script.

Read-only: no ``mkdir`` in configfs (rdma_cm is read only where someone created the entry), no
module loading. DH-HMAC-CHAP keys (nvmet ``hosts/*/dhchap_*key``, sysfs ``dhchap_*secret``) are
hashed on the host by the module dumps: only sha256 digests cross the wire, and no check reports
them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from nvmeofctl.facts import gpu as gpu_p
from nvmeofctl.facts import net as net_p
from nvmeofctl.facts import nvme as nvme_p
from nvmeofctl.facts import rdma as rdma_p
from nvmeofctl.facts.sections import Section, parse_kv, split_sections, to_int
from nvmeofctl.resources import load_module_utils

PROBE_VERSION = 3  # 3: every rail's netif
STATE_DIR = "/etc/nvmeofctl"  # nvmeofctl's state on the host, as facts/hoststate.py reads it

_SCRIPT = r"""
# nvmeofctl health probe (read-only). Usage: bash -s -- "IFACE [IFACE...]" WINDOW_SECONDS
# (the fabric interfaces, rail 1 first: each gets its netif, QoS and ethtool counter sections)
IFLIST="${1:-}"; IF="${IFLIST%% *}"; WIN="${2:-3}"
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin:/opt/mellanox/iproute2/sbin"
sec() { printf '\n### %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
tmo() { if have timeout; then timeout 20 "$@"; else "$@"; fi; }
kv() { # kv DIR attr... : print attr=value for each readable attribute (single line)
  local d="$1" a v; shift
  for a in "$@"; do
    [ -e "$d/$a" ] || continue
    v=$(tr '\n' ' ' < "$d/$a" 2>/dev/null) || continue
    printf '%s=%s\n' "$a" "${v% }"
  done
}
sample() { # counters; $1 = t0|t1
  local d p c v
  sec ts "$1"; date +%s.%N 2>/dev/null || date +%s
  for d in /sys/class/infiniband/*; do
    [ -d "$d" ] || continue
    for p in "$d"/ports/*; do
      [ -d "$p/hw_counters" ] || continue
      sec hw_counters "${d##*/}" "${p##*/}" "$1"
      for c in "$p"/hw_counters/*; do
        [ -f "$c" ] || continue
        read -r v < "$c" 2>/dev/null && printf '%s=%s\n' "${c##*/}" "$v"
      done
    done
  done
  if have rdma; then sec rdma_stat "$1"; tmo rdma -j statistic show 2>/dev/null; fi
  if have ethtool; then for RIF in $IFLIST; do sec ethtool_S "$RIF" "$1"; tmo ethtool -S "$RIF" 2>&1; done; fi
}
T0=$(date +%s)
sec meta
echo "probe_version=__PROBE_VERSION__"; echo "hostname=$(hostname 2>/dev/null)"
echo "iface=$IF"; echo "rails=$IFLIST"; echo "window=$WIN"
sample t0
sec uname; uname -r
sec modules; cut -d' ' -f1 /proc/modules 2>/dev/null
sec sys_module; ls /sys/module 2>/dev/null
if have ip; then
  sec ip_link; ip -j link show 2>/dev/null
  sec ip_addr; ip -j addr show 2>/dev/null
fi
for d in /sys/class/infiniband/*; do
  [ -d "$d" ] || continue
  dev=${d##*/}
  sec ib_dev "$dev"
  kv "$d" node_type fw_ver
  drv=$(readlink "$d/device/driver" 2>/dev/null); echo "driver=${drv##*/}"
  pci=$(readlink -f "$d/device" 2>/dev/null); [ -n "$pci" ] && [ -d "$d/device" ] && echo "pci=${pci##*/}"
  kv "$d/device" numa_node
  for p in "$d"/ports/*; do
    [ -d "$p" ] || continue
    port=${p##*/}
    sec ib_port "$dev" "$port"
    kv "$p" state phys_state rate link_layer
    sec ib_gids "$dev" "$port"
    for g in "$p"/gids/*; do
      n=${g##*/}
      read -r v < "$g" 2>/dev/null || continue
      [ "$v" = "0000:0000:0000:0000:0000:0000:0000:0000" ] && continue
      read -r t < "$p/gid_attrs/types/$n" 2>/dev/null || continue
      nd=""; read -r nd < "$p/gid_attrs/ndevs/$n" 2>/dev/null
      printf '%s %s type="%s" ndev=%s\n' "$n" "$v" "$t" "$nd"
    done
  done
done
if have ibv_devinfo; then sec ibv_devinfo; tmo ibv_devinfo 2>/dev/null; fi
sec rdma_cm_configfs
echo "configfs=$([ -d /sys/kernel/config ] && echo 1 || echo 0)"
echo "rdma_cm=$([ -d /sys/kernel/config/rdma_cm ] && echo 1 || echo 0)"
for RIF in $IFLIST; do
  N=/sys/class/net/$RIF
  sec netif "$RIF"
  echo "exists=$([ -d "$N" ] && echo 1 || echo 0)"
  kv "$N" mtu operstate speed
  drv=$(readlink "$N/device/driver" 2>/dev/null); echo "driver=${drv##*/}"
  kv "$N/qos" trust
  if [ -d "$N/ecn" ]; then
    sec ecn "$RIF"
    for k in roce_np roce_rp; do
      for f in "$N/ecn/$k/enable"/*; do
        [ -f "$f" ] || continue
        read -r v < "$f" 2>/dev/null && echo "$k/${f##*/}=$v"
      done
    done
  fi
  if have mlnx_qos; then sec mlnx_qos "$RIF"; tmo mlnx_qos -i "$RIF" 2>&1; fi
  if have ethtool; then sec ethtool_a "$RIF"; tmo ethtool -a "$RIF" 2>&1; fi
done
__MODULE_DUMPS__
if have nvidia-smi; then
  sec nvidia_smi_L; tmo nvidia-smi -L 2>&1
  sec nvidia_smi_pci; tmo nvidia-smi --query-gpu=index,pci.bus_id --format=csv,noheader 2>&1
  sec nvidia_topo; tmo nvidia-smi topo -m 2>&1
  sec gpu_numa
  tmo nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader 2>/dev/null | while read -r b; do
    b=$(echo "$b" | tr 'A-F' 'a-f'); b=${b: -12}
    printf '%s numa=%s\n' "$b" "$(cat "/sys/bus/pci/devices/$b/numa_node" 2>/dev/null)"
  done
fi
NOW=$(date +%s); REST=$(( WIN - (NOW - T0) ))
[ "$REST" -gt 0 ] 2>/dev/null && sleep "$REST"
sample t1
sec end
exit 0
"""


def _isolated(command: str) -> str:
    """A module dump in a subshell (as facts/hoststate.py runs it): its ``cd``/``exit`` stay
    inside, and it cannot read the rest of this script from stdin."""
    return f"( {command}\n) </dev/null"


def module_dumps(interface: str | None) -> str:
    """The collection's dump commands, the same calls facts/hoststate.py makes for plan."""
    nvme_host, nvmet = load_module_utils("nvme_host"), load_module_utils("nvmet")
    parts = ["sec nvme_host", _isolated(nvme_host.dump_command(state_dir=STATE_DIR)),
             "sec nvmet_configfs", 'echo "present=$([ -d /sys/kernel/config/nvmet ] && echo 1 || echo 0)"',
             "sec nvmet", _isolated(nvmet.DUMP_COMMAND)]
    if interface:  # rdma_link observes one interface; without one in the spec there is nothing to ask
        parts += ["sec rdma", _isolated(load_module_utils("rdma").dump_command(interface))]
    return "\n".join(parts)


def probe_script(interface: str | None) -> str:
    """The whole read-only script for a host whose (rail 1) fabric interface is ``interface``."""
    return (_SCRIPT.replace("__PROBE_VERSION__", str(PROBE_VERSION))
            .replace("__MODULE_DUMPS__", module_dumps(interface)))


def probe_command(interfaces: str | list[str] | tuple[str, ...] | None, window: float) -> str:
    """The remote command line; the script itself goes on stdin. ``interfaces``: the fabric
    interface, or every rail's (rail 1 first)."""
    names = [interfaces] if isinstance(interfaces, str) else list(interfaces or [])
    return f"bash -s -- {shlex.quote(' '.join(n for n in names if n))} {int(max(0, round(window)))}"


@dataclass
class CounterWindow:
    """Two samples of the same counters and the seconds between them."""

    t0: dict[str, int] = field(default_factory=dict)
    t1: dict[str, int] = field(default_factory=dict)

    def deltas(self) -> dict[str, int]:
        return {k: self.t1[k] - v for k, v in self.t0.items() if k in self.t1}

    @property
    def present(self) -> bool:
        return bool(self.t0) and bool(self.t1)


@dataclass
class HostFacts:
    host: str
    complete: bool = False  # the probe reached its end marker
    probe_version: int | None = None
    kernel: str | None = None
    modules: set[str] = field(default_factory=set)  # loaded modules (/proc/modules)
    sys_modules: set[str] = field(default_factory=set)  # /sys/module (includes built-ins)
    links: dict[str, net_p.NetLink] = field(default_factory=dict)
    ib_devices: dict[str, rdma_p.IbDevice] = field(default_factory=dict)
    configfs: bool | None = None
    rdma_cm_configfs: bool | None = None
    interface: str | None = None
    netif: net_p.NetIf | None = None  # the (rail 1) fabric interface's
    netifs: dict[str, net_p.NetIf] = field(default_factory=dict)  # every rail's, by name
    ecn: dict[str, dict[int, bool]] | None = None  # ecn, mlnx_qos, pause, ethtool: rail 1's
    mlnx_qos: net_p.MlnxQos | None = None
    pause: net_p.PauseParams | None = None
    # every rail's QoS and ethtool counters, by interface (health checks each rail on its own)
    ecns: dict[str, dict[str, dict[int, bool]]] = field(default_factory=dict)
    mlnx_qoss: dict[str, net_p.MlnxQos] = field(default_factory=dict)
    pauses: dict[str, net_p.PauseParams] = field(default_factory=dict)
    ethtools: dict[str, CounterWindow] = field(default_factory=dict)
    window_s: float | None = None
    hw_counters: dict[tuple[str, int], CounterWindow] = field(default_factory=dict)
    rdma_stat: dict[tuple[str, int], CounterWindow] = field(default_factory=dict)
    ethtool: CounterWindow | None = None
    # the observed state plan reads too (module_utils parse_dump; None when the section is missing)
    nvme_host: dict[str, Any] | None = None  # nvme_host.parse_dump
    nvmet: dict[str, Any] | None = None  # nvmet.parse_dump
    nvmet_configfs: bool = False  # /sys/kernel/config/nvmet exists (nvmet loaded)
    rdma: dict[str, Any] | None = None  # rdma.parse_dump for the fabric interface
    rdma_link_show: list[dict[str, Any]] = field(default_factory=list)  # every link of the same dump
    nvidia_smi: bool = False
    gpus: list[gpu_p.Gpu] = field(default_factory=list)
    topology: gpu_p.Topology | None = None

    @property
    def rdma_links(self) -> list[rdma_p.RdmaLink]:
        """Every RDMA link of the rdma dump (plan's observed keeps the fabric interface's only;
        health also names a device bound to another netdev, or a port without one)."""
        return [rdma_p.RdmaLink.from_observed(d) for d in self.rdma_link_show]

    @property
    def rdma_cm(self) -> dict[tuple[str, int], dict[str, str]]:
        """rdma_cm's configfs defaults per (device, port 1), as rdma_link observes them (the values
        it sets): {"default_roce_mode": ..., "default_roce_tos": ...}, unreadable ones left out."""
        devs = (self.rdma or {}).get("rdma_cm_devices") or {}
        return {(dev, 1): {k: str(v) for k, v in vals.items() if v is not None} for dev, vals in devs.items()}

    @property
    def etc_hostnqn(self) -> str | None:
        return (self.nvme_host or {}).get("hostnqn") or None

    @property
    def etc_hostid(self) -> str | None:
        return (self.nvme_host or {}).get("hostid") or None

    @property
    def nvme_ctrls(self) -> list:
        """The observed controllers with attribute access (``is_fabrics``, ``hostnqn``, ...)."""
        return [nvme_p.ctrl_view(c) for c in nvme_p.controllers(self.nvme_host)]

    def module_loaded(self, name: str) -> bool:
        name = name.replace("-", "_")
        return name in self.modules or name in self.sys_modules

    def rdma_link_for(self, dev: str) -> list[rdma_p.RdmaLink]:
        return [link for link in self.rdma_links if link.dev == dev]

    def rdma_devs_on(self, netdev: str) -> list[str]:
        """RDMA devices bound to a netdev (rdma link, else the GID table's ndevs)."""
        devs = [link.dev for link in self.rdma_links if link.netdev == netdev]
        if devs:
            return sorted(set(devs))
        return sorted({d.name for d in self.ib_devices.values() for p in d.ports.values()
                       for g in p.gids if g.get("ndev") == netdev})


def _mu(name: str):
    return load_module_utils(name)


def _parse(parse):
    """A module parser's result, or None when it fails on odd input (the probe never raises)."""
    try:
        return parse()
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return None


def _port_key(s: Section) -> tuple[str, int] | None:
    if len(s.args) < 2:
        return None
    port = to_int(s.args[1])
    return (s.args[0], port) if port is not None else None


def parse_probe_output(host: str, text: str) -> HostFacts:
    """Turn the probe's stdout into facts; unknown sections are ignored."""
    f = HostFacts(host=host)
    ts: dict[str, float] = {}
    ethtool_samples: dict[str, dict[str, dict[str, int]]] = {}  # interface -> t0|t1 -> counters
    ibv: dict[tuple[str, int], rdma_p.IbvPort] = {}
    nvidia_pci: dict[int, str] = {}
    gpu_numa: dict[str, int | None] = {}
    rdma_dump: str | None = None
    for s in split_sections(text):
        n, body = s.name, s.text
        if n == "meta":
            kv = parse_kv(body)
            f.probe_version = to_int(kv.get("probe_version"))
            f.interface = kv.get("iface") or None
        elif n == "end":
            f.complete = True
        elif n == "ts" and s.args:
            try:
                ts[s.args[0]] = float(body.strip().split()[0])
            except (ValueError, IndexError):
                pass
        elif n == "uname":
            f.kernel = body.strip().splitlines()[0].strip() if body.strip() else None
        elif n == "modules":
            f.modules = {line.split()[0] for line in s.lines if line.strip()}
        elif n == "sys_module":
            f.sys_modules = {line.strip() for line in s.lines if line.strip()}
        elif n == "ip_link":
            f.links = net_p.parse_ip_json(body, "")
        elif n == "ip_addr":
            for name, link in net_p.parse_ip_json("", body).items():
                cur = f.links.setdefault(name, link)
                if cur is not link:
                    cur.ipv4 = link.ipv4
                    cur.mtu = cur.mtu or link.mtu
        elif n == "ib_dev" and s.args:
            kv = parse_kv(body)
            numa = to_int(kv.get("numa_node"))
            dev = f.ib_devices.setdefault(s.args[0], rdma_p.IbDevice(s.args[0]))
            dev.driver = kv.get("driver", "")
            dev.numa_node = numa if numa is not None and numa >= 0 else None
            dev.pci = kv.get("pci")
            dev.node_type = kv.get("node_type")
            dev.fw_ver = kv.get("fw_ver")
        elif n in ("ib_port", "ib_gids") and (key := _port_key(s)):
            dev = f.ib_devices.setdefault(key[0], rdma_p.IbDevice(key[0]))
            if n == "ib_port":
                gids = dev.ports[key[1]].gids if key[1] in dev.ports else []
                dev.ports[key[1]] = rdma_p.parse_ib_port(key[1], body)
                dev.ports[key[1]].gids = gids
            else:
                dev.ports.setdefault(key[1], rdma_p.IbPort(key[1])).gids = _mu("rdma").parse_gid_table(body)
        elif n == "ibv_devinfo":
            ibv = rdma_p.parse_ibv_devinfo(body)
        elif n == "rdma_cm_configfs":
            kv = parse_kv(body)
            f.configfs = kv.get("configfs") == "1"
            f.rdma_cm_configfs = kv.get("rdma_cm") == "1"
        elif n == "netif" and s.args:
            f.netifs[s.args[0]] = net_p.parse_netif(s.args[0], body)
        elif n == "ecn":
            f.ecns[s.args[0] if s.args else ""] = net_p.parse_ecn(body)
        elif n == "mlnx_qos":
            q = net_p.parse_mlnx_qos(body)
            if q.trust or q.pfc_enabled is not None:
                f.mlnx_qoss[s.args[0] if s.args else ""] = q
        elif n == "ethtool_a":
            f.pauses[s.args[0] if s.args else ""] = net_p.parse_ethtool_pause(body)
        elif n == "hw_counters" and len(s.args) >= 3 and (key := _port_key(s)):
            win = f.hw_counters.setdefault(key, CounterWindow())
            setattr(win, s.args[2], rdma_p.parse_counters(body)) if s.args[2] in ("t0", "t1") else None
        elif n == "rdma_stat" and s.args and s.args[0] in ("t0", "t1"):
            for key, vals in rdma_p.parse_rdma_statistic(body).items():
                setattr(f.rdma_stat.setdefault(key, CounterWindow()), s.args[0], vals)
        elif n == "ethtool_S" and len(s.args) >= 2 and s.args[1] in ("t0", "t1"):
            ethtool_samples.setdefault(s.args[0], {})[s.args[1]] = net_p.parse_ethtool_stats(body)
        elif n == "nvme_host":
            f.nvme_host = _parse(lambda: _mu("nvme_host").parse_dump(body, state_dir=STATE_DIR))
        elif n == "nvmet_configfs":
            f.nvmet_configfs = parse_kv(body).get("present") == "1"
        elif n == "nvmet":
            f.nvmet = _parse(lambda: _mu("nvmet").parse_dump(body))
        elif n == "rdma":
            rdma_dump = body
        elif n == "nvidia_smi_L":
            f.nvidia_smi = True
            f.gpus = gpu_p.parse_nvidia_smi_l(body)
        elif n == "nvidia_smi_pci":
            nvidia_pci = gpu_p.parse_gpu_pci(body)
        elif n == "nvidia_topo":
            f.topology = gpu_p.parse_topo(body)
        elif n == "gpu_numa":
            gpu_numa = gpu_p.parse_pci_numa(body)
    if f.netifs:  # rail 1's: the meta's interface (any order), else the first read
        f.netif = f.netifs.get(f.interface or "") or next(iter(f.netifs.values()))
    if rdma_dump is not None:  # parsed for the interface the probe ran for (meta, any order)
        f.rdma = _parse(lambda: _mu("rdma").parse_dump(rdma_dump, f.interface or ""))
        # the dump's `links=` line (``rdma -j link show``) unfiltered, by the same module parser
        f.rdma_link_show = _parse(lambda: _mu("rdma").parse_link_show(parse_kv(rdma_dump).get("links", ""))) or []
    for (devname, port), info in ibv.items():
        dev = f.ib_devices.get(devname)
        if dev and port in dev.ports:
            dev.ports[port].active_mtu = info.active_mtu
            dev.ports[port].max_mtu = info.max_mtu
    for g in f.gpus:
        g.bus_id = nvidia_pci.get(g.index)
        if g.bus_id:
            g.numa_node = gpu_numa.get(g.bus_id)
    for name, samples in ethtool_samples.items():
        f.ethtools[name] = CounterWindow(samples.get("t0", {}), samples.get("t1", {}))
    # rail 1's (the meta's interface; a section without one is rail 1's too)
    rail1 = f.interface or ""
    for per, attr in ((f.ecns, "ecn"), (f.mlnx_qoss, "mlnx_qos"), (f.pauses, "pause"), (f.ethtools, "ethtool")):
        setattr(f, attr, per.get(rail1, per.get("")))
    if "t0" in ts and "t1" in ts:
        f.window_s = round(ts["t1"] - ts["t0"], 3)
    return f
