"""Wire types shared by mimird and its clients.

Everything under ``mimird.wire`` imports nothing but msgspec and the standard
library, so that ``mimirctl`` can use the same types the server validates
without importing the daemon.
"""

from mimird.wire.errors import ErrorCode, ErrorData
from mimird.wire.protocol import (
    PROTOCOL_VERSION,
    ErrorObject,
    Request,
    Response,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ErrorCode",
    "ErrorData",
    "ErrorObject",
    "Request",
    "Response",
]
