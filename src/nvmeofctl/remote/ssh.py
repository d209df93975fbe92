"""Parallel SSH to cluster hosts with paramiko: one connection per host, host keys verified.

Host keys are checked against the host's ``known_hosts`` file (or ``~/.ssh/known_hosts``) with
paramiko's ``RejectPolicy``: an unknown or changed key is an error, never silently accepted.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import logging

import paramiko

# paramiko's transport thread logs failed handshakes with tracebacks through the root logger's
# last-resort handler; the caller reports failures itself, as one line.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(logging.NullHandler())
_paramiko_log.propagate = False


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one host."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    known_hosts: Path | None = None

    @classmethod
    def from_host_spec(cls, host) -> "SshTarget":  # host: nvmeofctl.spec HostSpec
        ssh = host.ssh
        return cls(
            name=host.name,
            address=str(ssh.address),
            port=int(ssh.port),
            user=ssh.user,
            key_file=Path(ssh.key) if ssh.key else None,
            known_hosts=Path(ssh.known_hosts) if ssh.known_hosts else None,
        )


@dataclass
class CommandResult:
    host: str
    rc: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.rc == 0


# Failure kinds where the host answered but refused us (its key changed or is not pinned, or it
# refused the login): a person must act, retrying cannot help. `apply` (preflight) and `health`
# both report these as exit 4 (ExitCode.PREFLIGHT), a host that did not answer as 6.
REFUSED_KINDS = frozenset({"hostkey", "auth"})


@dataclass
class Unreachable:
    """The host could not be reached or refused us; ``reason`` is one line for the user."""

    host: str
    reason: str
    kind: str = "unreachable"  # unreachable | hostkey | auth
    elapsed: float = 0.0
    ok: bool = field(default=False, init=False)

    @property
    def refused(self) -> bool:
        """The host answered but refused us (``REFUSED_KINDS``), rather than not answering."""
        return self.kind in REFUSED_KINDS


class SshError(Exception):
    def __init__(self, reason: str, kind: str = "unreachable") -> None:
        super().__init__(reason)
        self.kind = kind


def connect(target: SshTarget, timeout: float = 15.0) -> paramiko.SSHClient:
    """Open a verified SSH connection or raise ``SshError`` with a one-line reason."""
    client = paramiko.SSHClient()
    known = target.known_hosts or Path.home() / ".ssh" / "known_hosts"
    try:
        if known.exists():
            client.load_host_keys(str(known))
    except (OSError, paramiko.SSHException) as exc:
        raise SshError(f"cannot read known_hosts {known}: {exc}", "hostkey") from exc
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            target.address,
            port=target.port,
            username=target.user,
            key_filename=str(target.key_file) if target.key_file else None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=target.key_file is None,
            look_for_keys=target.key_file is None,
        )
    except paramiko.BadHostKeyException as exc:
        raise SshError(
            f"host key of {target.address}:{target.port} does not match {known} (possible MITM, or the host was rebuilt)",
            "hostkey",
        ) from exc
    except paramiko.SSHException as exc:
        msg = str(exc)
        if "not found in known_hosts" in msg:
            raise SshError(f"host key of {target.address}:{target.port} is not in {known}", "hostkey") from exc
        if isinstance(exc, paramiko.AuthenticationException):
            raise SshError(f"authentication failed as {target.user}@{target.address}:{target.port}", "auth") from exc
        raise SshError(f"ssh {target.address}:{target.port}: {msg}") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise SshError(f"ssh {target.address}:{target.port}: timed out after {timeout:.0f}s") from exc
    except OSError as exc:
        raise SshError(f"ssh {target.address}:{target.port}: {exc.strerror or exc}") from exc
    except EOFError as exc:  # paramiko: the server hung up mid-handshake (sshd stopping or starting)
        client.close()
        raise SshError(f"ssh {target.address}:{target.port}: the server closed the connection") from exc
    return client


def run_command(
    client: paramiko.SSHClient, command: str, *, stdin: str | None = None, timeout: float = 60.0,
    on_stdout: Callable[[str], None] | None = None,
) -> tuple[int, str, str]:
    """Run one command over an open connection; returns (rc, stdout, stderr). rc 124 on timeout.
    ``on_stdout``: called with each chunk of stdout as it arrives (live progress)."""
    transport = client.get_transport()
    assert transport is not None
    chan = transport.open_session(timeout=timeout)
    chan.settimeout(timeout)
    chan.exec_command(command)
    if stdin is not None:
        chan.sendall(stdin.encode())
    chan.shutdown_write()
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    # Read both streams until the server's EOF, THEN take the exit status: the exit status can be
    # ready while the tail of stdout is still on its way (a health probe lost its end marker so).
    while True:
        if chan.recv_ready():
            chunk = chan.recv(65536)
            out += chunk
            if on_stdout is not None:
                on_stdout(chunk.decode(errors="replace"))
            continue
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            continue
        if chan.eof_received or chan.closed:
            break
        if time.monotonic() > deadline:
            chan.close()
            return 124, out.decode(errors="replace"), err.decode(errors="replace") + "\ntimed out"
        time.sleep(0.01)
    if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
        chan.close()
        return 124, out.decode(errors="replace"), err.decode(errors="replace") + "\ntimed out (no exit status)"
    rc = chan.recv_exit_status()
    chan.close()
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def run_on(
    target: SshTarget,
    command: str,
    *,
    stdin: str | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 15.0,
    on_stdout: Callable[[str], None] | None = None,
) -> CommandResult | Unreachable:
    start = time.monotonic()
    try:
        client = connect(target, timeout=connect_timeout)
    except SshError as exc:
        return Unreachable(target.name, str(exc), exc.kind, time.monotonic() - start)
    try:
        rc, out, err = run_command(client, command, stdin=stdin, timeout=timeout, on_stdout=on_stdout)
    except (paramiko.SSHException, OSError, EOFError) as exc:  # EOFError: paramiko, the server hung up
        why = "the server closed the connection" if isinstance(exc, EOFError) else str(exc) or type(exc).__name__
        return Unreachable(target.name, f"ssh session to {target.address}:{target.port} broke: {why}", "unreachable",
                           time.monotonic() - start)
    finally:
        client.close()
    return CommandResult(target.name, rc, out, err, time.monotonic() - start)


def run_many(
    targets: Iterable[SshTarget],
    command: str | Callable[[SshTarget], str],
    *,
    stdin: str | Callable[[SshTarget], str | None] | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 15.0,
    max_workers: int = 32,
    on_stdout: Callable[[str, str], None] | None = None,
) -> dict[str, CommandResult | Unreachable]:
    """Run a command (or a per-host command) on every target in parallel; one result per host.
    ``on_stdout(host, chunk)``: each host's stdout as it arrives (from the workers' threads)."""
    targets = list(targets)
    if not targets:
        return {}

    def one(t: SshTarget) -> CommandResult | Unreachable:
        cmd = command(t) if callable(command) else command
        data = stdin(t) if callable(stdin) else stdin
        live = (lambda chunk: on_stdout(t.name, chunk)) if on_stdout is not None else None
        return run_on(t, cmd, stdin=data, timeout=timeout, connect_timeout=connect_timeout, on_stdout=live)

    with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
        results = list(pool.map(one, targets))
    return {t.name: r for t, r in zip(targets, results)}
