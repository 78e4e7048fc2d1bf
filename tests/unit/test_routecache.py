"""The route cache reads ``ip -j route`` by the text of each entry: whatever it looks up
must be exactly what parsing the output gives, for ip's real output and for any other."""

from __future__ import annotations

import json
import random
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podroutes.core.errors import ParseError
from podroutes.core.iproute import NOTHING_KNOWN, Known, parse_routes
from podroutes.core.model import MAIN_TABLE, PROTOCOL_NAMES, Family, PlannedRoute, Route
from podroutes.core.routecache import RouteCache

DATA = Path(__file__).parent.parent / "data"


def compact(entries: list[dict[str, Any]]) -> str:
    """What ``ip -j`` prints: no spaces, a newline at the end."""
    return json.dumps(entries, separators=(",", ":")) + "\n"


def read(cache: RouteCache, text: str, family: Family = Family.V4, table: int = MAIN_TABLE,
         known: Known = NOTHING_KNOWN) -> list[Route]:
    return cache.parse_text(text, family, table, PROTOCOL_NAMES, known)


def planned(n: int, start: int = 0) -> list[PlannedRoute]:
    return [PlannedRoute(ip_network(f"10.200.{i}.0/24"), ip_address(f"192.168.10.{i + 1}"),
                         f"node-{i}") for i in range(start, start + n)]


def entry_of(r: PlannedRoute, **extra: Any) -> dict[str, Any]:
    return {"dst": str(r.dst), "gateway": str(r.gateway), "dev": "eth0", "protocol": "147",
            **extra, "flags": []}


@pytest.mark.parametrize("name", ["v4", "v6", "v6-extra"])
def test_captured_output_reads_the_same_and_again_from_the_cache(name: str) -> None:
    family = Family.V4 if name == "v4" else Family.V6
    text = (DATA / f"ip-j-route-{name}.json").read_text()
    cache = RouteCache()
    first = read(cache, text, family)
    assert first == parse_routes(text, family)
    assert len(cache) == len(first)  # the v6 captures hold multipath routes: cached too
    # the same routes printed in another order: other text, so entry by entry, each one
    # the very object read before
    shuffled = compact(list(reversed(json.loads(text))))
    again = list(reversed(read(cache, shuffled, family)))
    assert again == first and all(a is b for a, b in zip(first, again, strict=True))


def test_planned_routes_are_made_from_the_plans_own_objects() -> None:
    plan_routes = planned(50)
    kernel = {"dst": "192.168.10.0/24", "dev": "eth0", "protocol": "kernel",
              "scope": "link", "prefsrc": "192.168.10.1", "flags": []}
    entries = [entry_of(r) for r in plan_routes[:25]] + [kernel]
    entries += [entry_of(r) for r in plan_routes[25:]]
    text = compact(entries)
    routes = read(RouteCache(), text, known=Known.of(plan_routes))
    assert routes == parse_routes(text, Family.V4)
    for route, want in zip(routes[:25] + routes[26:], plan_routes, strict=True):
        assert route.dst is want.dst and route.gateway is want.gateway


@pytest.mark.parametrize("tail", [
    {"metric": 100}, {"scope": "link"}, {"protocol": "static"}, {"table": "100"},
    {"type": "blackhole"}, {"dev": "eth1"}, {"pref": "high"}, {"expires": 30},
    {"gateway": "192.168.10.99"},  # the key twice: JSON keeps the last one
    {"dst": "10.99.0.0/24"},
    {"nexthops": [{"gateway": "192.168.10.7", "dev": "eth0", "weight": 1, "flags": []},
                  {"gateway": "192.168.10.8", "dev": "eth0", "weight": 1, "flags": []}]},
])
def test_a_tail_means_what_ip_printed_even_for_a_planned_head(tail: dict[str, Any]) -> None:
    plan_routes = planned(3)
    cache, known = RouteCache(), Known.of(plan_routes)
    for variant in ({}, tail, {}):
        text = compact([{**entry_of(r), **variant} for r in plan_routes])
        assert read(cache, text, known=known) == parse_routes(text, Family.V4), variant


