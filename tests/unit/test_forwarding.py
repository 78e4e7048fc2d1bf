"""The pure model of the kernel's forwarding decision (:mod:`podroutes.core.forwarding`,
with :mod:`~podroutes.core.rules`, :mod:`~podroutes.core.decision`,
:mod:`~podroutes.core.parts` and :mod:`~podroutes.core.routeget`), on outputs captured
from a real kernel (``tests/data/forwarding/``, made by its ``capture.py``): every ``ip
route get`` answer captured agrees with the model's decision, and each semantic is also
asserted by name, in both families.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podroutes.core import forwarding
from podroutes.core.decision import Decision, DecisionKind
from podroutes.core.errors import ParseError
from podroutes.core.forwarding import Fib, decide, decide_network, tables_of
from podroutes.core.iproute import parse_routes
from podroutes.core.model import MAIN_TABLE, Family, IPAddress, IPNetwork, Route
from podroutes.core.parts import MAX_PARTS, Part, sample_addresses
from podroutes.core.routeget import (
    RouteGetAnswer,
    agrees,
    parse_route_get,
    parse_route_get_error,
)
from podroutes.core.rules import DEFAULT_RULES, LOCAL_TABLE, Rule, RuleAction, parse_rules

DATA = Path(__file__).parent.parent / "data" / "forwarding"
SCENARIOS = sorted(p.stem for p in DATA.glob("*.json") if not p.stem.startswith("rules-"))
V4, V6 = Family.V4, Family.V6
K = DecisionKind


@cache
def record(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


@cache
def fib(name: str) -> Fib:
    """The node of a captured scenario: its rules and all its tables, both families."""
    rec = record(name)
    rules: list[Rule] = []
    routes: list[Route] = []
    for family in Family:
        rules += parse_rules(rec[f"rules{family.flag}"], family)
        routes += parse_routes(rec[f"routes{family.flag}"], family)
    return Fib(rules, tables_of(routes))


def a(text: str) -> IPAddress:
    return ip_address(text)


def n(text: str) -> IPNetwork:
    return ip_network(text)


def parts(name: str, dst: str, **kwargs: Any) -> list[tuple[str, str]]:
    """``decide_network`` of a scenario as (part, decision text)."""
    return [(str(p.network), str(p.decision))
            for p in fib(name).decide_network(n(dst), **kwargs)]


def one(name: str, dst: str, **kwargs: Any) -> Decision:
    """The decision for all of ``dst``, which must be one part."""
    (part,) = fib(name).decide_network(n(dst), **kwargs)
    return part.decision


def query(args: list[str]) -> tuple[IPAddress, dict[str, Any]]:
    """``ip route get`` arguments as decide()'s."""
    kwargs: dict[str, Any] = {}
    for key, value in zip(args[1::2], args[2::2], strict=True):
        kwargs["src" if key == "from" else key] = a(value) if key == "from" else value
    return a(args[0]), kwargs


def kernel(get: dict[str, Any]) -> RouteGetAnswer | DecisionKind:
    family = Family.of(a(get["args"][0]))
    if get["status"] == 0:
        return parse_route_get(get["stdout"], family)
    return parse_route_get_error(get["stderr"])


# --- every captured answer -------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_captured_kernel_answer_agrees_with_the_model(name: str) -> None:
    """mark=0: what ``ip route get`` asks about. A pinned output device is UNCERTAIN."""
    checked = 0
    for get in record(name)["gets"]:
        dst, kwargs = query(get["args"])
        decision = fib(name).decide(dst, mark=0, **kwargs)
        if "oif" in kwargs and decision.route is not None:
            assert decision.route.dev == kwargs["oif"], "a pinned oif must be uncertain"
        if "oif" in kwargs and decision.kind is K.UNCERTAIN:
            assert not decision.candidates
            continue
        assert agrees(decision, kernel(get)), (get["args"], str(decision), kernel(get))
        checked += 1
    assert checked >= 100


def test_the_captures_cover_every_kind_and_both_families() -> None:
    kinds: set[tuple[DecisionKind, int]] = set()
    for name in SCENARIOS:
        for get in record(name)["gets"]:
            dst, kwargs = query(get["args"])
            kinds.add((fib(name).decide(dst, mark=0, **kwargs).kind, dst.version))
    assert kinds >= {(k, v) for k in DecisionKind for v in (4, 6)}


# --- rules --------------------------------------------------------------------------------


def rules_file(name: str, family: Family) -> dict[int, Rule]:
    out: dict[int, Rule] = {}
    for rule in parse_rules((DATA / name).read_text(), family):
        out.setdefault(rule.priority, rule)
    return out


def test_a_fresh_namespace_has_the_default_rules_ipv6_without_lookup_default() -> None:
    for family in Family:
        got = parse_rules((DATA / f"rules-default-v{family.value}.json").read_text(), family)
        assert tuple(got) == DEFAULT_RULES[family]
    assert [r.priority for r in DEFAULT_RULES[V4]] == [0, 32766, 32767]
    assert [r.table for r in DEFAULT_RULES[V6]] == [LOCAL_TABLE, MAIN_TABLE]


