# -*- coding: utf-8 -*-
"""Validators for every string that comes from a cluster spec: the one place for these rules.

Spec strings are hostile input: they reach root shells, configfs paths, ``ssh`` command lines
and Ansible. Each function here returns ``None`` when the value is acceptable, else a one-line
reason (never containing a secret). Every pattern is applied with ``fullmatch``: ``$`` would
accept a trailing newline.

Stdlib only, imports nothing else of the collection, so that:
  * the nvmeofctl package (the spec models) loads this file by path;
  * the modules (``nvmet_target``, ``nvme_host``, ``rdma_link``) import it as module_utils and
    re-check their options with the same rules.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import ipaddress
import posixpath
import re
import zlib

# -- NVMe Qualified Names -----------------------------------------------------------------------
# NVMe Base Specification 2.0, 4.5 "NVMe Qualified Names": at most 223 bytes, UTF-8;
# "nqn.yyyy-mm.<reverse domain>:<anything>" or "nqn.2014-08.org.nvmexpress:uuid:<uuid>".
# nvmeofctl accepts the portable subset real NQNs use in the part after the domain: ASCII letters,
# digits and . _ : - + @ =  (no '/', which would make a configfs path, no spaces, no braces).
NQN_MAX_BYTES = 223
UUID_NQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"
NQN_EXPECTED = "expected nqn.YYYY-MM.reverse.domain:name or nqn.2014-08.org.nvmexpress:uuid:<uuid>"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_NQN_RE = re.compile(r"nqn\.(?P<year>[0-9]{4})-(?P<month>[0-9]{2})\.%s(?:\.%s)+:(?P<rest>[A-Za-z0-9._:+@=-]+)"
                     % (_LABEL, _LABEL))
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# -- names ----------------------------------------------------------------------------------------
_HOSTNAME_RE = re.compile(r"%s(?:\.%s)*" % (_LABEL, _LABEL))
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,14}")
# POSIX portable user names (useradd's default rule), never starting with '-'
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")

# -- backing stores ---------------------------------------------------------------------------------
# Where a namespace's backing store may live unless the spec extends the list
# (``backing_prefixes``). A prefix ending in "/" admits paths below that directory; one ending
# in "*" admits paths that start with the text before the "*" (/dev/nvme* = /dev/nvme0n1, ...).
DEFAULT_BACKING_PREFIXES = ("/var/lib/nvmeofctl/", "/dev/disk/by-id/", "/dev/nvme*", "/dev/md*", "/dev/mapper/")
# one path component: what device names, by-id links and image file names use
_PATH_PART_RE = re.compile(r"[A-Za-z0-9_.+:@=,][A-Za-z0-9_.+:@=,-]{0,254}")
_PREFIX_RE = re.compile(r"/(?:[A-Za-z0-9_.+:@=,-]+/)*(?:[A-Za-z0-9_.+:@=,-]*\*|)")
PATH_MAX = 4095
# The largest backing store nvmeofctl creates or accepts: 1 PiB (a file that large is a typo).
MAX_BACKING_SIZE = 1 << 50
MIN_BACKING_SIZE = 4096

# -- DH-HMAC-CHAP ---------------------------------------------------------------------------------------
DHCHAP_EXPECTED = "expected DHHC-1:<00-03>:<base64 of 32/48/64-byte key + CRC-32>:"
_DHHC_RE = re.compile(r"DHHC-1:(?P<hash>[0-9]{2}):(?P<b64>[A-Za-z0-9+/=]+):")
_KEY_LENGTHS = {"00": (32, 48, 64), "01": (32,), "02": (48,), "03": (64,)}

_SERIAL_MAX = 20

# -- fabric link ------------------------------------------------------------------------------------
# The L2 MTU of a fabric interface: IPv4's minimum (RFC 791: 576) up to 9216, the largest jumbo
# frame common switches and NICs all take (RoCE's path MTU is at most 4096 either way). One bound
# for the spec and for rdma_link, which sets it with `ip link set dev IF mtu N`.
MTU_MIN = 576
MTU_MAX = 9216


def _text(value):
    return value if isinstance(value, str) else None


def nqn_problem(value):
    """Why ``value`` is not an NQN nvmeofctl accepts, or None."""
    value = _text(value)
    if value is None:
        return "not a string"
    size = len(value.encode("utf-8"))
    if size > NQN_MAX_BYTES:
        return "NQN is %d bytes, the limit is %d" % (size, NQN_MAX_BYTES)
    if value.startswith(UUID_NQN_PREFIX):
        if not _UUID_RE.fullmatch(value[len(UUID_NQN_PREFIX):]):
            return "not a valid NQN: the part after '%s' must be a UUID (8-4-4-4-12 hex digits)" % UUID_NQN_PREFIX
        return None
    m = _NQN_RE.fullmatch(value)
    if not m:
        return ("not a valid NQN (%s; after the ':' only letters, digits and . _ : - + @ =, "
                "no '/', spaces or other symbols)" % NQN_EXPECTED)
    if not 1 <= int(m.group("month")) <= 12:
        return "not a valid NQN: month %s is not 01-12 (%s)" % (m.group("month"), NQN_EXPECTED)
    return None


def uuid_text_problem(value):
    value = _text(value)
    if value is None or not _UUID_RE.fullmatch(value):
        return "not a UUID (8-4-4-4-12 hex digits)"
    return None


def hostname_problem(value):
    """A DNS host name (RFC 1123 labels, dot-separated)."""
    value = _text(value)
    if value is None or len(value) > 253 or not _HOSTNAME_RE.fullmatch(value):
        return "not a valid host name (letters, digits and '-', dot-separated labels of 1-63)"
    return None


def ssh_address_problem(value):
    """An SSH address: an IPv4/IPv6 literal or a DNS name. Never starts with '-' (ssh option)."""
    value = _text(value)
    if value is None or not value:
        return "not a valid address: empty"
    if "%" in value:  # an IPv6 scope id may hold any text: not accepted
        return "not a valid address: IPv6 scope ids ('%') are not accepted"
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if hostname_problem(value) is None:
        return None
    return "not a valid address (an IPv4/IPv6 address or a DNS name; no '-' first, no spaces or symbols)"


def user_problem(value):
    value = _text(value)
    if value is None or not _USER_RE.fullmatch(value):
        return "not a valid user name (1-32 of letters, digits, '_', '.', '-'; starting with a letter or '_')"
    return None


def name_problem(value):
    value = _text(value)
    if value is None or not _NAME_RE.fullmatch(value):
        return "not a valid name (1-64 of letters, digits, '.', '_', '-'; starting with a letter or digit)"
    return None


def ifname_problem(value):
    value = _text(value)
    if value is None or not _IFNAME_RE.fullmatch(value):
        return "not a valid network interface name (1-15 of letters, digits, '.', '_', '@', '-'; no '/', ':' or spaces)"
    return None


def serial_problem(value):
    value = _text(value)
    if value is None or not 1 <= len(value) <= _SERIAL_MAX or not all(0x20 <= ord(c) <= 0x7E for c in value):
        return "serial must be 1-%d printable ASCII characters" % _SERIAL_MAX
    return None


def prefix_problem(value):
    """A backing-store prefix: an absolute directory ending in '/', or a path ending in '*'."""
    value = _text(value)
    if value is None or not _PREFIX_RE.fullmatch(value) or not value.endswith(("/", "*")) or value == "/":
        return "not a backing prefix (an absolute directory ending in '/', e.g. /srv/nvme/, or a device name " \
               "pattern ending in '*', e.g. /dev/sd*)"
    if value != "/" and ".." in value.split("/"):
        return "not a backing prefix: '..' is not allowed"
    return None


def _under_prefix(path, prefix):
    if prefix.endswith("*"):
        return path.startswith(prefix[:-1]) and len(path) > len(prefix) - 1
    return path.startswith(prefix) and len(path) > len(prefix)


def backing_path_problem(value, prefixes=DEFAULT_BACKING_PREFIXES):
    """A namespace's backing path: absolute, normalised, plain characters, under an allowed prefix."""
    value = _text(value)
    if value is None or not value.startswith("/"):
        return "must be an absolute path"
    if len(value) > PATH_MAX:
        return "path is longer than %d characters" % PATH_MAX
    parts = value.split("/")[1:]
    if any(p in ("", ".", "..") for p in parts) or posixpath.normpath(value) != value:
        return "must be a normalised path (no '..', '.', '//' or trailing '/')"
    for p in parts:
        if not _PATH_PART_RE.fullmatch(p):
            return ("path components may hold only letters, digits and _ . + : @ = , - "
                    "(not starting with '-'); no spaces, quotes, '$', ';' or other symbols")
    if not any(_under_prefix(value, pre) for pre in prefixes):
        return "not under an allowed backing prefix (%s; add one to backing_prefixes in the spec to allow it)" \
            % ", ".join(prefixes)
    return None


