"""**Test double** for the engine's shell sessions: a scripted fake host, session and
transport that record every command sent and answer with canned results; nothing runs.

:class:`FakeHost` holds one host's main routing table as the entries ``ip -j route``
prints (``tests/data/ip-j-route-v4.json`` shows real ones) and answers the commands the
engine sends (:mod:`podroutes.remote.engine`): the uid script, ``command -v ip``, the lock
script, the two table reads, ``sudo -n true`` and ``[sudo -n] ip -force -batch -``.
A batch is applied line by line to the table, so what is read back after it is what the
batch left, as on a kernel. Anything else the engine sends fails the test (``AssertionError``):
the fake never guesses.

A simplified model of iproute2 6.1 and Linux, written for these tests, not checked against
every kernel behaviour:

- a route's slot is (destination, metric; IPv4 default 0, IPv6 1024); ``add`` into a
  taken slot prints ``RTNETLINK answers: File exists``, ``replace`` takes the slot over,
  ``del`` of nothing prints ``RTNETLINK answers: No such process``;
- a gateway must lie in one of the host's connected networks (a ``scope link`` entry, or
  an IPv6 device route), unless the line says ``onlink``: else ``Error: Nexthop has
  invalid gateway.`` (what Linux says);
- without root (``uid`` not 0 and no ``sudo -n`` prefix) every line prints
  ``RTNETLINK answers: Operation not permitted``;
- a failing line is followed by ``Command failed -:N`` (N counts from 1), the rest still
  run (``-force``), and the exit status is 1 if any line failed.

Scripted faults, beyond the model: ``reject`` (destination text -> the message ``ip``
prints for its line, which then fails), ``reverted`` (destinations whose lines ``ip``
accepts but someone else undoes before the read-back: the table keeps what it held),
``lock`` (``"held"``: ``flock -w`` times out; ``"no-netns"``: the namespace file cannot
be opened), ``sudo``/``sudo_finds_ip`` and ``hang`` (the host never answers).

Each ``run_many`` call is one round trip, kept in :attr:`FakeHost.trips`. Like
:class:`~podroutes.remote.session.ShellSession`, the fake takes all the commands, then
awaits ``pause`` (the engine's ``_Reader.prepare`` or a fail point), then answers them
in order.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from types import TracebackType
from typing import Any

from podroutes.core.model import PROTOCOL_NAMES, Host
from podroutes.remote.session import Command, CommandResult

Entry = dict[str, Any]

READ4 = ("ip", "-j", "-4", "route", "show", "table", "254")
READ6 = ("ip", "-j", "-6", "route", "show", "table", "254")
BATCH = ("ip", "-force", "-batch", "-")
SUDO = ("sudo", "-n")
_LOCK_RE = re.compile(r"\bflock -w (\d+) 9\b")
_NAMES = {number: name for name, number in PROTOCOL_NAMES.items()}
_BOOT = PROTOCOL_NAMES["boot"]


def _proto_text(protocol: int) -> str | None:
    """As ``ip -j`` prints it: a name from rt_protos, else the number; boot not at all."""
    return None if protocol == _BOOT else _NAMES.get(protocol, str(protocol))


def connected(dst: str, dev: str = "eth0") -> Entry:
    """The kernel's route to a network on ``dev`` (what an address on ``dev`` makes)."""
    if ip_network(dst).version == 4:
        return {"dst": dst, "dev": dev, "protocol": "kernel", "scope": "link", "flags": []}
    return {"dst": dst, "dev": dev, "protocol": "kernel", "metric": 256, "flags": [],
            "pref": "medium"}


def via(dst: str, gateway: str, protocol: int = 147, dev: str = "eth0",
        metric: int | None = None, onlink: bool = False) -> Entry:
    """A unicast route through ``gateway``, as ``ip -j route`` prints it."""
    entry: Entry = {"dst": dst, "gateway": gateway, "dev": dev}
    proto = _proto_text(protocol)
    if proto is not None:
        entry["protocol"] = proto
    v6 = ip_network(dst).version == 6
    if metric is not None or v6:
        entry["metric"] = metric if metric is not None else 1024
    entry["flags"] = ["onlink"] if onlink else []
    if v6:
        entry["pref"] = "medium"
    return entry