def test_every_kind_of_ipv4_rule_is_read() -> None:
    r = rules_file("rules-odd-v4.json", V4)
    assert r[0] == Rule(V4, 0, RuleAction.LOOKUP, LOCAL_TABLE)
    assert r[100] == Rule(V4, 100, RuleAction.LOOKUP, 100, src=n("10.200.0.0/24"))
    assert r[101].dst == n("10.200.1.0/24") and r[101].src is None
    assert r[102].invert and r[102].src == n("10.0.0.0/8")
    assert r[103].iif == "eth0" and r[104].oif == "eth1" and r[104].table == 101
    assert (r[105].fwmark, r[105].fwmask) == (0x10, 0xFFFFFFFF)
    assert (r[106].fwmark, r[106].fwmask) == (0x10, 0xFF)
    assert (r[107].table, r[107].suppress_prefixlength) == (MAIN_TABLE, 0)
    assert [r[p].action for p in (108, 109, 110)] == [
        RuleAction.BLACKHOLE, RuleAction.UNREACHABLE, RuleAction.PROHIBIT]
    assert (r[111].action, r[111].goto, r[111].table) == (RuleAction.GOTO, 200, None)
    assert r[112].unevaluable == ("uidrange",)
    assert r[113].unevaluable == ("ipproto", "dport")
    assert r[114].unevaluable == ("sport",)
    assert r[115].unevaluable == ("tos",)
    assert (r[116].action, r[116].table, r[116].unevaluable) == (
        RuleAction.LOOKUP, None, ("l3mdev",))
    assert r[117].action is RuleAction.NOP
    assert (r[118].src, r[118].dst, r[118].iif, r[118].table) == (
        n("10.200.7.0/24"), n("10.200.8.0/24"), "lo", 105)
    assert r[119].suppress_ifgroup == "5" and not r[119].unevaluable
    assert not r[120].unevaluable  # realms set a route class; they select nothing
    assert r[121].table == 1000000
    assert r[123].table == LOCAL_TABLE
    assert not r[125].unevaluable  # `protocol` says who made the rule
    assert (r[126].invert, r[126].iif, r[126].oif) == (True, "eth0", "eth1")
    assert r[127].detached and not r[103].detached
    assert r[128].unevaluable == ("tun_id",)
    assert r[129].src == n("10.200.20.5/32")  # ip leaves out a host address's length
    assert (r[130].fwmark, r[130].fwmask) == (0, 0xFFFF)
    assert (r[131].action, r[131].goto) == (RuleAction.GOTO, 400)  # printed "unresolved"
    assert r[132].unevaluable == ("dport",)
    assert "not from 10.0.0.0/8 lookup 100" in str(r[102])
    assert str(r[111]) == "111: from all to 10.200.5.0/24 goto 200"


def test_ip_dash_n_prints_numbers_and_they_read_the_same() -> None:
    named = parse_rules((DATA / "rules-odd-v4.json").read_text(), V4)
    numeric = parse_rules((DATA / "rules-odd-v4-numeric.json").read_text(), V4)
    assert numeric == named
    assert '"table":"255"' in (DATA / "rules-odd-v4-numeric.json").read_text()


def test_every_kind_of_ipv6_rule_is_read() -> None:
    r = rules_file("rules-odd-v6.json", V6)
    assert r[100].src == n("fd00:200::/64")
    assert [r[p].action for p in (102, 103, 104)] == [
        RuleAction.BLACKHOLE, RuleAction.UNREACHABLE, RuleAction.PROHIBIT]
    assert r[105].suppress_prefixlength == 0
    assert (r[106].goto, r[107].invert, r[107].iif) == (200, True, "eth0")
    assert r[108].fwmark == 7
    assert r[110].unevaluable == ("ipproto", "sport")
    assert r[111].src == n("fd00:200::5/128")
    assert 32767 not in r


@pytest.mark.parametrize("text", [
    "not json", '{"priority": 0}', '[{"src": "all", "table": "main"}]',
    '[{"priority": "x", "table": "main"}]',
    '[{"priority": 1, "src": "fd00::", "srclen": 64, "table": "main"}]',
    '[{"priority": 1, "src": "10.0.0.0", "srclen": 99, "table": "main"}]',
    '[{"priority": 1, "action": "nat"}]', '[{"priority": 1, "table": "wg"}]',
    '[{"priority": 1, "src": "all"}]', '[{"priority": 1, "fwmark": "zz", "table": "1"}]',
    '["rule"]',
])
def test_garbage_rules_are_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_rules(text, V4)


def test_a_custom_table_name_is_read_when_given_and_keys_not_known_are_unevaluable() -> None:
    text = '[{"priority": 5, "src": "all", "table": "wg", "flowlabel": "0x1", "new": 1}]'
    (rule,) = parse_rules(text, V4, {"wg": 51820})
    assert rule.table == 51820 and rule.unevaluable == ("flowlabel", "new")


# --- decisions, by semantics ---------------------------------------------------------------


