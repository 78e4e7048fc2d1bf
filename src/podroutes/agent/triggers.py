"""Which events need a reconcile, and when to start it.

Pure: event values in, a reason (or ``None``) and delays out; no clock of its own. Called
by :mod:`podroutes.agent.netlink` (kernel events), :mod:`podroutes.agent.kube` (Node
watch events) and :mod:`podroutes.agent.runner` (pacing).

Kernel events (what the kernel does, measured on Linux 6.1, not assumed):

- an owned route deleted by hand sends ``RTM_DELROUTE`` with our protocol: reconcile;
- a link going down deletes IPv4 routes through it *without* any ``RTM_DELROUTE``; only
  ``RTM_NEWLINK`` says so: every link event reconciles;
- when a link comes back, its connected (``proto kernel``) route returns a moment after
  ``RTM_NEWLINK``; a reconcile run before it finds the gateways off-link, so a main-table
  route event of anyone else (the connected route coming back) reconciles too;
- address events reconcile (a node address is what makes gateways on-link);
- ``RTM_NEWROUTE`` with our own protocol is what a reconcile itself causes when it is a
  route of the plan as the agent writes it (the planned gateway, the family's default
  metric, a unicast route): ignored, or every change would be followed by a second, empty
  reconcile. Any other route under our protocol (``ip route replace DST via OTHER proto
  OURS``, another metric, a blackhole) was not written by the agent: reconcile at once;
- other tables (``local``, policy tables), neighbours and the rest are ignored;
- a monitor socket that overflowed lost events: reconcile.

Node watch events reconcile only when what planning reads changed (name, InternalIPs, pod
CIDRs), never for a kubelet heartbeat or the condition the agent itself just patched.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from podroutes.agent.nodes import NodeView
from podroutes.core.model import MAIN_TABLE, protocol_name


class NetlinkKind(enum.StrEnum):
    NEW_ROUTE = "RTM_NEWROUTE"
    DEL_ROUTE = "RTM_DELROUTE"
    NEW_LINK = "RTM_NEWLINK"
    DEL_LINK = "RTM_DELLINK"
    NEW_ADDR = "RTM_NEWADDR"
    DEL_ADDR = "RTM_DELADDR"
    #: The monitor's socket overflowed (ENOBUFS) and was reopened: events were lost.
    OVERFLOW = "overflow"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class NetlinkEvent:
    """One rtnetlink notification, reduced to what the decision needs."""

    kind: NetlinkKind
    table: int | None = None
    protocol: int | None = None
    dst: str | None = None
    ifname: str | None = None
    up: bool | None = None
    #: Route events: the gateway (``None``: none, or several nexthops), the metric as the
    #: kernel stored it, and the route type (``unicast``, ``blackhole``, ...).
    gateway: str | None = None
    metric: int | None = None
    type: str | None = None


#: What the agent writes for a destination: its gateway (as ``ip`` prints it).
Expected = Mapping[str, str]

_DEFAULT_METRIC = {False: 0, True: 1024}  # by "is IPv6": what the kernel stores for ours


def _as_written(event: NetlinkEvent, expected: Expected | None) -> bool:
    """An owned route exactly as the agent writes it for the current plan."""
    if expected is None or event.dst is None:
        return False
    default = _DEFAULT_METRIC[":" in event.dst]
    return (expected.get(event.dst) == event.gateway and event.type in (None, "unicast")
            and event.metric in (None, default))


def netlink_reason(event: NetlinkEvent, protocol: int,
                   expected: Expected | None = None) -> str | None:
    """Why this kernel event needs a reconcile, or ``None`` if it does not.

    ``expected`` is what the agent writes (destination -> gateway, the current plan); an
    owned route added or replaced otherwise is someone else's doing. Without it (before
    the first plan) every owned route event is taken as the agent's own."""
    kind = event.kind
    if kind is NetlinkKind.OVERFLOW:
        return "netlink events were lost (socket overflow)"
    if kind in (NetlinkKind.NEW_ROUTE, NetlinkKind.DEL_ROUTE):
        if event.table != MAIN_TABLE:
            return None
        if event.protocol == protocol:
            if kind is NetlinkKind.DEL_ROUTE:
                return f"owned route {event.dst} deleted"
            if expected is None or _as_written(event, expected):
                return None
            how = " ".join(part for part in (
                event.type if event.type not in (None, "unicast") else "",
                f"via {event.gateway}" if event.gateway else "",
                f"metric {event.metric}" if event.metric else "") if part)
            wanted = expected.get(event.dst or "")
            return (f"owned route {event.dst} changed to {how or 'another form'}"
                    + (f" (the plan says via {wanted})" if wanted else " (not in the plan)"))
        verb = "added" if kind is NetlinkKind.NEW_ROUTE else "deleted"
        return f"route {event.dst} (proto {protocol_name(event.protocol or 0)}) {verb}"
    if kind in (NetlinkKind.NEW_LINK, NetlinkKind.DEL_LINK):
        state = "gone" if kind is NetlinkKind.DEL_LINK else "up" if event.up else "down"
        return f"link {event.ifname or '?'} {state}"
    if kind in (NetlinkKind.NEW_ADDR, NetlinkKind.DEL_ADDR):
        verb = "added" if kind is NetlinkKind.NEW_ADDR else "removed"
        return f"address {event.dst} {verb} on {event.ifname or 'a link'}"
    return None


def node_change_reason(old: NodeView | None, new: NodeView | None) -> str | None:
    """Why a Node watch event needs a reconcile, or ``None`` (a heartbeat, a condition)."""
    if old is None and new is None:
        return None
    if old is None:
        assert new is not None
        return f"node {new.name} added"
    if new is None:
        return f"node {old.name} deleted"
    if old.routing == new.routing:
        return None
    what = [label for label, a, b in (("InternalIPs", old.internal_ips, new.internal_ips),
                                      ("pod CIDRs", old.pod_cidrs, new.pod_cidrs)) if a != b]
    return f"node {new.name} changed its {' and '.join(what)}"


@dataclass(frozen=True, slots=True)
class Pacing:
    """When a triggered reconcile starts.

    ``settle``: after the first trigger, wait this long so that a burst (a link going
    down removes many routes at once) becomes one reconcile. ``min_interval``: never start
    reconciles closer together than this, so a daemon that churns routes cannot make the
    agent spin. The periodic resync is not paced: it is due when it is due.
    """

    settle: float = 0.02
    min_interval: float = 0.2

    def delay(self, now: float, first_trigger: float, last_start: float | None) -> float:
        """Seconds to wait from ``now`` before starting the reconcile."""
        ready = first_trigger + self.settle
        if last_start is not None:
            ready = max(ready, last_start + self.min_interval)
        return max(0.0, ready - now)
