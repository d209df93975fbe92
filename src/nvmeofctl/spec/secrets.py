"""DH-HMAC-CHAP secrets: format checks and secret files. Never put a secret value in a message."""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from pathlib import Path

DHCHAP_EXPECTED = "expected DHHC-1:<00-03>:<base64 of 32/48/64-byte key + CRC-32>:"
_DHHC_RE = re.compile(r"^DHHC-1:(?P<hash>[0-9]{2}):(?P<b64>[A-Za-z0-9+/=]+):$")
# hash id -> allowed key lengths (00: untransformed key, any of the lengths)
_KEY_LENGTHS = {"00": (32, 48, 64), "01": (32,), "02": (48,), "03": (64,)}


def dhchap_secret_problem(value: str) -> str | None:
    """Why `value` is not a valid `DHHC-1:NN:<base64>:` secret, or None when it is valid.

    The reason names the defect (length, CRC, hash id) but never any part of the value.
    """
    m = _DHHC_RE.match(value)
    if not m:
        return "wrong format"
    hash_id = m["hash"]
    if hash_id not in _KEY_LENGTHS:
        return f"hash id {hash_id} is not one of 00, 01, 02, 03"
    try:
        raw = base64.b64decode(m["b64"], validate=True)
    except (binascii.Error, ValueError):
        return "key part is not valid base64"
    key, crc = raw[:-4], raw[-4:]
    if len(raw) < 4 or len(key) not in (32, 48, 64):
        return f"decoded key is {max(len(raw) - 4, 0)} bytes, expected 32, 48 or 64 plus a 4-byte CRC-32"
    if len(key) not in _KEY_LENGTHS[hash_id]:
        return f"hash id {hash_id} needs a {_KEY_LENGTHS[hash_id][0]}-byte key, got {len(key)} bytes"
    if int.from_bytes(crc, "little") != zlib.crc32(key) & 0xFFFFFFFF:
        return "CRC-32 does not match the key"
    return None


def dhchap_secret_message(problem: str) -> str:
    return f"not a valid DH-HMAC-CHAP secret: {problem} ({DHCHAP_EXPECTED})"


def read_secret_file(path: Path) -> str:
    """Contents of a secret file, stripped. Raises ValueError with a message free of the secret."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"secret file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"secret file {path} is a directory") from None
    except PermissionError:
        raise ValueError(f"secret file {path} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ValueError(f"secret file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    text = text.strip()
    if not text:
        raise ValueError(f"secret file {path} is empty")
    return text
