"""The ``ip -j route`` parser on real captured output, and the ``ip -batch`` renderer."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from podroutes.core.diff import RouteState, diff
from podroutes.core.errors import ParseError
from podroutes.core.iproute import (
    Known,
    add_line,
    batch_line,
    parse_routes,
    read_routes_argv,
    route_spec,
    shell_command,
)
from podroutes.core.model import MAIN_TABLE, Family, PlannedRoute, Route

DATA = Path(__file__).parent.parent / "data"


def captured(family: Family) -> list[Route]:
    return parse_routes((DATA / f"ip-j-route-v{family.value}.json").read_text(), family)


def by_dst(routes: list[Route]) -> dict[str, Route]:
    return {str(r.dst): r for r in routes}


# --- IPv4 capture ------------------------------------------------------------------------


def test_v4_capture_parses_every_entry_in_the_main_table() -> None:
    routes = captured(Family.V4)
    assert len(routes) == 7
    assert all(r.table == MAIN_TABLE and r.family is Family.V4 for r in routes)


def test_v4_default_route() -> None:
    default = by_dst(captured(Family.V4))["0.0.0.0/0"]
    assert default.gateway == ip_address("192.168.10.1")
    assert default.dev == "eth0"
    assert default.protocol == 3  # a plain `ip route add`: boot, which ip -j leaves out
    assert default.metric is None
    assert default.effective_metric == 0
    assert not default.onlink


@pytest.mark.parametrize(
    ("dst", "gateway", "protocol", "metric"),
    [
        ("10.200.0.0/24", "192.168.10.101", 147, None),  # "protocol":"147", a number string
        ("10.200.1.0/24", "192.168.10.102", 3, None),  # no protocol key: boot
        ("10.200.2.0/24", "192.168.10.103", 4, 50),  # "static", metric 50
        ("10.9.0.0/16", "10.1.1.1", 3, None),
    ],
)
def test_v4_gateway_routes(dst: str, gateway: str, protocol: int, metric: int | None) -> None:
    route = by_dst(captured(Family.V4))[dst]
    assert (route.gateway, route.protocol, route.metric) == (ip_address(gateway), protocol, metric)
    assert route.type == "unicast"
    assert route.nexthops == ()


def test_v4_onlink_flag() -> None:
    routes = by_dst(captured(Family.V4))
    assert routes["10.9.0.0/16"].onlink
    assert not routes["10.200.0.0/24"].onlink  # "linkdown" alone is not onlink


def test_v4_blackhole() -> None:
    hole = by_dst(captured(Family.V4))["10.66.0.0/16"]
    assert hole.type == "blackhole"
    assert (hole.gateway, hole.dev) == (None, None)


def test_v4_kernel_link_route() -> None:
    link = by_dst(captured(Family.V4))["192.168.10.0/24"]
    assert (link.protocol, link.scope, link.gateway) == (2, "link", None)


# --- IPv6 capture ------------------------------------------------------------------------


def test_v6_capture() -> None:
    routes = by_dst(captured(Family.V6))
    assert set(routes) == {"fd00:10::/64", "fd00:200:1::/64", "fd00:200:2::/64",
                           "fd00:300::/64", "::/0"}
    assert routes["::/0"].gateway == ip_address("fd00:10::1")
    assert routes["::/0"].metric == 100
    assert (routes["fd00:10::/64"].protocol, routes["fd00:10::/64"].metric) == (2, 256)


def test_v6_owned_route_has_metric_1024() -> None:
    owned = by_dst(captured(Family.V6))["fd00:200:1::/64"]
    assert (owned.protocol, owned.metric, owned.gateway) == (147, 1024, ip_address("fd00:10::101"))
    assert owned.effective_metric == Family.V6.default_metric == 1024


def test_v6_link_local_gateway() -> None:
    route = by_dst(captured(Family.V6))["fd00:200:2::/64"]
    assert route.gateway == ip_address("fe80::1")
    assert route.gateway.is_link_local
    assert route.protocol == 3


def test_v6_ecmp_nexthops() -> None:
    route = by_dst(captured(Family.V6))["fd00:300::/64"]
    assert route.gateway is None
    assert route.nexthops == (ip_address("fd00:10::101"), ip_address("fd00:10::102"))
    assert route.dev is None


# --- edge cases and errors ---------------------------------------------------------------


def entry(**fields: object) -> str:
    return json.dumps([{"dst": "10.200.0.0/24", **fields}])


@pytest.mark.parametrize(
    ("name", "number"),
    [("kernel", 2), ("boot", 3), ("static", 4), ("dhcp", 16), ("bird", 12), ("ra", 9),
     ("bgp", 186), ("0", 0), ("254", 254)],
)
def test_protocol_names_and_numbers(name: str, number: int) -> None:
    [route] = parse_routes(entry(protocol=name), Family.V4)
    assert route.protocol == number


def test_unknown_protocol_name_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unknown route protocol name 'podroutes'"):
        parse_routes(entry(protocol="podroutes"), Family.V4)


def test_protocol_names_from_rt_protos_d_can_be_supplied() -> None:
    [route] = parse_routes(entry(protocol="podroutes"), Family.V4,
                           protocol_names={"podroutes": 147})
    assert route.protocol == 147


@pytest.mark.parametrize(
    ("table", "expected"), [(None, 254), ("main", 254), ("local", 255), ("100", 100)])
def test_table(table: str | None, expected: int) -> None:
    fields = {} if table is None else {"table": table}
    [route] = parse_routes(entry(**fields), Family.V4)
    assert route.table == expected


def test_the_table_asked_for_is_the_default() -> None:
    [route] = parse_routes(entry(), Family.V4, table=100)
    assert route.table == 100


def test_host_route_without_prefix_length() -> None:
    [route] = parse_routes(json.dumps([{"dst": "10.200.0.5", "dev": "cni0"}]), Family.V4)
    assert route.dst == ip_network("10.200.0.5/32")


@pytest.mark.parametrize("text", ["", "  \n"])
def test_empty_output_is_an_empty_table(text: str) -> None:
    assert parse_routes(text, Family.V6) == []


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Error: ipv4: FIB table does not exist.", "not JSON"),
        ('{"dst": "default"}', "not a list"),
        ('[{"gateway": "10.0.0.1"}]', "without a destination"),
        ('["default"]', "without a destination"),
        ('[{"dst": "10.0.0.0/33"}]', "bad address"),
        ('[{"dst": "10.0.0.0/8", "gateway": "x"}]', "bad address"),
        ('[{"dst": "fd00::/64"}]', "bad address"),  # IPv6 in IPv4 output
        ('[{"dst": "fd00::/64", "nexthops": [{"gateway": 7}]}]', "bad address"),
    ],
)
def test_malformed_output_is_a_parse_error(text: str, phrase: str) -> None:
    with pytest.raises(ParseError, match=phrase):
        parse_routes(text, Family.V4)


# --- known addresses (the plan's own objects, not parsed again) --------------------------

PLANNED = [
    PlannedRoute(ip_network("10.200.1.0/24"), ip_address("192.168.10.102"), "node-1"),
    PlannedRoute(ip_network("fd00:200:1::/64"), ip_address("fd00:10::102"), "node-1"),
]


@pytest.mark.parametrize("family", list(Family))
def test_known_addresses_give_the_same_routes_and_reuse_the_plans_objects(
        family: Family) -> None:
    text = (DATA / f"ip-j-route-v{family.value}.json").read_text()
    extra = {"dst": str(PLANNED[family is Family.V6].dst),
             "gateway": str(PLANNED[family is Family.V6].gateway), "protocol": "147"}
    text = json.dumps([*json.loads(text), extra])
    known = Known.of(PLANNED)
    plain, fast = parse_routes(text, family), parse_routes(text, family, known=known)
    assert fast == plain
    assert fast[-1].dst is PLANNED[family is Family.V6].dst
    assert fast[-1].gateway is PLANNED[family is Family.V6].gateway


def test_a_known_network_of_the_other_family_is_still_refused() -> None:
    known = Known.of(PLANNED)
    with pytest.raises(ParseError, match="bad address"):
        parse_routes('[{"dst": "fd00:200:1::/64"}]', Family.V4, known=known)
    with pytest.raises(ParseError, match="bad address"):
        parse_routes('[{"dst": ["10.200.1.0/24"]}]', Family.V4, known=known)


def test_read_routes_argv() -> None:
    assert read_routes_argv(Family.V6) == ["ip", "-j", "-6", "route", "show", "table", "254"]
    assert read_routes_argv(Family.V4, 100)[2:] == ["-4", "route", "show", "table", "100"]


# --- rendering ---------------------------------------------------------------------------

V4 = ip_network("10.200.1.0/24")
V6 = ip_network("fd00:200::/64")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((V4, ip_address("192.168.10.102")), "10.200.1.0/24 via 192.168.10.102"),
        ((V4, ip_address("192.168.10.102"), 147), "10.200.1.0/24 via 192.168.10.102 proto 147"),
        ((V6, ip_address("fd00:10::101"), 147, 1024),
         "fd00:200::/64 via fd00:10::101 proto 147 metric 1024"),
        ((V4, None, 147, 0), "10.200.1.0/24 proto 147 metric 0"),
        ((V4, ip_address("10.0.0.1"), None, None, 100), "10.200.1.0/24 via 10.0.0.1 table 100"),
        ((V4, ip_address("10.0.0.1"), 147, None, 254), "10.200.1.0/24 via 10.0.0.1 proto 147"),
    ],
)
def test_route_spec(args: tuple[object, ...], expected: str) -> None:
    assert " ".join(route_spec(*args)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("verb", ["add", "replace", "del"])
def test_batch_line_has_no_family_flag(verb: str) -> None:
    line = batch_line(verb, route_spec(V6, ip_address("fd00:10::101"), 147))
    assert line == f"route {verb} fd00:200::/64 via fd00:10::101 proto 147"
    assert "-6" not in line.split()
    assert "-4" not in line.split()


@pytest.mark.parametrize(("dst", "gateway", "protocol"), [
    (V4, ip_address("192.168.10.102"), 147), (V6, ip_address("fd00:10::101"), 200),
    (ip_network("0.0.0.0/0"), ip_address("10.0.0.1"), 147),
    (ip_network("::ffff:0:0/96"), ip_address("::ffff:10.0.0.1"), 147)])
def test_the_add_line_is_the_general_one(dst: object, gateway: object, protocol: int) -> None:
    assert add_line(dst, gateway, protocol) == batch_line(  # type: ignore[arg-type]
        "add", route_spec(dst, gateway, protocol))  # type: ignore[arg-type]


@pytest.mark.parametrize("verb", ["flush", "add -4", "show", ""])
def test_batch_line_rejects_other_verbs(verb: str) -> None:
    with pytest.raises(ValueError, match="unsupported route verb"):
        batch_line(verb, ["10.0.0.0/8"])


def test_shell_command() -> None:
    line = batch_line("del", route_spec(V4, ip_address("192.168.10.102"), 147, 50))
    command = shell_command(line)
    assert command == "ip route del 10.200.1.0/24 via 192.168.10.102 proto 147 metric 50"
    assert shlex.split(command)[1:] == line.split(" ")


def test_shell_command_quotes_each_word() -> None:
    assert shell_command("route add $(id) via x;y") == "ip route add '$(id)' via 'x;y'"


# --- IPv6 capture with ECMP, pref, expires and fe80 gateways ------------------------------
# tests/data/ip-j-route-v6-extra.json, made by tests/data/capture-ipv6.sh (iproute2 6.1.0).


def extra() -> list[Route]:
    return parse_routes((DATA / "ip-j-route-v6-extra.json").read_text(), Family.V6)


def test_v6_extra_capture_parses_every_entry() -> None:
    routes = extra()
    assert len(routes) == len(json.loads((DATA / "ip-j-route-v6-extra.json").read_text())) == 14
    assert all(r.family is Family.V6 and r.table == MAIN_TABLE for r in routes)
    # every IPv6 route carries a router preference; v6 output has no scope key
    assert {r.pref for r in routes} == {"low", "medium", "high"}


def test_v6_pref_is_read_and_does_not_change_identity() -> None:
    routes = by_dst(extra())
    high = routes["fd00:200:2::/64"]
    assert (high.pref, high.gateway, high.protocol) == ("high", ip_address("fd00:10::102"), 3)
    assert routes["::/0"].pref == "low"
    assert routes["fd00:200:1::/64"].pref == "medium"
    # the same route at another preference is the same kernel slot
    assert replace(high, pref="low") == high


def test_v6_expires_is_read_in_seconds() -> None:
    routes = by_dst(extra())
    expiring = routes["fd00:200:3::/64"]
    assert expiring.expires is not None and 0 < expiring.expires <= 300
    assert (expiring.gateway, expiring.protocol) == (ip_address("fd00:10::103"), 3)
    assert expiring.expires < 300  # the capture was taken seconds after `expires 300`
    assert routes["fd00:200:1::/64"].expires is None  # permanent routes have none
    # a route read twice a second apart is still the same route
    assert replace(expiring, expires=expiring.expires - 1) == expiring


def test_v6_route_learned_from_router_advertisement() -> None:
    default = by_dst(extra())["::/0"]
    assert default.protocol == 9  # "ra"
    assert default.gateway == ip_address("fe80::1")
    assert default.dev == "eth0"
    assert default.expires is not None and 1700 < default.expires <= 1800
    assert default.pref == "low"


def test_v6_fe80_gateway_keeps_its_device() -> None:
    route = by_dst(extra())["fd00:200:4::/64"]
    assert route.gateway == ip_address("fe80::1")
    assert route.gateway.is_link_local
    assert route.dev == "eth0"  # a link-local gateway means nothing without it


def test_v6_ecmp_nexthops_with_global_gateways() -> None:
    route = by_dst(extra())["fd00:300::/64"]
    assert route.nexthops == (ip_address("fd00:10::101"), ip_address("fd00:10::102"))
    assert (route.gateway, route.dev, route.protocol, route.metric) == (None, None, 3, 1024)


def test_v6_ecmp_nexthops_with_fe80_gateways_on_two_devices() -> None:
    route = by_dst(extra())["fd00:301::/64"]
    assert route.protocol == 147  # the protocol is on the route, not on each nexthop
    assert route.nexthops == (ip_address("fe80::1"), ip_address("fe80::2"))
    assert all(hop.is_link_local for hop in route.nexthops)
    assert route.gateway is None


def test_v6_one_fe80_route_per_interface() -> None:
    link_local = [r for r in extra() if str(r.dst) == "fe80::/64"]
    assert sorted(r.dev or "" for r in link_local) == ["eth0", "eth3", "eth4"]
    assert {(r.protocol, r.metric) for r in link_local} == {(2, 256)}


def test_v6_unreachable_route() -> None:
    route = by_dst(extra())["fd00:666::/48"]
    assert (route.type, route.dev, route.gateway) == ("unreachable", "lo", None)


def test_diff_on_the_v6_capture() -> None:
    """What apply would do to the captured table, for a plan of four routes."""
    desired = [
        PlannedRoute(ip_network("fd00:200:1::/64"), ip_address("fd00:10::101"), "node-1"),
        PlannedRoute(ip_network("fd00:200:2::/64"), ip_address("fd00:10::102"), "node-2"),
        PlannedRoute(ip_network("fd00:200:3::/64"), ip_address("fd00:10::103"), "node-3"),
        PlannedRoute(ip_network("fd00:200:4::/64"), ip_address("fd00:10::104"), "node-4"),
    ]
    result = diff(desired, extra(), 147)
    states = {str(s.dst): s.state for s in result.statuses}
    assert states["fd00:200:1::/64"] is RouteState.IN_SYNC
    assert states["fd00:200:2::/64"] is RouteState.UNOWNED  # pref high, same gateway
    assert states["fd00:200:3::/64"] is RouteState.UNOWNED  # expiring: adopted, then permanent
    assert states["fd00:200:4::/64"] is RouteState.CONFLICT  # foreign, via fe80::1
    assert states["fd00:301::/64"] is RouteState.STALE  # our ECMP route, not in the plan
    assert [c.batch_line() for c in result.changes] == [
        "route replace fd00:200:2::/64 via fd00:10::102 proto 147 metric 1024",
        "route replace fd00:200:3::/64 via fd00:10::103 proto 147 metric 1024",
        "route del fd00:301::/64 proto 147 metric 1024",
    ]
    # kernel and RA routes, the foreign ECMP route and the unreachable route are left alone
    assert all(str(c.dst) in {"fd00:200:2::/64", "fd00:200:3::/64", "fd00:301::/64"}
               for c in result.changes)


@pytest.mark.parametrize("value", ["soon", "-5", 1.5])
def test_bad_expires_is_a_parse_error(value: object) -> None:
    with pytest.raises(ParseError, match="bad expiry"):
        parse_routes(json.dumps([{"dst": "fd00::/64", "expires": value}]), Family.V6)


def test_expires_with_a_unit_is_read() -> None:
    [route] = parse_routes(json.dumps([{"dst": "fd00::/64", "expires": "296sec"}]), Family.V6)
    assert route.expires == 296


def test_v6_direct_routes_are_link_scope_like_ipv4_ones() -> None:
    """ip -j -6 prints no scope (the kernel says "universe" for every IPv6 route); a
    device route without a gateway is on-link, which IPv4 calls scope link."""
    scopes = {(str(r.dst), r.dev): r.scope for r in extra()}
    assert scopes[("fd00:10::/64", "eth0")] == "link"
    assert scopes[("fd00:20::/64", "eth1")] == "link"  # linkdown, still a direct route
    assert {scopes[("fe80::/64", d)] for d in ("eth0", "eth3", "eth4")} == {"link"}
    for dst in ("fd00:200:1::/64", "fd00:200:4::/64", "fd00:300::/64", "fd00:301::/64",
                "fd00:666::/48", "::/0"):
        assert by_dst(extra())[dst].scope == "global", dst
    assert by_dst(captured(Family.V6))["fd00:10::/64"].scope == "link"
    # a printed scope always wins, in either family
    [v4] = parse_routes(entry(dev="eth0"), Family.V4)
    assert v4.scope == "global"
    [v6] = parse_routes(json.dumps([{"dst": "fd00::/64", "dev": "eth0", "scope": "host"}]),
                        Family.V6)
    assert v6.scope == "host"


def test_the_parsers_constructor_builds_the_same_frozen_route() -> None:
    from dataclasses import FrozenInstanceError, fields, replace

    from podroutes.core.model import make_route

    values = dict(dst=ip_network("fd00:200:1::/64"), gateway=None, dev="eth0", protocol=147,
                  table=MAIN_TABLE, metric=1024, type="unicast", scope="global", onlink=True,
                  nexthops=(ip_address("fd00:10::102"), ip_address("fd00:10::103")),
                  pref="medium", expires=30,
                  extras=("src 192.168.10.101", "mtu 1400"))
    assert [f.name for f in fields(Route)] == list(values)  # make_route's argument order
    fast, slow = make_route(*values.values()), Route(**values)  # type: ignore[arg-type]
    assert type(fast) is Route and not hasattr(fast, "__dict__")
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert replace(fast, dev="eth1") == replace(slow, dev="eth1")
    with pytest.raises(FrozenInstanceError):
        fast.gateway = None  # type: ignore[misc]