def test_noop_the_planned_route_alone_decides_the_whole_cidr() -> None:
    d = one("noop", "10.200.1.0/24")
    assert (d.kind, d.gateways, d.table, d.priority) == (
        K.VIA, (a("192.168.10.2"),), MAIN_TABLE, 32766)
    assert str(d) == "via 192.168.10.2 dev eth0 (10.200.1.0/24, rule 32766)"
    d6 = one("noop", "fd00:200:1::/64")
    assert (d6.kind, d6.gateways, d6.route and d6.route.dev) == (
        K.VIA, (a("fd00:10::2"),), "eth0")
    assert one("noop", "10.200.3.0/24").kind is K.NO_ROUTE  # no default route
    assert one("noop", "fd00:200:3::/64").kind is K.NO_ROUTE


def test_the_own_cidr_is_connected_but_for_the_hosts_own_addresses() -> None:
    got = fib("noop").decide_network(n("10.200.0.0/24"))
    kinds = {str(p.network): p.decision.kind for p in got}
    assert kinds["10.200.0.1/32"] is K.LOCAL and kinds["10.200.0.255/32"] is K.LOCAL
    assert {k for net, k in kinds.items() if net not in ("10.200.0.1/32", "10.200.0.255/32")
            } == {K.CONNECTED}
    connected = next(p.decision for p in got if p.decision.kind is K.CONNECTED)
    assert connected.route is not None and connected.route.dev == "cni0"
    assert connected.route.scope == "link" and connected.gateways == ()
    assert sum(p.network.num_addresses for p in got) == 256
    got6 = fib("noop").decide_network(n("fd00:200::/64"))
    local6 = {str(p.network) for p in got6 if p.decision.kind is K.LOCAL}
    assert local6 == {"fd00:200::/128", "fd00:200::1/128"}  # anycast and the address
    assert sum(p.network.num_addresses for p in got6) == 2**64


def test_a_more_specific_foreign_route_shadows_half_of_the_planned_one() -> None:
    assert parts("shadow", "10.200.1.0/24") == [
        ("10.200.1.0/25", "via 192.168.20.2 dev eth1 (10.200.1.0/25, rule 32766)"),
        ("10.200.1.128/25", "via 192.168.10.2 dev eth0 (10.200.1.0/24, rule 32766)")]
    assert parts("shadow", "fd00:200:1::/64") == [
        ("fd00:200:1::/65", "via fd00:20::2 dev eth1 (fd00:200:1::/65, rule 32766)"),
        ("fd00:200:1:0:8000::/65", "via fd00:10::2 dev eth0 (fd00:200:1::/64, rule 32766)")]


def test_same_prefix_the_lowest_metric_wins() -> None:
    d6 = one("metric", "fd00:200:1::/64")  # foreign metric 100 beats the planned 1024
    assert d6.gateways == (a("fd00:20::2"),) and d6.route and d6.route.metric == 100
    d4 = one("metric", "10.200.1.0/24")  # the planned route has IPv4's metric 0
    assert d4.gateways == (a("192.168.10.2"),) and d4.route and d4.route.metric is None


def test_a_rule_sends_pod_traffic_to_another_table() -> None:
    d = one("rule-table", "10.200.1.0/24")
    assert (d.gateways, d.table, d.priority) == ((a("192.168.20.2"),), 100, 100)
    d6 = one("rule-table", "fd00:200:1::/64")
    assert (d6.gateways, d6.table) == ((a("fd00:20::2"),), 100)
    # `from 10.200.0.0/24 lookup 101`: a pod's forwarded packet, not the host's own
    assert one("rule-table", "10.200.2.0/24").gateways == (a("192.168.10.3"),)
    pod = one("rule-table", "10.200.2.0/24", src=a("10.200.0.5"), iif="cni0")
    assert (pod.gateways, pod.table, pod.priority) == ((a("192.168.20.3"),), 101, 101)
    pod6 = one("rule-table", "fd00:200:2::/64", src=a("fd00:200::5"), iif="cni0")
    assert (pod6.gateways, pod6.table) == ((a("fd00:20::3"),), 101)


def test_a_throw_route_continues_with_the_next_rule() -> None:
    d = one("throw", "10.200.1.0/24")
    assert (d.table, d.priority, d.gateways) == (MAIN_TABLE, 32766, (a("192.168.10.2"),))
    assert one("throw", "10.200.2.0/24").table == 100  # no throw there: table 100 decides
    assert one("throw", "fd00:200:1::/64").table == MAIN_TABLE
    assert one("throw", "fd00:200:2::/64").table == 100
    routes = [Route(n("10.200.1.0/24"), type="throw", table=100)]
    rules = [Rule(V4, 5, RuleAction.LOOKUP, 100)]
    assert decide(rules, tables_of(routes), a("10.200.1.1")).kind is K.NO_ROUTE


