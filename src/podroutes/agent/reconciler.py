"""One reconcile of this node's table: the engine's read, diff, batch and verify, reused.

I/O orchestration, no I/O of its own: every table read and every change goes through
:func:`podroutes.remote.engine.run_hosts` on a :class:`~podroutes.remote.transport.LocalTransport`
(``ip -j route``, the pure diff, one ``ip -force -batch``, read back). Called by
:mod:`podroutes.agent.runner`. What this module adds to the engine:

- the plan is limited to this node (``only=[node]``); the rest of the cluster shapes it;
- deletes before adds (:func:`podroutes.agent.convergence.phases`): when stale owned
  routes must go and new ones come, the first batch removes, the second adds. It needs
  to know which destinations podroutes owns in the table: learnt from every run's
  read-back, and by one read-only run at start (and after an error);
- the result as a value for metrics, logs, the Node condition and Events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from podroutes.agent.conditions import Reason, SyncVerdict
from podroutes.agent.convergence import Tally, in_sync, owned_routes, phases, restrict, tally
from podroutes.agent.nodes import ClusterView
from podroutes.core.decision import DecisionKind
from podroutes.core.diff import HostDiff
from podroutes.core.model import MAIN_TABLE, Host, Inventory, IPAddress, IPNetwork
from podroutes.core.outcome import ChangeOutcome, HostOutcome
from podroutes.core.paths import PathIssue
from podroutes.core.plan import RoutePlan
from podroutes.core.routecache import RouteCache
from podroutes.remote.engine import run_hosts
from podroutes.remote.transport import Transport


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconcile found and did."""

    verdict: SyncVerdict
    desired: int = 0
    installed: int = 0
    conflicts: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    error: str | None = None
    tally: Tally = field(default_factory=Tally)
    batches: int = 0
    #: Where the kernel's path differs from the plan although the routes are in place.
    paths: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return self.verdict.converged


def _describe_conflicts(d: HostDiff) -> tuple[str, ...]:
    out = []
    for s in d.conflicts:
        o = s.observed
        held = f"via {o.gateway}" if o is not None and o.gateway else "another way"
        proto = o.protocol if o is not None else "?"
        out.append(f"{s.dst}: wanted via {s.desired_gateway}, but a foreign route (protocol "
                   f"{proto}) sends it {held}; left alone")
    return tuple(out)


def _failures(outcome: HostOutcome) -> tuple[str, ...]:
    return tuple(f"{r.change.action} {r.change.dst} via {r.change.gateway}: "
                 f"{r.outcome}{': ' + r.message if r.message else ''}"
                 for r in outcome.results if r.outcome is not ChangeOutcome.APPLIED)


def _verdict(desired: int, final: HostDiff, conflicts: tuple[str, ...],
             failures: tuple[str, ...], paths: tuple[str, ...] = ()) -> SyncVerdict:
    if final.in_sync and not failures and paths:
        return SyncVerdict(False, Reason.PATH_DIFFERS,
                           f"{len(paths)} pod CIDR path(s) differ from the plan: {paths[0]}")
    if final.in_sync and not failures:
        return SyncVerdict(True, Reason.ROUTE_CREATED,
                           f"podroutes installed the routes to {desired} pod CIDRs of other "
                           "nodes")
    if conflicts:
        return SyncVerdict(False, Reason.CONFLICT, f"{len(conflicts)} route(s) held by "
                           f"other owners: {conflicts[0]}")
    detail = failures[0] if failures else "the table read back does not match the plan"
    return SyncVerdict(False, Reason.NOT_CONVERGED, detail)


def _no_bridge_yet(issue: PathIssue) -> bool:
    """The node's own pod CIDR has no route at all yet: the CNI bridge plugin makes the
    bridge with the first pod. Not the agent's to judge (doctor reports it)."""
    route = issue.route
    return issue.own and (issue.decision.kind is DecisionKind.NO_ROUTE or (
        route is not None and route.table == MAIN_TABLE
        and route.dst.prefixlen < issue.dst.prefixlen))


