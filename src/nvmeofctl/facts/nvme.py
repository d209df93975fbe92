"""Views over the NVMe observed state health shares with plan.

There is ONE reader per domain: the NVMe host state (``/sys/class/nvme``, ``nvme-subsystem``,
``/etc/nvme``) is module_utils/nvme_host.py's ``dump_command`` + ``parse_dump``, the nvmet configfs
tree is module_utils/nvmet.py's ``DUMP_COMMAND`` + ``parse_dump`` (the probe embeds both dumps, see
``facts/probe.py``). The checks read those observed dicts (shapes: the docstrings at the top of
nvme_host.py and nvmet.py); this file holds only the few questions the checks ask of them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

# NVMe base specification: the well-known discovery subsystem NQN
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"


def is_discovery(ctrl: dict[str, Any]) -> bool:
    """A discovery controller (the well-known NQN; ``cntrltype`` once the host dump reads it)."""
    return ctrl.get("subsysnqn") == DISCOVERY_NQN or ctrl.get("cntrltype") == "discovery"


def controllers(observed: dict[str, Any] | None) -> list[dict[str, Any]]:
    """nvme_host's observed controllers, in its order (sysfs names, sorted)."""
    return list(((observed or {}).get("controllers") or {}).values())


def io_fabric_controllers(observed: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Fabrics controllers (rdma/tcp/fc/loop) that are not discovery controllers."""
    return [c for c in controllers(observed) if c.get("fabrics") and not is_discovery(c)]


def ctrl_view(ctrl: dict[str, Any]) -> SimpleNamespace:
    """Attribute access to one observed controller (``is_fabrics``, ``hostnqn``, ``hostid``...)."""
    return SimpleNamespace(**ctrl, is_fabrics=bool(ctrl.get("fabrics")), is_discovery=is_discovery(ctrl))
