"""nvmeofctl: provision and run NVMe-over-Fabrics storage for GPU clusters."""

__version__ = "0.1.0"
