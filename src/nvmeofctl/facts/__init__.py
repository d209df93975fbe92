"""Observed state of hosts as plain data: pure parsers over captured command output.

Nothing here talks to a host: ``probe.py`` holds the one read-only script that the health
command sends over SSH, and the parsers turn its ``### <section>`` blocks into dataclasses.
"""
