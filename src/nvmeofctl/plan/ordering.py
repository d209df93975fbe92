"""How an apply runs its hosts: all at once, or in order around exports that change. Pure.

The common case (a converged redeploy, GPU-node-only or target-only changes) runs every host in
ONE play (`playbooks/site.yml`, strategy free): one module run per host of wall time.

When a target changes exports AND GPU nodes change their paths, order matters:

1. release: GPU nodes disconnect the paths that go away (so no controller is left retrying an
   export that no longer exists: with ``ctrl_loss_tmo: -1`` it would retry forever, and its
   disconnect can hang on the kernel's reconnect work);
2. targets: create and remove exports;
3. GPU nodes: connect the new paths (the exports exist by now) and converge the rest.

That is `playbooks/site_ordered.yml`; step 1 runs only on the GPU nodes that drop a path, and a
failure there stops the run before any target removes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ORDERED_PLAYBOOK = "site_ordered.yml"
PARALLEL_PLAYBOOK = "site.yml"

_PATH_ACTIONS = ("disconnect", "connect", "reconnect", "rekey")


@dataclass(frozen=True)
class Order:
    playbook: str
    release: list[str] = field(default_factory=list)  # GPU nodes that drop paths first
    why: str = ""

    @property
    def ordered(self) -> bool:
        return self.playbook == ORDERED_PLAYBOOK


def order_for(plan, check: bool = False) -> Order:
    """The playbook for ``plan`` (planner.Plan). Check mode always runs the single play: it
    changes nothing, so there is nothing to order, and each change is reported once."""
    # exports: not the target's own boot files and state records (kind "persist")
    target_changes = [c for c in plan.changes if c.concern == "nvmet" and c.kind != "persist"]
    path_changes = [c for c in plan.changes if c.concern == "nvme_host" and c.action in _PATH_ACTIONS]
    if check or not target_changes or not path_changes:
        return Order(PARALLEL_PLAYBOOK)
    release: list[str] = []
    for c in path_changes:
        if c.action == "disconnect" and c.host not in release:
            release.append(c.host)
    targets = sorted({c.host for c in target_changes})
    gpus = sorted({c.host for c in path_changes})
    why = f"{', '.join(targets)} change exports that {', '.join(gpus)} use"
    if release:
        why += f": {', '.join(release)} disconnect first"
    return Order(ORDERED_PLAYBOOK, release, why)
