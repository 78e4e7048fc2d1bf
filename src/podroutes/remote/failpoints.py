"""Named pause points for the fault tests (crash safety): ``PODROUTES_FAILPOINT``.

I/O. With ``PODROUTES_FAILPOINT=POINT:PATH`` set, the engine, on reaching POINT for a
host, creates ``PATH.reached`` and ``PATH.HOST.reached`` and waits while ``PATH``
exists. A test creates PATH, starts ``podroutes apply``, waits for the marker and then
kills the process (or presses Ctrl-C, or races it), which is how "kill -9 at any point"
is made repeatable. Unset (always, outside tests), every call returns at once. Points:
``connect`` (before ssh starts), ``read`` (the host has answered the first round trip:
lock held, tables read), ``batch`` (the batch is sent, its result not yet read),
``verify`` (the batch is done and the tables read back, the outcome not yet worked
out). The batch and the read-back go in one round trip.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from podroutes.remote.session import Pause

POINTS = ("connect", "read", "batch", "verify")


def pause_for(point: str, host: str) -> Pause | None:
    """The pause coroutine for ``point`` if the environment asks for one, else ``None``."""
    spec = os.environ.get("PODROUTES_FAILPOINT")
    if not spec:
        return None
    name, _, path = spec.partition(":")
    if name != point or not path:
        return None

    async def pause() -> None:
        Path(f"{path}.{host}.reached").touch()
        Path(path + ".reached").touch()
        while Path(path).exists():
            await asyncio.sleep(0.01)

    return pause


async def reach(point: str, host: str) -> None:
    pause = pause_for(point, host)
    if pause is not None:
        await pause()
