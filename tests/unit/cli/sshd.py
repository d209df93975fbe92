"""A real SSH server on 127.0.0.1 (paramiko, in a thread) that completes the key exchange with its
own host key and then refuses every login: enough for the client's host key check and for a
refused login, without root or a VM."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import paramiko

from nvmeofctl.lab.keys import known_hosts_line, write_ed25519_keypair


class _RefuseEveryLogin(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"  # check_auth_publickey: paramiko's default, AUTH_FAILED


class RefusingSshd:
    """``with RefusingSshd(folder) as sshd``: listens on ``sshd.port``; ``sshd.pin(path)`` writes a
    known_hosts pinning its real key, ``sshd.pin(path, other=True)`` one pinning another key (a
    host whose key changed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.public = write_ed25519_keypair(folder / "sshd_host_key", "sshd")
        self.other = write_ed25519_keypair(folder / "other_host_key", "other")
        self.key = paramiko.Ed25519Key.from_private_key_file(str(folder / "sshd_host_key"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def pin(self, path: Path, *, other: bool = False) -> Path:
        path.write_text(known_hosts_line("127.0.0.1", self.port, self.other if other else self.public) + "\n")
        return path

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # timeout: look at `stop` again
                continue
            conn.settimeout(None)
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.key)
            self.transports.append(transport)
            try:
                transport.start_server(server=_RefuseEveryLogin())
            except (paramiko.SSHException, EOFError, OSError):
                pass  # the client hung up after the key exchange (host key refused)

    def __enter__(self) -> "RefusingSshd":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()
        for t in self.transports:
            t.close()
