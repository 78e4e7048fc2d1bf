"""Table-driven tests of diff(desired, observed, protocol): every ownership case, the no-op
included, the exact ``ip -batch`` line of every change, and project()."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from podroutes.core.diff import Action, Change, RouteState, diff, project
from podroutes.core.iproute import parse_routes
from podroutes.core.model import Family, PlannedRoute, Route

P = 147
DST = ip_network("10.200.1.0/24")
GW = ip_address("192.168.10.102")
OTHER = ip_address("192.168.10.99")
STALE = ip_network("10.200.9.0/24")
WANT = PlannedRoute(DST, GW, "node-1")
DST6 = ip_network("fd00:201::/64")
GW6 = ip_address("fd00:10::102")
WANT6 = PlannedRoute(DST6, GW6, "node-1")

ADD = "route add 10.200.1.0/24 via 192.168.10.102 proto 147"
REPLACE = "route replace 10.200.1.0/24 via 192.168.10.102 proto 147"


def r(dst: Any = DST, gw: Any = GW, proto: int = P, **kw: Any) -> Route:
    kw.setdefault("dev", "eth0")
    return Route(dst=dst, gateway=gw, protocol=proto, **kw)


S = RouteState
A = Action

#: (id, desired, observed, force, [(state, observed index or None)], [(action, batch line)])
CASES: list[tuple[str, list[PlannedRoute], list[Route], bool, list[Any], list[Any]]] = [
    ("empty-table-adds", [WANT], [], False, [(S.MISSING, None)], [(A.ADD, ADD)]),
    ("owned-same-gw-is-a-noop", [WANT], [r()], False, [(S.IN_SYNC, 0)], []),
    ("owned-same-gw-metric-50-noop", [WANT], [r(metric=50)], False, [(S.IN_SYNC, 0)], []),
    ("owned-other-gw-changes", [WANT], [r(gw=OTHER)], False, [(S.WRONG_GATEWAY, 0)],
     [(A.CHANGE, REPLACE)]),
    ("owned-other-gw-keeps-its-metric", [WANT], [r(gw=OTHER, metric=50)], False,
     [(S.WRONG_GATEWAY, 0)], [(A.CHANGE, REPLACE + " metric 50")]),
    ("owned-blackhole-changes", [WANT], [r(gw=None, type="blackhole")], False,
     [(S.WRONG_GATEWAY, 0)], [(A.CHANGE, REPLACE)]),
    ("foreign-boot-same-gw-adopted", [WANT], [r(proto=3)], False, [(S.UNOWNED, 0)],
     [(A.ADOPT, REPLACE)]),
    ("foreign-static-same-gw-adopted-in-its-slot", [WANT], [r(proto=4, metric=0)], False,
     [(S.UNOWNED, 0)], [(A.ADOPT, REPLACE + " metric 0")]),
    ("foreign-same-gw-other-metric-coexists", [WANT], [r(proto=4, metric=50)], False,
     [(S.MISSING, None), (S.OTHER_METRIC, 0)], [(A.ADD, ADD)]),
    ("foreign-boot-other-gw-conflict", [WANT], [r(proto=3, gw=OTHER)], False,
     [(S.CONFLICT, 0)], []),
    ("foreign-static-other-gw-forced", [WANT], [r(proto=4, gw=OTHER)], True,
     [(S.CONFLICT, 0)], [(A.OVERRIDE, REPLACE)]),
    ("foreign-other-gw-other-metric-never-forced", [WANT], [r(proto=4, gw=OTHER, metric=7)],
     True, [(S.MISSING, None), (S.OTHER_METRIC, 0)], [(A.ADD, ADD)]),
    ("foreign-blackhole-conflict", [WANT], [r(proto=3, gw=None, dev=None, type="blackhole")],
     False, [(S.CONFLICT, 0)], []),
    ("foreign-blackhole-forced", [WANT], [r(proto=3, gw=None, type="blackhole")], True,
     [(S.CONFLICT, 0)], [(A.OVERRIDE, REPLACE)]),
    ("foreign-ecmp-through-gw-conflict", [WANT], [r(proto=3, gw=None, nexthops=(GW, OTHER))],
     False, [(S.CONFLICT, 0)], []),
    ("foreign-same-gw-adopted-not-the-other", [WANT], [r(proto=3, gw=OTHER), r(proto=4)],
     False, [(S.UNOWNED, 1)], [(A.ADOPT, REPLACE)]),
    ("owned-right-foreign-other-left-alone", [WANT], [r(proto=3, gw=OTHER), r()], False,
     [(S.IN_SYNC, 1)], []),
    ("owned-wrong-beats-foreign-right", [WANT], [r(proto=3, metric=5), r(gw=OTHER)], False,
     [(S.WRONG_GATEWAY, 1), (S.OTHER_METRIC, 0)], [(A.CHANGE, REPLACE)]),
    ("owned-in-other-table-ignored", [WANT], [r(table=100)], False, [(S.MISSING, None)],
     [(A.ADD, ADD)]),
    ("foreign-in-other-table-ignored", [WANT], [r(proto=3, gw=OTHER, table=100)], False,
     [(S.MISSING, None)], [(A.ADD, ADD)]),
    ("duplicate-owned-extra-slot-removed", [WANT], [r(gw=OTHER, metric=100), r()], False,
     [(S.IN_SYNC, 1)],
     [(A.REMOVE, "route del 10.200.1.0/24 via 192.168.10.99 proto 147 metric 100")]),
    ("duplicate-owned-both-wrong", [WANT], [r(gw=OTHER), r(gw=OTHER, metric=100)], False,
     [(S.WRONG_GATEWAY, 0)],
     [(A.CHANGE, REPLACE),
      (A.REMOVE, "route del 10.200.1.0/24 via 192.168.10.99 proto 147 metric 100")]),
    ("owned-stale-removed", [], [r(dst=STALE, gw=OTHER)], False, [(S.STALE, 0)],
     [(A.REMOVE, "route del 10.200.9.0/24 via 192.168.10.99 proto 147")]),
    ("owned-stale-blackhole-removed", [], [r(dst=STALE, gw=None, type="blackhole")], False,
     [(S.STALE, 0)], [(A.REMOVE, "route del 10.200.9.0/24 proto 147")]),
    ("owned-stale-other-table-ignored", [], [r(dst=STALE, table=100)], False, [], []),
    ("foreign-not-desired-untouched", [], [r(dst=STALE, proto=4), r(proto=3)], True, [], []),
    ("other-protocol-number-is-foreign", [WANT], [r(proto=148, gw=OTHER)], False,
     [(S.CONFLICT, 0)], []),
    ("v6-empty-adds-without-metric", [WANT6], [], False, [(S.MISSING, None)],
     [(A.ADD, "route add fd00:201::/64 via fd00:10::102 proto 147")]),
    ("v6-owned-noop", [WANT6], [r(DST6, GW6, metric=1024)], False, [(S.IN_SYNC, 0)], []),
    ("v6-foreign-adopted-at-1024", [WANT6], [r(DST6, GW6, proto=3, metric=1024)], False,
     [(S.UNOWNED, 0)],
     [(A.ADOPT, "route replace fd00:201::/64 via fd00:10::102 proto 147 metric 1024")]),
    ("v6-stale-removed-with-metric", [], [r(ip_network("fd00:209::/64"), GW6, metric=1024)],
     False, [(S.STALE, 0)],
     [(A.REMOVE, "route del fd00:209::/64 via fd00:10::102 proto 147 metric 1024")]),
    ("mixed-host", [WANT, WANT6], [r(dst=STALE), r(proto=3), r(DST6, OTHER, proto=16)], False,
     [(S.UNOWNED, 1), (S.CONFLICT, 2), (S.STALE, 0)],
     [(A.ADOPT, REPLACE), (A.REMOVE, "route del 10.200.9.0/24 via 192.168.10.102 proto 147")]),
]


@pytest.mark.parametrize(
    ("desired", "observed", "force", "states", "changes"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_diff_table(
    desired: list[PlannedRoute], observed: list[Route], force: bool,
    states: list[Any], changes: list[Any],
) -> None:
    result = diff(desired, observed, P, force=force)
    assert [(s.state, None if s.observed is None else observed.index(s.observed))
            for s in result.statuses] == states
    assert [(c.action, c.batch_line()) for c in result.changes] == changes
    assert result.batch() == "".join(line + "\n" for _, line in changes)
    assert result.in_sync == all(state is S.IN_SYNC for state, _ in states)


@pytest.mark.parametrize(
    ("desired", "observed", "force"), [case[1:4] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_applying_the_changes_converges_and_a_second_diff_is_empty(
    desired: list[PlannedRoute], observed: list[Route], force: bool
) -> None:
    first = diff(desired, observed, P, force=force)
    after = project(observed, first.changes)
    second = diff(desired, after, P, force=force)
    assert second.changes == ()
    conflicts = len(first.conflicts) if not force else 0
    assert sum(s.state.is_drift for s in second.statuses) == conflicts
    # Foreign routes are only ever adopted (same gateway) or forced, never deleted.
    foreign = [x for x in observed if x.protocol != P]
    touched = {id(c.observed) for c in first.changes}
    for route in foreign:
        if id(route) in touched:
            change = next(c for c in first.changes if c.observed is route)
            assert change.action in ((A.OVERRIDE,) if force else ()) + (A.ADOPT,)
        else:
            assert any(x is route for x in after)


def test_no_op_says_so() -> None:
    result = diff([WANT, WANT6], [r(), r(DST6, GW6, metric=1024)], P)
    assert result.changes == ()
    assert result.in_sync
    assert result.unchanged == 2
    assert result.batch() == ""
    assert result.conflicts == ()


def test_counts_and_conflicts() -> None:
    observed = [r(proto=3, gw=OTHER), r(dst=STALE), r(DST6, GW6, proto=3, metric=1024)]
    result = diff([WANT, WANT6], observed, P)
    assert [s.dst for s in result.conflicts] == [DST]
    assert result.conflicts[0].desired_gateway == GW
    assert result.conflicts[0].via_host == "node-1"
    assert (result.count(A.ADOPT), result.count(A.REMOVE), result.count(A.OVERRIDE)) == (1, 1, 0)
    assert result.unchanged == 0
    assert not result.in_sync
    assert not RouteState.IN_SYNC.is_drift
    assert all(state.is_drift for state in RouteState
               if state not in (RouteState.IN_SYNC, RouteState.OTHER_METRIC))
    assert not RouteState.OTHER_METRIC.is_drift


def test_change_carries_via_host_and_protocol() -> None:
    [change] = diff([WANT], [], 200).changes
    assert change == Change(A.ADD, DST, GW, 200, None, "node-1")
    assert change.batch_line() == ADD.replace("147", "200")


def test_remove_in_another_table_names_the_table() -> None:
    stale = r(dst=STALE, table=100, metric=3)
    change = Change(A.REMOVE, STALE, GW, P, stale)
    assert change.batch_line() == (
        "route del 10.200.9.0/24 via 192.168.10.102 proto 147 metric 3 table 100")


# --- project() ---------------------------------------------------------------------------


def test_project_add_remove_replace() -> None:
    stale, foreign, owned_wrong = r(dst=STALE), r(proto=3), r(DST6, OTHER, metric=1024,
                                                              onlink=True)
    observed = [stale, foreign, owned_wrong]
    changes = [
        Change(A.REMOVE, STALE, GW, P, stale),
        Change(A.ADOPT, DST, GW, P, foreign),
        Change(A.CHANGE, DST6, GW6, P, owned_wrong),
        Change(A.ADD, ip_network("10.200.5.0/24"), GW, P),
    ]
    after = project(observed, changes)
    assert after == [
        replace(foreign, protocol=P),
        replace(owned_wrong, gateway=GW6, onlink=False),
        Route(dst=ip_network("10.200.5.0/24"), gateway=GW, protocol=P),
    ]
    assert observed == [stale, foreign, owned_wrong]  # the input is not modified


def test_project_override_turns_a_blackhole_into_a_unicast_route() -> None:
    hole = r(proto=3, gw=None, type="blackhole")
    [change] = diff([WANT], [hole], P, force=True).changes
    assert project([hole], [change]) == [Route(dst=DST, gateway=GW, protocol=P, dev="eth0")]


def test_project_of_no_changes_is_the_same_table() -> None:
    observed = [r(), r(dst=STALE, proto=4)]
    assert project(observed, []) == observed


# --- real captured tables ----------------------------------------------------------------

DATA = Path(__file__).parent.parent / "data"


def test_server_against_the_captured_v4_table() -> None:
    observed = parse_routes((DATA / "ip-j-route-v4.json").read_text(), Family.V4)
    desired = [
        PlannedRoute(ip_network("10.200.0.0/24"), ip_address("192.168.10.101"), "node-0"),
        PlannedRoute(ip_network("10.200.1.0/24"), ip_address("192.168.10.102"), "node-1"),
    ]
    result = diff(desired, observed, P)
    assert [(str(s.dst), s.state) for s in result.statuses] == [
        ("10.200.0.0/24", S.IN_SYNC), ("10.200.1.0/24", S.UNOWNED)]
    assert result.batch() == "route replace 10.200.1.0/24 via 192.168.10.102 proto 147\n"


def test_node_against_the_captured_v6_table() -> None:
    observed = parse_routes((DATA / "ip-j-route-v6.json").read_text(), Family.V6)
    via = ip_address("fd00:10::101")
    desired = [PlannedRoute(ip_network(d), via, "node-x") for d in
               ("fd00:200:1::/64", "fd00:200:2::/64", "fd00:300::/64", "fd00:200:9::/64")]
    result = diff(desired, observed, P)
    assert [s.state for s in result.statuses] == [S.IN_SYNC, S.CONFLICT, S.CONFLICT, S.MISSING]
    assert result.batch() == "route add fd00:200:9::/64 via fd00:10::101 proto 147\n"
    forced = diff(desired, observed, P, force=True)
    assert forced.batch() == (
        "route replace fd00:200:2::/64 via fd00:10::101 proto 147 metric 1024\n"
        "route replace fd00:300::/64 via fd00:10::101 proto 147 metric 1024\n"
        "route add fd00:200:9::/64 via fd00:10::101 proto 147\n"
    )


def test_adopting_an_onlink_route_keeps_onlink() -> None:
    """A hand-made ``onlink`` route's gateway may be reachable only that way: re-tagging it
    must not drop the flag, or ``ip route replace`` fails with "invalid gateway"."""
    from ipaddress import ip_address, ip_network

    from podroutes.core.diff import Action, diff, project
    from podroutes.core.model import PlannedRoute, Route

    dst, gw = ip_network("10.200.1.0/24"), ip_address("10.9.9.9")
    hand = Route(dst=dst, gateway=gw, dev="eth0", protocol=3, onlink=True)
    d = diff([PlannedRoute(dst, gw, "node-1")], [hand], 147)
    assert [c.action for c in d.changes] == [Action.ADOPT]
    assert d.changes[0].batch_line() == (
        "route replace 10.200.1.0/24 via 10.9.9.9 dev eth0 onlink proto 147")
    after = project([hand], d.changes)
    assert after[0].onlink and after[0].protocol == 147
    assert diff([PlannedRoute(dst, gw, "node-1")], after, 147).changes == ()


def test_diffs_fast_constructors_build_the_same_frozen_values() -> None:
    """``_status`` and ``_addition`` fill a slots draft and swap its ``__class__``: the
    field order they rely on is pinned here, as ``make_route``'s is in test_iproute."""
    from dataclasses import FrozenInstanceError, fields

    from podroutes.core.diff import Action, Change, RouteState, RouteStatus, _addition, _status

    dst, gateway = ip_network("10.200.1.0/24"), ip_address("192.168.10.102")
    assert [f.name for f in fields(RouteStatus)] == [
        "state", "dst", "desired_gateway", "observed", "via_host"]
    assert [f.name for f in fields(Change)] == [
        "action", "dst", "gateway", "protocol", "observed", "via_host"]
    fast = _status(RouteState.MISSING, dst, gateway, None, "node-1")
    slow = RouteStatus(RouteState.MISSING, dst, gateway, None, "node-1")
    assert type(fast) is RouteStatus and fast == slow and hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    added = _addition(dst, gateway, 147, "node-1")
    assert added == Change(Action.ADD, dst, gateway, 147, None, "node-1")
    assert type(added) is Change and hash(added) == hash(Change(Action.ADD, dst, gateway, 147,
                                                                None, "node-1"))
    with pytest.raises(FrozenInstanceError):
        added.gateway = None  # type: ignore[misc]


