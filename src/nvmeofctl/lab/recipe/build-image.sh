#!/bin/bash
# Build the nvmeofctl lab image: Debian bookworm + the bookworm-backports 6.12 kernel
# (which has DH-HMAC-CHAP), the NVMe-oF / RDMA user space, and a small first-boot unit that
# takes each VM's identity (hostname, fabric IPs of eth1 and, in a 2-rail lab, eth2, SSH keys)
# from QEMU fw_cfg.
#
# Usage: build-image.sh OUTDIR MIRROR
# Writes OUTDIR/{rootfs.qcow2,vmlinuz,initrd.img}. Steps are printed as "STEP <name>" so the
# caller can show progress. Needs root (debootstrap, chroot). Touches nothing outside OUTDIR.
set -euo pipefail
OUT=$1
MIRROR=${2:-http://deb.debian.org/debian}
SUITE=bookworm
PACKAGES=openssh-server,python3,nvme-cli,rdma-core,ibverbs-utils,rdmacm-utils,perftest,fio,iproute2,kmod,systemd-sysv,udev,iputils-ping,ethtool,pciutils,procps,ca-certificates,less
KERNEL_PKG=linux-image-amd64
DISK_SIZE=4G

work="$OUT/work"
root="$work/rootfs"
rm -rf "$work"; mkdir -p "$root"
cleanup() {
  for m in dev/pts dev proc sys; do umount "$root/$m" 2>/dev/null || true; done
}
trap cleanup EXIT

echo "STEP debootstrap"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

echo "STEP kernel"
mount -t proc proc "$root/proc"; mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"; mount --bind /dev/pts "$root/dev/pts"
cat >"$root/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $MIRROR $SUITE-backports main
SRC
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
# A small initrd: only what finds and mounts a virtio ext4 root (boots ~15 s faster under TCG).
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo "MODULES=list" >"$root/etc/initramfs-tools/conf.d/nvmeofctl-lab.conf"
printf 'virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n' >>"$root/etc/initramfs-tools/modules"
chroot "$root" /bin/sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t $SUITE-backports $KERNEL_PKG && apt-get clean" \
  >"$work/kernel.log" 2>&1 || { tail -20 "$work/kernel.log" >&2; exit 1; }

echo "STEP configure"
echo lab >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cat >"$root/etc/fstab" <<FST
/dev/vda / ext4 defaults,noatime,errors=remount-ro 0 1
FST
# Management NIC (eth0, QEMU user network) by DHCP; the fabric NICs (eth1, eth2) are set by
# lab-identity.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/10-mgmt.network" <<NET
[Match]
Name=eth0
[Network]
DHCP=ipv4
NET
chroot "$root" systemctl enable systemd-networkd >/dev/null 2>&1
chroot "$root" systemctl disable systemd-networkd-wait-online >/dev/null 2>&1 || true
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer >/dev/null 2>&1 || true
# Each clone must get its own identity: no baked host keys, host NQN/ID or machine-id.
rm -f "$root"/etc/ssh/ssh_host_* "$root/etc/nvme/hostnqn" "$root/etc/nvme/hostid"
: >"$root/etc/machine-id"
cat >"$root/etc/ssh/sshd_config.d/nvmeofctl-lab.conf" <<SSHD
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
SSHD
install -m 0755 /dev/stdin "$root/usr/local/sbin/lab-identity" <<'IDS'
#!/bin/sh
# Apply this VM's identity from QEMU fw_cfg (opt/nvmeofctl/*), written by `nvmeofctl lab up`.
set -e
modprobe qemu_fw_cfg
D=/sys/firmware/qemu_fw_cfg/by_name/opt/nvmeofctl
get() { cat "$D/$1/raw"; }
name=$(get hostname)
hostname "$name"; echo "$name" >/etc/hostname
grep -q " $name\$" /etc/hosts || echo "127.0.1.1 $name" >>/etc/hosts
(
  umask 077
  mkdir -p /root/.ssh
  get authorized_keys >/root/.ssh/authorized_keys
  get ssh_host_ed25519_key >/etc/ssh/ssh_host_ed25519_key
)
get ssh_host_ed25519_key.pub >/etc/ssh/ssh_host_ed25519_key.pub
mkdir -p /run/systemd/network
# Rail 1 (eth1) always; rail 2 (eth2) only in a lab started with --rails 2 (fabric2_cidr given).
fabric() {
  cat >"/run/systemd/network/$1-fabric.network" <<NET
[Match]
Name=$2
[Link]
MTUBytes=$(get fabric_mtu)
[Network]
Address=$3
LinkLocalAddressing=no
NET
}
fabric 20 eth1 "$(get fabric_cidr)"
if [ -e "$D/fabric2_cidr" ]; then fabric 21 eth2 "$(get fabric2_cidr)"; fi
IDS
cat >"$root/etc/systemd/system/lab-identity.service" <<UNIT
[Unit]
Description=nvmeofctl lab: per-VM identity from fw_cfg
DefaultDependencies=no
After=local-fs.target systemd-modules-load.service
Before=network-pre.target systemd-networkd.service ssh.service
Wants=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-identity
[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable lab-identity.service >/dev/null 2>&1
# Serial console for `lab` diagnostics; no getty needed on tty1.
chroot "$root" systemctl mask getty@tty1.service >/dev/null 2>&1 || true
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
ls "$root"/lib/modules/*/kernel/drivers/firmware/qemu_fw_cfg.ko* >/dev/null

echo "STEP disk"
cleanup
cp -L "$root/vmlinuz" "$OUT/vmlinuz.new"; cp -L "$root/initrd.img" "$OUT/initrd.img.new"
basename "$(readlink -f "$root/vmlinuz")" | sed 's/^vmlinuz-//' >"$OUT/kernel-release.new"
truncate -s "$DISK_SIZE" "$work/rootfs.raw"
mkfs.ext4 -q -F -L labroot -d "$root" "$work/rootfs.raw"
qemu-img convert -O qcow2 "$work/rootfs.raw" "$OUT/rootfs.qcow2.new"
for f in rootfs.qcow2 vmlinuz initrd.img kernel-release; do mv "$OUT/$f.new" "$OUT/$f"; done
rm -rf "$work"
echo "STEP done"
