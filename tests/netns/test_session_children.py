"""How a session's shell is watched: by a pidfd in the event loop, not a thread per child.

A plain local ``/bin/sh`` running ``true``; nothing here touches a network namespace or a
routing table. Python 3.11's default watcher starts one thread per child (and waits until
it runs: with 31 ssh clients busy on two cores that was ~4 ms of the event loop per host).
"""

from __future__ import annotations

import asyncio
import sys
import threading

from podroutes.remote.session import ShellSession


def test_a_session_starts_no_thread_to_watch_its_shell() -> None:
    async def run() -> tuple[int, int, list[int]]:
        before = threading.active_count()
        async with ShellSession("local", ["/bin/sh"]) as first, \
                ShellSession("local", ["/bin/sh"]) as second:
            statuses = [(await first.run(["true"])).status,
                        (await second.run(["false"])).status]
            during = threading.active_count()
        return before, during, statuses

    before, during, statuses = asyncio.run(run())
    assert statuses == [0, 1]
    assert during == before
    # and again in a new event loop (the CLI runs asyncio.run more than once)
    assert asyncio.run(run())[2] == [0, 1]
    if sys.version_info < (3, 12):
        assert isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)