@dataclass
class Trip:
    """One round trip: the commands sent together, and whether a pause was awaited
    between sending them and reading their results."""

    commands: list[Command]
    paused: bool = False

    def argvs(self) -> list[tuple[str, ...]]:
        """Each command's argv; a script (uid, ``command -v``, lock) as ``("sh", kind)``."""
        return [c.argv if c.script is None else ("sh", _script_kind(c.script))
                for c in self.commands]


def _script_kind(script: str) -> str:
    if "/proc/self/status" in script and "id -u" in script:
        return "uid"
    if script == "command -v ip >/dev/null":
        return "has-ip"
    if "/proc/self/ns/net" in script and _LOCK_RE.search(script):
        return "lock"
    raise AssertionError(f"the fake host does not know this script: {script!r}")


@dataclass
class FakeHost:
    """One scripted host: its table and how it answers (see the module docstring)."""

    table: list[Entry] = field(default_factory=list)
    uid: int = 0
    has_ip: bool = True
    sudo: bool = True
    sudo_finds_ip: bool = True
    lock: str = "free"  # "free", "held" (by another apply) or "no-netns"
    reject: dict[str, str] = field(default_factory=dict)
    reverted: set[str] = field(default_factory=set)
    hang: bool = False
    trips: list[Trip] = field(default_factory=list)
    lock_waits: list[int] = field(default_factory=list)
    opened: int = 0
    closed: int = 0

    # --- what the tests look at -----------------------------------------------------------

    def sent(self) -> list[tuple[str, ...]]:
        """Every command sent, in order, over all round trips."""
        return [argv for trip in self.trips for argv in trip.argvs()]

    def batches(self) -> list[Command]:
        """Every ``ip -force -batch -`` sent (with or without ``sudo -n``)."""
        return [c for trip in self.trips for c in trip.commands
                if c.argv in (BATCH, (*SUDO, *BATCH))]

    def routes(self) -> list[tuple[str, str | None, str | None]]:
        """(dst, gateway, protocol text) of every entry, sorted: the table now."""
        return sorted((e["dst"], e.get("gateway"), e.get("protocol")) for e in self.table)

    # --- answering ------------------------------------------------------------------------

    def answer(self, c: Command) -> CommandResult:
        argv = c.argv or ("sh", "-c", c.text())
        if c.script is not None:
            kind = _script_kind(c.script)
            if kind == "uid":
                return CommandResult(argv, 0, f"{self.uid}\n", "")
            if kind == "has-ip":
                return CommandResult(argv, 0 if self.has_ip else 127, "", "")
            match = _LOCK_RE.search(c.script)
            assert match is not None
            self.lock_waits.append(int(match.group(1)))
            if self.lock == "held":
                return CommandResult(argv, 1, "", "")  # flock -w: times out silently
            if self.lock == "no-netns":
                return CommandResult(argv, 1, "", "cannot open /proc/self/ns/net to lock "
                                                  "this host's routing table\n")
            assert self.lock == "free", self.lock
            return CommandResult(argv, 0, "", "")
        if c.argv in (READ4, READ6):
            assert c.input is None
            version = 4 if c.argv == READ4 else 6
            mine = [e for e in self.table if self._version(e) == version]
            return CommandResult(argv, 0, json.dumps(mine, separators=(",", ":")) + "\n", "")
        if c.argv == (*SUDO, "true"):
            return (CommandResult(argv, 0, "", "") if self.sudo else
                    CommandResult(argv, 1, "", "sudo: a password is required\n"))
        if c.argv == BATCH:
            return self._batch(argv, c.input, root=self.uid == 0)
        if c.argv == (*SUDO, *BATCH):
            if not self.sudo:
                return CommandResult(argv, 1, "", "sudo: a password is required\n")
            if not self.sudo_finds_ip:
                return CommandResult(argv, 1, "", "sudo: ip: command not found\n")
            return self._batch(argv, c.input, root=True)
        raise AssertionError(f"the fake host does not know this command: {c.argv!r}")

    def _batch(self, argv: tuple[str, ...], text: str | None, root: bool) -> CommandResult:
        assert text is not None, "ip -batch - without input"
        errors: list[str] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            error = self._apply(line, root)
            if error is not None:
                errors += [error, f"Command failed -:{number}"]
        stderr = "".join(e + "\n" for e in errors)
        return CommandResult(argv, 1 if errors else 0, "", stderr)

    @staticmethod
    def _version(entry: Entry) -> int:
        dst = entry["dst"]
        if dst == "default":
            return 6 if ":" in entry.get("gateway", "") else 4
        return ip_network(dst).version

    def _slot(self, entry: Entry) -> tuple[str, int]:
        default = 0 if self._version(entry) == 4 else 1024
        metric = entry.get("metric", default)
        return entry["dst"], int(metric)

    def _apply(self, line: str, root: bool) -> str | None:
        """One batch line on the table; the message ``ip`` prints if it fails."""
        words = line.split()
        assert words[:1] == ["route"] and len(words) >= 3, f"not a route line: {line!r}"
        verb, dst = words[1], words[2]
        ip_network(dst)  # the engine only sends canonical networks
        options: dict[str, str] = {}
        onlink, rest = False, words[3:]
        while rest:
            word = rest.pop(0)
            if word == "onlink":
                onlink = True
            elif word in ("via", "proto", "metric", "dev") and rest:
                options[word] = rest.pop(0)
            else:
                raise AssertionError(f"the fake host does not model {word!r} in {line!r}")
        if not root:
            return "RTNETLINK answers: Operation not permitted"
        if dst in self.reject:
            return self.reject[dst]
        version = ip_network(dst).version
        metric = int(options.get("metric", 0 if version == 4 else 1024))
        slot = [e for e in self.table if self._slot(e) == (dst, metric)]
        if verb == "del":
            match = [e for e in slot
                     if options.get("via") in (None, e.get("gateway"))
                     and options.get("proto") in (None, e.get("protocol"))]
            if not match:
                return "RTNETLINK answers: No such process"
            if dst not in self.reverted:
                self.table.remove(match[0])
            return None
        assert verb in ("add", "replace"), f"unknown verb in {line!r}"
        gateway = options.get("via")
        dev = options.get("dev")
        if gateway is not None and not onlink:
            dev = self._on_link(gateway)
            if dev is None:
                return "Error: Nexthop has invalid gateway."
        if verb == "add" and slot:
            return "RTNETLINK answers: File exists"
        if dst in self.reverted:
            return None
        for e in slot:
            self.table.remove(e)
        assert gateway is not None, "the fake host only models routes via a gateway"
        self.table.append(via(dst, gateway, int(options.get("proto", _BOOT)), dev or "eth0",
                              metric if ("metric" in options or version == 6) else None,
                              onlink))
        return None

    def _on_link(self, gateway: str) -> str | None:
        """The device of a connected network holding ``gateway``, if any."""
        address = ip_address(gateway)
        for e in self.table:
            direct = "gateway" not in e and "nexthops" not in e and "dev" in e \
                and e.get("type", "unicast") == "unicast" and e["dst"] != "default"
            if direct and (e.get("scope") == "link" or self._version(e) == 6):
                network = ip_network(e["dst"])
                if network.version == address.version and address in network:
                    return str(e["dev"])
        return None


