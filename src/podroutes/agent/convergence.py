"""Deletes before adds, and what a reconcile did, worked out purely.

Pure: model values in, values out. Called by :mod:`podroutes.agent.reconciler`.

The engine sends one host's changes as one ``ip -batch`` in the order :func:`diff` emits
them (wanted routes first, stale ones last). A CIDR that moves to another node keeps its
destination, so it is rewritten in place (``replace``: no gap, no "File exists"); but when
a move also changes the prefix, or one node leaves while another joins, the stale routes
must go first. :func:`phases` splits such a reconcile in two: first the plan restricted to
destinations podroutes already owns (which removes the stale ones and adds nothing), then
the whole plan. :func:`restrict` makes the restricted inventory, so the engine plans it
as it plans any other.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from podroutes.core.diff import Action, HostDiff, RouteState
from podroutes.core.model import Inventory, IPAddress, IPNetwork, PlannedRoute


def phases(desired: Sequence[PlannedRoute], owned: Collection[IPNetwork]
           ) -> list[frozenset[IPNetwork] | None]:
    """The destinations each batch may add, in order; ``None`` means the whole plan.

    Two batches only when the table holds owned routes the plan no longer wants *and* the
    plan wants destinations the table lacks; otherwise one batch does it all.
    """
    wanted = {r.dst for r in desired}
    removes = any(dst not in wanted for dst in owned)
    adds = any(dst not in owned for dst in wanted)
    if removes and adds:
        return [frozenset(wanted & set(owned)), None]
    return [None]


def restrict(inventory: Inventory, host: str, keep: frozenset[IPNetwork]) -> Inventory:
    """The inventory with every other host's pod CIDRs limited to ``keep``: ``host``'s
    plan then holds only routes to those destinations."""
    return replace(inventory, hosts=tuple(
        h if h.name == host else replace(h, pod_cidrs=tuple(c for c in h.pod_cidrs if c in keep))
        for h in inventory.hosts))


def owned_routes(d: HostDiff, protocol: int) -> dict[IPNetwork, IPAddress | None]:
    """The routes carrying our protocol that a diff saw in the table, by destination."""
    return {s.dst: s.observed.gateway for s in d.statuses
            if s.observed is not None and s.observed.protocol == protocol}


def in_sync(d: HostDiff) -> dict[IPNetwork, IPAddress | None]:
    return {s.dst: s.desired_gateway for s in d.statuses if s.state is RouteState.IN_SYNC}


@dataclass(frozen=True, slots=True)
class Tally:
    """What one reconcile changed, for metrics and logs. ``repaired`` counts routes put
    back that were in sync before with the same gateway (deleted by hand, lost in a link
    flap); ``added`` counts the rest of the additions."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    adopted: int = 0
    repaired: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.added + other.added, self.removed + other.removed,
                     self.changed + other.changed, self.adopted + other.adopted,
                     self.repaired + other.repaired)

    @property
    def total(self) -> int:
        return self.added + self.removed + self.changed + self.adopted + self.repaired


def tally(applied: Iterable[tuple[Action, IPNetwork, IPAddress | None]],
          previously_in_sync: dict[IPNetwork, IPAddress | None]) -> Tally:
    """Count applied changes; an ADD of a destination that was in sync before, via the
    same gateway, is a repair."""
    counts = {"added": 0, "removed": 0, "changed": 0, "adopted": 0, "repaired": 0}
    for action, dst, gateway in applied:
        if action is Action.ADD:
            repaired = dst in previously_in_sync and previously_in_sync[dst] == gateway
            counts["repaired" if repaired else "added"] += 1
        elif action is Action.REMOVE:
            counts["removed"] += 1
        elif action is Action.ADOPT:
            counts["adopted"] += 1
        else:
            counts["changed"] += 1
    return Tally(**counts)
