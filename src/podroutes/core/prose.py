"""Prose laid out for a terminal: wrapped at spaces, with a hanging indent, never inside
a quoted command.

Pure. Explanations ("why: ...") can run to 200 characters; a terminal that breaks them
itself cuts words in half. :func:`wrap` breaks only at spaces outside quotes (``'...'``
and backquotes), so a quoted command such as ``'net.ipv4.ip_forward = 1'`` stays on one
line and can be copied (a quote opens after a space or at the start, so the apostrophe of
"pods'" is not one). Commands printed on their own line are not passed through here:
they are never wrapped.
"""

from __future__ import annotations

import re
import textwrap

_QUOTED = re.compile(r"(?<!\w)'[^']*'(?!\w)|`[^`]*`")
_KEEP = "\u00a0"  # a space inside a quote, while wrapping


def wrap(text: str, width: int | None, first: str = "", rest: str | None = None) -> list[str]:
    """``text`` as lines of at most ``width`` characters (a longer unbreakable piece gets
    its own line), the first starting with ``first`` and the others with ``rest`` (as
    many spaces as ``first`` by default). ``width`` ``None``: one line."""
    rest = " " * len(first) if rest is None else rest
    if width is None or len(first) + len(text) <= width:
        return [first + text]
    protected = _QUOTED.sub(lambda m: m.group(0).replace(" ", _KEEP), text)
    lines = textwrap.wrap(protected, width=max(width, len(first) + 20), initial_indent=first,
                          subsequent_indent=rest, break_long_words=False,
                          break_on_hyphens=False)
    return [line.replace(_KEEP, " ") for line in lines] or [first]