class FakeSession:
    """The session the engine gets for one host: records and answers, one round trip
    per ``run_many``."""

    def __init__(self, host: str, fake: FakeHost) -> None:
        self.host = host
        self.fake = fake

    async def __aenter__(self) -> FakeSession:
        self.fake.opened += 1
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.fake.closed += 1

    async def run(self, argv: Sequence[str], input: str | None = None,
                  pause: Callable[[], Awaitable[None]] | None = None) -> CommandResult:
        (result,) = await self.run_many([Command(tuple(argv), input)], pause)
        return result

    async def run_many(self, commands: Sequence[Command],
                       pause: Callable[[], Awaitable[None]] | None = None,
                       ) -> list[CommandResult]:
        trip = Trip(list(commands))
        self.fake.trips.append(trip)
        if pause is not None:
            await pause()
            trip.paused = True
        if self.fake.hang:
            await asyncio.Event().wait()  # never answers; the engine's timeout ends it
        return [self.fake.answer(c) for c in commands]


class FakeTransport:
    """Hands out :class:`FakeSession` s for the scripted hosts, by name; records which
    hosts a session was opened for, in order."""

    def __init__(self, hosts: dict[str, FakeHost]) -> None:
        self.hosts = hosts
        self.opened: list[str] = []

    def session(self, host: Host) -> FakeSession:
        self.opened.append(host.name)
        return FakeSession(host.name, self.hosts[host.name])

    def describe(self, host: Host) -> str:
        return f"fake host {host.name}"