def test_blackhole_unreachable_and_prohibit_routes_and_rules() -> None:
    assert [(p, d.split(" (")[0]) for p, d in parts("drops", "10.200.1.0/24")] == [
        ("10.200.1.0/26", "blackhole"), ("10.200.1.64/26", "unreachable"),
        ("10.200.1.128/26", "prohibit"), ("10.200.1.192/26", "via 192.168.10.2 dev eth0")]
    assert [p for p, _ in parts("drops", "fd00:200:1::/64")] == [
        "fd00:200:1::/66", "fd00:200:1:0:4000::/66", "fd00:200:1:0:8000::/66",
        "fd00:200:1:0:c000::/66"]
    for family, base in ((V4, "10.200.{}.0/24"), (V6, "fd00:200:{}::/64")):
        got = [one("drops", base.format(i)) for i in (2, 3, 4)]
        assert [d.kind for d in got] == [K.BLACKHOLE, K.UNREACHABLE, K.PROHIBIT], family
        assert [(d.route, d.priority) for d in got] == [(None, 100), (None, 101), (None, 102)]
        # an unreachable rule fails as "Network is unreachable", a route as "No route"
        assert agrees(got[1], K.NO_ROUTE) and not agrees(got[1], K.UNREACHABLE)
    unreachable_route = one("drops", "10.200.1.64/26")
    assert agrees(unreachable_route, K.UNREACHABLE) and not agrees(unreachable_route, K.NO_ROUTE)
    assert one("drops", "10.200.5.0/24").kind is K.LOCAL  # `local 10.200.5.0/24 dev lo`
    assert one("drops", "fd00:200:5::/64").kind is K.LOCAL


def test_suppress_prefixlength_rejects_short_results_but_not_a_blackhole() -> None:
    f = fib("suppress")
    # rule 100 `lookup main suppress_prefixlength 0`: the /24 is kept...
    assert one("suppress", "10.200.1.0/24").priority == 100
    # ...the default route is not: on to rule 101 (table 100)
    d = one("suppress", "10.200.4.0/24")
    assert (d.table, d.priority, d.gateways) == (100, 101, (a("192.168.20.2"),))
    assert f.decide(a("fd00:250::1")).table == 100
    # rule 98 `to 10.200.3.0/24 lookup main suppress_prefixlength 24` rejects the /24
    assert one("suppress", "10.200.3.0/24").priority == 100
    # rule 99 would reject a /24 too, but a blackhole is an error, never suppressed
    d = one("suppress", "10.200.2.0/24")
    assert (d.kind, d.priority) == (K.BLACKHOLE, 99)
    assert one("suppress", "fd00:200:2::/64").kind is K.BLACKHOLE


def test_the_own_cidrs_connected_route_replaced_by_a_via_route() -> None:
    got = fib("own-cidr-via").decide_network(n("10.200.0.0/24"))
    rest = {p.decision.kind for p in got if p.decision.kind is not K.LOCAL}
    assert rest == {K.VIA}
    assert {p.decision.gateways for p in got if p.decision.kind is K.VIA} == {
        (a("192.168.10.2"),)}
    got6 = fib("own-cidr-via").decide_network(n("fd00:200::/64"))
    assert {p.decision.kind for p in got6} == {K.VIA, K.LOCAL}


def test_goto_nop_and_an_unresolved_goto() -> None:
    assert parts("goto", "10.200.1.0/24") == [
        ("10.200.1.0/25", "via 192.168.20.3 dev eth1 (10.200.1.0/25 table 101, rule 301)"),
        ("10.200.1.128/25", "via 192.168.10.2 dev eth0 (10.200.1.0/24, rule 32766)")]
    assert [p for p, _ in parts("goto", "fd00:200:1::/64")] == [
        "fd00:200:1::/65", "fd00:200:1:0:8000::/65"]
    rules = parse_rules(record("goto")["rules-4"], V4)
    assert [(r.priority, r.action, r.goto) for r in rules if r.priority in (100, 150)] == [
        (100, RuleAction.GOTO, 300), (150, RuleAction.GOTO, 500)]


def test_from_iif_and_oif_selectors() -> None:
    # `not from 10.0.0.0/8`: an originated IPv4 packet has source 0.0.0.0, so it matches
    assert one("selectors", "10.200.1.0/24").table == 100
    assert one("selectors", "10.200.1.0/24", src=a("10.200.0.5"), iif="cni0").table == 254
    # IPv6 without a source matches no `from`, so `not from fd00::/8` matches
    assert one("selectors", "fd00:200:1::/64").table == 100
    # `iif cni0`: forwarded from the bridge only; `iif lo`: originated only
    assert one("selectors", "10.200.2.0/24").table == MAIN_TABLE
    assert one("selectors", "10.200.2.0/24", src=a("10.200.0.5"), iif="cni0").table == 101
    assert one("selectors", "10.200.3.0/24").table == 101
    assert one("selectors", "10.200.3.0/24", src=a("10.200.0.5"), iif="cni0").table == 254
    assert one("selectors", "fd00:200:3::/64").table == 101
    # `from 0.0.0.0/8` matches an originated IPv4 packet; IPv6 `from ::/1` does not
    assert one("selectors", "10.200.4.0/24").table == 101
    assert one("selectors", "fd00:200:4::/64").table == MAIN_TABLE
    # `oif eth1`: only when the output device is pinned to it
    f = fib("selectors")
    pinned = f.decide(a("10.200.5.1"), oif="eth1")
    assert (pinned.table, pinned.priority) == (101, 103)
    # `iif nosuch` (detached) never matches
    assert f.decide(a("10.200.4.1"), src=a("10.200.0.5"), iif="nosuch").table == MAIN_TABLE


