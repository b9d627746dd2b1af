"""A method table that lets each handler be registered beside its code:

    _method = MethodTable()

    class SessionService:
        @_method("session.get", params=SessionRefParams, result=Session, summary="...")
        async def get(self, ctx, params): ...

        def register(self, registry):
            _method.register(self, registry)

The table is explicit (names are written out, never derived from attributes).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar

from mimird.rpc.registry import Registry

F = TypeVar("F", bound=Callable[..., Any])


class MethodTable:
    def __init__(self) -> None:
        self._entries: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []

    def __call__(self, name: str, **spec: Any) -> Callable[[F], F]:
        """Mark an ``async def handler(self, ctx, params)`` as the method ``name``
        (``spec``: the keywords of :meth:`Registry.add`)."""

        def mark(handler: F) -> F:
            self._entries.append((name, handler, spec))
            return handler

        return mark

    def register(self, service: object, registry: Registry) -> None:
        """Add every marked method, bound to ``service``, to ``registry``."""
        for name, handler, spec in self._entries:
            registry.add(name, types.MethodType(handler, service), **spec)
