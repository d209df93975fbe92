"""The cluster as it is now, against the spec (`nvmeofctl status`)."""
