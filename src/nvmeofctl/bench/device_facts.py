"""What the bench reads on each GPU node before it starts, in the node's one read (a section of
facts/hoststate.py): whether fio is installed, and per NVMe namespace device its size and any
filesystem/RAID signature (blkid, probing the device itself)."""

from __future__ import annotations

SECTION = "bench-devices"

DEVICES_COMMAND = r"""
command -v fio >/dev/null 2>&1 && echo "fio yes" || echo "fio no"
for b in /sys/block/nvme*n*; do
  [ -e "$b" ] || continue
  d=${b##*/}
  read -r sectors < "$b/size" 2>/dev/null || sectors=0
  sig=$(blkid -p -o value -s TYPE "/dev/$d" 2>/dev/null)
  echo "dev $d $sectors ${sig:--}"
done
"""


def parse(text: str) -> tuple[bool, dict[str, tuple[int, str | None]]]:
    """(fio installed, {device: (bytes, signature or None)})."""
    fio, devices = False, {}
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["fio"] and len(parts) == 2:
            fio = parts[1] == "yes"
        elif parts[:1] == ["dev"] and len(parts) == 4 and parts[2].isdigit():
            devices[parts[1]] = (int(parts[2]) * 512, None if parts[3] == "-" else parts[3])
    return fio, devices
