"""doctor and trace over the wire: read facts, run fixes, ask kernels. Returns values.

I/O orchestration over a :class:`~podroutes.remote.transport.Transport` (the same SSH or local
shells as ``apply``). Per host, one session: every fact command of
:data:`~podroutes.diag.facts.FACT_COMMANDS` in one round trip (``run_many``); with ``--fix``,
the fixes in a second round trip and a re-read in a third, on the same connection.
Hosts run in parallel under a bound, each under a timeout; a failing host never stops
the others. The checks themselves are pure (:mod:`podroutes.diag.checks`). Never prints.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace

from podroutes.core.model import Host, Inventory, IPAddress
from podroutes.core.paths import destinations, parse_path_facts, path_commands, samples
from podroutes.core.plan import RoutePlan
from podroutes.diag.checks import check_all
from podroutes.diag.facts import FACT_COMMANDS, FactKind, HostFacts, Output, parse_facts
from podroutes.diag.findings import Finding, FixClass
from podroutes.diag.probe import parse_probes, probe_commands
from podroutes.diag.trace import Hop, KernelAnswer, Trace, kernel_query, parse_route_get
from podroutes.remote.session import Command, ShellSession
from podroutes.remote.transport import Transport, each_host


async def read_facts(session: ShellSession, kinds: Sequence[FactKind] = tuple(FactKind),
                     probe: Sequence[IPAddress] | None = None,
                     pings: tuple[Host, Inventory] | None = None) -> HostFacts:
    """The facts of one host, in one round trip; with ``probe``, also its policy rules,
    other tables and the kernel's answer (``ip route get``) for those addresses; with
    ``pings`` (the host and its inventory), ``doctor --probe``'s pings."""
    commands = [Command(FACT_COMMANDS[k]) for k in kinds]
    paths = [] if probe is None else [Command(a, i) for a, i in path_commands(probe)]
    pinging = [] if pings is None else [Command(a) for a in probe_commands(*pings)]
    results = await session.run_many([*commands, *paths, *pinging])
    facts = parse_facts({k: Output(r.status, r.stdout, r.stderr)
                         for k, r in zip(kinds, results, strict=False)})
    rest = results[len(kinds):]
    if probe is not None:
        facts = replace(facts, paths=parse_path_facts(
            probe, [(r.status, r.stdout, r.stderr) for r in rest[:len(paths)]]))
    if pings is not None:
        facts = replace(facts, probes=tuple(parse_probes(
            *pings, [r.stdout for r in rest[len(paths):]])))
    return facts


def probe_for(route_plan: RoutePlan, host: Host) -> list[IPAddress]:
    """The addresses doctor asks a host's kernel about: samples of every destination."""
    return samples(destinations(host, route_plan.routes_for(host)))


@dataclass(frozen=True, slots=True)
class FixRun:
    host: str
    command: str
    status: int
    stderr: str


@dataclass(slots=True)
class DoctorReport:
    findings: list[Finding]  # what remains (after the fixes, when any ran)
    errors: dict[str, str]  # hosts that could not be read
    facts: dict[str, HostFacts]
    before: list[Finding] | None = None  # what was found before fixing
    fixes: list[FixRun] = field(default_factory=list)

    def _compare(self) -> tuple[list[Finding], list[Finding], list[Finding]]:
        before = self.before or []
        key = {(f.kind, f.host, f.what) for f in self.findings}
        was = {(f.kind, f.host, f.what) for f in before}
        return ([f for f in before if (f.kind, f.host, f.what) not in key],
                [f for f in self.findings if (f.kind, f.host, f.what) in was],
                [f for f in self.findings if (f.kind, f.host, f.what) not in was])

    @property
    def fixed(self) -> list[Finding]:
        """Found before the fixes, gone after the re-read (empty when nothing was fixed)."""
        return self._compare()[0]

    @property
    def remaining(self) -> list[Finding]:
        """Found before the fixes and still there after them."""
        return self._compare()[1] if self.before is not None else list(self.findings)

    @property
    def worse(self) -> list[Finding]:
        """New after the fixes: what a fix broke (re-judged on the re-read host)."""
        return self._compare()[2] if self.before is not None else []


