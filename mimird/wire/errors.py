"""``error.data``, the structured part of every JSON-RPC error Mimir sends.

The codes themselves live in :mod:`mimird.wire.codes`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mimird.wire.codes import ERROR_DESCRIPTIONS, ErrorCode

__all__ = ["ERROR_DESCRIPTIONS", "ErrorCode", "ErrorData"]


class ErrorData(msgspec.Struct, omit_defaults=True, kw_only=True):
    """``error.data``: what kind of error, and what it was about."""

    kind: str
    field: str | None = None
    id: str | None = None
    detail: dict[str, Any] | None = None
