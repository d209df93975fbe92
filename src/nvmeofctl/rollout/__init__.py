"""Rolling redeploys of dual-controller targets (issue #10)."""
