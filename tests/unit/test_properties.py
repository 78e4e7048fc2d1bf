"""Hypothesis properties of the planner and diff over generated valid inventories.

Inventories are written as machines.txt text and go through :func:`load`, so every
generated inventory is also a check that valid input is accepted.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Network, ip_address, ip_network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podroutes.core.diff import Action, diff, project
from podroutes.core.iproute import text_of
from podroutes.core.model import MAIN_TABLE, Family, Inventory, IPAddress, PlannedRoute, Route
from podroutes.core.plan import plan
from podroutes.inventory import load

P = 147
NAME = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
SETTINGS = settings(deadline=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def inventories(draw: st.DrawFn, dual_stack: bool = True) -> Inventory:
    names = draw(st.lists(NAME, min_size=1, max_size=40, unique=True))
    n = len(names)
    v4_hosts = draw(st.lists(st.integers(1, 65534), min_size=n, max_size=n, unique=True))
    v4_cidrs = draw(st.lists(st.integers(0, 65535), min_size=n, max_size=n, unique=True))
    lines = []
    for i, name in enumerate(names):
        families = draw(st.sampled_from(
            [(4,), (4, 6), (6,)] if dual_stack else [(4,)]))
        own = draw(st.sets(st.sampled_from(families)))
        addresses, cidrs = [], []
        if 4 in families:
            addresses.append(str(ip_address("192.168.0.0") + v4_hosts[i]))
        if 6 in families:
            addresses.append(f"fd00:10::{i + 1:x}")
        if 4 in own:
            cidrs.append(f"10.{v4_cidrs[i] >> 8}.{v4_cidrs[i] & 255}.0/24")
        if 6 in own:
            cidrs.append(f"fd00:200:{i:x}::/64")
        sep = draw(st.sampled_from([" ", "\t", "  "]))
        fields = [",".join(addresses), f"{name}.cluster.local", name, ",".join(cidrs)]
        lines.append(sep.join(f for f in fields if f))
    return load("\n".join(lines) + "\n", "generated.txt")


@SETTINGS
@given(inventories())
def test_no_host_routes_to_its_own_cidr_or_through_itself(inv: Inventory) -> None:
    for host, routes in plan(inv):
        for route in routes:
            assert route.dst not in host.pod_cidrs
            assert route.via_host != host.name
            assert route.gateway not in host.addresses
            assert route.gateway.version == route.dst.version


@SETTINGS
@given(inventories())
def test_every_pod_cidr_is_reachable_from_every_other_host_of_its_family(
    inv: Inventory,
) -> None:
    route_plan = plan(inv)
    expected: dict[str, set[tuple[object, object]]] = {h.name: set() for h in inv}
    for owner in inv:
        for cidr in owner.pod_cidrs:
            family = Family.of(cidr)
            gateway = owner.address(family)
            assert gateway is not None  # validation guarantees it
            for host in inv:
                if host is not owner and host.address(family) is not None:
                    expected[host.name].add((cidr, gateway))
    actual = {h.name: [(r.dst, r.gateway) for r in routes] for h, routes in route_plan}
    assert {name: set(pairs) for name, pairs in actual.items()} == expected
    assert all(len(pairs) == len(set(pairs)) for pairs in actual.values())
    assert route_plan.route_count() == sum(len(pairs) for pairs in actual.values())


OTHER_GW = {Family.V4: ip_address("192.168.255.254"), Family.V6: ip_address("fd00:10::ffff")}
STALE = {Family.V4: [ip_network("10.250.0.0/24"), ip_network("172.16.0.0/16")],
         Family.V6: [ip_network("fd00:299::/64")]}


@st.composite
def host_and_table(draw: st.DrawFn) -> tuple[list[PlannedRoute], list[Route]]:
    """One host's desired routes and an observed table full of near misses."""
    inv = draw(inventories())
    host = draw(st.sampled_from(inv.hosts))
    desired = list(plan(inv).routes_for(host))
    gateways = {d.dst: d.gateway for d in desired}
    dsts = [*gateways, *(c for f in Family if host.address(f) for c in STALE[f])]
    if not dsts:
        return desired, []

    @st.composite
    def observed_route(d2: st.DrawFn) -> Route:
        dst = d2(st.sampled_from(dsts))
        family = Family.of(dst)
        gw_choices = [OTHER_GW[family], None]
        if dst in gateways:
            gw_choices.insert(0, gateways[dst])
        gateway = d2(st.sampled_from(gw_choices))
        kind = d2(st.sampled_from(["unicast", "unicast", "blackhole", "ecmp"]))
        nexthops: tuple[IPAddress, ...] = ()
        if kind == "ecmp" and gateway is not None:
            nexthops, gateway = (gateway, OTHER_GW[family]), None
        return Route(
            dst=dst, gateway=gateway if kind != "blackhole" else None,
            protocol=d2(st.sampled_from([P, P, 2, 3, 4, 16, 148])),
            table=d2(st.sampled_from([MAIN_TABLE, MAIN_TABLE, MAIN_TABLE, 100])),
            metric=d2(st.sampled_from([None, 50, 100, 1024])),
            type="blackhole" if kind == "blackhole" else "unicast",
            onlink=d2(st.booleans()), nexthops=nexthops, dev="eth0",
        )

    # The kernel holds one route per slot (table, destination, metric).
    observed = draw(st.lists(observed_route(), max_size=12,
                             unique_by=lambda r: (r.table, r.dst, r.effective_metric)))
    return desired, observed