def test_an_originated_ipv4_packet_from_an_address_not_local_has_no_route() -> None:
    f = fib("noop")
    assert f.decide(a("10.200.1.1"), src=a("192.168.10.1")).kind is K.VIA
    d = f.decide(a("10.200.1.1"), src=a("10.200.0.5"))
    assert d.kind is K.NO_ROUTE and "not an address of this host" in d.reason
    assert f.decide(a("fd00:200:1::1"), src=a("fd00:10::99")).kind is K.VIA  # IPv6: fine


def test_a_route_through_a_link_without_carrier_is_still_used() -> None:
    assert '"linkdown"' in record("linkdown")["routes-4"]
    assert '"linkdown"' in record("linkdown")["routes-6"]
    assert one("linkdown", "10.200.1.0/25").route.dev == "eth1"  # type: ignore[union-attr]
    assert one("linkdown", "fd00:200:1::/65").gateways == (a("fd00:20::2"),)


def test_multipath_is_via_and_agrees_with_the_nexthop_the_kernel_hashed_to() -> None:
    d = one("multipath", "10.200.1.0/24")
    assert d.kind is K.VIA and d.gateways == (a("192.168.10.2"), a("192.168.20.2"))
    for hop, dev in (("192.168.10.2", "eth0"), ("192.168.20.2", "eth1")):
        assert agrees(d, RouteGetAnswer(a("10.200.1.1"), K.VIA, a(hop), dev, MAIN_TABLE))
    assert not agrees(d, RouteGetAnswer(a("10.200.1.1"), K.VIA, a("192.168.10.9"), "eth0",
                                        MAIN_TABLE))
    assert one("multipath", "fd00:200:1::/64").gateways == (a("fd00:10::2"), a("fd00:20::2"))
    assert str(d) == "via 192.168.10.2, 192.168.20.2 (10.200.1.0/24, rule 32766)"


def test_rules_on_the_packet_are_uncertain_where_they_matter() -> None:
    # fwmark without a mark: either way
    d = one("marks", "10.200.1.0/24")
    assert d.kind is K.UNCERTAIN and "rule 100 may match (it selects on fwmark)" in d.reason
    assert [c.table for c in d.candidates] == [100, MAIN_TABLE]
    assert one("marks", "10.200.1.0/24", mark=0).table == MAIN_TABLE
    assert one("marks", "10.200.1.0/24", mark=0xCA6C).table == 100
    for dst, selectors in (("10.200.2.0/24", "uidrange"), ("10.200.3.0/24", "ipproto, dport"),
                           ("fd00:200:2::/64", "uidrange"),
                           ("fd00:200:3::/64", "ipproto, dport")):
        d = one("marks", dst, mark=0)
        assert d.kind is K.UNCERTAIN and f"selects on {selectors})" in d.reason, dst
        assert {c.table for c in d.candidates} == {100, MAIN_TABLE}
    # the `uidrange 3000-4000 lookup 102` rule (an empty table) changes nothing
    assert one("marks", "10.250.0.0/24", mark=0).kind is K.NO_ROUTE
    assert one("marks", "10.200.5.0/24", mark=0).kind is K.NO_ROUTE


def test_wg_quick_rules() -> None:
    assert one("wg-quick", "10.200.1.0/24").kind is K.UNCERTAIN
    # unmarked (mark 0): everything to wg's table
    d = one("wg-quick", "10.200.1.0/24", mark=0)
    assert (d.table, d.priority) == (51820, 32764)
    # wg's own packets: main, the default route suppressed by 32765 but used by 32766
    d = one("wg-quick", "10.200.1.0/24", mark=0xCA6C)
    assert (d.table, d.priority, d.gateways) == (MAIN_TABLE, 32765, (a("192.168.10.2"),))
    d = one("wg-quick", "10.200.9.0/24", mark=0xCA6C)
    assert (d.priority, d.route and d.route.dst) == (32766, n("0.0.0.0/0"))


def test_ties_ipv4_first_ipv6_preferred_then_uncertain() -> None:
    # IPv4, same prefix and metric (`ip route append`): the first in table order
    assert one("ties", "10.200.2.0/24").gateways == (a("192.168.20.2"),)
    # IPv6 `pref high` beats `pref low` at the same metric
    d = one("ties", "fd00:200:2::/64")
    assert (d.kind, d.route and d.route.dev) == (K.CONNECTED, "eth1")
    # IPv6, the same preference: the round-robin pointer, which ip does not show
    d = one("ties", "fd00:200:3::/64")
    assert d.kind is K.UNCERTAIN and "round-robin" in d.reason
    assert [c.route and c.route.dev for c in d.candidates] == ["eth0", "eth1"]
    # two IPv4 default routes of one metric: the host's own packets depend on neighbours
    d = one("ties", "10.200.3.0/24")
    assert d.kind is K.UNCERTAIN and len(d.candidates) == 2
    forwarded = one("ties", "10.200.3.0/24", src=a("10.200.0.5"), iif="cni0")
    assert forwarded.gateways == (a("192.168.10.9"),)


# --- pure cases without a capture ----------------------------------------------------------


