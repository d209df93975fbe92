"""The cluster spec: pydantic models, YAML loading with `file:line path: message` errors."""

from nvmeofctl.spec.loader import SpecIssue, SpecValidationError, load_spec, parse_spec
from nvmeofctl.spec.models import (
    PROJECT_NAMESPACE,
    UUID_NQN_PREFIX,
    BackingSpec,
    ClusterSpec,
    DhchapSpec,
    Export,
    FabricSpec,
    HostFabricSpec,
    HostSpec,
    NamespaceSpec,
    ReconnectSpec,
    RoceSpec,
    SshSpec,
    SubsystemSpec,
    nqn_problem,
    parse_size,
    uuid_of_nqn,
)
from nvmeofctl.spec.secrets import dhchap_secret_problem

__all__ = [
    "PROJECT_NAMESPACE",
    "UUID_NQN_PREFIX",
    "BackingSpec",
    "ClusterSpec",
    "DhchapSpec",
    "Export",
    "FabricSpec",
    "HostFabricSpec",
    "HostSpec",
    "NamespaceSpec",
    "ReconnectSpec",
    "RoceSpec",
    "SpecIssue",
    "SpecValidationError",
    "SshSpec",
    "SubsystemSpec",
    "dhchap_secret_problem",
    "load_spec",
    "nqn_problem",
    "parse_size",
    "parse_spec",
    "uuid_of_nqn",
]