@SETTINGS
@given(host_and_table(), st.booleans())
def test_applying_the_changes_converges(
    case: tuple[list[PlannedRoute], list[Route]], force: bool
) -> None:
    desired, observed = case
    first = diff(desired, observed, P, force=force)
    after = project(observed, first.changes)
    second = diff(desired, after, P, force=force)
    assert second.changes == ()
    # Apply twice = no changes: the second run leaves the table exactly as it was.
    assert project(after, second.changes) == after
    assert diff(desired, after, P).changes == ()
    # Every desired route is either in sync or an (unforced) conflict.
    assert {s.dst for s in second.statuses if s.state.value == "in sync"} | {
        s.dst for s in second.conflicts} == {d.dst for d in desired}
    if force:
        assert second.conflicts == ()
        assert second.in_sync


@SETTINGS
@given(host_and_table())
def test_only_owned_routes_are_deleted_or_rewritten(
    case: tuple[list[PlannedRoute], list[Route]],
) -> None:
    desired, observed = case
    result = diff(desired, observed, P)
    for change in result.changes:
        assert change.action is not Action.OVERRIDE
        if change.observed is None:
            assert change.action is Action.ADD
            continue
        assert change.observed.table == MAIN_TABLE
        assert any(change.observed is r for r in observed)
        if change.observed.protocol != P:
            # Adoption only re-tags a route that already goes where we want.
            assert change.action is Action.ADOPT
            assert change.observed.gateway == change.gateway
            assert change.observed.type == "unicast"
            assert change.observed.nexthops == ()
        if change.action is Action.REMOVE:
            assert change.observed.protocol == P
            assert f" proto {P}" in change.batch_line()
    # In the table after apply, every foreign route is still there, untouched or re-tagged.
    after = project(observed, result.changes)
    adopted = {id(c.observed) for c in result.changes if c.action is Action.ADOPT}
    for route in observed:
        if route.protocol == P:
            continue
        if id(route) in adopted:
            assert replace(route, protocol=P) in after  # re-tagged in place, onlink kept
        else:
            assert any(r is route for r in after), f"foreign route {route} was changed"


@SETTINGS
@given(inventories())
def test_every_host_converges_from_an_empty_table_in_one_apply(inv: Inventory) -> None:
    for _host, routes in plan(inv):
        first = diff(routes, [], P)
        assert [c.action for c in first.changes] == [Action.ADD] * len(routes)
        assert all(" -4" not in c.batch_line() and " -6" not in c.batch_line()
                   for c in first.changes)
        after = project([], first.changes)
        second = diff(routes, after, P)
        assert second.changes == ()
        assert second.unchanged == len(routes)


@SETTINGS
@given(inventories(dual_stack=False))
def test_ipv4_only_inventories_plan_ipv4_only(inv: Inventory) -> None:
    for _host, routes in plan(inv):
        assert all(isinstance(r.dst, IPv4Network) for r in routes)


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_text_of_is_str(address: IPAddress, prefixlen: int) -> None:
    assert text_of(address) == str(address)
    network = ip_network(f"{address}/{min(prefixlen, address.max_prefixlen)}", strict=False)
    assert text_of(network) == str(network)