def main_only(*routes: Route, family: Family = V4) -> Fib:
    return Fib(DEFAULT_RULES[family], tables_of(routes))


def test_routes_of_the_other_family_and_other_tables_are_ignored() -> None:
    f = main_only(Route(n("fd00::/8"), a("fd00:10::2")), Route(n("10.0.0.0/8"), a("10.9.9.9"),
                                                               table=7))
    assert f.decide(a("10.200.1.1")).kind is K.NO_ROUTE
    assert f.decide(a("fd00::1")).kind is K.NO_ROUTE  # IPv6 decided by IPv6 rules only
    assert Fib([*DEFAULT_RULES[V4], *DEFAULT_RULES[V6]], tables_of(
        [Route(n("fd00::/8"), a("fd00:10::2"))])).decide(a("fd00::1")).kind is K.VIA


def test_route_types_the_model_does_not_know_are_uncertain() -> None:
    f = main_only(Route(n("10.200.1.0/24"), type="multicast", dev="eth0"))
    d = f.decide(a("10.200.1.1"))
    assert d.kind is K.UNCERTAIN and "multicast" in d.reason and not d.candidates


def test_l3mdev_and_suppress_ifgroup_are_uncertain_where_they_matter() -> None:
    routes = tables_of([Route(n("10.200.1.0/24"), a("192.168.10.2"), "eth0")])
    l3mdev = Rule(V4, 1000, RuleAction.LOOKUP, None, unevaluable=("l3mdev",))
    d = decide([l3mdev, *DEFAULT_RULES[V4]], routes, a("10.200.1.1"))
    assert d.kind is K.UNCERTAIN and "VRF" in d.reason and len(d.candidates) == 1
    group = Rule(V4, 10, RuleAction.LOOKUP, MAIN_TABLE, suppress_ifgroup="5")
    d = decide([group, Rule(V4, 20, RuleAction.BLACKHOLE)], routes, a("10.200.1.1"))
    assert d.kind is K.UNCERTAIN and "group 5" in d.reason
    assert {c.kind for c in d.candidates} == {K.VIA, K.BLACKHOLE}
    # nothing to suppress: certain
    assert decide([group, Rule(V4, 20, RuleAction.BLACKHOLE)], routes,
                  a("10.9.9.9")).kind is K.BLACKHOLE


def test_many_rules_the_model_cannot_evaluate_end_uncertain_without_blowing_up() -> None:
    rules = [Rule(V4, i, RuleAction.LOOKUP, 1000 + i, unevaluable=("uidrange",))
             for i in range(1, 200)]
    tables = {1000 + i: [Route(n("10.200.1.0/24"), a(f"192.168.10.{i}"), table=1000 + i)]
              for i in range(1, 200)}
    d = decide([*rules, *DEFAULT_RULES[V4]], tables, a("10.200.1.1"))
    assert d.kind is K.UNCERTAIN and f"more than {forwarding.MAX_FORKS}" in d.reason
    # irrelevant ones (their tables do not match) cost nothing and change nothing
    d = decide([*rules, *DEFAULT_RULES[V4]], tables, a("10.201.0.1"))
    assert d.kind is K.NO_ROUTE


def test_a_pinned_oif_the_route_does_not_leave_by_is_uncertain() -> None:
    f = main_only(Route(n("10.200.1.0/24"), a("192.168.10.2"), "eth0"))
    assert f.decide(a("10.200.1.1"), src=None, oif="eth0").kind is K.VIA
    d = f.decide(a("10.200.1.1"), oif="eth1")
    assert d.kind is K.UNCERTAIN and not d.candidates
    # no route at all: IPv4 then takes the destination as on-link out of eth1 (captured)
    assert f.decide(a("10.250.0.1"), oif="eth1").kind is K.UNCERTAIN
    noop = {tuple(g["args"]): g for g in record("noop")["gets"]}
    assert parse_route_get(noop[("10.200.1.1", "oif", "eth1")]["stdout"], V4).dev == "eth1"


def test_a_source_of_the_other_family_is_refused() -> None:
    with pytest.raises(ValueError):
        main_only().decide(a("10.200.1.1"), src=a("fd00::1"))


def test_a_slash_64_with_a_host_route_inside_is_cheap_and_exact() -> None:
    f = main_only(Route(n("fd00:200:1::/64"), a("fd00:10::2")),
                  Route(n("fd00:200:1::1234/128"), a("fd00:20::2")), family=V6)
    got = f.decide_network(n("fd00:200:1::/64"))
    assert len(got) == 65
    assert [p for p in got if p.decision.gateways == (a("fd00:20::2"),)] == [
        Part(n("fd00:200:1::1234/128"), got[[str(p.network) for p in got].index(
            "fd00:200:1::1234/128")].decision)]
    assert sum(p.network.num_addresses for p in got) == 2**64


def test_more_parts_than_the_cap_leave_the_rest_uncertain() -> None:
    hosts = [Route(n(f"10.{i >> 8}.{i & 255}.7/32"), a("192.168.10.2"))
             for i in range(0, 65536, 8)]
    f = main_only(Route(n("10.0.0.0/8"), a("192.168.10.3")), *hosts)
    got = f.decide_network(n("10.0.0.0/8"))
    assert len(got) <= MAX_PARTS
    assert sum(p.network.num_addresses for p in got) == 2**24
    assert any(p.decision.kind is K.UNCERTAIN and "more than" in p.decision.reason
               for p in got)
    assert all(x.network.broadcast_address < y.network.network_address
               for x, y in pairwise(got))


