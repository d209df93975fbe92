"""Who uses the NVMe block devices of a GPU node: mounts, holders (device-mapper, md, a
partition's holders) and processes holding the device open. Read in the same round trip as the
node's state (a section of facts/hoststate.py), so a command that would pull a device away
(`disconnect`, `teardown`) can refuse and say what uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "block-users"

# Read-only, one `find` for every open file descriptor (a shell loop over /proc/*/fd is slow in
# a VM); device names come from /sys/block, never from the spec.
USERS_COMMAND = r"""
for b in /sys/block/nvme*n*; do
  [ -e "$b" ] || continue
  d=${b##*/}
  while read -r src mnt _rest; do
    case "$src" in "/dev/$d"|"/dev/$d"p[0-9]*) echo "mount $d $mnt";; esac
  done < /proc/mounts
  for h in "$b"/holders/* "$b"/"$d"p*/holders/*; do
    [ -e "$h" ] && echo "holder $d ${h##*/}"
  done
done
find /proc/[0-9]*/fd -lname '/dev/nvme*' 2>/dev/null | while IFS=/ read -r _e _p pid _f fd; do
  t=$(readlink "/proc/$pid/fd/$fd" 2>/dev/null) || continue
  c=$(cat "/proc/$pid/comm" 2>/dev/null)
  echo "open ${t#/dev/} $pid $c"
done
"""


@dataclass(frozen=True)
class Use:
    device: str  # nvme0n1 (a partition's use is reported on its disk)
    kind: str  # mount | holder | open
    what: str  # the mountpoint, the holder device, or "pid <n> (<comm>)"

    def __str__(self) -> str:
        return {"mount": f"mounted on {self.what}", "holder": f"held by {self.what}",
                "open": f"open by {self.what}"}[self.kind]


def _disk(name: str) -> str:
    """nvme0n1p2 -> nvme0n1."""
    head, sep, tail = name.rpartition("p")
    return head if sep and tail.isdigit() and "n" in head else name


def parse_users(text: str) -> list[Use]:
    out: list[Use] = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) < 3:
            continue
        kind, dev, rest = parts
        if kind == "mount":
            use = Use(_disk(dev), "mount", rest.replace("\\040", " "))
        elif kind == "holder":
            use = Use(_disk(dev), "holder", rest)
        elif kind == "open" and dev.startswith("nvme"):
            pid, _sp, comm = rest.partition(" ")
            if not pid.isdigit():
                continue
            use = Use(_disk(dev), "open", f"pid {pid} ({comm or '?'})")
        else:
            continue
        if use not in out:
            out.append(use)
    return out
