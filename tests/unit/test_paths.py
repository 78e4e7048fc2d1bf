"""Path verdicts: what the kernel does with each planned destination, judged against the
plan (core.paths), on tables built as a host would hold them and on the text its commands
print (the tables script's records, ``ip -batch`` of ``route get`` with its failures)."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from podroutes.core.decision import DecisionKind
from podroutes.core.model import Family, Route
from podroutes.core.paths import (
    MARK,
    PathFacts,
    PathState,
    destinations,
    judge_paths,
    parse_gets,
    parse_path_facts,
    parse_tables,
    path_commands,
    samples,
)
from podroutes.core.plan import plan
from podroutes.inventory import load

from .samples import DUAL, MACHINES

INV = load(MACHINES, "machines.txt")
NODE0 = INV.host("node-0")
PLANNED0 = plan(INV).routes_for(NODE0)


def r(dst: str, via: str | None = None, dev: str = "eth0", proto: int = 147,
      **kw: Any) -> Route:
    return Route(dst=ip_network(dst), gateway=ip_address(via) if via else None, dev=dev,
                 protocol=proto, **kw)


CONNECTED = r("192.168.10.0/24", proto=2, scope="link")
BRIDGE = r("10.200.0.0/24", dev="cni0", proto=2, scope="link")
PLANNED = r("10.200.1.0/24", "192.168.10.102")
HEALTHY = [CONNECTED, BRIDGE, PLANNED]


NOTHING_MORE = PathFacts()  # the kernel's default rules, no other table, nothing asked


def judge(main: list[Route], facts: PathFacts = NOTHING_MORE, bridge: str | None = "cni0",
          ) -> list[tuple[PathState, str, bool]]:
    return [(i.state, str(i.part), i.own)
            for i in judge_paths(NODE0, PLANNED0, main, facts, bridge)]


def test_a_healthy_table_has_no_issue() -> None:
    assert judge(HEALTHY) == []
    assert judge(HEALTHY, bridge=None) == []  # status: any bridge


def test_a_more_specific_foreign_route_shadows_part_of_the_destination() -> None:
    shadow = r("10.200.1.0/25", "192.168.10.10", proto=3)
    issues = judge_paths(NODE0, PLANNED0, [*HEALTHY, shadow], PathFacts(), "cni0")
    assert [(i.state, str(i.part)) for i in issues] == [(PathState.SHADOWED, "10.200.1.0/25")]
    assert issues[0].route == shadow and "10.200.1.0/25 via 192.168.10.10" in issues[0].detail
    assert "proto boot" in issues[0].detail


def test_a_lower_metric_wins_over_the_planned_route() -> None:
    dual = load(DUAL, "machines.txt")
    node0 = dual.host("node-0")
    planned = plan(dual).routes_for(node0)
    v6 = next(p for p in planned if p.family is Family.V6)
    ours = Route(v6.dst, v6.gateway, "eth0", 147, metric=1024)
    foreign = Route(v6.dst, ip_address("fd00:10::10"), "eth0", 3, metric=100)
    main = [ours, foreign, *(Route(p.dst, p.gateway, "eth0", 147) for p in planned
                             if p.family is Family.V4)]
    main += [Route(c, None, "cni0", 2, scope="link") for c in node0.pod_cidrs]
    issues = judge_paths(node0, planned, main, PathFacts(), "cni0")
    assert [(i.state, i.dst) for i in issues] == [(PathState.OVERRIDDEN, v6.dst)]
    assert "metric 100" in issues[0].detail


@pytest.mark.parametrize(("kind", "state"), [
    ("blackhole", PathState.DROPPED), ("unreachable", PathState.DROPPED),
    ("prohibit", PathState.DROPPED)])
def test_a_drop_route_inside_the_destination(kind: str, state: PathState) -> None:
    drop = Route(ip_network("10.200.1.128/25"), type=kind, protocol=3)
    assert judge([*HEALTHY, drop]) == [(state, "10.200.1.128/25", False)]


def test_a_rule_sending_pod_traffic_to_another_table() -> None:
    text = (f"{MARK}R 4\n" + json.dumps([
        {"priority": 0, "src": "all", "table": "local"},
        {"priority": 100, "src": "all", "dst": "10.200.1.0", "dstlen": 24, "table": "100"},
        {"priority": 32766, "src": "all", "table": "main"},
        {"priority": 32767, "src": "all", "table": "default"}]) + "\n"
        f"{MARK}T 4 100\n" + json.dumps([
            {"dst": "10.200.1.0/24", "gateway": "192.168.10.50", "dev": "eth0",
             "protocol": "boot", "flags": []}]) + f"\n{MARK}E\n")
    rules, tables, _ = parse_tables(text)
    facts = PathFacts(rules, tables)
    issues = judge_paths(NODE0, PLANNED0, HEALTHY, facts, "cni0")
    assert [(i.state, i.decision.priority, i.decision.table) for i in issues] == [
        (PathState.OTHER_TABLE, 100, 100)]


def test_the_own_pod_cidr_replaced_by_a_route_via_another_node() -> None:
    clash = r("10.200.0.0/24", "192.168.10.102", proto=3)
    assert judge([CONNECTED, clash, PLANNED]) == [
        (PathState.OWN_NOT_ON_BRIDGE, "10.200.0.0/24", True)]


def test_the_own_pod_cidr_without_a_bridge_route_falls_to_the_default_route() -> None:
    default = r("0.0.0.0/0", "192.168.10.1", proto=3)
    issues = judge_paths(NODE0, PLANNED0, [CONNECTED, default, PLANNED], PathFacts(), "cni0")
    assert [(i.state, i.own) for i in issues] == [(PathState.OWN_NOT_ON_BRIDGE, True)]
    assert "no route for it on cni0" in issues[0].detail


def test_the_bridges_own_address_and_broadcast_are_delivered_on_it() -> None:
    local = [Route(ip_network("10.200.0.1/32"), None, "cni0", 2, table=255, type="local",
                   scope="host"),
             Route(ip_network("10.200.0.255/32"), None, "cni0", 2, table=255,
                   type="broadcast", scope="link")]
    facts = PathFacts(tables={Family.V4: {255: local}})
    assert judge(HEALTHY, facts) == []


def test_parts_one_route_takes_are_one_issue() -> None:
    """A blackhole replacing the bridge route: the bridge's address and broadcast are
    still local, so the model splits the CIDR into many parts; one issue says it."""
    hole = Route(ip_network("10.200.0.0/24"), type="blackhole", protocol=3)
    local = [Route(ip_network("10.200.0.1/32"), None, "cni0", 2, table=255, type="local",
                   scope="host")]
    issues = judge_paths(NODE0, PLANNED0, [CONNECTED, hole, PLANNED],
                         PathFacts(tables={Family.V4: {255: local}}), "cni0")
    assert len(issues) == 1 and issues[0].part == ip_network("10.200.0.0/24")
    assert "for 255 of its 256 addresses" in issues[0].detail


def test_a_kernel_answer_that_disagrees_is_reported_not_guessed() -> None:
    facts = PathFacts(answers={ip_address("10.200.1.1"): DecisionKind.BLACKHOLE})
    issues = judge_paths(NODE0, PLANNED0, HEALTHY, facts, "cni0")
    assert [(i.state, str(i.part)) for i in issues] == [
        (PathState.KERNEL_DISAGREES, "10.200.1.0/24")]
    assert "10.200.1.1: blackhole" in (issues[0].kernel or "")


def test_samples_and_commands() -> None:
    nets = destinations(NODE0, PLANNED0)
    assert nets == [ip_network("10.200.1.0/24"), ip_network("10.200.0.0/24")]
    addrs = samples(nets)
    assert [str(a) for a in addrs] == ["10.200.1.1", "10.200.1.254", "10.200.0.1",
                                       "10.200.0.254"]
    (tables, _), (gets, stdin) = path_commands(addrs)
    assert tables[:2] == ("sh", "-c") and gets == ("ip", "-j", "-force", "-batch", "-")
    assert stdin == "".join(f"route get {a}\n" for a in addrs)
    assert len(path_commands([])) == 1  # nothing to ask: no batch reading the session


def test_route_get_batch_output_with_a_failed_line() -> None:
    addrs = [ip_address("10.200.1.1"), ip_address("10.99.0.1"), ip_address("192.168.10.5")]
    stdout = ('[{"dst":"10.200.1.1","gateway":"192.168.10.102","dev":"eth0","flags":[]}]\n'
              '[{"dst":"192.168.10.5","dev":"eth0","flags":[]}]\n')
    stderr = "RTNETLINK answers: Network is unreachable\nCommand failed -:2\n"
    answers = parse_gets(addrs, stdout, stderr)
    assert answers[addrs[1]] is DecisionKind.NO_ROUTE
    assert str(answers[addrs[0]]) == "via 192.168.10.102 dev eth0"
    assert str(answers[addrs[2]]) == "dev eth0"


def test_unreadable_path_facts_leave_the_model_alone() -> None:
    facts = parse_path_facts([ip_address("10.200.1.1")],
                             [(0, f"{MARK}R 4\nnot json\n", ""), (0, "garbage\n", "")])
    assert facts.rules == {} and len(facts.unreadable) == 2
    assert judge(HEALTHY, facts) == []  # the default rules and the main table decide


def test_named_tables_come_from_rt_tables() -> None:
    text = (f"{MARK}N\n200\tpods\n{MARK}R 4\n[]\n{MARK}T 4 pods\n"
            '[{"dst":"10.200.1.0/24","gateway":"192.168.10.9","dev":"eth0","flags":[]}]\n'
            f"{MARK}E\n")
    _, tables, _ = parse_tables(text)
    assert list(tables[Family.V4]) == [200]
    assert tables[Family.V4][200][0].table == 200


def test_rules_that_cannot_be_read_keep_the_kernels_defaults_and_say_so() -> None:
    text = f"{MARK}U 6\nRTNETLINK answers: Address family not supported by protocol\n{MARK}E\n"
    rules, _, unread = parse_tables(text)
    assert rules == {} and unread == [
        "IPv6 rules: RTNETLINK answers: Address family not supported by protocol"]
    facts = parse_path_facts([], [(0, text, "")])
    assert facts.unreadable == tuple(unread)
    assert judge(HEALTHY, facts) == []  # judged with the default rules, not with none
