"""Compare a host's desired routes with its observed table: changes and per-route status.

Pure. ``diff(desired, observed, protocol)`` returns a :class:`HostDiff` value: the changes
apply would make (each renders to one ``ip -batch`` line) and the status of every route
that matters. The rules (docs/architecture.md, "Rules the routes follow"):

- podroutes only ever deletes or rewrites routes carrying its own protocol number;
- a foreign route with the same destination and gateway is adopted (``replace`` re-tags
  it in place, so traffic never stops), unless it carries more than a gateway
  (``src``, ``mtu``, ``initcwnd``, ...: ``Route.extras``): ``ip -j route`` cannot say all
  of it (``mtu lock`` prints as ``mtu``), so a rewrite could not keep it; such a route is
  a conflict, left alone unless forced;
- a foreign route with the same destination and another gateway is a conflict, left alone
  unless forced; only routes in the slot podroutes writes to (the family's default metric)
  count: a foreign route at another metric coexists with ours and is never drift;
- owned routes that are no longer desired are removed (pruning).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from podroutes.core.iproute import add_line, batch_line, route_spec
from podroutes.core.model import MAIN_TABLE, IPAddress, IPNetwork, PlannedRoute, Route


class Action(enum.StrEnum):
    """What apply does to one route."""

    ADD = "add"
    CHANGE = "change"
    ADOPT = "adopt"
    OVERRIDE = "override"
    REMOVE = "remove"


class RouteState(enum.StrEnum):
    """How one route on a host compares with the plan (``podroutes status``)."""

    IN_SYNC = "in sync"
    MISSING = "missing"
    WRONG_GATEWAY = "wrong gateway"
    UNOWNED = "not owned"
    STALE = "stale"
    CONFLICT = "conflicting"
    #: A foreign route to the same destination at another metric: not podroutes' to touch
    #: and not drift, but shown, because the lower metric is the one traffic follows.
    OTHER_METRIC = "foreign, other metric"

    @property
    def is_drift(self) -> bool:
        return self not in (RouteState.IN_SYNC, RouteState.OTHER_METRIC)


@dataclass(frozen=True, slots=True)
class Change:
    """One change to one host's table; ``observed`` is the route it rewrites or removes."""

    action: Action
    dst: IPNetwork
    gateway: IPAddress | None
    protocol: int
    observed: Route | None = None
    via_host: str | None = None

    def batch_line(self) -> str:
        metric = self.observed.metric if self.observed is not None else None
        if self.action is Action.ADD:
            if self.gateway is not None:
                return add_line(self.dst, self.gateway, self.protocol)
            return batch_line("add", route_spec(self.dst, self.gateway, self.protocol))
        if self.action is Action.REMOVE:
            assert self.observed is not None
            return batch_line("del", route_spec(
                self.dst, self.observed.gateway, self.protocol, metric, self.observed.table))
        # change / adopt / override rewrite the route in its own slot (same metric). An
        # adopted route keeps its onlink flag: its gateway may only be reachable that way.
        o = self.observed
        onlink_dev = o.dev if self.action is Action.ADOPT and o and o.onlink else None
        return batch_line("replace", route_spec(self.dst, self.gateway, self.protocol, metric,
                                                onlink_dev=onlink_dev))


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """The state of one destination on one host."""

    state: RouteState
    dst: IPNetwork
    desired_gateway: IPAddress | None
    observed: Route | None
    via_host: str | None = None


@dataclass(frozen=True, slots=True)
class HostDiff:
    """Everything diff found for one host."""

    changes: tuple[Change, ...]
    statuses: tuple[RouteStatus, ...]

    def __repr__(self) -> str:
        # Short: a diff can hold 10,000 routes, and asyncio repr()s a finished task's result.
        return f"HostDiff(<{len(self.changes)} changes>, <{len(self.statuses)} statuses>)"

    @property
    def conflicts(self) -> tuple[RouteStatus, ...]:
        return tuple(s for s in self.statuses if s.state is RouteState.CONFLICT)

    @property
    def unchanged(self) -> int:
        return sum(1 for s in self.statuses if s.state is RouteState.IN_SYNC)

    @property
    def in_sync(self) -> bool:
        return not any(s.state.is_drift for s in self.statuses)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    def batch(self) -> str:
        return "".join(c.batch_line() + "\n" for c in self.changes)


class _StatusDraft:
    __slots__ = RouteStatus.__slots__


class _ChangeDraft:
    __slots__ = Change.__slots__


def _status(state: RouteState, dst: IPNetwork, gateway: IPAddress, observed: Route | None,
            via: str) -> RouteStatus:
    """``RouteStatus(...)`` for diff's loop, in a fifth of the time (see make_route)."""
    draft: Any = _StatusDraft()
    draft.state, draft.dst, draft.desired_gateway = state, dst, gateway
    draft.observed, draft.via_host = observed, via
    draft.__class__ = RouteStatus
    status: RouteStatus = draft
    return status