def allowed_fixes(fix: bool, fix_firewall: bool) -> set[FixClass]:
    return ({FixClass.SAFE} if fix else set()) | ({FixClass.FIREWALL} if fix_firewall else set())


async def doctor(transport: Transport, route_plan: RoutePlan, protocol: int, *,
                 bridge: str | None = None, fix: bool = False, fix_firewall: bool = False,
                 parallel: int = 32, timeout: float = 30.0,
                 only: Sequence[str] | None = None, probe: bool = False) -> DoctorReport:
    """Read every host, check, and (``fix``/``fix_firewall``) repair and check again.
    ``bridge`` (``--bridge``) overrides the bridge each host's CNI configuration names.
    ``only`` names the hosts to read, check and repair (``None``: every host); the whole
    inventory still shapes the plan."""
    hosts = [h for h in route_plan.inventory if only is None or h.name in only]
    inventory = route_plan.inventory

    def read(session: ShellSession, host: Host) -> Awaitable[HostFacts]:
        return read_facts(session, probe=probe_for(route_plan, host),
                          pings=(host, inventory) if probe else None)

    facts, errors = await each_host(transport, hosts, read, parallel, timeout)
    findings = check_all(route_plan, facts, protocol, bridge)
    report = DoctorReport(findings, errors, facts)
    allowed = allowed_fixes(fix, fix_firewall)
    todo: dict[str, list[tuple[str, ...]]] = {}
    for finding in findings:
        if finding.automatic and finding.fix_class in allowed:
            planned = todo.setdefault(finding.host, [])
            planned.extend(a for a in finding.argv if a not in planned)
    if not todo:
        return report

    async def repair(session: ShellSession, host: Host) -> HostFacts:
        if host.name in todo:
            results = await session.run_many([Command(argv) for argv in todo[host.name]])
            report.fixes.extend(FixRun(host.name, r.command, r.status, r.stderr.strip())
                                for r in results)
        return await read(session, host)

    # Every changed host is read and judged again. With --probe every probed host is:
    # a route fixed on one node changes whether the others' pings come back.
    again = [h for h in hosts if h.name in todo or (probe and h.name in facts)]
    fixed, fix_errors = await each_host(transport, again, repair, parallel, timeout)
    facts.update(fixed)
    errors.update(fix_errors)
    report.before = findings
    report.findings = check_all(route_plan, facts, protocol, bridge)
    return report


async def observe(transport: Transport, inventory: Inventory, parallel: int,
                  timeout: float, only: Sequence[str] | None = None,
                  ) -> tuple[dict[str, HostFacts], dict[str, str]]:
    """What trace --observed needs from every host (``only``: from those named):
    addresses, both tables, whether it forwards, its nat tables and CNI config."""
    kinds = (FactKind.SYSCTL, FactKind.ADDR, FactKind.ROUTE4, FactKind.ROUTE6,
             FactKind.IPTABLES4_NAT, FactKind.IPTABLES6_NAT, FactKind.NFT, FactKind.CNI)
    hosts = [h for h in inventory if only is None or h.name in only]
    return await each_host(transport, hosts, lambda s, h: read_facts(s, kinds, probe=()),
                           parallel, timeout)


async def ask_kernels(transport: Transport, inventory: Inventory, trace: Trace,
                      parallel: int, timeout: float, only: Sequence[str] | None = None,
                      ) -> tuple[dict[int, KernelAnswer], dict[str, str]]:
    """``ip route get`` at every hop of ``trace``, on that hop's host (trace --live);
    ``only``: at the hops on the hosts named."""
    by_host: dict[str, list[tuple[int, Hop]]] = {}
    for index, hop in enumerate(trace.hops):
        by_host.setdefault(hop.host, []).append((index, hop))

    async def ask(session: ShellSession, host: Host) -> dict[int, KernelAnswer]:
        hops = by_host[host.name]
        results = await session.run_many([Command(kernel_query(h, trace)) for _, h in hops])
        return {i: parse_route_get(r.status, r.stdout, r.stderr)
                for (i, _), r in zip(hops, results, strict=True)}

    answers, errors = await each_host(
        transport, [h for h in inventory if h.name in by_host
                    and (only is None or h.name in only)], ask, parallel, timeout)
    return {i: a for per_host in answers.values() for i, a in per_host.items()}, errors
