"""What the kernel does with a packet to one address, as values: :class:`DecisionKind`
and :class:`Decision`, the answers of the forwarding model, and :func:`kind_of` (what
using one route does).

:mod:`podroutes.core.forwarding` makes them (:func:`~podroutes.core.forwarding.decide`,
:class:`~podroutes.core.forwarding.Fib`); :mod:`podroutes.core.parts` keeps one per part
of a network; :mod:`podroutes.core.routeget` compares them with the kernel's own answer;
:mod:`podroutes.core.paths` and :mod:`podroutes.diag.path_checks` judge by their kind.

Pure: values in, values out; no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from podroutes.core.model import MAIN_TABLE, IPAddress, Route


class DecisionKind(enum.StrEnum):
    """What the kernel does with a packet to one address."""

    #: Forwarded to a gateway (or to one of a multipath route's gateways).
    VIA = "via"
    #: Sent straight out of a device, the destination on-link (e.g. the bridge's CIDR).
    CONNECTED = "connected"
    #: Delivered to the host itself (a local, broadcast or anycast route).
    LOCAL = "local"
    #: Dropped silently: a blackhole route or rule, or (forwarded IPv4) a martian source.
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"
    #: Nothing matched: "Network is unreachable".
    NO_ROUTE = "no-route"
    #: Something the model cannot evaluate could change the outcome (see the reason).
    UNCERTAIN = "uncertain"


_DROPS = {"blackhole": DecisionKind.BLACKHOLE, "unreachable": DecisionKind.UNREACHABLE,
          "prohibit": DecisionKind.PROHIBIT}
_DELIVERED = frozenset({"local", "broadcast", "anycast"})


@dataclass(frozen=True, slots=True)
class Decision:
    """What the kernel does with a packet to one address.

    ``route`` is the route it uses (``None`` for NO_ROUTE, for a rule's own
    blackhole/unreachable/prohibit action, and for most UNCERTAIN decisions), ``table`` the
    table it came from, ``priority`` the rule that decided. UNCERTAIN carries a ``reason``
    and the ``candidates`` the model could not choose between (certain decisions; none
    when it cannot even tell those, e.g. a VRF's table).
    """

    kind: DecisionKind
    route: Route | None = None
    table: int | None = None
    priority: int | None = None
    reason: str = ""
    candidates: tuple[Decision, ...] = ()

    @property
    def gateways(self) -> tuple[IPAddress, ...]:
        """The next hops a VIA decision sends to (several for a multipath route)."""
        if self.route is None:
            return ()
        if self.route.nexthops:
            return self.route.nexthops
        return () if self.route.gateway is None else (self.route.gateway,)

    def same_outcome(self, other: Decision) -> bool:
        """Whether both send the packet the same way: the same kind and route (for a
        rule's own action, the same kind), whichever rule decided."""
        if DecisionKind.UNCERTAIN in (self.kind, other.kind):
            return self == other
        return self.kind is other.kind and self.route == other.route

    def __str__(self) -> str:
        if self.kind is DecisionKind.UNCERTAIN:
            return f"uncertain: {self.reason}"
        where = [] if self.priority is None else [f"rule {self.priority}"]
        r = self.route
        if r is None:
            return self.kind.value + (f" ({where[0]})" if where else "")
        if self.kind is DecisionKind.VIA:
            text = "via " + ", ".join(map(str, self.gateways))
            text += f" dev {r.dev}" if r.dev and not r.nexthops else ""
        elif self.kind is DecisionKind.CONNECTED:
            text = f"dev {r.dev}"
        else:
            text = self.kind.value
        where.insert(0, str(r.dst) + ("" if r.table == MAIN_TABLE else f" table {r.table}"))
        return f"{text} ({', '.join(where)})"


def kind_of(route: Route) -> DecisionKind:
    """What using ``route`` does; UNCERTAIN for a type the model does not know."""
    if route.type == "unicast":
        if route.nexthops or (route.gateway is not None and route.dev != "lo"):
            return DecisionKind.VIA
        # A gateway out of lo is a local address in the route's table (the kernel checks a
        # gateway there first): it is not used, `ip route get` says "dev lo" (measured).
        return DecisionKind.CONNECTED
    if route.type in _DELIVERED:
        return DecisionKind.LOCAL
    return _DROPS.get(route.type, DecisionKind.UNCERTAIN)
