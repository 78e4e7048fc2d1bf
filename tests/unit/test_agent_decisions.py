"""The agent's pure decisions: which event reconciles, pacing, deletes before adds, tallies,
the Node condition and Events."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from podroutes.agent.conditions import (
    Condition,
    EventThrottle,
    Reason,
    SyncVerdict,
    condition_patch,
    event_body,
    wanted_condition,
)
from podroutes.agent.convergence import Tally, phases, restrict, tally
from podroutes.agent.nodes import NodeView
from podroutes.agent.triggers import (
    NetlinkEvent,
    NetlinkKind,
    Pacing,
    netlink_reason,
    node_change_reason,
)
from podroutes.core.diff import Action
from podroutes.core.model import PlannedRoute
from podroutes.core.plan import RoutePlan
from podroutes.inventory import load

K = NetlinkKind


@pytest.mark.parametrize(("event", "reconcile"), [
    (NetlinkEvent(K.DEL_ROUTE, 254, 147, "10.200.1.0/24"), True),     # deleted by hand
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "10.200.1.0/24"), False),    # our own add
    (NetlinkEvent(K.NEW_ROUTE, 254, 2, "192.168.10.0/24"), True),     # connected route back
    (NetlinkEvent(K.DEL_ROUTE, 254, 4, "10.200.1.0/24"), True),       # a conflict went away
    (NetlinkEvent(K.NEW_ROUTE, 255, 2, "192.168.10.101/32"), False),  # local table
    (NetlinkEvent(K.DEL_ROUTE, 100, 147, "10.0.0.0/8"), False),       # another table
    (NetlinkEvent(K.NEW_LINK, ifname="eth0", up=True), True),
    (NetlinkEvent(K.NEW_LINK, ifname="eth0", up=False), True),
    (NetlinkEvent(K.DEL_LINK, ifname="eth0"), True),
    (NetlinkEvent(K.NEW_ADDR, dst="192.168.10.101/24", ifname="eth0"), True),
    (NetlinkEvent(K.DEL_ADDR, dst="192.168.10.101/24"), True),
    (NetlinkEvent(K.OVERFLOW), True),
    (NetlinkEvent(K.OTHER), False),
])
def test_which_kernel_events_reconcile(event: NetlinkEvent, reconcile: bool) -> None:
    assert (netlink_reason(event, 147) is not None) is reconcile


def test_kernel_reasons_say_what_happened() -> None:
    assert netlink_reason(NetlinkEvent(K.DEL_ROUTE, 254, 147, "10.200.1.0/24"), 147) == \
        "owned route 10.200.1.0/24 deleted"
    assert netlink_reason(NetlinkEvent(K.NEW_LINK, ifname="eth0", up=False), 147) == \
        "link eth0 down"


def test_node_changes_that_matter() -> None:
    a = NodeView("a", ("192.168.10.101",), ("10.200.0.0/24",), uid="1")
    heartbeat = NodeView("a", ("192.168.10.101",), ("10.200.0.0/24",), uid="1",
                         condition=Condition("False", "RouteCreated", "m"))
    moved = NodeView("a", ("192.168.10.111",), ("10.200.0.0/24",))
    assert node_change_reason(None, a) == "node a added"
    assert node_change_reason(a, None) == "node a deleted"
    assert node_change_reason(a, heartbeat) is None
    assert node_change_reason(a, moved) == "node a changed its InternalIPs"
    assert node_change_reason(None, None) is None


def test_pacing_settles_bursts_and_spaces_reconciles() -> None:
    p = Pacing(settle=0.02, min_interval=0.2)
    assert p.delay(now=10.0, first_trigger=10.0, last_start=None) == pytest.approx(0.02)
    assert p.delay(now=10.05, first_trigger=10.0, last_start=None) == 0
    assert p.delay(now=10.05, first_trigger=10.0, last_start=9.95) == pytest.approx(0.1)
    assert p.delay(now=20.0, first_trigger=19.0, last_start=9.0) == 0


def _routes(*pairs: tuple[str, str]) -> list[PlannedRoute]:
    return [PlannedRoute(ip_network(d), ip_address(g), "x") for d, g in pairs]


def test_phases_split_only_when_removals_and_additions_meet() -> None:
    n = ip_network
    desired = _routes(("10.200.1.0/24", "192.168.10.102"), ("10.200.2.0/23", "192.168.10.104"))
    owned = {n("10.200.1.0/24"), n("10.200.2.0/24")}
    assert phases(desired, owned) == [frozenset({n("10.200.1.0/24")}), None]
    assert phases(desired, {n("10.200.1.0/24")}) == [None]                  # only adds
    assert phases(desired[:1], owned) == [None]                              # only removes
    assert phases(desired, {n("10.200.1.0/24"), n("10.200.2.0/23")}) == [None]  # nothing


def test_restrict_limits_the_plan_to_kept_destinations() -> None:
    inv = load("192.168.10.101 a.k a 10.200.0.0/24\n192.168.10.102 b.k b 10.200.1.0/24\n"
               "192.168.10.103 c.k c 10.200.2.0/24\n", "m.txt")
    kept = restrict(inv, "a", frozenset({ip_network("10.200.1.0/24")}))
    routes = RoutePlan(kept).routes_for(kept.host("a"))
    assert [str(r.dst) for r in routes] == ["10.200.1.0/24"]
    assert kept.host("a").pod_cidrs == inv.host("a").pod_cidrs


def test_tally_tells_repairs_from_additions() -> None:
    n, a = ip_network, ip_address
    before = {n("10.200.1.0/24"): a("192.168.10.102"), n("10.200.2.0/24"): a("192.168.10.103")}
    t = tally([(Action.ADD, n("10.200.1.0/24"), a("192.168.10.102")),   # put back
               (Action.ADD, n("10.200.2.0/24"), a("192.168.10.113")),   # new gateway: added
               (Action.ADD, n("10.200.3.0/24"), a("192.168.10.104")),
               (Action.REMOVE, n("10.200.9.0/24"), a("192.168.10.109")),
               (Action.CHANGE, n("10.200.4.0/24"), a("192.168.10.105")),
               (Action.ADOPT, n("10.200.5.0/24"), a("192.168.10.106"))], before)
    assert t == Tally(added=2, removed=1, changed=1, adopted=1, repaired=1)
    assert (t + t).total == 12


def test_condition_waits_out_the_grace_period_and_names_the_reason() -> None:
    ok = SyncVerdict(True, Reason.ROUTE_CREATED, "fine")
    bad = SyncVerdict(False, Reason.CONFLICT, "10.200.1.0/24 held")
    assert wanted_condition(ok, None, 100, 30) == Condition("False", "RouteCreated", "fine")
    assert wanted_condition(bad, 90, 100, 30) is None
    assert wanted_condition(bad, 60, 100, 30) == Condition("True", "RoutesConflict",
                                                           "10.200.1.0/24 held")


def test_condition_patch_only_when_it_differs_and_keeps_transition_time() -> None:
    wanted = Condition("False", "RouteCreated", "m")
    assert condition_patch(wanted, Condition("False", "RouteCreated", "m", "t0"), 0) is None
    patch = condition_patch(wanted, Condition("False", "RouteCreated", "old", "t0"), 0)
    assert patch is not None
    [c] = patch["status"]["conditions"]
    assert (c["type"], c["status"], c["lastTransitionTime"]) == ("NetworkUnavailable",
                                                                  "False", "t0")
    flipped = condition_patch(wanted, Condition("True", "NoRouteCreated", "x", "t0"), 86400)
    assert flipped is not None
    assert flipped["status"]["conditions"][0]["lastTransitionTime"] == "1970-01-02T00:00:00Z"


def test_events_are_throttled_per_reason_and_message() -> None:
    throttle = EventThrottle(interval=300)
    assert throttle.allow("RoutesConflict", "a", 0)
    assert not throttle.allow("RoutesConflict", "a", 299)
    assert throttle.allow("RoutesConflict", "b", 1)
    assert throttle.allow("RoutesConflict", "a", 301)
    for i in range(300):
        throttle.allow("R", str(i), 400)
    assert len(throttle._sent) <= 257


def test_event_body_is_a_core_v1_event_about_the_node() -> None:
    body = event_body("node-0", "uid-0", "RoutesConflict", "x" * 2000, 1.5)
    assert body["metadata"] == {"name": f"node-0.{int(1.5e9):x}", "namespace": "default"}
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "node-0",
                                      "uid": "uid-0"}
    assert body["type"] == "Warning" and len(body["message"]) == 1024
    assert event_body("n", "", "RoutesRepaired", "m", 0, warning=False)["type"] == "Normal"


PLAN = {"10.200.1.0/24": "192.168.10.102", "fd00:200:1::/64": "fd00:10::102"}


@pytest.mark.parametrize(("event", "reconcile"), [
    # the agent's own writes: planned gateway, default metric, unicast
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "10.200.1.0/24", gateway="192.168.10.102",
                  type="unicast"), False),
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "fd00:200:1::/64", gateway="fd00:10::102",
                  metric=1024, type="unicast"), False),
    # someone replaced it under our protocol: another gateway, metric or type
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "10.200.1.0/24", gateway="192.168.10.100",
                  type="unicast"), True),
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "10.200.1.0/24", gateway="192.168.10.102",
                  metric=5, type="unicast"), True),
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "10.200.1.0/24", type="blackhole"), True),
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "fd00:200:1::/64", gateway="fd00:10::102",
                  metric=100, type="unicast"), True),
    # an owned route that is not in the plan at all
    (NetlinkEvent(K.NEW_ROUTE, 254, 147, "10.200.9.0/24", gateway="192.168.10.109",
                  type="unicast"), True),
])
def test_owned_route_events_against_what_the_agent_writes(event: NetlinkEvent,
                                                          reconcile: bool) -> None:
    assert (netlink_reason(event, 147, PLAN) is not None) is reconcile


def test_a_replaced_owned_route_says_what_it_became_and_what_the_plan_says() -> None:
    event = NetlinkEvent(K.NEW_ROUTE, 254, 147, "10.200.1.0/24", gateway="192.168.10.100",
                         type="unicast")
    assert netlink_reason(event, 147, PLAN) == (
        "owned route 10.200.1.0/24 changed to via 192.168.10.100 (the plan says via "
        "192.168.10.102)")


def test_a_node_missing_from_an_inventory_file_is_not_called_a_node_object(
        tmp_path: Path) -> None:
    """In inventory-file mode there are no Node objects: the reason names the file."""
    import asyncio

    from podroutes.agent.filesource import read_view
    from podroutes.agent.nodes import ClusterView
    from podroutes.agent.reconciler import Reconciler
    from podroutes.remote.transport import LocalTransport

    path = tmp_path / "machines.txt"
    path.write_text("192.168.10.100 server.k server\n")
    view = read_view(path)  # what the agent's file source publishes
    reconciler = Reconciler("node-9", 147, LocalTransport())
    from_file = asyncio.run(reconciler.reconcile(view))
    assert from_file.error == (f"node node-9 is not in the plan: {path} has no host by "
                               "this name")
    from_nodes = asyncio.run(reconciler.reconcile(ClusterView(view.inventory)))
    assert from_nodes.error is not None and "no Node object by this name" in from_nodes.error
