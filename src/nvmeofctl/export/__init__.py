"""`nvmeofctl export`: the spec as a self-contained Ansible project."""
