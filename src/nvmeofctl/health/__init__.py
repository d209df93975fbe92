"""Health checks: small pure functions ``(HostFacts, Expectations) -> list[Finding]``."""
