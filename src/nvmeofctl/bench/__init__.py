"""`nvmeofctl bench`: fio profiles for AI storage work, run on GPU nodes over the fabric."""
