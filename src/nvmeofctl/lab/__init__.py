"""The built-in lab: QEMU VMs running a real Debian kernel with Soft-RoCE, nvmet and nvme-cli."""
