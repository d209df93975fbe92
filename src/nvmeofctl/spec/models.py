"""pydantic v2 models of the cluster spec. Attribute names equal the YAML keys (inventory/example.yaml).

Validation context (optional): {"base_dir": Path} - the spec file's folder; relative paths
(ssh.key, ssh.known_hosts, dhchap *_file) are resolved against it (default: the current folder).

After validation every derived value is concrete and deterministic (see `ClusterSpec._derive`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID, uuid5

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from nvmeofctl.resources import load_module_utils
from nvmeofctl.spec.secrets import dhchap_secret_message, dhchap_secret_problem, read_secret_file

# Fixed forever: every generated ID is uuid5 under this namespace, so re-applying never drifts.
PROJECT_NAMESPACE = UUID("7917fd00-c844-504d-93bd-02d30884fe04")

Loc = tuple[str | int, ...]


def spec_error(message: str) -> PydanticCustomError:
    """A pydantic error whose message is used verbatim (no 'Value error, ' prefix, no braces parsing)."""
    return PydanticCustomError("spec", "{message}", {"message": message})


def raise_issues(title: str, issues: list[tuple[Loc, str]]) -> None:
    """Raise every (loc, message) at once, each at its own location (relative to the model)."""
    if issues:
        raise ValidationError.from_exception_data(
            title, [InitErrorDetails(type=spec_error(msg), loc=loc, input=None) for loc, msg in issues]
        )


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    return Path(ctx.get("base_dir") or Path.cwd())


def _resolve(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (_base_dir(info) / path).resolve()


# ---------------------------------------------------------------------------------------------
# scalar checks

# One set of rules for every spec string, shared with the collection's modules (which re-check
# their options with it on the hosts): module_utils/validators.py, loaded by file path.
V = load_module_utils("validators")
UUID_NQN_PREFIX = V.UUID_NQN_PREFIX
NQN_MAX_BYTES = V.NQN_MAX_BYTES
NQN_EXPECTED = V.NQN_EXPECTED
MAX_BACKING_SIZE = V.MAX_BACKING_SIZE
DEFAULT_BACKING_PREFIXES = V.DEFAULT_BACKING_PREFIXES


def nqn_problem(value: str) -> str | None:
    """Why `value` is not a valid NVMe Qualified Name, or None."""
    return V.nqn_problem(value)


def uuid_of_nqn(nqn: str) -> UUID | None:
    """The UUID of a `nqn.2014-08.org.nvmexpress:uuid:<uuid>` NQN, else None."""
    if nqn.startswith(UUID_NQN_PREFIX) and V.uuid_text_problem(nqn[len(UUID_NQN_PREFIX) :]) is None:
        return UUID(nqn[len(UUID_NQN_PREFIX) :])
    return None


def _checker(problem_of):
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem:
            raise spec_error(problem)
        return value

    return check


_check_nqn = _checker(V.nqn_problem)
_check_hostname = _checker(V.hostname_problem)
_check_name = _checker(V.name_problem)
_check_ifname = _checker(V.ifname_problem)
_check_address = _checker(V.ssh_address_problem)
_check_user = _checker(V.user_problem)
_check_prefix = _checker(V.prefix_problem)


_check_signature = _checker(V.signature_problem)
_check_mtu = _checker(V.mtu_problem)


def _check_not_nil(value: UUID | None) -> UUID | None:
    if value is not None and value.int == 0:
        raise spec_error("the nil UUID (all zeros) is not a valid identifier")
    return value


def _check_backing_path(value: str) -> str:
    # the shape here; the allowed prefixes (the spec may extend them) in derive_and_check
    problem = V.backing_path_problem(value, ("/",))
    if problem:
        raise spec_error(problem)
    return value


_SIZE_RE = re.compile(r"\s*(?P<num>[0-9]{1,30})\s*(?P<unit>[KMGTP]i?B?|[KMGTP]B|B)?\s*", re.IGNORECASE)
_BINARY = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
SIZE_EXPECTED = "expected bytes or a number with a unit: 512M, 10G, 256MiB, 1GiB (binary), 500GB (decimal)"


def parse_size(value: Any) -> Any:
    """Bytes from an int or '256MiB' / '1GiB' / '512M' / '10G' (binary) / '500GB' (decimal) / '4096B'."""
    if isinstance(value, bool):
        raise spec_error(f"not a size ({SIZE_EXPECTED})")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise spec_error(f"not a size ({SIZE_EXPECTED})")
    m = _SIZE_RE.fullmatch(value)
    if not m:
        raise spec_error(f"not a size ({SIZE_EXPECTED})")
    num, unit = int(m["num"]), (m["unit"] or "B").upper()
    if unit == "B":
        return num
    if unit.endswith("B") and not unit.endswith("IB"):  # KB, MB, GB, TB, PB: decimal
        return num * 1000 ** ("KMGTP".index(unit[0]) + 1)
    return num * _BINARY[unit[0]]


def _check_serial(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise spec_error("YAML read the serial as a number: quote it")
    return value


_check_serial_text = _checker(V.serial_problem)


HostName = Annotated[str, AfterValidator(_check_hostname)]
Name = Annotated[str, AfterValidator(_check_name)]
Nqn = Annotated[str, AfterValidator(_check_nqn)]
Id = Annotated[UUID, AfterValidator(_check_not_nil)]
BackingPath = Annotated[str, AfterValidator(_check_backing_path)]
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    AfterValidator(_checker(V.size_problem)),  # 4 KiB..1 PiB, whole 4 KiB blocks: nvmet_target's rule
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": V.MIN_BACKING_SIZE, "maximum": MAX_BACKING_SIZE},
                              {"type": "string", "pattern": _SIZE_RE.pattern}]}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# fabric


class RoceSpec(_Model):
    """Lossless settings a real RoCE NIC takes (ignored by Soft-RoCE)."""

    pfc_priority: int = Field(3, ge=0, le=7, description="the one PFC-enabled priority")
    dscp: int = Field(26, ge=0, le=63, description="DSCP of RoCE traffic")
    tos: int = Field(106, ge=0, le=255, description="rdma_cm default_roce_tos (dscp << 2 | ECN bits)")
    ecn: bool = Field(True, description="ECN / DCQCN on the PFC priority")

    @model_validator(mode="after")
    def _tos_matches_dscp(self) -> RoceSpec:
        if self.tos >> 2 != self.dscp:
            raise_issues(
                "RoceSpec",
                [(("tos",), f"tos {self.tos} carries DSCP {self.tos >> 2}, but dscp is {self.dscp} "
                            f"(tos = dscp << 2 | ECN bits, e.g. {self.dscp << 2 | 2})")],
            )
        return self


class ReconnectSpec(_Model):
    ctrl_loss_tmo: int = Field(-1, ge=-1, description="seconds; -1 = keep reconnecting forever")
    reconnect_delay: int = Field(10, ge=1, description="seconds between reconnect attempts")
    keep_alive_tmo: int = Field(5, ge=1, description="seconds")


class FabricSpec(_Model):
    transport: Literal["rdma", "tcp"] = "rdma"
    port: int = Field(4420, ge=1, le=65535, description="NVMe-oF service port (trsvcid)")
    mtu: Annotated[int, AfterValidator(_check_mtu), WithJsonSchema(
        {"type": "integer", "minimum": V.MTU_MIN, "maximum": V.MTU_MAX})] = Field(
        1500, description="L2 MTU of every fabric interface (set by rdma_link: RDMA transport only)")
    soft_roce: bool = Field(False, description="create a Soft-RoCE (rdma_rxe) device on the fabric NIC")
    roce: RoceSpec = Field(default_factory=RoceSpec)
    reconnect: ReconnectSpec = Field(default_factory=ReconnectSpec)
    nr_io_queues: int | None = Field(None, ge=1, le=1024)
    queue_size: int | None = Field(None, ge=16, le=1024)
    iopolicy: Literal["numa", "round-robin", "queue-depth"] = "numa"


# ---------------------------------------------------------------------------------------------
# hosts


class SshSpec(_Model):
    address: Annotated[str, AfterValidator(_check_address)] = Field(
        description="IPv4/IPv6 address or DNS name", examples=["10.0.0.21", "gpu-a01.example.net"])
    port: int = Field(22, ge=1, le=65535)
    user: Annotated[str, AfterValidator(_check_user)] = "root"
    key: Path | None = Field(None, description="private key; relative to the spec file's folder")
    known_hosts: Path | None = Field(None, description="known_hosts file; relative to the spec file's folder")

    @field_validator("key", "known_hosts")
    @classmethod
    def _absolute(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        text = str(value or "")
        if any(c in '"\\%' or ord(c) < 0x20 or c == "\x7f" for c in text):
            # ssh takes these as quoted, %-expanded config values on its command line
            raise spec_error("an SSH key or known_hosts path may not hold '\"', '\\', '%' or control characters")
        return None if value is None else _resolve(value, info)


class HostFabricSpec(_Model):
    interface: Annotated[str, AfterValidator(_check_ifname)] = Field(
        description="the fabric network interface (RoCE v2 NIC port, or the NIC Soft-RoCE runs on)",
        examples=["eth1", "ens1f0np0"])
    ips: list[IPv4Address] = Field(min_length=1, description="its fabric IPv4 addresses (targets listen on each)",
                                   examples=[["192.168.100.11"]])
    rdma_device: Annotated[str, AfterValidator(_check_ifname)] | None = Field(
        None, description="the RDMA device on that interface (default: the one bound to it, or Soft-RoCE's)",
        examples=["mlx5_0"])


def _empty_list() -> list[Any]:
    """A default factory for pydantic that is a Python function: for the builtin ``list`` it
    reads the text signature, and the tokenizer that parses it compiles a large regex on first
    use (~5 ms of every `spec validate`, issue #9)."""
    return []


class HostSpec(_Model):
    name: HostName = Field(description="host name, unique in the spec", examples=["stor1", "gpu-a01"])
    role: Literal["target", "gpu_node"] = Field(
        description="target: exports namespaces (nvmet); gpu_node: connects to them (nvme-cli)")
    ssh: SshSpec
    fabric: HostFabricSpec = Field(description="rail 1: the host's (first) fabric interface")
    rails: list[HostFabricSpec] = Field(
        default_factory=_empty_list,
        description="more fabric interfaces (rails 2, 3, ...), each with its own IPs on its own network: a "
                    "target listens on every rail, a GPU node connects over rail N to the targets' rail N (one "
                    "path each, native NVMe multipath), so one rail down leaves I/O on the others",
        examples=[[{"interface": "eth2", "ips": ["192.168.101.11"]}]])
    host_nqn: Nqn | None = Field(None, description="GPU nodes: generated when absent")
    host_id: Id | None = Field(None, description="GPU nodes: generated when absent")

    @model_validator(mode="after")
    def _nqn_matches_id(self) -> HostSpec:
        nqn_uuid = uuid_of_nqn(self.host_nqn) if self.host_nqn else None
        if nqn_uuid is not None and self.host_id is not None and nqn_uuid != self.host_id:
            message = "the UUID in host_nqn differs from host_id (the kernel pins one to the other)"
            raise_issues("HostSpec", [(("host_nqn",), message)])
        return self

    @property
    def fabrics(self) -> list[HostFabricSpec]:
        """Every rail, in order: ``fabric`` (rail 1), then ``rails``."""
        return [self.fabric, *self.rails]

    @property
    def fabric_ips(self) -> list[IPv4Address]:
        """The fabric IPs of every rail (a target listens on each)."""
        return [ip for f in self.fabrics for ip in f.ips]

    @staticmethod
    def rail_loc(rail: int) -> Loc:
        """The spec location of rail ``rail`` (1-based) of a host."""
        return ("fabric",) if rail == 1 else ("rails", rail - 2)


# ---------------------------------------------------------------------------------------------
# subsystems


class DhchapSpec(_Model):
    """DH-HMAC-CHAP for one GPU node. After loading, `secret` / `ctrl_secret` hold the keys
    (read from the *_file fields when those are given; the *_file fields become absolute)."""

    secret: SecretStr | None = None
    secret_file: Path | None = None
    ctrl_secret: SecretStr | None = Field(None, description="optional: bidirectional authentication")
    ctrl_secret_file: Path | None = None

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> DhchapSpec:
        issues: list[tuple[Loc, str]] = []
        has_ctrl = self.ctrl_secret is not None or self.ctrl_secret_file is not None
        if self.secret is not None and self.secret_file is not None:
            issues.append((("secret_file",), "set only one of secret or secret_file"))
        elif self.secret is None and self.secret_file is None:
            if has_ctrl:
                issues.append((("secret",), "ctrl_secret needs a host secret too: set secret or secret_file"))
            else:
                issues.append((("secret",), "set one of secret or secret_file"))
        if self.ctrl_secret is not None and self.ctrl_secret_file is not None:
            issues.append((("ctrl_secret_file",), "set only one of ctrl_secret or ctrl_secret_file"))
        host = self._take("secret", "secret_file", info, issues)
        ctrl = self._take("ctrl_secret", "ctrl_secret_file", info, issues)
        if host is not None and ctrl is not None and host == ctrl:
            which = "ctrl_secret_file" if self.ctrl_secret_file is not None else "ctrl_secret"
            issues.append(((which,), "ctrl_secret must differ from the host secret"))
        raise_issues("DhchapSpec", issues)
        return self

    def _take(self, inline: str, file: str, info: ValidationInfo, issues: list[tuple[Loc, str]]) -> str | None:
        """Check one secret (inline or from its file) and store it in the inline field."""
        path: Path | None = getattr(self, file)
        if path is not None:
            path = _resolve(path, info)
            setattr(self, file, path)
            try:
                value = read_secret_file(path, insecure_perms=bool((info.context or {}).get("insecure_secret_perms")))
            except ValueError as exc:
                issues.append(((file,), str(exc)))
                return None
            where: Loc = (file,)
        elif getattr(self, inline) is not None:
            value = getattr(self, inline).get_secret_value()
            where = (inline,)
        else:
            return None
        problem = dhchap_secret_problem(value)
        if problem:
            prefix = f"secret file {path}: " if path is not None else ""
            issues.append((where, prefix + dhchap_secret_message(problem)))
            return None
        setattr(self, inline, SecretStr(value))
        return value


class BackingSpec(_Model):
    device: BackingPath | None = Field(None, description="block device, e.g. /dev/nvme0n1 or /dev/disk/by-id/...",
                                       examples=["/dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R000001"])
    file: BackingPath | None = Field(
        None, description="file on the target that nvmet serves (created at size by nvmeofctl; an existing "
                          "file nvmeofctl did not create is refused)")
    size: Size | None = Field(
        None, description="bytes, or 512M / 10G / 256MiB / 1GiB (binary), 500GB (decimal); file only; at most 1 PiB",
        examples=["256MiB", "2TiB"])
    signature: Annotated[str, AfterValidator(_check_signature)] | None = Field(
        None, description="device only: the filesystem/RAID signature (blkid TYPE) the device is known to hold; "
                          "the target refuses to export a device holding any signature not named here"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> BackingSpec:
        issues: list[tuple[Loc, str]] = []
        if self.device is not None and self.file is not None:
            issues.append((("file",), "set only one of device or file"))
        elif self.device is None and self.file is None:
            issues.append((("device",), "set one of device or file"))
        if self.file is not None and self.size is None:
            issues.append((("size",), "a file backing needs a size"))
        if self.device is not None and self.file is None and self.size is not None:
            issues.append((("size",), "size applies only to a file backing (a device has its own size)"))
        if self.file is not None and self.signature is not None:
            issues.append((("signature",), "signature applies only to a device backing"))
        raise_issues("BackingSpec", issues)
        return self

    @property
    def path(self) -> str:
        return self.device if self.device is not None else self.file  # type: ignore[return-value]


class NamespaceSpec(_Model):
    nsid: int = Field(ge=1, le=1024)
    name: Name
    backing: BackingSpec
    uuid: Id | None = Field(None, description="derived from cluster/NQN/NSID when absent")
    nguid: Id | None = Field(None, description="derived from cluster/NQN/NSID when absent")
    preferred_target: str | None = Field(
        None, description="subsystems served by several targets: the target whose paths are ANA-optimized for this "
                          "namespace (the others are non-optimized); default: the first of `targets`",
        examples=["stor1"])
    bench_ok: bool = Field(False, description="scratch: `nvmeofctl bench` may load and write it (its data is lost); "
                                              "other namespaces are refused unless --destructive")


class SubsystemSpec(_Model):
    nqn: Nqn = Field(description="the subsystem's NVMe Qualified Name",
                     examples=["nqn.2024-01.io.example.storage:train"])
    target: str | None = Field(None, description="name of the target host that exports it (or `targets`)",
                               examples=["stor1"])
    targets: list[str] | None = Field(
        None, min_length=1,
        description="dual-controller: the target hosts that all export it (same NQN, namespace IDs and serial; "
                    "each namespace's backing device must be one block device every one of them reaches); GPU "
                    "nodes get one path per target, with ANA telling them which to use",
        examples=[["stor1", "stor2"]])
    serial: Annotated[str, BeforeValidator(_check_serial), AfterValidator(_check_serial_text)] | None = Field(
        None, description="derived from the NQN when absent"
    )
    allowed_gpu_nodes: list[str] = Field(min_length=1, description="GPU node names that may connect (never allow-any-host)",
                                         examples=[["gpu1", "gpu2"]])
    dhchap: dict[str, DhchapSpec] = Field(default_factory=dict, description="per GPU node name")
    namespaces: list[NamespaceSpec] = Field(min_length=1)

    _targets_given: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _one_target_field(self) -> SubsystemSpec:
        self._targets_given = self.targets is not None
        if self.targets is None and self.target is None:
            raise_issues("SubsystemSpec", [(("target",), "set target (one target host) or targets (several)")])
        if self.targets is not None and self.target is not None and [self.target] != self.targets[:1]:
            raise_issues("SubsystemSpec", [(("target",), "set target or targets, not both")])
        if self.targets is None:
            self.targets = [self.target]  # type: ignore[list-item]
        self.target = self.targets[0]
        return self

    @property
    def served_by(self) -> list[str]:
        """Every target host that exports it (``targets``; ``target`` alone is a list of one)."""
        return list(self.targets or [self.target])  # type: ignore[list-item]

    @property
    def multipath(self) -> bool:
        """Served by more than one target: namespaces get ANA groups, controllers disjoint id ranges."""
        return len(self.served_by) > 1

    def preferred(self, ns: NamespaceSpec) -> str:
        """The target whose paths are ANA-optimized for ``ns``."""
        return ns.preferred_target or self.served_by[0]


# ---------------------------------------------------------------------------------------------
# the cluster


@dataclass(frozen=True)
class Export:
    """One subsystem as one GPU node connects to it (`nvme connect` arguments)."""

    nqn: str
    target: str  # target host name
    traddr: str  # the target's first fabric IP on this rail
    trsvcid: int  # fabric.port
    transport: str  # fabric.transport
    namespaces: tuple[NamespaceSpec, ...]
    dhchap_secret: SecretStr | None  # the node's key on this target (shared by all its subsystems)
    dhchap_ctrl_secret: SecretStr | None
    gpu_node: str
    host_nqn: str
    host_id: UUID
    rail: int = 1  # the rail (1-based) this path runs on: the GPU node's rail N to the target's rail N


def _uid(kind: str, *parts: str) -> UUID:
    return uuid5(PROJECT_NAMESPACE, "\0".join((kind, *parts)))


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class ClusterSpec(_Model):
    name: Name = Field(description="cluster name; seeds generated host NQNs / IDs / UUIDs", examples=["train-a"])
    fabric: FabricSpec = Field(default_factory=FabricSpec)
    hosts: list[HostSpec] = Field(min_length=1)
    subsystems: list[SubsystemSpec] = Field(default_factory=_empty_list)
    backing_prefixes: list[Annotated[str, AfterValidator(_check_prefix)]] = Field(
        default_factory=_empty_list,
        description="extra places a namespace's backing store may live, besides "
                    + ", ".join(DEFAULT_BACKING_PREFIXES)
                    + " ('/srv/nvme/' = below that folder, '/dev/sd*' = device names starting so)",
    )

    _source_path: Path | None = PrivateAttr(default=None)

    # -- derived values and cross-field checks --------------------------------------------------

    @model_validator(mode="after")
    def _derive_and_check(self) -> ClusterSpec:
        raise_issues("ClusterSpec", derive_and_check(self.name, self.fabric, list(self.hosts), list(self.subsystems),
                                                     prefixes=self.allowed_backing_prefixes))
        return self

    @property
    def allowed_backing_prefixes(self) -> tuple[str, ...]:
        return tuple(DEFAULT_BACKING_PREFIXES) + tuple(p for p in self.backing_prefixes
                                                       if p not in DEFAULT_BACKING_PREFIXES)

    # -- convenience API ----------------------------------------------------------------------

    @property
    def source_path(self) -> Path | None:
        """The file this spec was loaded from (None when built in memory)."""
        return self._source_path

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host named {name!r} in cluster {self.name!r}")

    @property
    def targets(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.role == "target"]

    @property
    def gpu_nodes(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.role == "gpu_node"]

    def subsystems_on(self, target_name: str) -> list[SubsystemSpec]:
        return [s for s in self.subsystems if target_name in s.served_by]

    def dhchap_keys(self, gpu_name: str, target_name: str) -> tuple[SecretStr | None, SecretStr | None]:
        """(host key, ctrl key) of a GPU node on a target: nvmet keeps one per host NQN per target
        (configfs hosts/<hostnqn>/dhchap_key), so any subsystem of that target may give it."""
        secret = ctrl = None
        for sub in self.subsystems_on(target_name):
            auth = sub.dhchap.get(gpu_name)
            if auth is not None:
                secret = secret or auth.secret
                ctrl = ctrl or auth.ctrl_secret
        return secret, ctrl

    def exports_for(self, gpu_name: str) -> list[Export]:
        """Every path this GPU node should connect, in spec order: per subsystem, per target serving
        it, one per rail both have (the node's rail N to the target's rail N)."""
        node = self.host(gpu_name)
        out = []
        for sub in self.subsystems:
            if gpu_name not in sub.allowed_gpu_nodes:
                continue
            for target_name in sub.served_by:
                target = self.host(target_name)
                secret, ctrl = self.dhchap_keys(gpu_name, target_name)
                for rail, fab in enumerate(target.fabrics[:len(node.fabrics)], start=1):
                    out.append(Export(
                        nqn=sub.nqn,
                        target=target.name,
                        traddr=str(fab.ips[0]),
                        trsvcid=self.fabric.port,
                        transport=self.fabric.transport,
                        namespaces=tuple(sub.namespaces),
                        dhchap_secret=secret,
                        dhchap_ctrl_secret=ctrl,
                        gpu_node=node.name,
                        host_nqn=node.host_nqn or "",
                        host_id=node.host_id,  # type: ignore[arg-type]
                            rail=rail,
                    ))
        return out


def derive_and_check(
    cluster: str,
    fabric: FabricSpec | None,
    hosts: list[HostSpec | None],
    subsystems: list[SubsystemSpec | None],
    unchecked_hosts: frozenset[str] | None = frozenset(),
    prefixes: tuple[str, ...] = DEFAULT_BACKING_PREFIXES,
) -> list[tuple[Loc, str]]:
    """Fill absent IDs (deterministic) and return the cross-field problems as (loc, message).

    A None item failed its own validation: it is skipped (the loader calls this on the valid
    parts of an invalid spec, so cross-field errors come with field errors in one report);
    `unchecked_hosts` are the names of such hosts, which references may use without error
    (None: some invalid host has no usable name, so no reference is reported as unknown).
    """
    issues: list[tuple[Loc, str]] = []
    generated = _derive(cluster, hosts, subsystems)
    _check_hosts(issues, generated, fabric, hosts)
    _check_subsystems(issues, generated, hosts, subsystems, unchecked_hosts, prefixes)
    return issues


def _derive(cluster: str, hosts: list[HostSpec | None], subsystems: list[SubsystemSpec | None]) -> set[Loc]:
    """Fill absent IDs; return the locations of the generated ones."""
    generated: set[Loc] = set()
    for i, host in enumerate(hosts):
        if host is None or host.role != "gpu_node":
            continue
        if host.host_id is None:
            from_nqn = uuid_of_nqn(host.host_nqn) if host.host_nqn else None
            host.host_id = from_nqn or _uid("host-id", cluster, host.name)
            generated.add(("hosts", i, "host_id"))
        if host.host_nqn is None:
            host.host_nqn = UUID_NQN_PREFIX + str(host.host_id)
            generated.add(("hosts", i, "host_nqn"))
    for j, sub in enumerate(subsystems):
        if sub is None:
            continue
        if sub.serial is None:
            sub.serial = hashlib.sha256(sub.nqn.encode()).hexdigest()[:16]
        for k, ns in enumerate(sub.namespaces):
            if ns.uuid is None:
                ns.uuid = _uid("ns-uuid", cluster, sub.nqn, str(ns.nsid))
                generated.add(("subsystems", j, "namespaces", k, "uuid"))
            if ns.nguid is None:
                ns.nguid = _uid("ns-nguid", cluster, sub.nqn, str(ns.nsid))
                generated.add(("subsystems", j, "namespaces", k, "nguid"))
    return generated


def _check_hosts(
    issues: list[tuple[Loc, str]], generated: set[Loc], fabric: FabricSpec | None, hosts: list[HostSpec | None]
) -> None:
    seen: dict[tuple[str, Any], Loc] = {}

    def dup(kind: str, value: Any, loc: Loc, what: str) -> None:
        first = seen.setdefault((kind, value), loc)
        # two generated values collide only when their seeds do (a duplicate already reported)
        if first != loc and not (first in generated and loc in generated):
            issues.append((loc, f"duplicate {what} (also {_path(first)})"))

    for i, host in enumerate(hosts):
        if host is None:
            continue
        dup("name", host.name, ("hosts", i, "name"), f"host name '{host.name}'")
        dup("ssh", (host.ssh.address.lower(), host.ssh.port), ("hosts", i, "ssh", "address"),
            f"SSH endpoint {host.ssh.address}:{host.ssh.port}")
        interfaces: dict[str, Loc] = {}
        for r, fab in enumerate(host.fabrics, start=1):
            at = ("hosts", i, *HostSpec.rail_loc(r))
            first_if = interfaces.setdefault(fab.interface, at)
            if first_if != at:
                issues.append(((*at, "interface"), f"interface {fab.interface} is already rail "
                                                   f"{list(interfaces).index(fab.interface) + 1} ({_path(first_if)})"))
            if r > 1 and "@" in fab.interface:  # rdma_link names rail 2+'s boot unit after it
                issues.append(((*at, "interface"), f"interface {fab.interface}: a rail after the first names its "
                                                   "boot unit after its interface, and systemd reads '@' in a unit "
                                                   "name as a template instance"))
            for k, ip in enumerate(fab.ips):
                dup("ip", ip, (*at, "ips", k), f"fabric IP {ip}")
            if (fabric is not None and fabric.transport == "rdma" and not fabric.soft_roce
                    and fab.rdma_device is None):
                issues.append(((*at, "rdma_device"),
                               "transport rdma needs an RDMA device: set rdma_device, "
                               "or fabric.soft_roce: true, or fabric.transport: tcp"))
        for field in ("host_nqn", "host_id"):
            value = getattr(host, field)
            if value is not None:
                label = "host NQN" if field == "host_nqn" else "host ID"
                gen = " (generated)" if ("hosts", i, field) in generated else ""
                dup(field, str(value).lower(), ("hosts", i, field), f"{label} {value}{gen}")


def _check_subsystems(
    issues: list[tuple[Loc, str]],
    generated: set[Loc],
    hosts: list[HostSpec | None],
    subsystems: list[SubsystemSpec | None],
    unchecked_hosts: frozenset[str] | None,
    prefixes: tuple[str, ...],
) -> None:
    roles = {h.name: h.role for h in hosts if h is not None}
    known = ", ".join([*roles, *sorted((unchecked_hosts or frozenset()) - set(roles))])
    seen: dict[tuple[str, Any], Loc] = {}
    keys: dict[tuple[str, str, str], tuple[str, Loc]] = {}  # (target, node, kind) -> (secret, loc)

    def dup(kind: str, value: Any, loc: Loc, what: str) -> None:
        first = seen.setdefault((kind, value), loc)
        # generated IDs collide only when (NQN, NSID) does: that duplicate is reported already
        if first != loc and not (first in generated and loc in generated):
            issues.append((loc, f"duplicate {what} (also {_path(first)})"))

    def ref(name: str, loc: Loc, role: str | None) -> bool:
        if name not in roles and (unchecked_hosts is None or name in unchecked_hosts):
            return True
        if name not in roles:
            issues.append((loc, f"unknown host '{name}' (hosts: {known})"))
            return False
        if role is not None and roles[name] != role:
            issues.append((loc, f"host '{name}' is a {roles[name]}, not a {role}"))
            return False
        return True

    for j, sub in enumerate(subsystems):
        if sub is None:
            continue
        at: Loc = ("subsystems", j)
        dup("nqn", sub.nqn, (*at, "nqn"), f"NQN {sub.nqn}")
        served = sub.served_by
        tfield = "targets" if sub._targets_given else "target"
        for t, tname in enumerate(served):
            tloc: Loc = (*at, "targets", t) if tfield == "targets" else (*at, "target")
            if tname in served[:t]:
                issues.append((tloc, f"target '{tname}' is listed twice"))
            ref(tname, tloc, "target")
        listed: set[str] = set()
        for k, node in enumerate(sub.allowed_gpu_nodes):
            if node in listed:
                issues.append(((*at, "allowed_gpu_nodes", k), f"'{node}' is listed twice"))
            listed.add(node)
            ref(node, (*at, "allowed_gpu_nodes", k), "gpu_node")
        for node, auth in sub.dhchap.items():
            loc: Loc = (*at, "dhchap", node)
            if not ref(node, loc, None):
                continue
            if node not in listed:
                issues.append((loc, f"dhchap for '{node}', which is not in allowed_gpu_nodes"))
                continue
            for kind, inline, file in (("secret", "secret", "secret_file"),
                                       ("ctrl_secret", "ctrl_secret", "ctrl_secret_file")):
                value = getattr(auth, inline)
                if value is None:
                    continue
                where = (*loc, file if getattr(auth, file) is not None else inline)
                for tname in served:
                    first = keys.setdefault((tname, node, kind), (value.get_secret_value(), where))
                    if first[0] != value.get_secret_value():
                        issues.append((where, f"conflicting DH-HMAC-CHAP {kind} for '{node}' on target "
                                              f"'{tname}': {_path(first[1][:2])} gives a different one "
                                              "(nvmet keeps one key per host per target)"))
                        break
        for k, ns in enumerate(sub.namespaces):
            nat: Loc = (*at, "namespaces", k)
            dup(f"nsid{j}", ns.nsid, (*nat, "nsid"), f"nsid {ns.nsid} in this subsystem")
            dup("nsname", ns.name, (*nat, "name"), f"namespace name '{ns.name}'")
            dup("uuid", ns.uuid, (*nat, "uuid"), f"namespace UUID {ns.uuid}")
            dup("nguid", ns.nguid, (*nat, "nguid"), f"namespace NGUID {ns.nguid}")
            b = ns.backing
            kind = "device" if b.device is not None else "file"
            problem = V.backing_path_problem(b.path, prefixes)
            if problem:
                issues.append(((*nat, "backing", kind), problem))
            for tname in served:
                dup("backing", (tname, os.path.normpath(b.path)), (*nat, "backing", kind),
                    f"backing {kind} {b.path} on target '{tname}'")
            if sub.multipath and kind == "file":
                issues.append(((*nat, "backing", "file"),
                               f"a subsystem served by {len(served)} targets needs one block device they all reach "
                               "(backing.device, e.g. a dual-ported NVMe drive or shared LUN): a file lives on "
                               "one target"))
            if ns.preferred_target is not None and ns.preferred_target not in served:
                issues.append(((*nat, "preferred_target"),
                               f"'{ns.preferred_target}' does not serve this subsystem (targets: {', '.join(served)})"))