@pytest.mark.parametrize("key", ["dst", "gateway"])
def test_a_tail_that_names_dst_or_gateway_again_is_not_a_tail(key: str) -> None:
    # {"dst":A,"gateway":B,"dev":"eth0","gateway":B}: JSON keeps the last gateway, so
    # that tail after another head still means gateway B.
    routes = planned(2)
    value = str(routes[0].dst if key == "dst" else routes[0].gateway)
    tail = f'"dev":"eth0","{key}":"{value}","flags":[]'
    text = "[" + ",".join(f'{{"dst":"{r.dst}","gateway":"{r.gateway}",{tail}}}'
                          for r in routes) + "]"
    got = read(RouteCache(), text, known=Known.of(routes))
    assert got == parse_routes(text, Family.V4)
    assert {str(getattr(r, key)) for r in got} == {value}


def test_the_cache_tells_apart_family_and_table() -> None:
    cache, known = RouteCache(), Known.of(planned(2))
    text = compact([entry_of(r) for r in planned(2)])
    assert all(r.table == 100 for r in read(cache, text, table=100, known=known))
    assert all(r.table == MAIN_TABLE for r in read(cache, text, known=known))
    with pytest.raises(ParseError, match=r"IPv4 route in IPv6 output|bad address"):
        read(cache, text, Family.V6, known=known)


def test_output_laid_out_otherwise_is_parsed_the_plain_way() -> None:
    routes = planned(3)
    entries = [entry_of(r) for r in routes]
    known = Known.of(routes)
    for text in (json.dumps(entries), json.dumps(entries, indent=1),
                 compact([{**entries[0], "dev": "a{b"}, *entries[1:]]),
                 compact([{**entries[0], "dev": "a},{\"b"}, *entries[1:]]),
                 compact([]), "", "[]\n"):
        cache = RouteCache()
        assert read(cache, text, known=known) == parse_routes(text, Family.V4), text
        assert read(cache, text, known=known) == parse_routes(text, Family.V4), text


@pytest.mark.parametrize("text, phrase", [
    ('[{"dst":"10.0.0.0/33"}]', "bad address"),
    ('[{"dst":{"x":1}}]', "bad address"),
    ('[{"gateway":"10.0.0.1"}]', "without a destination"),
    ('[{"dst":"10.200.0.0/24","gateway":"192.168.10.1","dev":"eth0",}]', "not JSON"),
    ('[{"dst":"10.200.0.0/24","gateway":"192.168.10.1","dev":"eth0"},{"dst"}]', "not JSON"),
    ("not json", "not JSON"),
])
def test_bad_output_fails_every_time_and_is_never_cached(text: str, phrase: str) -> None:
    cache, known = RouteCache(), Known.of(planned(1))
    good = compact([entry_of(r) for r in planned(1)])
    read(cache, good, known=known)
    size = len(cache)
    for _ in range(2):
        with pytest.raises(ParseError, match=phrase):
            read(cache, text, known=known)
    assert len(cache) == size


def test_a_full_cache_starts_over() -> None:
    cache = RouteCache(limit=4)
    entries = [{"dst": f"10.200.{i}.0/24", "dev": "eth0", "flags": []} for i in range(3)]
    read(cache, compact(entries))
    assert len(cache) == 3
    other = compact([entries[0], {**entries[1], "dev": "eth1"}, entries[2]])
    assert read(cache, other) == parse_routes(other, Family.V4)
    assert len(cache) == 3  # emptied: 3 more would have made 6
    many = [{"dst": f"10.201.{i}.0/24", "dev": "eth0", "flags": []} for i in range(5)]
    assert read(cache, compact(many)) == parse_routes(compact(many), Family.V4)
    assert len(cache) == 0  # more than it may hold: read, not kept


def test_the_same_output_again_gives_the_same_routes_without_parsing() -> None:
    cache = RouteCache()
    text = (DATA / "ip-j-route-v4.json").read_text()
    first = read(cache, text)
    first.append(first[0])  # the caller's list is its own
    again = read(cache, text)
    assert again == parse_routes(text, Family.V4) and len(again) == len(first) - 1


# --- any output at all -------------------------------------------------------------------

