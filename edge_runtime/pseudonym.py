"""Keyed pseudonyms for device ids: what every topic, payload and log line carries instead.

``HMAC-SHA256(secret, "<period>:<device id>")``, truncated to 16 hex digits (64 bits: no
collision to fear among a gateway's wearers). Without the gateway's secret nobody can map a
pseudonym back to a device id, or test a guessed id. With rotation the period number changes
every ``rotation_s`` seconds (UTC-aligned), so streams from two periods cannot be linked by id.
The secret is 32 random bytes in a file readable only by the runtime's user; it is created on
first start when missing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Callable

from edge_runtime.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "s-"
_HEX_DIGITS = 16
_SECRET_BYTES = 32


def load_or_create_secret(path: str | Path) -> bytes:
    """Read the pseudonym key (hex in a text file); create it with mode 0600 if it is missing."""
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(_SECRET_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key.hex() + "\n")
        log.info("created a new pseudonym secret in %s (keep it: a new one gives every device a new pseudonym)", path)
        return key
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a pseudonym secret ({exc}); it must hold hex digits, "
                          "or delete it to make a new one") from None
    if len(key) < 16:
        raise ConfigError(f"{path}: the pseudonym secret has {len(key)} bytes, at least 16 are needed; "
                          "delete it to make a new one")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    return key


class Pseudonymiser:
    """Maps a device id to its pseudonym for the current rotation period."""

    def __init__(self, secret: bytes, rotation_s: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ConfigError(f"the pseudonym secret must have at least 16 bytes, got {len(secret)}")
        if rotation_s < 0:
            raise ConfigError(f"pseudonym rotation must be >= 0 seconds (0 = never), got {rotation_s}")
        self._secret = bytes(secret)
        self._rotation_s = float(rotation_s)
        self._clock = clock
        # The period and the pseudonyms made in it, as one attribute so that no reader sees one
        # period's number with another's pseudonyms. Asked for at every block of every device:
        # one lookup by id (no key tuple), and without rotation not even the clock.
        self._current: tuple[int, dict[str, str]] = (0, {})

    def period(self) -> int:
        return int(self._clock() // self._rotation_s) if self._rotation_s else 0

    def __call__(self, device_id: str) -> str:
        period, cache = self._current
        if self._rotation_s:
            now = int(self._clock() // self._rotation_s)
            if now != period:  # a new period: the old pseudonyms are never needed again
                period, cache = self._current = (now, {})
        found = cache.get(device_id)
        if found is None:
            if len(cache) > 4096:  # bounded: departed devices fall out
                cache.clear()
            mac = hmac.new(self._secret, f"{period}:{device_id}".encode("utf-8"), hashlib.sha256)
            found = cache[device_id] = PREFIX + mac.hexdigest()[:_HEX_DIGITS]
        return found