def _addition(dst: IPNetwork, gateway: IPAddress, protocol: int, via: str) -> Change:
    """``Change(Action.ADD, ...)`` for diff's loop, in a fifth of the time."""
    draft: Any = _ChangeDraft()
    draft.action, draft.dst, draft.gateway, draft.protocol = Action.ADD, dst, gateway, protocol
    draft.observed, draft.via_host = None, via
    draft.__class__ = Change
    change: Change = draft
    return change


def _relevant(observed: Iterable[Route]) -> dict[IPNetwork, list[Route]]:
    """Routes of the main table grouped by destination; other tables are not ours."""
    by_dst: dict[IPNetwork, list[Route]] = defaultdict(list)
    for route in observed:
        if route.table == MAIN_TABLE:
            by_dst[route.dst].append(route)
    return by_dst


def _leads_to(route: Route, gateway: IPAddress) -> bool:
    return route.type == "unicast" and route.gateway == gateway and not route.nexthops


def diff(
    desired: Sequence[PlannedRoute],
    observed: Iterable[Route],
    protocol: int,
    force: bool = False,
) -> HostDiff:
    """The changes that make ``observed`` match ``desired`` without touching foreign routes
    (unless ``force``), and the status of every desired or owned route.

    ``desired`` holds at most one route per destination, as a plan does (pod CIDRs never
    overlap): each desired route takes its destination's observed routes, and whatever
    no desired route took is left to judge as stale or foreign.
    """
    by_dst = _relevant(observed)
    changes: list[Change] = []
    statuses: list[RouteStatus] = []
    for want in desired:
        dst, gateway, via = want.dst, want.gateway, want.via_host
        present = by_dst.pop(dst, None)
        if present is None:  # the common cases first: nothing there, or just ours, right
            statuses.append(_status(RouteState.MISSING, dst, gateway, None, via))
            changes.append(_addition(dst, gateway, protocol, via))
            continue
        if len(present) == 1 and present[0].protocol == protocol \
                and _leads_to(present[0], gateway):
            statuses.append(_status(RouteState.IN_SYNC, dst, gateway, present[0], via))
            continue
        owned = [r for r in present if r.protocol == protocol]
        # Only foreign routes in the slot podroutes writes to (the family's default metric)
        # can clash with ours; foreign routes at other metrics are other tools' business.
        slot = want.family.default_metric
        foreign = [r for r in present if r.protocol != protocol and r.effective_metric == slot]
        elsewhere = [r for r in present if r.protocol != protocol and r.effective_metric != slot]
        right = next((r for r in owned if _leads_to(r, gateway)), None)
        extra = [r for r in owned if r is not right]
        if right is not None:
            statuses.append(RouteStatus(RouteState.IN_SYNC, dst, gateway, right, via))
        elif owned:
            statuses.append(RouteStatus(RouteState.WRONG_GATEWAY, dst, gateway, owned[0], via))
            changes.append(Change(Action.CHANGE, dst, gateway, protocol, owned[0], via))
            extra = owned[1:]
        elif (same := next((r for r in foreign if _leads_to(r, gateway)), None)) \
                and not same.extras:
            statuses.append(RouteStatus(RouteState.UNOWNED, dst, gateway, same, via))
            changes.append(Change(Action.ADOPT, dst, gateway, protocol, same, via))
        elif foreign:
            statuses.append(RouteStatus(RouteState.CONFLICT, dst, gateway, foreign[0], via))
            if force:
                changes.append(Change(Action.OVERRIDE, dst, gateway, protocol, foreign[0], via))
        else:
            statuses.append(RouteStatus(RouteState.MISSING, dst, gateway, None, via))
            changes.append(Change(Action.ADD, dst, gateway, protocol, None, via))
        for route in extra:  # duplicates of ours in other metric slots
            changes.append(Change(Action.REMOVE, dst, route.gateway, protocol, route))
        for route in elsewhere:
            statuses.append(RouteStatus(RouteState.OTHER_METRIC, dst, gateway, route, via))
    for dst, routes in by_dst.items():  # destinations nothing desired took
        for route in routes:
            if route.protocol == protocol:
                statuses.append(RouteStatus(RouteState.STALE, dst, None, route))
                changes.append(Change(Action.REMOVE, dst, route.gateway, protocol, route))
    return HostDiff(tuple(changes), tuple(statuses))


def project(observed: Iterable[Route], changes: Iterable[Change]) -> list[Route]:
    """The table the kernel holds after ``changes`` succeed (a model of ``ip route``).

    Used to predict and to check: ``diff(desired, project(observed, d.changes))`` has no
    changes when every change went through.
    """
    table = list(observed)
    for c in changes:
        if c.action is Action.ADD:
            table.append(Route(dst=c.dst, gateway=c.gateway, protocol=c.protocol))
        elif c.action is Action.REMOVE:
            table = [r for r in table if r is not c.observed]
        else:
            assert c.observed is not None
            keep_onlink = c.action is Action.ADOPT and c.observed.onlink
            table = [
                replace(r, gateway=c.gateway, protocol=c.protocol, type="unicast",
                        nexthops=(), onlink=keep_onlink)
                if r is c.observed else r
                for r in table
            ]
    return table