ADDRESSES = [f"192.168.10.{i}" for i in range(1, 5)]
NETWORKS = [f"10.200.{i}.0/24" for i in range(4)] + ["default", "10.200.0.7"]
STRINGS = st.sampled_from(["eth0", "eth1", "a{b", "x},{\"y", "\\", "é", "c}"])
NEXTHOP = st.fixed_dictionaries({"gateway": st.sampled_from(ADDRESSES), "dev": STRINGS,
                                 "weight": st.just(1), "flags": st.just([])})
#: Values ip prints for each key (all valid: a bad one is added on purpose, below).
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "dst": st.sampled_from(NETWORKS),
    "gateway": st.sampled_from(ADDRESSES),
    "dev": STRINGS,
    "protocol": st.sampled_from(["147", "kernel", "static", "boot"]),
    "scope": st.sampled_from(["link", "host"]),
    "metric": st.sampled_from([0, 100, 1024]),
    "table": st.sampled_from(["100", "main", "local"]),
    "type": st.sampled_from(["unicast", "blackhole"]),
    "flags": st.lists(st.sampled_from(["onlink", "linkdown"]), max_size=2),
    "pref": st.sampled_from(["medium", "high"]),
    "nexthops": st.lists(NEXTHOP, min_size=1, max_size=3),
    "metrics": st.just([{"mtu": 1400}]),
}
Pairs = list[tuple[str, Any]]
PAIR = st.sampled_from(list(VALUES)).flatmap(lambda k: st.tuples(st.just(k), VALUES[k]))
#: Any entry: keys in any order, a key possibly twice (JSON keeps the last).
ENTRY = st.tuples(st.tuples(st.just("dst"), VALUES["dst"]), st.lists(PAIR, max_size=5)).map(
    lambda t: [t[0], *t[1]] if random.Random(len(t[1])).random() < 0.5 else [*t[1], t[0]])
#: Mostly entries a planned route makes (a head the cache looks up), in ip's key order,
#: and then anything, even dst or gateway again.
PLANNED_ENTRY = st.builds(
    lambda i, dev, rest: [("dst", NETWORKS[i]), ("gateway", ADDRESSES[i]), ("dev", dev), *rest],
    st.integers(0, 3), STRINGS, st.lists(PAIR, max_size=3))
BAD: list[Pairs] = [[("dst", "10.0.0.0/33")], [("dst", "fd00::/64")], [("gateway", "x")],
                    [("dst", NETWORKS[0]), ("gateway", ADDRESSES[0]), ("metric", "x")]]


def text_of(entries: list[Pairs], spaced: bool) -> str:
    comma, colon = (", ", ": ") if spaced else (",", ":")
    objects = ["{" + comma.join(json.dumps(k) + colon + json.dumps(v, separators=(comma, colon))
                                for k, v in pairs) + "}" for pairs in entries]
    return "[" + comma.join(objects) + "]\n"


def outcome(fn: Any) -> object:
    try:
        return fn()
    except ParseError:
        return ParseError


@settings(max_examples=400, deadline=None)
@given(reads=st.lists(st.tuples(
    st.lists(st.one_of(PLANNED_ENTRY, PLANNED_ENTRY, ENTRY), max_size=6),
    st.sampled_from([False] * 6 + [True]),  # spaced
    st.sampled_from([None] * 6 + list(range(len(BAD))))), min_size=1, max_size=4),
    limit=st.sampled_from([3, 100]))
def test_reading_through_the_cache_is_parsing(
        reads: list[tuple[list[Pairs], bool, int | None]], limit: int) -> None:
    known = Known.of([PlannedRoute(ip_network(NETWORKS[i]), ip_address(ADDRESSES[i]), "n")
                      for i in range(4)])
    cache = RouteCache(limit=limit)
    for entries, spaced, bad in reads:
        if bad is not None:
            entries = [*entries, BAD[bad]]
        text = text_of(entries, spaced)
        for _ in range(2):
            got = outcome(lambda: read(cache, text, known=known))  # noqa: B023
            assert got == outcome(lambda: parse_routes(text, Family.V4)), text  # noqa: B023
