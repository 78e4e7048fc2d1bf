"""The ``ip -j route`` parser on real captured output, and the ``ip -batch`` renderer."""

from __future__ import annotations

import json
import shlex
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from podroutes.errors import ParseError
from podroutes.iproute import batch_line, parse_routes, read_routes_argv, route_spec, shell_command
from podroutes.model import MAIN_TABLE, Family, Route

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