class Reconciler:
    """Converges one node's table; keeps what it learnt about the table between runs."""

    def __init__(self, node: str, protocol: int, transport: Transport, *,
                 timeout: float = 30.0, lock_wait: float = 5.0) -> None:
        self.node = node
        self.protocol = protocol
        self.transport = transport
        self.timeout = timeout
        self.lock_wait = lock_wait
        self._owned: dict[IPNetwork, IPAddress | None] | None = None
        #: The gateway each destination last had in sync (what a repair puts back).
        self._good: dict[IPNetwork, IPAddress | None] = {}
        #: Routes parsed by earlier reconciles: a resync of an unchanged table is lookups.
        self._cache = RouteCache()
        self._expected: dict[str, str] | None = None

    @property
    def expected(self) -> Mapping[str, str] | None:
        """Destination -> gateway, as ``ip`` prints them, of the plan being converged:
        kernel events for owned routes that match it are this reconciler's own writes."""
        return self._expected

    async def _run(self, inventory: Inventory, write: bool) -> HostOutcome:
        (outcome,) = await run_hosts(self.transport, RoutePlan(inventory), self.protocol,
                                     write=write, only=[self.node], timeout=self.timeout,
                                     lock_wait=self.lock_wait, cache=self._cache,
                                     judge=True, confirm=False)
        return outcome

    def _not_routable(self, view: ClusterView) -> ReconcileResult:
        notes = [n.message for n in view.notices if n.node == self.node]
        why = notes[-1] if notes else ("there is no Node object by this name"
                                       if view.from_nodes else
                                       f"{view.inventory.source} has no host by this name")
        return ReconcileResult(SyncVerdict(False, Reason.NOT_ROUTABLE,
                                           f"node {self.node} is not in the plan: {why}"),
                               error=f"node {self.node} is not in the plan: {why}")

    def _failed(self, outcome: HostOutcome, total: Tally, batches: int) -> ReconcileResult:
        self._owned = None  # the table is unknown now: read it first next time
        message = outcome.error or "failed"
        return ReconcileResult(SyncVerdict(False, Reason.NOT_CONVERGED, message),
                               error=message, tally=total, batches=batches)

    async def reconcile(self, view: ClusterView) -> ReconcileResult:
        inventory = view.inventory
        try:
            host = inventory.host(self.node)
        except KeyError:
            return self._not_routable(view)
        desired = RoutePlan(inventory).routes_for(host)
        self._expected = {str(r.dst): str(r.gateway) for r in desired}
        batches = 0
        if self._owned is None:
            first = await self._run(inventory, write=False)
            if first.error or first.before is None:
                return self._failed(first, Tally(), batches)
            self._owned = owned_routes(first.before, self.protocol)
        total = Tally()
        outcome: HostOutcome | None = None
        for keep in phases(desired, self._owned):
            step = inventory if keep is None else restrict(inventory, self.node, keep)
            outcome = await self._run(step, write=True)
            final = outcome.after or outcome.before
            if outcome.error or final is None:
                return self._failed(outcome, total, batches)
            batches += 1 if outcome.applied else 0
            total += tally(((r.change.action, r.change.dst, r.change.gateway)
                            for r in outcome.results if r.outcome is ChangeOutcome.APPLIED),
                           self._good)
            self._owned = owned_routes(final, self.protocol)
        assert outcome is not None
        final = outcome.after or outcome.before
        assert final is not None
        good = in_sync(final)
        # Keep the last good gateway of a route that is failing now (a link that is down),
        # so that putting it back later counts as a repair.
        kept: dict[IPNetwork, IPAddress | None] = {
            r.dst: r.gateway for r in desired if self._good.get(r.dst, False) == r.gateway}
        self._good = kept | good
        conflicts = _describe_conflicts(final)
        failures = _failures(outcome)
        paths = tuple(f"{i.part} ({i.state}): {i.detail}" for i in outcome.paths
                      if not _no_bridge_yet(i))
        return ReconcileResult(_verdict(len(desired), final, conflicts, failures, paths),
                               desired=len(desired), installed=len(good),
                               conflicts=conflicts, failures=failures, tally=total,
                               batches=batches, paths=paths)

    async def cleanup(self) -> ReconcileResult:
        """Remove every route carrying our protocol from the main table (and nothing else)."""
        alone = Host(name=self.node, addresses=())
        outcome = await self._run(Inventory("cleanup", (alone,)), write=True)
        if outcome.error:
            return self._failed(outcome, Tally(), 0)
        removed = tally(((r.change.action, r.change.dst, r.change.gateway)
                         for r in outcome.results if r.outcome is ChangeOutcome.APPLIED), {})
        self._owned = None
        failures = _failures(outcome)
        return ReconcileResult(SyncVerdict(not failures, Reason.REMOVED,
                                           "podroutes agent stopped and removed its routes"),
                               failures=failures, tally=removed, batches=1)


def describe(result: ReconcileResult) -> Sequence[str]:
    """Short lines for a log record."""
    return [*result.conflicts, *result.failures, *result.paths] + (
        [result.error] if result.error else [])
