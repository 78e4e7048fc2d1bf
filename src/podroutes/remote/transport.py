"""The ways podroutes reaches a host's shell: the system OpenSSH client, or this machine.

I/O boundary. A transport turns a :class:`~podroutes.core.model.Host` into a
:class:`~podroutes.remote.session.ShellSession`; the engine does not know which one it has.
SSH uses the system ``ssh`` binary so that the user's ``~/.ssh/config``, ``ProxyJump``,
agent and ``known_hosts`` work exactly as they do by hand. Host key checking is left to
the user's configuration; podroutes only adds ``BatchMode=yes`` (never prompt: a prompt
would hang a parallel run), a connect timeout, and, unless ``--ssh-persist 0`` or the
user's configuration decides, connection reuse (:mod:`podroutes.remote.multiplex`).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from podroutes.core.errors import PodroutesError, UsageError
from podroutes.core.model import USER_RE, Family, Host, SshTargetKind
from podroutes.remote.multiplex import Multiplex
from podroutes.remote.session import ShellSession

T = TypeVar("T")
_SSH_OPTION_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9]*(=| )[^\n\r\x00]*\Z")


class Transport(Protocol):
    def session(self, host: Host) -> ShellSession: ...

    def describe(self, host: Host) -> str: ...


@dataclass(frozen=True)
class SshTransport:
    """Reach each host with ``ssh [options] TARGET /bin/sh``."""

    user: str = "root"
    target_kind: SshTargetKind = SshTargetKind.ADDRESS
    config_file: str | None = None
    options: Sequence[str] = field(default_factory=tuple)
    connect_timeout: float = 10.0
    ssh_binary: str = "ssh"
    multiplex: Multiplex | None = None  # connection reuse; None: a connection per command

    def __post_init__(self) -> None:
        # Every flag is checked before anything connects: nothing that starts with '-'
        # reaches ssh as a user, and a config file that is not there fails once, not per host.
        if not USER_RE.match(self.user):
            raise UsageError(f"--ssh-user {self.user!r}: not a login name (lowercase letters, "
                             "digits, '_', '.', '-', not starting with '-')")
        if self.config_file is not None and not os.access(self.config_file, os.R_OK):
            raise UsageError(f"--ssh-config {self.config_file}: no such readable file")
        for option in self.options:
            if not _SSH_OPTION_RE.match(option):
                raise UsageError(f"--ssh-option {option!r}: expected Key=Value")

    def target(self, host: Host) -> str:
        if host.ssh.target:
            return host.ssh.target
        if self.target_kind is SshTargetKind.HOSTNAME:
            return host.name
        if self.target_kind is SshTargetKind.FQDN:
            if not host.fqdn:
                raise UsageError(f"--ssh-target fqdn: host {host.name} has no FQDN")
            return host.fqdn
        address = host.address(Family.V4) or host.addresses[0]
        return str(address)

    def argv(self, host: Host) -> list[str]:
        argv = [self.ssh_binary, "-T", "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={max(1, int(self.connect_timeout))}"]
        if self.config_file:
            argv += ["-F", self.config_file]
        argv += ["-l", host.ssh.user or self.user]
        if host.ssh.port:
            argv += ["-p", str(host.ssh.port)]
        for option in self.options:
            argv += ["-o", option]
        if self.multiplex is not None:
            argv += self.multiplex.options()
        return [*argv, "--", self.target(host), "/bin/sh"]

    def session(self, host: Host) -> ShellSession:
        return ShellSession(host.name, self.argv(host), explain=explain_ssh_failure)

    def describe(self, host: Host) -> str:
        return f"ssh {host.ssh.user or self.user}@{self.target(host)}"


#: ssh's own words for each way a connection fails, and what they mean for the user.
_SSH_FAILURES: tuple[tuple[str, str], ...] = (
    ("host identification has changed", "host key mismatch: the host's key is not the one in "
     "known_hosts (a reinstalled host, or someone in between); check it, then update "
     "known_hosts (ssh-keygen -R)"),
    ("host key verification failed", "host key verification failed: the host's key is not "
     "known or does not match known_hosts; add the right key to known_hosts"),
    ("permission denied (", "authentication failed: the key or user was refused"),
    ("connection refused", "connection refused: nothing listens on the ssh port (is sshd "
     "running?)"),
    ("no route to host", "host unreachable: no route to host (is it up, is the address right?)"),
    ("network is unreachable", "host unreachable: network is unreachable from here"),
    ("connection timed out", "host unreachable: the connection timed out"),
    ("could not resolve hostname", "name not resolved: ssh could not resolve the host name"),
    ("mux_client", "the shared ssh connection to this host (its ControlMaster) went away "
     "or failed during the run; the next run opens a new one"),
    ("control socket", "the shared ssh connection to this host (its ControlMaster) failed; "
     "close it (ssh -O exit -S SOCKET) or use --ssh-persist 0"),
)


def explain_ssh_failure(text: str) -> str:
    """The user-facing reason for a failed ssh connection, with ssh's own last line."""
    lowered = text.lower()
    said = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), text)
    for needle, meaning in _SSH_FAILURES:
        if needle in lowered:
            return f"{meaning} [ssh: {said}]"
    return said


@dataclass(frozen=True)
class LocalTransport:
    """This machine's own shell (``--local``), optionally inside a named network namespace."""

    netns: str | None = None

    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, "/bin/sh"] if self.netns else ["/bin/sh"]

    def session(self, host: Host) -> ShellSession:
        return ShellSession(host.name, self.argv())

    def describe(self, host: Host) -> str:
        return f"local shell{' in netns ' + self.netns if self.netns else ''}"


def timeout_message(transport: Transport, timeout: float) -> str:
    """Why a host took longer than ``--timeout``, with the shared connection as a
    suspect when there is one."""
    said = f"timed out after {timeout:g}s (--timeout): the host or its sshd hangs"
    reuse = transport.multiplex if isinstance(transport, SshTransport) else None
    if reuse is None:
        return said
    return (f"{said}, or the shared ssh connection to it does (a master in "
            f"{reuse.directory}: close it with ssh -O exit -S SOCKET, or run with "
            "--ssh-persist 0)")


async def each_host(transport: Transport, hosts: Iterable[Host],
                    work: Callable[[ShellSession, Host], Awaitable[T]],
                    parallel: int, timeout: float) -> tuple[dict[str, T], dict[str, str]]:
    """Run ``work`` in one session per host, in parallel under ``parallel``, each host
    under ``timeout``: (results, errors) by host name; a failing host never stops the
    others. Used by doctor, trace and persist (apply has its own, in the engine)."""
    gate = asyncio.Semaphore(max(1, parallel))
    results: dict[str, T] = {}
    errors: dict[str, str] = {}

    async def one(host: Host) -> None:
        async with gate:
            try:
                async with asyncio.timeout(timeout), transport.session(host) as session:
                    results[host.name] = await work(session, host)
            except TimeoutError:
                errors[host.name] = timeout_message(transport, timeout)
            except PodroutesError as exc:
                errors[host.name] = str(exc).removeprefix(f"{host.name}: ")

    await asyncio.gather(*(one(h) for h in hosts))
    return results, errors