def test_tables_of_keeps_the_kernels_order() -> None:
    r1 = Route(n("10.0.0.0/8"), a("1.1.1.1"))
    r2 = Route(n("10.0.0.0/8"), a("2.2.2.2"), table=100)
    r3 = Route(n("10.0.0.0/8"), a("3.3.3.3"))
    assert tables_of([r1, r2, r3]) == {MAIN_TABLE: [r1, r3], 100: [r2]}


# --- decide_network against decide, by Hypothesis ----------------------------------------------


@st.composite
def tables_and_rules(draw: st.DrawFn) -> tuple[list[Rule], list[Route]]:
    base = int(IPv4Network("10.200.0.0/16").network_address)
    routes = []
    for _ in range(draw(st.integers(0, 12))):
        length = draw(st.integers(14, 32))
        start = base + draw(st.integers(0, 2**16 - 1))
        dst = IPv4Network((start >> (32 - length) << (32 - length), length))
        routes.append(Route(dst, a(f"192.168.10.{draw(st.integers(1, 9))}"),
                            table=draw(st.sampled_from([MAIN_TABLE, 100])),
                            metric=draw(st.sampled_from([None, 5, 100])),
                            type=draw(st.sampled_from(["unicast", "unicast", "blackhole",
                                                       "throw", "unreachable", "local"]))))
    rules = list(DEFAULT_RULES[V4])
    for i in range(draw(st.integers(0, 3))):
        length = draw(st.integers(16, 30))
        start = base + draw(st.integers(0, 2**16 - 1))
        net = IPv4Network((start >> (32 - length) << (32 - length), length))
        to, src = draw(st.sampled_from([(net, None), (None, net), (net, net)]))
        rules.append(Rule(V4, 100 + i, RuleAction.LOOKUP, 100, dst=to, src=src,
                          invert=draw(st.booleans())))
    return rules, routes


@settings(max_examples=200, deadline=None, derandomize=True)
@given(tables_and_rules(), st.integers(18, 26), st.booleans(), st.data())
def test_each_part_decides_every_address_in_it_alike(
        drawn: tuple[list[Rule], list[Route]], length: int, forwarded: bool,
        data: st.DataObject) -> None:
    """Originated, and forwarded from a pod (whose source check looks back from the
    destination, so rule ``from`` selectors split too)."""
    rules, routes = drawn
    f = Fib(rules, tables_of(routes))
    source = IPv4Network("10.200.0.0/16")[data.draw(st.integers(0, 2**16 - 1))]
    how: dict[str, Any] = {"src": source, "iif": "cni0"} if forwarded else {}
    dst = IPv4Network((int(IPv4Network("10.200.0.0/16").network_address)
                       + (data.draw(st.integers(0, 2**(length - 16) - 1)) << (32 - length)),
                       length))
    got = f.decide_network(dst, **how)
    assert got[0].network.network_address == dst.network_address
    assert got[-1].network.broadcast_address == dst.broadcast_address
    assert all(x.network.broadcast_address + 1 == y.network.network_address
               for x, y in pairwise(got))
    for p in got:
        probe = p.network.network_address + data.draw(
            st.integers(0, p.network.num_addresses - 1))
        assert f.decide(probe, **how).same_outcome(p.decision), (p, probe)
    assert decide_network(rules, tables_of(routes), dst, **how) == got


# --- sample addresses --------------------------------------------------------------------


def test_sample_addresses_first_last_and_one_per_outcome_first() -> None:
    assert sample_addresses(n("10.200.1.0/24")) == [a("10.200.1.1"), a("10.200.1.254")]
    assert sample_addresses(n("fd00:200:1::/64")) == [
        a("fd00:200:1::1"), a("fd00:200:1:0:ffff:ffff:ffff:ffff")]
    assert sample_addresses(n("10.0.0.4/31")) == [a("10.0.0.4"), a("10.0.0.5")]
    assert sample_addresses(n("10.0.0.4/32")) == [a("10.0.0.4")]
    assert sample_addresses(n("fd00::1/128")) == [a("fd00::1")]
    assert sample_addresses(n("fd00::/127")) == [a("fd00::"), a("fd00::1")]
    own = fib("noop").decide_network(n("fd00:200::/64"))
    got = sample_addresses(n("fd00:200::/64"), own, limit=5)
    assert got[:4] == [a("fd00:200::1"), a("fd00:200::ffff:ffff:ffff:ffff"), a("fd00:200::"),
                       a("fd00:200::2")]  # anycast (local), then the first connected part
    assert len(got) == 5
    shadow = fib("shadow").decide_network(n("10.200.1.0/24"))
    assert sample_addresses(n("10.200.1.0/24"), shadow) == [
        a("10.200.1.1"), a("10.200.1.254"), a("10.200.1.0"), a("10.200.1.128")]


