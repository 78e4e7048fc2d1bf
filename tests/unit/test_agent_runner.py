"""The agent's loop with fakes and a fake clock: start, resync cadence, kernel-event
reconciles, the Node condition after its grace period, throttled Events, clean-up.

No root and no real time: the clock's ``sleep`` moves fake time forward, so a "10 s
resync" takes microseconds and every interval is checked exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from podroutes.agent.conditions import Condition, Reason, SyncVerdict
from podroutes.agent.convergence import Tally
from podroutes.agent.metrics import AgentMetrics
from podroutes.agent.nodes import ClusterView, Sink
from podroutes.agent.reconciler import ReconcileResult
from podroutes.agent.runner import Agent, AgentConfig, Clock
from podroutes.agent.triggers import NetlinkEvent, NetlinkKind, Pacing
from podroutes.core.errors import TransportError
from podroutes.inventory import load

VIEW = ClusterView(load("192.168.10.101 a.k node-0 10.200.0.0/24\n"
                        "192.168.10.102 b.k node-1 10.200.1.0/24\n", "m.txt"))
OK = ReconcileResult(SyncVerdict(True, Reason.ROUTE_CREATED, "routes installed"),
                     desired=1, installed=1)
CONFLICT = ReconcileResult(SyncVerdict(False, Reason.CONFLICT, "10.200.1.0/24 held"),
                           desired=1, conflicts=("10.200.1.0/24 held",))


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def clock(self) -> Clock:
        return Clock(now=lambda: self.t, monotonic=lambda: self.t, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        """Let every task that is ready run first (a sleep cancelled meanwhile, because
        the loop was woken, moves no time), then jump."""
        for _ in range(20):
            await asyncio.sleep(0)
        self.t += seconds


class FakeSource:
    def __init__(self, view: ClusterView | None = VIEW) -> None:
        self.view = view

    async def run(self, sink: Sink) -> None:
        if self.view is not None:
            sink.publish(self.view, "listed")
        await asyncio.Event().wait()


class FakeReconciler:
    """Returns scripted results; stops the agent after the last one."""

    def __init__(self, time: FakeTime, stop: asyncio.Event, results: list[Any]) -> None:
        self.time, self.stop, self.results = time, stop, list(results)
        self.calls: list[float] = []
        self.cleaned = False
        self.called = asyncio.Event()
        self.expected: dict[str, str] | None = {"10.200.1.0/24": "192.168.10.102"}

    async def reconcile(self, view: ClusterView) -> ReconcileResult:
        self.calls.append(self.time.t)
        self.called.set()
        result = self.results.pop(0)
        if not self.results:
            self.stop.set()
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, ReconcileResult)
        return result

    async def cleanup(self) -> ReconcileResult:
        self.cleaned = True
        return ReconcileResult(SyncVerdict(True, Reason.REMOVED, "removed"),
                               tally=Tally(removed=1))


class FakeReporter:
    def __init__(self) -> None:
        self.condition: Condition | None = None
        self.patches: list[tuple[float, Condition]] = []
        self.events: list[dict[str, Any]] = []
        self.time: FakeTime | None = None

    def current_condition(self) -> Condition | None:
        return self.condition

    def node_uid(self) -> str:
        return "uid-0"

    async def patch_condition(self, patch: dict[str, Any], wanted: Condition) -> None:
        assert self.time is not None
        self.patches.append((self.time.t, wanted))
        self.condition = wanted

    async def create_event(self, body: dict[str, Any]) -> None:
        self.events.append(body)


def run(results: list[Any], *, reporter: FakeReporter | None = None, resync: float = 10,
        grace: float = 30, monitor: Any = None, cleanup: bool = False,
        source: FakeSource | None = None) -> tuple[Agent, FakeReconciler, FakeTime]:
    time = FakeTime()
    if reporter is not None:
        reporter.time = time

    async def main() -> tuple[Agent, FakeReconciler]:
        stop = asyncio.Event()
        reconciler = FakeReconciler(time, stop, results)
        agent = Agent(AgentConfig("node-0", 147, resync=resync, unavailable_after=grace,
                                  cleanup_on_exit=cleanup, pacing=Pacing(0.02, 0.2)),
                      source=source or FakeSource(), reconciler=reconciler,
                      reporter=reporter, clock=time.clock(),
                      monitor=monitor(reconciler) if monitor else None,
                      metrics=AgentMetrics())
        await asyncio.wait_for(agent.run(stop), timeout=10)
        return agent, reconciler

    agent, reconciler = asyncio.run(main())
    return agent, reconciler, time


def test_first_reconcile_at_start_then_one_every_resync() -> None:
    agent, reconciler, _ = run([OK, OK, OK])
    assert reconciler.calls == [1000.0, 1010.0, 1020.0]
    m = agent.metrics
    assert m.value("podroutes_syncs_total", {"trigger": "start"}) == 1
    assert m.value("podroutes_syncs_total", {"trigger": "resync"}) == 2
    assert m.value("podroutes_last_successful_sync_timestamp_seconds") == 1020.0
    assert agent.health.ready() == (True, "ok")


def test_nothing_runs_before_the_desired_state_arrives() -> None:
    async def main() -> list[float]:
        time = FakeTime()
        stop = asyncio.Event()
        reconciler = FakeReconciler(time, stop, [OK])
        agent = Agent(AgentConfig("node-0", 147), source=FakeSource(None),
                      reconciler=reconciler, clock=time.clock())
        task = asyncio.create_task(agent.run(stop))
        while time.t < 1100:
            await asyncio.sleep(0)
        assert not agent.health.ready()[0]
        stop.set()
        await task
        return reconciler.calls

    assert asyncio.run(main()) == []


def test_a_kernel_event_reconciles_after_the_settle_time_not_the_resync() -> None:
    class Monitor:
        def __init__(self, reconciler: FakeReconciler) -> None:
            self.reconciler = reconciler

        async def events(self) -> AsyncIterator[NetlinkEvent]:
            await self.reconciler.called.wait()  # after the start reconcile
            yield NetlinkEvent(NetlinkKind.NEW_ROUTE, 254, 147, "10.200.1.0/24")  # ours
            yield NetlinkEvent(NetlinkKind.DEL_ROUTE, 254, 147, "10.200.1.0/24")
            await asyncio.Event().wait()

    agent, reconciler, _ = run([OK, OK], monitor=Monitor, resync=3600)
    # min_interval (0.2 s) after the start reconcile, far before the resync.
    assert reconciler.calls == [1000.0, pytest.approx(1000.2)]
    assert agent.metrics.value("podroutes_syncs_total", {"trigger": "netlink"}) == 1


def test_condition_flips_after_the_grace_period_and_back_with_one_event() -> None:
    reporter = FakeReporter()
    agent, reconciler, _ = run([CONFLICT] * 5 + [OK], reporter=reporter, grace=30)
    assert reconciler.calls == [1000, 1010, 1020, 1030, 1040, 1050]
    assert [(t, c.status, c.reason) for t, c in reporter.patches] == [
        (1030.0, "True", "RoutesConflict"), (1050.0, "False", "RouteCreated")]
    assert [(e["type"], e["reason"]) for e in reporter.events] == [
        ("Warning", "RoutesConflict")]  # throttled: the same failure, one Event
    assert agent.metrics.value("podroutes_sync_errors_total", {"stage": "apply"}) == 5


def test_no_patch_when_the_node_already_says_so() -> None:
    reporter = FakeReporter()
    reporter.condition = Condition("False", "RouteCreated", "routes installed", "t0")
    run([OK, OK], reporter=reporter)
    assert reporter.patches == []


def test_repairs_send_a_normal_event() -> None:
    reporter = FakeReporter()
    repaired = ReconcileResult(OK.verdict, desired=1, installed=1, tally=Tally(repaired=1))
    run([OK, repaired], reporter=reporter)
    assert [(e["type"], e["reason"]) for e in reporter.events] == [("Normal", "RoutesRepaired")]


def test_a_failing_reconcile_is_recorded_and_the_loop_goes_on() -> None:
    agent, reconciler, _ = run([TransportError("node-0", "boom"), OK])
    assert len(reconciler.calls) == 2
    assert agent.last_result is OK


def test_an_api_failure_while_reporting_is_counted_not_fatal() -> None:
    class Broken(FakeReporter):
        async def patch_condition(self, patch: dict[str, Any], wanted: Condition) -> None:
            raise TransportError("kubernetes", "connection refused")

    agent, reconciler, _ = run([OK, OK], reporter=Broken())
    assert len(reconciler.calls) == 2
    assert agent.metrics.value("podroutes_sync_errors_total", {"stage": "kubernetes"}) == 2


def test_cleanup_on_exit_removes_routes_and_says_so() -> None:
    reporter = FakeReporter()
    agent, reconciler, _ = run([OK], reporter=reporter, cleanup=True)
    assert reconciler.cleaned
    assert reporter.patches[-1][1].reason == "RoutesRemoved"
    assert agent.metrics.value("podroutes_routes_removed_total") == 1


def test_without_cleanup_the_routes_stay() -> None:
    _, reconciler, _ = run([OK], cleanup=False)
    assert not reconciler.cleaned


def test_a_failing_source_is_started_again() -> None:
    class Flaky(FakeSource):
        def __init__(self) -> None:
            super().__init__()
            self.runs = 0

        async def run(self, sink: Sink) -> None:
            self.runs += 1
            if self.runs == 1:
                raise RuntimeError("a bug in the watcher")
            await super().run(sink)

    source = Flaky()
    agent, reconciler, _ = run([OK], source=source)
    assert source.runs == 2 and len(reconciler.calls) == 1
    assert agent.metrics.value("podroutes_sync_errors_total", {"stage": "inventory"}) == 1
