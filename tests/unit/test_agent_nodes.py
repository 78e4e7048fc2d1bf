"""Node objects → hosts: dual-stack gateways, skipped nodes and why, validation per node."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

from podroutes.agent.conditions import Condition
from podroutes.agent.nodes import NodeView, NoticeKind, cluster_view, parse_node
from podroutes.core.plan import RoutePlan


def obj(name: str, *addresses: tuple[str, str], cidrs: list[str] | None = None,
        legacy: str | None = None, created: str = "2026-01-01T00:00:00Z",
        conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if cidrs is not None:
        spec["podCIDRs"] = cidrs
    if legacy is not None:
        spec["podCIDR"] = legacy
    return {"metadata": {"name": name, "uid": "u-" + name, "creationTimestamp": created},
            "spec": spec, "status": {"addresses": [{"type": t, "address": a}
                                                   for t, a in addresses],
                                     "conditions": conditions or []}}


def view(*objects: dict[str, Any]) -> Any:
    return cluster_view([v for o in objects if (v := parse_node(o)) is not None])


def test_parse_reads_cidrs_internal_ips_and_the_condition() -> None:
    v = parse_node(obj("n1", ("Hostname", "n1"), ("ExternalIP", "203.0.113.9"),
                       ("InternalIP", "192.168.10.101"), ("InternalIP", "fd00:10::101"),
                       cidrs=["10.200.0.0/24", "fd00:200::/64"],
                       conditions=[{"type": "Ready", "status": "True"},
                                   {"type": "NetworkUnavailable", "status": "False",
                                    "reason": "RouteCreated", "message": "m",
                                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]))
    assert v == NodeView("n1", ("192.168.10.101", "fd00:10::101"),
                         ("10.200.0.0/24", "fd00:200::/64"), "u-n1", "2026-01-01T00:00:00Z",
                         Condition("False", "RouteCreated", "m", "2026-01-01T00:00:00Z"))


def test_parse_falls_back_to_the_legacy_pod_cidr_and_refuses_nameless_objects() -> None:
    v = parse_node(obj("n1", ("InternalIP", "192.168.10.101"), legacy="10.200.0.0/24"))
    assert v is not None and v.pod_cidrs == ("10.200.0.0/24",)
    assert parse_node({"metadata": {}}) is None
    assert parse_node({"kind": "Node", "spec": None, "status": "junk", "metadata": {
        "name": "x"}}) == NodeView("x")


def test_dual_stack_gateway_per_family_and_routes_per_family() -> None:
    cv = view(obj("a", ("InternalIP", "192.168.10.101"), ("InternalIP", "fd00:10::101"),
                  cidrs=["10.200.0.0/24", "fd00:200::/64"]),
              obj("b", ("InternalIP", "fd00:10::102"), ("InternalIP", "192.168.10.102"),
                  ("InternalIP", "192.168.10.202"),
                  cidrs=["10.200.1.0/24", "fd00:200:1::/64"]))
    b = cv.inventory.host("b")
    assert b.addresses == (ip_address("192.168.10.102"), ip_address("fd00:10::102"))
    routes = RoutePlan(cv.inventory).routes_for(cv.inventory.host("a"))
    assert {(str(r.dst), str(r.gateway)) for r in routes} == {
        ("10.200.1.0/24", "192.168.10.102"), ("fd00:200:1::/64", "fd00:10::102")}
    assert cv.notices == ()


def test_node_without_pod_cidrs_routes_to_others_and_is_reported() -> None:
    cv = view(obj("a", ("InternalIP", "192.168.10.101")),
              obj("b", ("InternalIP", "192.168.10.102"), cidrs=["10.200.1.0/24"]))
    assert [h.name for h in cv.inventory] == ["a", "b"]
    [notice] = cv.notices
    assert (notice.node, notice.kind, notice.routable) == ("a", NoticeKind.NO_POD_CIDR, True)
    assert [str(r.dst) for r in RoutePlan(cv.inventory).routes_for(cv.inventory.host("a"))] \
        == ["10.200.1.0/24"]
    assert cv.skipped == ()


def test_node_without_internal_ip_is_left_out() -> None:
    cv = view(obj("a", ("ExternalIP", "203.0.113.1"), cidrs=["10.200.0.0/24"]),
              obj("b", ("InternalIP", "192.168.10.102"), cidrs=["10.200.1.0/24"]))
    assert [h.name for h in cv.inventory] == ["b"]
    assert [(n.node, n.kind) for n in cv.skipped] == [("a", NoticeKind.NO_INTERNAL_IP)]
    assert "InternalIP" in str(cv.skipped[0])


def test_bad_values_are_dropped_one_by_one() -> None:
    cv = view(obj("a", ("InternalIP", "not-an-ip"), ("InternalIP", "fe80::1%eth0"),
                  ("InternalIP", "192.168.10.101"),
                  cidrs=["10.200.0.1/24", "fd00:200::/64", "10.200.7.0/24", "10.200.8.0/24"]))
    host = cv.inventory.host("a")
    assert host.pod_cidrs == (ip_network("10.200.7.0/24"),)
    kinds = [n.kind for n in cv.notices]
    assert kinds == [NoticeKind.BAD_ADDRESS, NoticeKind.BAD_ADDRESS, NoticeKind.BAD_POD_CIDR,
                     NoticeKind.NO_ADDRESS_OF_FAMILY, NoticeKind.BAD_POD_CIDR]


def test_overlapping_claims_keep_the_older_node() -> None:
    cv = view(obj("new", ("InternalIP", "192.168.10.103"), cidrs=["10.200.1.0/24"],
                  created="2026-02-01T00:00:00Z"),
              obj("old", ("InternalIP", "192.168.10.102"), cidrs=["10.200.1.0/24"],
                  created="2026-01-01T00:00:00Z"),
              obj("c", ("InternalIP", "192.168.10.104"), cidrs=["10.200.2.0/24"],
                  created="2026-01-02T00:00:00Z"))
    assert [h.name for h in cv.inventory] == ["old", "c"]
    [notice] = cv.skipped
    assert notice.node == "new" and notice.kind is NoticeKind.REJECTED
    assert "overlaps 10.200.1.0/24 of old" in notice.message


def test_duplicate_addresses_and_cidrs_holding_node_addresses_are_rejected_per_node() -> None:
    cv = view(obj("a", ("InternalIP", "192.168.10.101"), cidrs=["10.200.0.0/24"]),
              obj("b", ("InternalIP", "192.168.10.101"), cidrs=["10.200.1.0/24"]),
              obj("c", ("InternalIP", "192.168.10.103"), cidrs=["192.168.10.0/24"]))
    assert [h.name for h in cv.inventory] == ["a"]
    assert {n.node for n in cv.skipped} == {"b", "c"}


def test_an_empty_cluster_is_an_empty_inventory() -> None:
    cv = cluster_view([])
    assert len(cv.inventory) == 0 and cv.notices == ()


def test_a_large_cluster_converts_without_problems() -> None:
    nodes = [NodeView(f"n{i}", (f"10.{i // 250}.{i % 250}.10",),
                      (f"100.{64 + i // 256}.{i % 256}.0/24",)) for i in range(3000)]
    cv = cluster_view(nodes)
    assert len(cv.inventory) == 3000 and cv.notices == ()


def test_overlapping_claims_keep_the_older_node_whichever_cidr_sorts_first() -> None:
    """The newer Node's wider CIDR sorts before the older one's: still the newer is out."""
    cv = view(obj("old", ("InternalIP", "192.168.10.102"), cidrs=["10.200.1.0/24"],
                  created="2026-01-01T00:00:00Z"),
              obj("new", ("InternalIP", "192.168.10.103"), cidrs=["10.200.0.0/23"],
                  created="2026-02-01T00:00:00Z"))
    assert [h.name for h in cv.inventory] == ["old"]
    [notice] = cv.skipped
    assert notice.node == "new" and "overlaps 10.200.1.0/24 of old" in notice.message
