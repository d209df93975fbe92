"""DH-HMAC-CHAP secrets: format checks and secret files. Never put a secret value in a message."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nvmeofctl.resources import load_module_utils

# The format rules live with the other validators (module_utils/validators.py), shared with the
# modules that re-check the keys on the hosts.
_V = load_module_utils("validators")
DHCHAP_EXPECTED = _V.DHCHAP_EXPECTED


def dhchap_secret_problem(value: str) -> str | None:
    """Why `value` is not a valid `DHHC-1:NN:<base64>:` secret (fullmatch: no trailing newline),
    or None when it is valid. The reason names the defect but never any part of the value."""
    return _V.dhchap_secret_problem(value)


def dhchap_secret_message(problem: str) -> str:
    return _V.dhchap_secret_message(problem)


def read_secret_file(path: Path, *, insecure_perms: bool = False) -> str:
    """Contents of a secret file, stripped. Raises ValueError with a message free of the secret.

    The file must be owned by the effective user and closed to group/other (mode 0600 or
    stricter), as ssh wants of private keys; `insecure_perms` skips that check. The check runs
    on the opened file (fstat), so the file that is checked is the file that is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ValueError(f"secret file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"secret file {path} is a directory") from None
    except PermissionError:
        raise ValueError(f"secret file {path} is not readable (permission denied)") from None
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise ValueError(f"secret file {path} is a directory")
        if not insecure_perms:
            problem = secret_file_perms_problem(path, st)
            if problem:
                raise ValueError(problem)
        try:
            raw = fh.read()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"secret file {path} is not UTF-8 text") from None
    text = text.strip()
    if not text:
        raise ValueError(f"secret file {path} is empty")
    return text


INSECURE_HINT = "or pass --insecure-secret-perms to accept it (not recommended)"


def secret_file_perms_problem(path: Path, st: os.stat_result) -> str | None:
    """Why a secret file's owner or mode is unsafe (with the fix), or None when it is fine."""
    euid = os.geteuid()
    if st.st_uid != euid:
        return (f"secret file {path} is owned by uid {st.st_uid}, not by you (uid {euid}): "
                f"run `chown {euid} {path}` and `chmod 600 {path}`, {INSECURE_HINT}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        who = " and ".join(w for w, bits in (("group", 0o070), ("other", 0o007)) if mode & bits)
        return (f"secret file {path} is open to {who} (mode {mode:04o}): "
                f"run `chmod 600 {path}`, {INSECURE_HINT}")
    return None
