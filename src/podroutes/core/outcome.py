"""What apply and status decide about one host, and the values they return. Pure.

:mod:`podroutes.remote.engine` reads each host, sends the batch and reads back; the
decisions it takes between those steps live here so they are tested without a host:
which changes cannot work because their gateway is off-link (:class:`OnLink`), which
batch lines failed (:func:`failed_lines`), and what became of every change
(:func:`results`). :class:`HostOutcome` is what the CLI and the agent receive.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from podroutes.core.diff import Action, Change, HostDiff, RouteState
from podroutes.core.errors import PodroutesError
from podroutes.core.model import Host, IPNetwork, PlannedRoute, Route
from podroutes.core.paths import PathFacts, PathIssue, judge_paths

_FAILED_LINE = re.compile(r"^Command failed -:(\d+)\s*$")


class HostState(enum.StrEnum):
    """Where a host's run is; the CLI reports these when interrupted."""

    PENDING = "never started"
    RUNNING = "interrupted"
    DONE = "finished"


class ChangeOutcome(enum.StrEnum):
    APPLIED = "applied"
    FAILED = "failed"
    WITHHELD = "withheld"


@dataclass(frozen=True, slots=True)
class ChangeResult:
    change: Change
    outcome: ChangeOutcome
    message: str = ""


@dataclass(slots=True)
class HostOutcome:
    """What happened on one host. ``before`` is the diff that was (or would be) applied;
    ``after`` the diff of the table read back; ``failure`` the transport or command
    error that stopped the host, with its type (``error`` is its message)."""

    host: Host
    before: HostDiff | None = None
    after: HostDiff | None = None
    failure: PodroutesError | None = None
    results: list[ChangeResult] = field(default_factory=list)
    applied: bool = False
    #: How the kernel's path differs from the plan, for destinations whose own entry is
    #: right (status judges paths; apply does not).
    paths: tuple[PathIssue, ...] = ()
    #: What could not be read for the path verdict (it then rests on the model alone).
    path_notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # Short: asyncio repr()s a finished task's result (see Inventory.__repr__).
        return (f"HostOutcome(host={self.host.name!r}, before={self.before!r}, "
                f"after={self.after!r}, error={self.error!r}, applied={self.applied}, "
                f"<{len(self.results)} results>)")

    @property
    def error(self) -> str | None:
        """The failure's message without the host's name (the output names the host)."""
        if self.failure is None:
            return None
        return str(self.failure).removeprefix(f"{self.host.name}: ")

    @property
    def converged(self) -> bool:
        final = self.after or self.before
        return self.error is None and final is not None and final.in_sync and not self.paths

    @property
    def failed(self) -> list[ChangeResult]:
        return [r for r in self.results if r.outcome is not ChangeOutcome.APPLIED]


def connected_networks(routes: Sequence[Route]) -> list[tuple[IPNetwork, str | None]]:
    """The networks a host reaches without a gateway (its link-scope routes)."""
    return [(r.dst, r.dev) for r in routes
            if r.gateway is None and not r.nexthops and r.type == "unicast"
            and r.scope == "link" and r.dst.prefixlen > 0]


class OnLink:
    """Which gateways a host reaches directly: its connected networks as integer ranges
    (``gateway in network`` through ``ipaddress`` costs ~1 µs, 10,000 times per apply)."""

    def __init__(self, connected: list[tuple[IPNetwork, str | None]]) -> None:
        self.connected = connected
        self._ranges = [(n.version, int(n.network_address), int(n.broadcast_address))
                        for n, _ in connected]

    def reason(self, change: Change, host: str) -> str | None:
        """Why a change's gateway cannot work from this host, or ``None`` if it can."""
        gateway = change.gateway
        if change.action is Action.REMOVE or gateway is None:
            return None
        if change.observed is not None and change.observed.onlink:
            return None
        version, value = gateway.version, int(gateway)
        for v, low, high in self._ranges:
            if v == version and low <= value <= high:
                return None
        nets = ", ".join(f"{n} on {d}" for n, d in self.connected if n.version == version)
        return (f"gateway {gateway} is not on any network {host} is directly connected "
                f"to ({nets or 'none of its family'}): routing via a node only works between "
                "nodes on the same L2 segment; put them on one segment, add an on-link route, "
                "or use an overlay (VXLAN, WireGuard)")


def failed_lines(changes: Sequence[Change], stderr: str) -> dict[int, str]:
    """``ip -batch``'s "Command failed -:N" mapped to the 0-based change index, with the
    message ip printed just before it."""
    failed: dict[int, str] = {}
    previous: list[str] = []
    for line in stderr.splitlines():
        match = _FAILED_LINE.match(line)
        if match and 1 <= int(match.group(1)) <= len(changes):
            failed[int(match.group(1)) - 1] = "; ".join(previous) or "failed"
            previous = []
        elif line.strip():
            previous.append(line.strip())
    return failed


def results(changes: Sequence[Change], withheld: dict[int, str], sent: Sequence[Change],
             failed: dict[int, str], after: HostDiff) -> list[ChangeResult]:
    """Every change's outcome; a change that reported success but is not in the table
    read back counts as failed."""
    # Only sent changes are looked up here: a conflict left alone has no change, so a
    # conflict read back for a sent (forced) change means the override did not stick.
    drifted = {s.dst for s in after.statuses if s.state.is_drift}
    sent_index = {id(c): i for i, c in enumerate(sent)}
    out = []
    for i, change in enumerate(changes):
        if i in withheld:
            out.append(ChangeResult(change, ChangeOutcome.WITHHELD, withheld[i]))
        elif (j := sent_index[id(change)]) in failed:
            out.append(ChangeResult(change, ChangeOutcome.FAILED, failed[j]))
        elif drifted and change.dst in drifted:  # (hashing a network costs ~1 µs)
            out.append(ChangeResult(change, ChangeOutcome.FAILED,
                                    "not in the table when read back"))
        else:
            out.append(ChangeResult(change, ChangeOutcome.APPLIED))
    return out


def path_issues(host: Host, desired: Sequence[PlannedRoute], observed: Sequence[Route],
                facts: PathFacts, before: HostDiff, bridge: str | None = None,
                ) -> list[PathIssue]:
    """The path issues status and doctor report: those of destinations whose entry the
    diff finds right (a missing or wrong entry is already reported as such), and of the
    own pod CIDRs."""
    entry_drift = {s.dst for s in before.statuses if s.state.is_drift}
    return [i for i in judge_paths(host, desired, observed, facts, bridge)
            if i.own or i.dst not in entry_drift]


def counts(d: HostDiff) -> dict[str, int]:
    """Per-action counts of a diff, plus unchanged routes and conflicts left alone."""
    out = {str(a): d.count(a) for a in Action}
    out["unchanged"] = d.unchanged
    out["conflicts"] = sum(1 for s in d.statuses if s.state is RouteState.CONFLICT)
    return out
