"""The agent's loop: desired state and kernel events in, reconciles, condition and Events out.

I/O orchestration over injected parts, so that it runs the same against a real cluster
and kernel (wired by :mod:`podroutes.agent.app`) and against fakes in unit tests: a
desired-state ``source``, a ``reconciler``, a ``reporter`` (Kubernetes, or nothing), a
kernel ``monitor``, metrics and health, and a :class:`Clock`.

- **Start**: as soon as the source delivers the first desired state, one full reconcile
  (which prunes owned routes of nodes that left while nothing ran).
- **Events**: a Node change that matters, or a kernel event that matters
  (:mod:`podroutes.agent.triggers`), wakes the loop; the reconcile starts after a short
  settle time (bursts become one run) and never closer than ``min_interval`` to the last.
- **Resync**: a full reconcile every ``resync`` seconds (default 10) after the last one.
- **Reporting**: ``NetworkUnavailable`` False/``RouteCreated`` once converged; True with a
  reason once failing longer than ``unavailable_after``; Warning Events, throttled.
- **Shutdown**: ``stop`` lets a running reconcile finish, then the loop ends; the routes
  stay (they keep traffic flowing) unless ``cleanup_on_exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from podroutes.agent.conditions import (
    Condition,
    EventThrottle,
    Reason,
    SyncVerdict,
    condition_patch,
    event_body,
    wanted_condition,
)
from podroutes.agent.metrics import AgentMetrics, Health
from podroutes.agent.nodes import ClusterView, Notice, Sink
from podroutes.agent.reconciler import ReconcileResult, describe
from podroutes.agent.triggers import NetlinkEvent, Pacing, netlink_reason
from podroutes.core.errors import PodroutesError

log = logging.getLogger("podroutes.agent")


class Source(Protocol):
    async def run(self, sink: Sink) -> None: ...


class Monitor(Protocol):
    def events(self) -> AsyncIterator[NetlinkEvent]: ...


class ReconcilerLike(Protocol):
    #: What the reconciler writes (destination -> gateway) for the plan it last worked
    #: on; ``None`` before the first reconcile. An owned route event that differs from it
    #: is someone else's change.
    @property
    def expected(self) -> Mapping[str, str] | None: ...

    async def reconcile(self, view: ClusterView) -> ReconcileResult: ...

    async def cleanup(self) -> ReconcileResult: ...


class Reporter(Protocol):
    def current_condition(self) -> Condition | None: ...

    def node_uid(self) -> str: ...

    async def patch_condition(self, patch: dict[str, Any], wanted: Condition) -> None: ...

    async def create_event(self, body: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Clock:
    """Wall time (for timestamps), monotonic time (for intervals) and sleeping."""

    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(frozen=True)
class AgentConfig:
    node: str
    protocol: int
    resync: float = 10.0
    pacing: Pacing = field(default_factory=Pacing)
    unavailable_after: float = 30.0
    cleanup_on_exit: bool = False
    event_interval: float = 300.0


class Agent:
    """One node's agent. :meth:`run` returns when ``stop`` is set."""

    def __init__(self, config: AgentConfig, *, source: Source, reconciler: ReconcilerLike,
                 reporter: Reporter | None = None, monitor: Monitor | None = None,
                 metrics: AgentMetrics | None = None, health: Health | None = None,
                 clock: Clock | None = None) -> None:
        self.config = config
        self.source = source
        self.reconciler = reconciler
        #: ``None`` in inventory-file mode: there is no Node object to report to.
        self.reporter = reporter
        self.monitor = monitor
        self.metrics = metrics or AgentMetrics()
        self.clock = clock or Clock()
        self.health = health or Health(stale_after=3 * config.resync + 60,
                                       monotonic=self.clock.monotonic)
        self.view: ClusterView | None = None
        self.last_result: ReconcileResult | None = None
        self._pending: dict[str, str] = {}
        self._first_trigger: float | None = None
        self._last_start: float | None = None
        self._failing_since: float | None = None
        self._throttle = EventThrottle(config.event_interval)
        self._notices: set[Notice] = set()
        self._wake = asyncio.Event()

    # --- the sink the source publishes to ------------------------------------------------

    def publish(self, view: ClusterView, reason: str) -> None:
        self.view = view
        self.health.have_state = True
        self.metrics.record_view(view)
        fresh = [n for n in view.notices if n not in self._notices]
        self._notices = set(view.notices)
        for notice in fresh[:20]:
            log.warning(str(notice), extra={"fields": {
                "node": notice.node, "notice": str(notice.kind), "routable": notice.routable}})
        if len(fresh) > 20:
            log.warning(f"{len(fresh) - 20} more node notices not shown",
                        extra={"fields": {"notices": len(fresh)}})
        self._trigger("nodes", reason)

    def error(self, stage: str, message: str) -> None:
        self.metrics.errors.labels(stage).inc()
        log.warning(message, extra={"fields": {"stage": stage}})

    def _trigger(self, kind: str, reason: str) -> None:
        self._pending[kind] = reason
        if self._first_trigger is None:
            self._first_trigger = self.clock.monotonic()
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    async def _watch_kernel(self, monitor: Monitor) -> None:
        async for event in monitor.events():
            reason = netlink_reason(event, self.config.protocol, self.reconciler.expected)
            if reason is not None:
                self._trigger("netlink", reason)

    async def _supervise(self, stage: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run a helper (the source, the kernel monitor) for as long as the agent runs:
        one that fails or ends is counted, logged and started again a second later, so a
        bug or a lost socket degrades the agent (the resync still runs) instead of silently
        ending the repairs."""
        while True:
            try:
                await work()
                self.error(stage, f"the {stage} watcher ended; starting it again")
            except Exception as exc:  # a helper must never die quietly
                log.error(f"the {stage} watcher failed: {exc!r}; starting it again",
                          exc_info=True, extra={"fields": {"stage": stage}})
                self.metrics.errors.labels(stage).inc()
            await self.clock.sleep(1.0)

    async def _wait(self, stop: asyncio.Event, timeout: float, wake: bool = True) -> None:
        """Until woken (if ``wake``), stopped, or ``timeout`` seconds passed."""
        waits = [asyncio.ensure_future(stop.wait()),
                 asyncio.ensure_future(self.clock.sleep(timeout))]
        if wake:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _loop(self, stop: asyncio.Event) -> None:
        next_resync: float | None = None  # None: the first reconcile has not run
        while not stop.is_set():
            self.health.beat()
            if self.view is None:
                await self._wait(stop, self.config.resync)
                continue
            due = 0.0 if next_resync is None else next_resync - self.clock.monotonic()
            if due > 0 and not self._wake.is_set():
                await self._wait(stop, min(due, self.config.resync))
                if stop.is_set():
                    break
            if next_resync is None:
                trigger = "start"
            elif self._pending:
                assert self._first_trigger is not None
                delay = self.config.pacing.delay(self.clock.monotonic(), self._first_trigger,
                                                 self._last_start)
                if delay > 0:
                    await self._wait(stop, delay, wake=False)
                    if stop.is_set():
                        break
                trigger = "netlink" if "netlink" in self._pending else "nodes"
            elif self.clock.monotonic() >= next_resync:
                trigger = "resync"
            else:
                self._wake.clear()  # woken with nothing pending: never spin
                continue
            reasons = dict(self._pending)
            self._pending.clear()
            self._wake.clear()
            self._first_trigger = None
            await self.sync(trigger, reasons)
            next_resync = self.clock.monotonic() + self.config.resync

    async def sync(self, trigger: str, reasons: dict[str, str] | None = None) -> ReconcileResult:
        """One reconcile of the current desired state, recorded and reported."""
        assert self.view is not None
        started = self._last_start = self.clock.monotonic()
        try:
            result = await self.reconciler.reconcile(self.view)
        except PodroutesError as exc:
            result = ReconcileResult(SyncVerdict(False, Reason.NOT_CONVERGED, str(exc)),
                                     error=str(exc))
        seconds = self.clock.monotonic() - started
        now = self.clock.now()
        self.metrics.record_sync(result, seconds, trigger, now)
        self.last_result = result
        self.health.converged = result.converged
        self.health.why_not_ready = result.verdict.message
        if result.converged:
            self._failing_since = None
        elif self._failing_since is None:
            self._failing_since = now
        self._log(result, trigger, reasons or {}, seconds)
        await self._report(result, now)
        return result

    def _log(self, result: ReconcileResult, trigger: str, reasons: dict[str, str],
             seconds: float) -> None:
        t = result.tally
        fields = {"trigger": trigger, "reasons": sorted(reasons.values()),
                  "duration_ms": round(seconds * 1000, 1), "converged": result.converged,
                  "desired": result.desired, "installed": result.installed,
                  "added": t.added, "removed": t.removed, "changed": t.changed,
                  "adopted": t.adopted, "repaired": t.repaired,
                  "conflicts": len(result.conflicts), "batches": result.batches}
        if not result.converged:
            log.warning(f"routes not converged: {result.verdict.message}",
                        extra={"fields": {**fields, "problems": list(describe(result))}})
        elif t.total:
            log.info("routes converged", extra={"fields": fields})
        else:
            log.debug("routes in sync", extra={"fields": fields})

    async def _report(self, result: ReconcileResult, now: float) -> None:
        if self.reporter is None:
            return
        wanted = wanted_condition(result.verdict, self._failing_since, now,
                                  self.config.unavailable_after)
        try:
            if wanted is not None:
                patch = condition_patch(wanted, self.reporter.current_condition(), now)
                if patch is not None:
                    await self.reporter.patch_condition(patch, wanted)
                    log.info(f"NetworkUnavailable={wanted.status} ({wanted.reason})",
                             extra={"fields": {"reason": wanted.reason,
                                               "message": wanted.message}})
            verdict = result.verdict
            if not verdict.converged and self._throttle.allow(verdict.reason, verdict.message,
                                                              now):
                await self.reporter.create_event(event_body(
                    self.config.node, self.reporter.node_uid(), verdict.reason,
                    verdict.message, now))
            if result.tally.repaired and self._throttle.allow("RoutesRepaired", "", now):
                await self.reporter.create_event(event_body(
                    self.config.node, self.reporter.node_uid(), "RoutesRepaired",
                    f"podroutes put back {result.tally.repaired} route(s) that had gone "
                    "missing (deleted by hand, or lost with a link)", now, warning=False))
        except PodroutesError as exc:
            self.error("kubernetes", str(exc))

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; then clean up if asked."""
        stage = "kubernetes" if self.reporter is not None else "inventory"
        helpers = [asyncio.create_task(self._supervise(stage, lambda: self.source.run(self)),
                                       name="podroutes-source")]
        if self.monitor is not None:
            monitor = self.monitor
            helpers.append(asyncio.create_task(
                self._supervise("netlink", lambda: self._watch_kernel(monitor)),
                name="podroutes-netlink"))
        try:
            await self._loop(stop)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        log.info("stopping", extra={"fields": {"cleanup": self.config.cleanup_on_exit}})
        if self.config.cleanup_on_exit:
            await self.cleanup()

    async def cleanup(self) -> ReconcileResult:
        """Remove our routes; say so on the Node (the network is unavailable now)."""
        result = await self.reconciler.cleanup()
        self.metrics.removed.inc(result.tally.removed)
        log.info("removed podroutes' routes on exit", extra={"fields": {
            "removed": result.tally.removed, "failures": list(describe(result))}})
        if self.reporter is None:
            return result
        wanted = Condition("True", Reason.REMOVED, result.verdict.message)
        now = self.clock.now()
        with contextlib.suppress(PodroutesError):
            patch = condition_patch(wanted, self.reporter.current_condition(), now)
            if patch is not None:
                await self.reporter.patch_condition(patch, wanted)
        return result
