"""How deeply a free-form JSON param may nest (checked by every method's params,
:class:`mimird.wire.types.Params`). Standard library only."""

from __future__ import annotations

from typing import Any, Final

#: How deeply a free-form JSON param (a config, content blocks) may nest, the param
#: itself counted: far more than any config or ACP content block needs, and far less
#: than the interpreter's recursion limit, which code walking the value would reach.
MAX_JSON_DEPTH: Final = 64


def depth_problem(value: Any) -> str | None:
    """Why ``value`` nests too deeply, or None; iterative, so any depth is safe to check."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"nests objects or arrays more than {MAX_JSON_DEPTH} levels deep"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None
