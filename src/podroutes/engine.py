"""apply and status across hosts: read each table, diff, send one batch, verify.

I/O orchestration over a :class:`~podroutes.transport.Transport`. Per host, one session
(one SSH connection): read both families' tables in one round trip, diff purely, send a
single ``ip -force -batch -``, read back and diff again to verify. Hosts run in parallel
under a bound; a failing host never stops the others. Returns values; never prints.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from podroutes.diff import Action, Change, HostDiff, RouteState, diff
from podroutes.errors import HostCommandError, PodroutesError
from podroutes.iproute import parse_routes, read_routes_argv
from podroutes.model import Family, Host, Route
from podroutes.plan import RoutePlan
from podroutes.session import Command, ShellSession
from podroutes.transport import Transport

_FAILED_LINE = re.compile(r"^Command failed -:(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class FailedChange:
    change: Change
    message: str


@dataclass(slots=True)
class HostOutcome:
    """What happened on one host. ``before`` is the diff that was (or would be) applied;
    ``after`` the diff of the table read back; ``error`` a transport or command failure."""

    host: Host
    before: HostDiff | None = None
    after: HostDiff | None = None
    error: str | None = None
    failed: list[FailedChange] = field(default_factory=list)
    applied: bool = False

    @property
    def converged(self) -> bool:
        final = self.after or self.before
        return self.error is None and final is not None and final.in_sync


async def read_table(session: ShellSession) -> list[Route]:
    """Both families' main tables, in one round trip."""
    results = await session.run_many([Command(tuple(read_routes_argv(f))) for f in Family])
    routes: list[Route] = []
    for family, result in zip(Family, results, strict=True):
        if result.status != 0:
            if family is Family.V6 and "not supported" in result.stderr.lower():
                continue  # IPv6 disabled on this host: nothing of that family to manage
            raise HostCommandError(session.host, result.command, result.status, result.stderr)
        routes += parse_routes(result.stdout, family)
    return routes


def _failed_changes(changes: Sequence[Change], stderr: str) -> list[FailedChange]:
    """Map ``ip -batch``'s "Command failed -:N" back to the change on line N, with the
    message ip printed just before it."""
    failed = []
    previous: list[str] = []
    for line in stderr.splitlines():
        match = _FAILED_LINE.match(line)
        if match and 1 <= int(match.group(1)) <= len(changes):
            failed.append(FailedChange(changes[int(match.group(1)) - 1],
                                       "; ".join(previous) or "failed"))
            previous = []
        elif line.strip():
            previous.append(line.strip())
    return failed


async def _converge(
    transport: Transport, host: Host, route_plan: RoutePlan, protocol: int,
    force: bool, dry_run: bool, write: bool,
) -> HostOutcome:
    outcome = HostOutcome(host)
    desired = route_plan.routes_for(host)
    async with transport.session(host) as session:
        before = diff(desired, await read_table(session), protocol, force)
        outcome.before = before
        if not write or dry_run or not before.changes:
            return outcome
        result = await session.run(["ip", "-force", "-batch", "-"], input=before.batch())
        outcome.applied = True
        outcome.failed = _failed_changes(before.changes, result.stderr)
        outcome.after = diff(desired, await read_table(session), protocol, force=False)
    return outcome


async def run_hosts(
    transport: Transport, route_plan: RoutePlan, protocol: int, *,
    write: bool, force: bool = False, dry_run: bool = False,
    parallel: int = 32, timeout: float = 30.0, only: Sequence[str] | None = None,
) -> list[HostOutcome]:
    """Converge (``write``) or inspect every host in parallel; one outcome per host."""
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(host: Host) -> HostOutcome:
        async with gate:
            try:
                async with asyncio.timeout(timeout):
                    return await _converge(transport, host, route_plan, protocol,
                                           force, dry_run, write)
            except TimeoutError:
                return HostOutcome(host, error=f"timed out after {timeout:g}s")
            except PodroutesError as exc:
                return HostOutcome(host, error=str(exc).removeprefix(f"{host.name}: "))

    hosts = [h for h in route_plan.inventory if only is None or h.name in only]
    return list(await asyncio.gather(*(one(h) for h in hosts)))


def counts(d: HostDiff) -> dict[str, int]:
    """Per-action counts of a diff, plus unchanged routes and conflicts left alone."""
    out = {str(a): d.count(a) for a in Action}
    out["unchanged"] = d.unchanged
    out["conflicts"] = sum(1 for s in d.statuses if s.state is RouteState.CONFLICT)
    return out