_SIGNATURE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def signature_problem(value):
    """A filesystem/RAID/partition-table type as blkid names it (TYPE / PTTYPE)."""
    value = _text(value)
    if value is None or not _SIGNATURE_RE.fullmatch(value):
        return ("not a signature type (1-32 of letters, digits, '_', '.', '-', as blkid names them: "
                "ext4, xfs, LVM2_member, linux_raid_member, gpt)")
    return None


def size_problem(value):
    """A backing file size in bytes: 4 KiB .. 1 PiB, a multiple of 4096."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "not a size in bytes"
    if value < MIN_BACKING_SIZE or value > MAX_BACKING_SIZE:
        return "size must be between 4096 bytes and 1 PiB (%d bytes)" % MAX_BACKING_SIZE
    if value % 4096:
        return "size must be a multiple of 4096 bytes"
    return None


def dhchap_secret_problem(value):
    """Why ``value`` is not a valid ``DHHC-1:NN:<base64>:`` secret, or None.

    The reason names the defect (length, CRC, hash id) but never any part of the value.
    """
    value = _text(value)
    if value is None:
        return "wrong format"
    m = _DHHC_RE.fullmatch(value)
    if not m:
        return "wrong format"
    hash_id = m.group("hash")
    if hash_id not in _KEY_LENGTHS:
        return "hash id %s is not one of 00, 01, 02, 03" % hash_id
    try:
        raw = base64.b64decode(m.group("b64"), validate=True)
    except (binascii.Error, ValueError):
        return "key part is not valid base64"
    key, crc = raw[:-4], raw[-4:]
    if len(raw) < 4 or len(key) not in (32, 48, 64):
        return "decoded key is %d bytes, expected 32, 48 or 64 plus a 4-byte CRC-32" % max(len(raw) - 4, 0)
    if len(key) not in _KEY_LENGTHS[hash_id]:
        return "hash id %s needs a %d-byte key, got %d bytes" % (hash_id, _KEY_LENGTHS[hash_id][0], len(key))
    if int.from_bytes(crc, "little") != zlib.crc32(key) & 0xFFFFFFFF:
        return "CRC-32 does not match the key"
    return None


def dhchap_secret_message(problem):
    return "not a valid DH-HMAC-CHAP secret: %s (%s)" % (problem, DHCHAP_EXPECTED)


def mtu_problem(value):
    """An interface MTU nvmeofctl sets: an integer in MTU_MIN..MTU_MAX."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "not an MTU (an integer)"
    if not MTU_MIN <= value <= MTU_MAX:
        return "MTU %d is outside %d..%d (the range rdma_link sets; jumbo frames are usually 9000)" \
            % (value, MTU_MIN, MTU_MAX)
    return None


def ip_problem(value):
    value = _text(value)
    if value is None or "%" in value:
        return "not an IP address"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "not an IP address"
    return None