#: `ip -j route` of a hand-made route with attributes (iproute2 6.1.0, captured from
#: `ip route add 10.200.1.0/24 via 192.168.10.102 mtu lock 1400 src 192.168.10.101
#: initcwnd 10 advmss 1360 realm 5` in a throwaway namespace): `mtu lock` prints as `mtu`.
WITH_ATTRIBUTES = ('[{"dst":"10.200.1.0/24","gateway":"192.168.10.102","dev":"eth0",'
                   '"prefsrc":"192.168.10.101","flags":[],"flow":{"to":"5"},'
                   '"metrics":[{"mtu":1400,"advmss":1360,"initcwnd":10,"ecn":null}]}]')


def test_a_route_carrying_attributes_says_so_in_ip_words() -> None:
    (route,) = parse_routes(WITH_ATTRIBUTES, Family.V4)
    assert route.extras == ("src 192.168.10.101", "realm 5", "mtu 1400", "advmss 1360",
                            "initcwnd 10", "ecn")
    (plain,) = parse_routes('[{"dst":"10.200.1.0/24","gateway":"192.168.10.102",'
                            '"dev":"eth0","flags":["onlink"]}]', Family.V4)
    assert plain.extras == ()


def test_a_hand_made_route_with_attributes_is_a_conflict_not_adopted() -> None:
    """Adopting rewrites the route with podroutes' words only: mtu, src, ... would be
    lost (and `mtu lock` cannot even be read back), so it is left alone and reported."""
    (route,) = parse_routes(WITH_ATTRIBUTES, Family.V4)
    d = diff([WANT], [route], P)
    assert [s.state for s in d.statuses] == [S.CONFLICT]
    assert d.changes == ()
    forced = diff([WANT], [route], P, force=True)
    assert [c.action for c in forced.changes] == [A.OVERRIDE]
    plain = diff([WANT], [replace(route, extras=())], P)
    assert [c.action for c in plain.changes] == [A.ADOPT]
