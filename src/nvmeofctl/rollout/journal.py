"""The rollout's journal: what is done, so a rerun after an interruption continues where it stopped.

One JSON file per cluster in nvmeofctl's state directory (``rollout/<cluster>.json``), written
atomically after every step. A rerun with the same spec text and options skips the batches the
journal records as done; the batch that was under way starts again from its drain, which is
idempotent (the ANA states are set, not toggled). A finished rollout, or one with another spec or
other options, starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from nvmeofctl.run.records import iso_utc, state_dir


def journal_path(cluster: str, root: Path | None = None) -> Path:
    return (root or state_dir()) / "rollout" / f"{cluster}.json"


def fingerprint(spec_text: bytes, targets: list[str], reboot: bool, max_unavailable: int) -> str:
    h = hashlib.sha256(spec_text)
    h.update(json.dumps([targets, reboot, max_unavailable]).encode())
    return h.hexdigest()


class Journal:
    def __init__(self, path: Path, fp: str) -> None:
        self.path = path
        self.fp = fp
        self.data: dict[str, Any] = {"fingerprint": fp, "started": iso_utc(time.time()), "done": [], "steps": [],
                                     "finished": None}
        self.resumed = False
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("fingerprint") == fp and not old.get("finished"):
            self.data = old
            self.resumed = bool(old.get("done") or old.get("steps"))

    @property
    def done(self) -> list[str]:
        return list(self.data.get("done") or [])

    def step(self, batch: list[str], name: str, seconds: float, **detail: Any) -> dict[str, Any]:
        entry = {"batch": batch, "step": name, "seconds": round(seconds, 1), "at": iso_utc(time.time()), **detail}
        self.data["steps"].append(entry)
        self.save()
        return entry

    def batch_done(self, batch: list[str]) -> None:
        self.data["done"] = self.done + [t for t in batch if t not in self.done]
        self.save()

    def finish(self) -> None:
        self.data["finished"] = iso_utc(time.time())
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)
