"""Identifiers that are unique and sort by creation time.

A ULID-like layout: 48 bits of milliseconds since the epoch, then 80 random bits.
Encoded as 26 lower-case Crockford base32 characters (no i, l, o, u), which makes
prefixes easy to type; the first 10 are the millisecond, and are what mimirctl shows.

Ids made by one generator are strictly increasing. An id asked for within the
millisecond of the one before takes the next millisecond, up to
:data:`MAX_AHEAD_MS` ahead of the clock, so that ids made together (a run's
members) still differ in their first 10 characters; past that, the millisecond is
kept and the random part counted up.
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
#: How far ahead of the clock a burst of ids may take their millisecond.
MAX_AHEAD_MS: Final = 1000


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
            if now_ms <= self._last_ms and self._last_ms - now_ms < MAX_AHEAD_MS:
                # Within the millisecond of the last id (or the clock stepped back a
                # little): the next millisecond, so that the prefixes differ.
                now_ms = self._last_ms + 1
                self._last_random = secrets.randbits(_RANDOM_BITS - 1)
            elif now_ms <= self._last_ms:
                # Far ahead already (or the clock stepped back far): keep the last
                # millisecond and count up, so that order never inverts.
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
