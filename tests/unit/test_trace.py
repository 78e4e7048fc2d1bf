"""The trace simulator against hand-computed paths: delivered, no route, a loop built with
two wrong gateways, the default route out of the cluster, a blackhole, dual-stack; input
resolution; the --live comparison with the kernel's answers; the drawing."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from podroutes.core.errors import UsageError
from podroutes.core.model import Family, Route
from podroutes.core.plan import RoutePlan, plan
from podroutes.diag.firewall import nat_chains, parse_iptables_save
from podroutes.diag.trace import (
    EndpointKind,
    Hop,
    Network,
    Outcome,
    Trace,
    compare,
    kernel_query,
    observed_network,
    parse_route_get,
    planned_network,
    resolve,
    simulate,
)
from podroutes.diag.trace_draw import draw, route_text, trace_json
from podroutes.inventory import load

from .samples import DUAL, MACHINES

ADDRESSES = {"server": "192.168.10.100", "node-0": "192.168.10.101",
             "node-1": "192.168.10.102"}


@pytest.fixture
def kthw() -> RoutePlan:
    return plan(load(MACHINES, "machines.txt"))


def run(network: Network, src: str, dst: str) -> Trace:
    return simulate(network, *resolve(network, src, dst))


def path(trace: Trace) -> list[tuple[str, str | None]]:
    """(host, matched route as ip prints it) per hop."""
    return [(h.host, route_text(h.route) if h.route else None) for h in trace.hops]


def r(dst: str, via: str | None = None, dev: str = "eth0", proto: int = 147,
      **kw: Any) -> Route:
    return Route(dst=ip_network(dst), gateway=ip_address(via) if via else None, dev=dev,
                 protocol=proto, **kw)


CONNECTED = r("192.168.10.0/24", proto=2, scope="link")


def observed(route_plan: RoutePlan, tables: dict[str, list[Route]]) -> Network:
    local = {h.name: {a: "eth0" for a in h.addresses} | {
        c.network_address + 1: "cni0" for c in h.pod_cidrs} for h in route_plan.inventory}
    own = {h.name: [r(str(c), dev="cni0", proto=2, scope="link") for c in h.pod_cidrs]
           for h in route_plan.inventory}
    return observed_network(route_plan, {n: [CONNECTED, *own[n], *t] for n, t in tables.items()},
                            local)


# --- the planned tables -------------------------------------------------------------------


def test_pod_to_pod_across_nodes_is_delivered(kthw: RoutePlan) -> None:
    t = run(planned_network(kthw, 147), "10.200.0.2", "10.200.1.2")
    assert t.outcome is Outcome.DELIVERED
    assert (t.src.kind, t.src.host, t.dst.kind, t.dst.host) == (
        EndpointKind.POD, "node-0", EndpointKind.POD, "node-1")
    assert path(t) == [
        ("node-0", "10.200.1.0/24 via 192.168.10.102 dev eth0 proto 147"),
        ("node-1", "10.200.1.0/24 dev cni0 proto kernel")]
    assert [h.arrived_on for h in t.hops] == ["cni0", "eth0"]
    assert t.hops[0].next_host == "node-1"


def test_pod_to_pod_on_one_node_stays_on_the_bridge(kthw: RoutePlan) -> None:
    t = run(planned_network(kthw, 147), "10.200.0.2", "10.200.0.3")
    assert (t.outcome, path(t)) == (Outcome.DELIVERED,
                                    [("node-0", "10.200.0.0/24 dev cni0 proto kernel")])


def test_server_to_pod_and_pod_to_server(kthw: RoutePlan) -> None:
    network = planned_network(kthw, 147)
    t = run(network, "server", "10.200.1.7")
    assert t.outcome is Outcome.DELIVERED and t.hops[0].arrived_on is None
    assert path(t)[0] == ("server", "10.200.1.0/24 via 192.168.10.102 dev eth0 proto 147")
    back = run(network, "10.200.1.7", "192.168.10.100")
    assert back.outcome is Outcome.DELIVERED
    assert path(back) == [("node-1", "192.168.10.0/24 dev eth0 proto kernel"),
                          ("server", None)]
    assert back.hops[1].note == "192.168.10.100 is local"


# --- observed tables: the failures --------------------------------------------------------


PLANNED = {"server": [r("10.200.0.0/24", "192.168.10.101"), r("10.200.1.0/24", "192.168.10.102")],
           "node-0": [r("10.200.1.0/24", "192.168.10.102")],
           "node-1": [r("10.200.0.0/24", "192.168.10.101")]}


def test_a_host_not_on_the_path_need_not_be_read(kthw: RoutePlan) -> None:
    tables = {n: PLANNED[n] for n in ("node-0", "node-1")}
    network = observed(kthw, tables)
    assert network.host("server").unread == "not read"
    t = run(network, "10.200.0.2", "10.200.1.2")
    assert t.outcome is Outcome.DELIVERED and [h.host for h in t.hops] == ["node-0", "node-1"]


def test_a_path_through_an_unread_host_is_unknown_past_it(kthw: RoutePlan) -> None:
    tables = {n: PLANNED[n] for n in ("server", "node-0")}
    local = {h.name: {a: "eth0" for a in h.addresses} for h in kthw.inventory}
    network = observed_network(kthw, {n: [CONNECTED, *t] for n, t in tables.items()}, local,
                               unread={"node-1": "ssh: connection refused"})
    t = run(network, "server", "10.200.1.2")
    assert t.outcome is Outcome.UNKNOWN
    assert [h.host for h in t.hops] == ["server", "node-1"]
    assert "node-1" in t.reason and "connection refused" in t.reason
    assert "?" in draw(t, ADDRESSES)


def test_a_host_that_does_not_forward_drops_what_passes_through(kthw: RoutePlan) -> None:
    local = {h.name: {a: "eth0" for a in h.addresses} | {
        c.network_address + 1: "cni0" for c in h.pod_cidrs} for h in kthw.inventory}
    own = {h.name: [r(str(c), dev="cni0", proto=2, scope="link") for c in h.pod_cidrs]
           for h in kthw.inventory}
    tables = {n: [CONNECTED, *own[n], *PLANNED[n]] for n in PLANNED}
    off = {"node-1": {Family.V4: False}}
    network = observed_network(kthw, tables, local, forwarding=off)
    t = run(network, "10.200.0.2", "10.200.1.2")  # node-1 must forward eth0 -> cni0
    assert t.outcome is Outcome.FORWARDING_OFF
    assert "dropped at node-1: forwarding off (net.ipv4.ip_forward = 0)" in t.reason
    # its own traffic, what is addressed to it, and its pods among themselves still work
    assert run(network, "node-1", "10.200.1.2").outcome is Outcome.DELIVERED
    assert run(network, "10.200.1.2", "10.200.1.3").outcome is Outcome.DELIVERED
    assert run(network, "10.200.0.2", "192.168.10.102").outcome is Outcome.DELIVERED
    # the kernel's answer for that hop is an error, as the simulation expects
    assert compare(t.hops[-1], parse_route_get(2, "", "RTNETLINK answers: Network is "
                                                       "unreachable\n")) is None


def test_no_route(kthw: RoutePlan) -> None:
    network = observed(kthw, {"server": [], "node-0": [],
                              "node-1": [r("10.200.0.0/24", "192.168.10.101")]})
    t = run(network, "10.200.0.2", "10.200.1.2")
    assert (t.outcome, path(t)) == (Outcome.NO_ROUTE, [("node-0", None)])
    assert "node-0 has no route to 10.200.1.2" in t.reason


def test_loop_built_with_two_wrong_gateways(kthw: RoutePlan) -> None:
    network = observed(kthw, {
        "node-0": [r("10.200.1.0/24", "192.168.10.100")],  # wrong: via the server
        "server": [r("10.200.1.0/24", "192.168.10.101")],  # wrong: back via node-0
        "node-1": [r("10.200.0.0/24", "192.168.10.101")]})
    t = run(network, "10.200.0.2", "10.200.1.2")
    assert t.outcome is Outcome.LOOPED
    assert t.loop == ("node-0", "server", "node-0")
    assert [h.host for h in t.hops] == ["node-0", "server"]
    assert "node-0 → server → node-0" in t.reason


def test_default_route_sends_it_out_of_the_cluster(kthw: RoutePlan) -> None:
    network = observed(kthw, {"server": [], "node-1": [],
                              "node-0": [r("0.0.0.0/0", "192.168.10.1", proto=16)]})
    t = run(network, "10.200.0.2", "10.200.1.2")
    assert t.outcome is Outcome.LEFT_CLUSTER
    assert path(t) == [("node-0", "default via 192.168.10.1 dev eth0 proto dhcp")]
    assert "by the default route via 192.168.10.1 dev eth0" in t.reason


def test_longest_prefix_wins_over_the_default_route(kthw: RoutePlan) -> None:
    network = observed(kthw, {"server": [], "node-1": [], "node-0": [
        r("0.0.0.0/0", "192.168.10.1"), r("10.200.0.0/16", "192.168.10.100"),
        r("10.200.1.0/24", "192.168.10.102", metric=200),
        r("10.200.1.0/24", "192.168.10.100", metric=100)]})  # lower metric wins the tie
    t = run(network, "10.200.0.2", "10.200.1.2")
    assert t.hops[0].route == r("10.200.1.0/24", "192.168.10.100", metric=100)


def test_blackhole(kthw: RoutePlan) -> None:
    network = observed(kthw, {"server": [], "node-1": [], "node-0": [
        Route(dst=ip_network("10.200.1.0/24"), type="blackhole", protocol=3)]})
    t = run(network, "10.200.0.2", "10.200.1.2")
    assert t.outcome is Outcome.BLACKHOLE and "blackhole 10.200.1.0/24" in t.reason


# --- dual-stack ---------------------------------------------------------------------------


def test_dual_stack_each_family_takes_its_own_routes() -> None:
    network = planned_network(plan(load(DUAL, "dual.yaml")), 147)
    v6 = run(network, "fd00:200::5", "fd00:200:1::9")
    assert v6.outcome is Outcome.DELIVERED
    assert path(v6) == [("node-0", "fd00:200:1::/64 via fd00:10::102 dev eth0 proto 147"),
                        ("node-1", "fd00:200:1::/64 dev cni0 proto kernel")]
    v4 = run(network, "10.200.0.5", "10.200.1.9")
    assert path(v4)[0] == ("node-0", "10.200.1.0/24 via 192.168.10.102 dev eth0 proto 147")
    # a host name takes the family of the other end
    to_server = run(network, "fd00:200:1::9", "server")
    assert to_server.dst.address == ip_address("fd00:10::100")
    assert to_server.outcome is Outcome.DELIVERED
    with pytest.raises(UsageError, match="IPv4 but fd00:200:1::9 is IPv6"):
        resolve(network, "10.200.0.5", "fd00:200:1::9")


# --- input --------------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst", "message"), [
    ("10.9.9.9", "node-1", "10.9.9.9 is in no pod CIDR (10.200.0.0/24, 10.200.1.0/24)"),
    ("node-7", "node-1", "'node-7' is neither an IP address nor a host of the inventory"),
    ("10.200.0.2", "10.200.1.0", "10.200.1.0 is the network address of 10.200.1.0/24"),
    ("10.200.0.2", "10.200.1.255", "10.200.1.255 is the broadcast address of 10.200.1.0/24"),
    ("::ffff:10.200.0.2", "node-1", "::ffff:10.200.0.2 is an IPv4-mapped IPv6 address: trace "
                                    "10.200.0.2 instead"),
])
def test_bad_input_is_a_usage_error(kthw: RoutePlan, src: str, dst: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(planned_network(kthw, 147), src, dst)


def test_node_ip_and_host_name_are_the_same_endpoint(kthw: RoutePlan) -> None:
    network = planned_network(kthw, 147)
    assert resolve(network, "node-1", "server") == resolve(network, "192.168.10.102",
                                                          "192.168.10.100")


# --- --live -------------------------------------------------------------------------------

# Captured from `ip -j route get` (iproute2 6.1.0) in throwaway namespaces.
FORWARDED = ('[{"dst":"10.200.1.5","from":"10.200.0.2","gateway":"192.168.10.102",'
             '"dev":"eth0","flags":[],"cache":[],"iif":"cni0"}]')
LOCAL = ('[{"type":"local","dst":"192.168.10.101","dev":"lo","prefsrc":"192.168.10.101",'
         '"flags":[],"uid":0,"cache":["local"]}]')


def test_kernel_answers_are_parsed() -> None:
    answer = parse_route_get(0, FORWARDED, "")
    assert (answer.gateway, answer.dev, answer.local) == (
        ip_address("192.168.10.102"), "eth0", False)
    assert parse_route_get(0, LOCAL, "").local
    off = parse_route_get(2, "", "RTNETLINK answers: No route to host\n")
    assert off.error == "No route to host"


def test_kernel_queries_ask_as_forwarded_traffic(kthw: RoutePlan) -> None:
    t = run(planned_network(kthw, 147), "10.200.0.2", "10.200.1.5")
    assert kernel_query(t.hops[0], t) == ("ip", "-j", "route", "get", "10.200.1.5", "from",
                                          "10.200.0.2", "iif", "cni0")
    node = run(planned_network(kthw, 147), "server", "10.200.1.5")
    assert kernel_query(node.hops[0], node) == ("ip", "-j", "route", "get", "10.200.1.5",
                                                "from", "192.168.10.100")
    with pytest.raises(ValueError):
        kernel_query(Hop("node-1", "eth0; reboot", None), t)


def test_kernel_agreement_and_disagreement(kthw: RoutePlan) -> None:
    t = run(planned_network(kthw, 147), "10.200.0.2", "10.200.1.5")
    first, last = t.hops
    assert compare(first, parse_route_get(0, FORWARDED, "")) is None
    # forwarding off: the kernel refuses what the table alone would do
    off = compare(first, parse_route_get(2, "", "RTNETLINK answers: No route to host\n"))
    assert off is not None and off.host == "node-0"
    assert off.expected == "via 192.168.10.102 dev eth0"
    assert str(off.kernel) == "error: No route to host"
    assert compare(last, parse_route_get(0, '[{"dst":"10.200.1.5","dev":"cni0"}]', "")) is None
    wrong = parse_route_get(0, '[{"dst":"10.200.1.5","gateway":"192.168.10.100",'
                               '"dev":"eth0"}]', "")
    assert compare(first, wrong) is not None


# --- drawing ------------------------------------------------------------------------------


def test_the_journey_is_drawn_as_boxes_per_host(kthw: RoutePlan) -> None:
    t = run(planned_network(kthw, 147), "10.200.0.2", "10.200.1.2")
    text = draw(t, ADDRESSES)
    lines = text.splitlines()
    assert lines[0] == ("pod 10.200.0.2 (on node-0) → pod 10.200.1.2 (on node-1), through "
                        "the planned tables")
    assert any(line.startswith("┌─ node-0  192.168.10.101 ─") for line in lines)
    assert "│ match: 10.200.1.0/24 via 192.168.10.102 dev eth0 proto 147" in text
    assert "│ out:   eth0 → 192.168.10.102 (node-1)" in text
    assert "│ match: 10.200.1.0/24 dev cni0 proto kernel" in text
    assert lines[-1] == "✓ delivered: node-1 hands it to pod 10.200.1.2 on cni0"
    boxes = [line for line in lines if line.startswith(("┌", "│", "└"))]
    for box_line in boxes:  # every box is closed on the right
        assert box_line.endswith(("┐", "│", "┘"))
    data = trace_json(t)
    assert data["outcome"] == "delivered" and [h["host"] for h in data["hops"]] == [
        "node-0", "node-1"]


def test_a_loop_is_drawn_back_to_where_it_started(kthw: RoutePlan) -> None:
    network = observed(kthw, {"node-0": [r("10.200.1.0/24", "192.168.10.100")],
                              "server": [r("10.200.1.0/24", "192.168.10.101")],
                              "node-1": []})
    text = draw(run(network, "10.200.0.2", "10.200.1.2"), ADDRESSES)
    assert "  back to node-0 ↻" in text
    assert "↻ looped: the packet returns to node-0: node-0 → server → node-0" in text


def test_a_bridge_address_is_the_node_and_an_fqdn_is_its_host(kthw: RoutePlan) -> None:
    network = planned_network(kthw, 147)
    src, dst = resolve(network, "10.200.0.2", "10.200.1.1")
    assert (dst.kind, dst.host) == (EndpointKind.NODE, "node-1")  # node-1's cni0, not a pod
    assert simulate(network, src, dst).outcome is Outcome.DELIVERED
    fqdn = next(h.fqdn for h in kthw.inventory if h.name == "node-1")
    assert fqdn is not None
    assert resolve(network, "node-0", fqdn)[1].host == "node-1"


# --- NAT and the CNI config on the path (--observed) --------------------------------------

NAT_DATA = Path(__file__).parent.parent / "data" / "nat"


def with_nat_and_cni(route_plan: RoutePlan, nat_file: str | None,
                     cni: dict[str, tuple[str, ...]]) -> Network:
    base = observed(route_plan, {n: PLANNED[n] for n in ("server", "node-0", "node-1")})
    chains = {}
    if nat_file is not None:
        ipt = parse_iptables_save((NAT_DATA / nat_file).read_text(), Family.V4)
        chains = {"node-0": {Family.V4: nat_chains(ipt, None, Family.V4)}}
    tables = {h.name: h.routes for h in base.hosts}
    local = {h.name: h.local for h in base.hosts}
    return observed_network(route_plan, tables, local, nat=chains,
                            cni={n: tuple(ip_network(c) for c in cs) for n, cs in cni.items()})


def test_the_bridge_plugins_masquerade_is_shown_on_the_path(kthw: RoutePlan) -> None:
    network = with_nat_and_cni(kthw, "ipt-nat-bridge.txt", {})
    t = run(network, "10.200.0.2", "10.200.1.2")
    assert t.outcome is Outcome.DELIVERED
    assert str(t.hops[0].rewritten) == "192.168.10.101"
    assert t.hops[0].nat_by.startswith("CNI-")
    assert t.notes[0].startswith("source rewritten to 192.168.10.101 at node-0 by CNI-")
    assert "nat:   source rewritten to 192.168.10.101" in draw(t, ADDRESSES)
    assert trace_json(t)["hops"][0]["rewritten_source"] == "192.168.10.101"
    # the next hop's kernel is asked about the packet as it arrives: from the node address
    assert kernel_query(t.hops[1], t)[6] == "192.168.10.101"
    # a pod without the plugin's rule (no such pod) and after the fix: no rewrite
    assert run(network, "10.200.0.9", "10.200.1.2").notes == ()
    fixed = with_nat_and_cni(kthw, "ipt-nat-bridge-fixed.txt", {})
    assert run(fixed, "10.200.0.2", "10.200.1.2").notes == ()
    assert run(with_nat_and_cni(kthw, None, {}), "10.200.0.2", "10.200.1.2").notes == ()


def test_a_cni_subnet_mismatch_is_named_at_either_end(kthw: RoutePlan) -> None:
    network = with_nat_and_cni(kthw, None, {"node-0": ("10.200.0.0/24",),
                                            "node-1": ("10.200.9.0/24",)})
    t = run(network, "10.200.0.2", "10.200.1.7")
    assert t.outcome is Outcome.DELIVERED  # the routes lead there, but no pod has it
    assert t.notes == ("10.200.1.7 is in node-1's pod CIDR 10.200.1.0/24, but node-1's CNI "
                       "hands out 10.200.9.0/24 (cni-subnet-mismatch): no pod on node-1 has "
                       "this address",)
    t = run(network, "10.200.1.7", "10.200.0.2")  # at the source end too
    assert t.notes[0].startswith("10.200.1.7 is in node-1's pod CIDR 10.200.1.0/24, but")
    assert run(network, "10.200.0.2", "10.200.0.3").notes == ()
    # a real pod of node-1 (by its CNI) is in no pod CIDR: bad input, before any host
    with pytest.raises(UsageError, match="cni-subnet-mismatch"):
        run(network, "10.200.0.2", "10.200.9.7")
