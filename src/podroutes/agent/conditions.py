"""The Node condition and the Kubernetes Events the agent sends, decided purely.

Pure: values in, JSON-shaped dictionaries out; the clock's reading is a parameter. Called
by :mod:`podroutes.agent.runner`, which sends what this module decides through
:mod:`podroutes.agent.kube`. The condition follows the cloud route controller's
convention: ``NetworkUnavailable=False``, reason ``RouteCreated``, once this node's
routes match the plan; ``True`` with a reason that says why once they have failed to
converge for longer than a grace period (a link flap of a few seconds must not taint the
node). Events are Warnings for failures, throttled per (reason, message).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CONDITION_TYPE = "NetworkUnavailable"
COMPONENT = "podroutes-agent"


class Reason(enum.StrEnum):
    """Why the condition is what it is (the ``reason`` field, CamelCase as Kubernetes wants)."""

    ROUTE_CREATED = "RouteCreated"
    NOT_CONVERGED = "RoutesNotConverged"
    CONFLICT = "RoutesConflict"
    #: The routes are in place but the kernel sends pod traffic elsewhere (a foreign more
    #: specific route, a lower metric, a policy rule, a blackhole).
    PATH_DIFFERS = "PodPathDiffers"
    NOT_ROUTABLE = "NodeNotRoutable"
    REMOVED = "RoutesRemoved"


@dataclass(frozen=True, slots=True)
class Condition:
    """One Node condition as the API server holds it (times as RFC 3339 text)."""

    status: str
    reason: str
    message: str
    last_transition: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Condition:
        return cls(str(data.get("status", "")), str(data.get("reason", "")),
                   str(data.get("message", "")), str(data.get("lastTransitionTime", "")))

    def same_state(self, other: Condition | None) -> bool:
        return other is not None and (self.status, self.reason, self.message) == (
            other.status, other.reason, other.message)


@dataclass(frozen=True, slots=True)
class SyncVerdict:
    """What one reconcile found, reduced to what the condition depends on."""

    converged: bool
    reason: Reason
    message: str


def rfc3339(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wanted_condition(verdict: SyncVerdict, failing_since: float | None, now: float,
                     grace: float) -> Condition | None:
    """The condition this node should carry, or ``None`` to leave it as it is (failing,
    but not yet for longer than ``grace`` seconds)."""
    if verdict.converged:
        return Condition("False", Reason.ROUTE_CREATED, verdict.message)
    if failing_since is None or now - failing_since < grace:
        return None
    return Condition("True", verdict.reason, verdict.message)


def condition_patch(wanted: Condition, current: Condition | None,
                    now: float) -> dict[str, Any] | None:
    """The strategic-merge patch of ``nodes/status`` that sets ``wanted``, or ``None`` when
    the node already says so. ``lastTransitionTime`` moves only when the status flips."""
    if wanted.same_state(current):
        return None
    stamp = rfc3339(now)
    transition = (current.last_transition if current is not None and current.status ==
                  wanted.status and current.last_transition else stamp)
    return {"status": {"conditions": [{
        "type": CONDITION_TYPE, "status": wanted.status, "reason": wanted.reason,
        "message": wanted.message, "lastTransitionTime": transition,
        "lastHeartbeatTime": stamp,
    }]}}


@dataclass(slots=True)
class EventThrottle:
    """Send an Event for a (reason, message) at most once per ``interval`` seconds, as
    client-go's event correlator does, so a failure that repeats every resync does not
    flood the API server."""

    interval: float = 300.0
    _sent: dict[tuple[str, str], float] = field(default_factory=dict)

    def allow(self, reason: str, message: str, now: float) -> bool:
        key = (reason, message)
        last = self._sent.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._sent[key] = now
        if len(self._sent) > 256:  # forget the oldest: bounded memory
            oldest = min(self._sent, key=self._sent.__getitem__)
            del self._sent[oldest]
        return True


def event_body(node: str, uid: str, reason: str, message: str, now: float, *,
               warning: bool = True, namespace: str = "default") -> dict[str, Any]:
    """A core/v1 Event about ``node``, named like client-go names them (``NODE.<hex ns>``)."""
    stamp = rfc3339(now)
    involved: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "name": node}
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{node}.{int(now * 1e9):x}", "namespace": namespace},
        "involvedObject": involved,
        "reason": reason, "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT, "reportingInstance": node,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }
