"""Identifiers that are unique and sort by creation time.

A ULID-like layout: 48 bits of milliseconds since the epoch, then 80 bits that
are random for the first id of a millisecond and incremented for the next ones,
so that ids made by one generator are strictly increasing. Encoded as 26
lower-case Crockford base32 characters (no i, l, o, u), which makes prefixes
easy to type.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Final

_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS: Final = 80
_RANDOM_MAX: Final = (1 << _RANDOM_BITS) - 1
ID_LENGTH: Final = 26


def _encode(value: int) -> str:
    chars = []
    for _ in range(ID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class IdGenerator:
    """Makes strictly increasing ids; safe to call from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self) -> str:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                # Same millisecond (or the wall clock stepped back): keep the
                # previous timestamp and count up, so order never inverts.
                now_ms = self._last_ms
                self._last_random += 1
                if self._last_random > _RANDOM_MAX:
                    now_ms += 1
                    self._last_random = secrets.randbits(_RANDOM_BITS - 1)
            else:
                # Leave headroom so that counting up within one ms cannot overflow.
                self._last_random = secrets.randbits(_RANDOM_BITS - 1)
            self._last_ms = now_ms
            return _encode((now_ms << _RANDOM_BITS) | self._last_random)


def is_id(text: str) -> bool:
    return len(text) == ID_LENGTH and all(c in _ALPHABET for c in text)