# --- ip route get -----------------------------------------------------------------------------


def test_route_get_answers_are_read() -> None:
    got = {tuple(g["args"]): g for g in record("rule-table")["gets"]}
    via = parse_route_get(got[("10.200.1.1",)]["stdout"], V4)
    assert (via.kind, via.gateway, via.dev, via.table) == (
        K.VIA, a("192.168.20.2"), "eth1", 100)
    assert str(via) == "via 192.168.20.2 dev eth1 table 100"
    connected = parse_route_get(got[("10.200.0.128",)]["stdout"], V4)
    assert (connected.kind, connected.gateway, connected.dev, connected.table) == (
        K.CONNECTED, None, "cni0", MAIN_TABLE)
    local = parse_route_get(got[("10.200.0.1",)]["stdout"], V4)
    assert (local.kind, local.table, str(local)) == (K.LOCAL, LOCAL_TABLE, "local table 255")
    broadcast = parse_route_get(got[("10.200.0.255",)]["stdout"], V4)
    assert broadcast.kind is K.LOCAL
    anycast = parse_route_get(got[("fd00:200:0::",)]["stdout"], V6)
    assert anycast.kind is K.LOCAL and '"anycast"' in got[("fd00:200:0::",)]["stdout"]
    six = parse_route_get(got[("fd00:200:1::1",)]["stdout"], V6)
    assert (six.gateway, six.table) == (a("fd00:20::2"), 100)
    via6 = parse_route_get('[{"dst":"10.210.0.1","via":{"family":"inet6","host":"fd00:10::2"},'
                           '"dev":"eth0","flags":[]}]', V4)
    assert (via6.kind, via6.gateway) == (K.VIA, a("fd00:10::2"))


@pytest.mark.parametrize("text", [
    "", "[]", "garbage", '[{"dst":"10.0.0.1"},{"dst":"10.0.0.2"}]', '[{"dev":"eth0"}]',
    '[{"dst":"fd00::1","dev":"eth0"}]', '[{"dst":"10.0.0.1","gateway":"x"}]',
    '[{"type":"multicast","dst":"10.0.0.1","dev":"eth0"}]',
    '[{"dst":"10.0.0.1","dev":"eth0","table":"wg"}]',
])
def test_garbage_route_get_output_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_route_get(text, V4)


def test_route_get_errors_as_measured() -> None:
    errors = {tuple(g["args"]): g["stderr"] for g in record("drops")["gets"] if g["status"]}
    assert errors[("10.200.1.1",)] == "RTNETLINK answers: Invalid argument\n"
    assert errors[("10.200.1.64",)] == "RTNETLINK answers: No route to host\n"
    assert errors[("10.200.1.128",)] == "RTNETLINK answers: Permission denied\n"
    assert errors[("10.200.3.1",)] == "RTNETLINK answers: Network is unreachable\n"
    assert parse_route_get_error(errors[("10.200.1.1",)]) is K.BLACKHOLE
    assert parse_route_get_error(errors[("10.200.1.64",)]) is K.UNREACHABLE
    assert parse_route_get_error(errors[("10.200.1.128",)]) is K.PROHIBIT
    assert parse_route_get_error(errors[("10.200.3.1",)]) is K.NO_ROUTE
    with pytest.raises(ParseError):
        parse_route_get_error("Cannot find device \"nosuch\"\n")


def test_agrees_checks_kind_table_gateway_and_device() -> None:
    d = one("noop", "10.200.1.0/24")
    right = RouteGetAnswer(a("10.200.1.1"), K.VIA, a("192.168.10.2"), "eth0", MAIN_TABLE)
    assert agrees(d, right)
    assert not agrees(d, replace(right, table=100))
    assert not agrees(d, replace(right, gateway=a("192.168.10.3")))
    assert not agrees(d, replace(right, dev="eth1"))
    assert not agrees(d, replace(right, kind=K.CONNECTED, gateway=None))
    assert not agrees(d, K.NO_ROUTE)
    assert agrees(Decision(K.NO_ROUTE), K.NO_ROUTE)
    assert not agrees(Decision(K.NO_ROUTE), right)
    connected = fib("noop").decide(a("10.200.0.5"))
    answer = RouteGetAnswer(a("10.200.0.5"), K.CONNECTED, None, "cni0", MAIN_TABLE)
    assert agrees(connected, answer) and not agrees(connected, replace(answer, dev="eth0"))
    # IPv4 with only the default rules reports a local-table route as table main
    local = fib("noop").decide(a("10.200.0.1"))
    assert local.table == LOCAL_TABLE
    assert agrees(local, RouteGetAnswer(a("10.200.0.1"), K.LOCAL, None, "lo", MAIN_TABLE))
    assert not agrees(local, RouteGetAnswer(a("10.200.0.1"), K.LOCAL, None, "lo", 100))
    assert not agrees(Decision(K.UNCERTAIN, reason="?"), right)
    assert str(Decision(K.UNCERTAIN, reason="why")) == "uncertain: why"
    assert str(Decision(K.BLACKHOLE, priority=7)) == "blackhole (rule 7)"
    assert isinstance(n("fd00::/64"), IPv6Network)
