"""A POSIX shell on a host, driven over one pipe: run many commands on one connection.

I/O (asyncio subprocesses). The transports start the process that gives the shell (``ssh
HOST /bin/sh``, ``/bin/sh``, ``ip netns exec NS /bin/sh``); this module frames commands
on its stdin and reads each command's stdout, stderr and exit status back, delimited by a
per-session random marker. Commands are argv lists quoted with :func:`shlex.quote`, so
nothing reaches the remote shell unquoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import shlex
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from podroutes.core.errors import HostCommandError, TransportError

_STREAM_LIMIT = 1 << 26  # a 10,000-route table is ~1 MB of JSON
_PIPE_SIZE = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    status: int
    stdout: str
    stderr: str

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True, slots=True)
class Command:
    """One command for the shell: an argv list (quoted for the shell here), or ``script``,
    a fixed shell text written by podroutes itself (never built from input)."""

    argv: tuple[str, ...] = ()
    input: str | None = None
    script: str | None = None

    def text(self) -> str:
        return self.script if self.script is not None else shlex.join(self.argv)


Pause = Callable[[], Awaitable[None]]


def _watch_children_by_pidfd() -> None:
    """On Python 3.11, have asyncio learn of our children's exits through a pidfd in the
    event loop instead of its default, a thread per child blocked in ``waitpid``.

    Starting a thread waits until it runs; with 31 ssh clients doing key exchanges on two
    cores that cost ~4 ms of the event loop per host, one host after another, before its
    ssh could even start. Python 3.12 watches by pidfd on its own (and deprecates
    choosing), so this does nothing there; nor outside the main thread (the watcher is
    process-wide and bound to one loop), nor where the kernel has no ``pidfd_open``.
    """
    if sys.version_info >= (3, 12) or threading.current_thread() is not threading.main_thread():
        return
    if not hasattr(os, "pidfd_open"):
        return
    loop = asyncio.get_running_loop()
    watcher = asyncio.get_child_watcher()
    if not isinstance(watcher, asyncio.PidfdChildWatcher):
        if watcher.__class__ is not asyncio.ThreadedChildWatcher:
            return  # someone chose another watcher: theirs to keep
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return  # a kernel without pidfds (before 5.3)
        watcher = asyncio.PidfdChildWatcher()
        asyncio.set_child_watcher(watcher)
    if getattr(watcher, "_loop", None) is not loop:
        watcher.attach_loop(loop)


class ShellSession:
    """One shell process on one host. Use as ``async with``; commands run in order.

    ``explain`` turns the transport's last words (ssh's stderr) into a message for a user.
    """

    def __init__(self, host: str, argv: Sequence[str],
                 explain: Callable[[str], str] | None = None) -> None:
        self.host = host
        self.argv = list(argv)
        self._explain = explain or (lambda text: text)
        self._nonce = "__podroutes_" + secrets.token_hex(8)
        self._ready = self._nonce + "_ready"
        self._synced = True
        self._proc: asyncio.subprocess.Process | None = None
        self._stdout: asyncio.StreamReader | None = None
        self._stdout_pipe: asyncio.ReadTransport | None = None

    async def __aenter__(self) -> ShellSession:
        # stdout is a pipe of our own making, as big as the system allows (1 MiB on
        # Linux): the host writes a whole 10,000-route table into it while podroutes
        # works on something else, instead of stopping at 64 KiB until it is read.
        _watch_children_by_pidfd()
        out_read, out_write = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(out_write, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=out_write,
                stderr=asyncio.subprocess.PIPE,
                limit=_STREAM_LIMIT,
            )
        except OSError as exc:
            os.close(out_read)
            raise TransportError(self.host, f"cannot start {self.argv[0]}: {exc}") from exc
        finally:
            os.close(out_write)
        stdout = self._stdout = asyncio.StreamReader(limit=_STREAM_LIMIT)
        # Writes complete only once everything is in the pipe: when run_many's pause runs,
        # the host has all the commands and works on them without this event loop.
        assert self._proc.stdin is not None
        self._proc.stdin.transport.set_write_buffer_limits(high=0)
        try:
            self._stdout_pipe, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(out_read, "rb", 0))
            # Synchronise: whatever the login prints (banners, rc files) comes before this
            # marker. It is not waited for here: the first commands go out right behind it
            # and the first read skips past it, so opening costs no round trip of its own.
            await self._write(f"printf '%s\\n' {self._ready}; printf '%s\\n' {self._ready} >&2\n")
            self._synced = False
        except BaseException:
            await self.close(kill=True)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On any error (a timeout, Ctrl-C) the shell and its ssh go at once.
        await self.close(kill=exc is not None)

    async def close(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        pipe, self._stdout_pipe = self._stdout_pipe, None
        try:
            await self._end(proc, kill)
        finally:
            if pipe is not None:
                pipe.close()

    async def _end(self, proc: asyncio.subprocess.Process | None, kill: bool) -> None:
        if proc is None or proc.returncode is not None:
            return
        if not kill:
            with contextlib.suppress(OSError, RuntimeError):
                assert proc.stdin is not None
                proc.stdin.write(b"exit 0\n")
                proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=2)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            # Reap it even if we are being cancelled: never leave an ssh child behind.
            await asyncio.shield(proc.wait())

    async def run(self, argv: Sequence[str], input: str | None = None,
                  pause: Pause | None = None) -> CommandResult:
        (result,) = await self.run_many([Command(tuple(argv), input)], pause)
        return result

    async def check(self, argv: Sequence[str], input: str | None = None) -> CommandResult:
        result = await self.run(argv, input)
        if result.status != 0:
            raise HostCommandError(self.host, result.command, result.status, result.stderr)
        return result

    async def run_many(self, commands: Sequence[Command],
                       pause: Pause | None = None) -> list[CommandResult]:
        """Send every command at once, then read the results: one round trip in all.

        ``pause`` runs between sending and reading: the host already has every command
        (a fault-injection point in tests; work to do while the host is busy).
        """
        script = "".join(self._frame(c) for c in commands)
        await self._write(script)
        if pause is not None:
            await pause()
        if not self._synced:
            await self._read_pair(f"{self._ready}\n", f"{self._ready}\n")
            self._synced = True
        results = []
        for c in commands:
            out, err = await self._read_pair(f"\n{self._nonce} ", f"\n{self._nonce}\n")
            status_line, _ = await self._read_pair("\n", None)
            results.append(CommandResult(c.argv or ("sh", "-c", c.text()), int(status_line),
                                         out, err))
        return results

    def _frame(self, c: Command) -> str:
        line = c.text()
        if c.script is not None:  # runs in this shell: may keep fds open (a lock)
            line += "\n"
        elif c.input is None:
            line += " </dev/null\n"
        else:
            body = c.input if c.input.endswith("\n") or not c.input else c.input + "\n"
            end = self._nonce + "_input"
            if end in body:
                raise ValueError("command input contains the session marker")
            line += f" <<'{end}'\n{body}{end}\n"
        n = self._nonce
        return line + f"__rc=$?; printf '\\n%s %s\\n' {n} \"$__rc\"; printf '\\n%s\\n' {n} >&2\n"

    async def _write(self, text: str) -> None:
        proc = self._require()
        assert proc.stdin is not None
        try:
            proc.stdin.write(text.encode())
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TransportError(self.host, await self._why_gone(b"")) from exc

    async def _read_pair(self, out_marker: str, err_marker: str | None) -> tuple[str, str]:
        """Read stdout up to ``out_marker`` and stderr up to ``err_marker``, together.

        If the shell dies first (ssh could not connect, the host went away), raise a
        :class:`TransportError` carrying the last thing the process said on stderr.
        """
        proc = self._require()
        assert proc.stderr is not None and self._stdout is not None
        reads = [self._stdout.readuntil(out_marker.encode())]
        if err_marker is not None:
            reads.append(proc.stderr.readuntil(err_marker.encode()))
        results = await asyncio.gather(*reads, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            said = b""
            if err_marker is not None and isinstance(results[1], asyncio.IncompleteReadError):
                said = results[1].partial
            raise TransportError(self.host, await self._why_gone(said)) from failures[0]
        out = results[0][: -len(out_marker)].decode(errors="replace")  # type: ignore[index]
        if err_marker is None:
            return out, ""
        err = results[1][: -len(err_marker)].decode(errors="replace")  # type: ignore[index]
        return out, err

    async def _why_gone(self, said: bytes) -> str:
        """The shell went away: say why, in the transport's own words (ssh's stderr)."""
        proc = self._require()
        rest = b""
        if proc.stderr is not None:
            with contextlib.suppress(Exception):
                rest = await asyncio.wait_for(proc.stderr.read(), timeout=1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=1)
        text = (said + rest).decode(errors="replace").strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        detail = self._explain("\n".join(lines)) if lines else "the connection closed"
        return f"{detail} (exit status {proc.returncode})"

    def _require(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise RuntimeError("session is not open")
        return self._proc
