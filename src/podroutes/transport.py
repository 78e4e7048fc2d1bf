"""The ways podroutes reaches a host's shell: the system OpenSSH client, or this machine.

I/O boundary. A transport turns a :class:`~podroutes.model.Host` into a
:class:`~podroutes.session.ShellSession`; the engine does not know which one it has.
SSH uses the system ``ssh`` binary so that the user's ``~/.ssh/config``, ``ProxyJump``,
agent and ``known_hosts`` work exactly as they do by hand. Host key checking is left to
the user's configuration; podroutes only adds ``BatchMode=yes`` (never prompt: a prompt
would hang a parallel run) and a connect timeout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from podroutes.errors import UsageError
from podroutes.model import Family, Host, SshTargetKind
from podroutes.session import ShellSession

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

    def __post_init__(self) -> None:
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
        return [*argv, "--", self.target(host), "/bin/sh"]

    def session(self, host: Host) -> ShellSession:
        return ShellSession(host.name, self.argv(host))

    def describe(self, host: Host) -> str:
        return f"ssh {host.ssh.user or self.user}@{self.target(host)}"


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
