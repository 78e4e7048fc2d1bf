"""The shell session on this machine's own ``/bin/sh`` (no network is touched): big
outputs, and what it leaves behind."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from podroutes.core.model import Host
from podroutes.remote.session import Command, ShellSession
from podroutes.remote.transport import LocalTransport

HOST = Host("here", ())


def test_the_host_writes_a_whole_table_while_podroutes_is_busy(tmp_path: Path) -> None:
    # 600 KB on stdout, then a file, while the pause keeps the event loop busy without
    # reading (as building Known does): with the 64 KiB a pipe holds by default, the
    # command would stop at the first 64 KiB and the file would never come.
    done = tmp_path / "done"
    script = f"head -c 600000 /dev/zero | tr '\\0' x; : > {done}"

    async def run() -> tuple[bool, str]:
        async with LocalTransport().session(HOST) as session:
            seen = False

            async def pause() -> None:  # never awaits: nothing reads meanwhile
                nonlocal seen
                for _ in range(1000):  # up to 10 s; the file comes in milliseconds
                    if done.exists():
                        seen = True
                        return
                    time.sleep(0.01)

            (result,) = await session.run_many([Command(script=script)], pause)
            return seen, result.stdout

    seen, out = asyncio.run(run())
    assert seen, "the command could not finish before podroutes read its output"
    assert out == "x" * 600_000


def test_a_session_leaves_no_file_descriptor_or_process_behind() -> None:
    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    async def run(session: ShellSession) -> int:
        async with session:
            result = await session.run(["sh", "-c", "echo $$"])
            return int(result.stdout)

    asyncio.run(run(LocalTransport().session(HOST)))  # the event loop's own, once
    before = fds()
    session = LocalTransport().session(HOST)  # kept: nothing is left for the GC to close
    pid = asyncio.run(run(session))
    assert fds() == before
    assert not Path(f"/proc/{pid}").exists()
