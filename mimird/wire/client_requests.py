"""Wire types of the clients that serve an agent's file and terminal requests
(``session.attach_client``, ``session.detach_client``, ``client_request.respond``).

Standard library and msgspec only: ``mimirctl`` imports this module.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from mimird.wire.types import Params, PositiveCount, Result, SessionRef


class ClientFs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which of the agent's file requests the client serves."""

    read: bool = False
    write: bool = False


class SessionAttachClientParams(Params):
    session: SessionRef
    #: Serve ``fs/read_text_file`` (``read``) and ``fs/write_text_file`` (``write``).
    fs: ClientFs | UnsetType = UNSET
    #: Serve ``terminal/*``.
    terminal: bool = False


class ClientAttachment(Result):
    session_id: str
    fs: ClientFs
    terminal: bool
    #: How long the client may take to answer a request ([supervision]
    #: client_request_timeout_s).
    timeout_s: float


class SessionDetachClientParams(Params):
    session: SessionRef


class ClientDetachment(Result):
    session_id: str
    #: False when this connection was not attached to the session (any more).
    detached: bool


class ClientRequestError(msgspec.Struct, kw_only=True):
    code: int
    message: Annotated[str, Meta(max_length=1 << 20)]
    data: Any = None


class ClientRequestRespondParams(Params):
    #: The ``id`` of the ``client_request`` notification answered.
    id: PositiveCount
    #: The method's result (ACP's, e.g. ``{"content": ...}``); or ``error``.
    result: Any | UnsetType = UNSET
    error: ClientRequestError | UnsetType = UNSET


class ClientRequestAnswered(Result):
    id: int
    #: The method the answered request was.
    method: str
