"""Read a command's JSON output (``ip -j ...``): the one place that turns bad JSON into
a :class:`~podroutes.core.errors.ParseError` naming the command.

Pure. Used by the ``ip -j route`` / ``ip -j addr`` parsers and doctor's fact parsers.
"""

from __future__ import annotations

import json
from typing import Any

from podroutes.core.errors import ParseError


def json_list(text: str, what: str) -> list[Any]:
    """The JSON list ``what`` printed; empty output is an empty list."""
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise ParseError(f"`{what}` printed something that is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ParseError(f"`{what}` printed JSON that is not a list")
    return data
