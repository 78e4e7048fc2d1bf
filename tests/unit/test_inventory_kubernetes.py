"""Node objects as an inventory (``-i kubernetes``), and an inventory file against a
cluster (``doctor --compare-kubernetes``): the pure mapping and comparison."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from podroutes.core.errors import InventoryError
from podroutes.core.model import Family
from podroutes.inventory import load
from podroutes.inventory.kubernetes import (
    NO_POD_CIDRS,
    DisagreementKind,
    NoticeKind,
    compare,
    node_fields,
    strict_inventory,
)

MACHINES = """\
192.168.10.100 server.kubernetes.local server
192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24
192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24
"""


def node(name: str, address: str | None, cidrs: list[str] | None = None,
         created: str = "2026-01-01T00:00:00Z", hostname: str | None = None,
         ) -> dict[str, Any]:
    addresses = [{"type": "Hostname", "address": hostname or name}]
    if address:
        addresses.append({"type": "InternalIP", "address": address})
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"podCIDRs": cidrs} if cidrs else {}, "status": {"addresses": addresses}}


def cluster(*changes: tuple[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The Nodes matching MACHINES' workers, with some replaced (``None``: removed)."""
    nodes = {"node-0": node("node-0", "192.168.10.101", ["10.200.0.0/24"]),
             "node-1": node("node-1", "192.168.10.102", ["10.200.1.0/24"])}
    for name, obj in changes:
        if obj is None:
            nodes.pop(name)
        else:
            nodes[name] = obj
    return list(nodes.values())


def test_node_fields_take_the_fqdn_from_a_dotted_hostname_address_only() -> None:
    dotted = node_fields(node("node-0", "192.168.10.101", hostname="node-0.kubernetes.local"))
    short = node_fields(node("node-0", "192.168.10.101"))
    assert dotted is not None and dotted.fqdn == "node-0.kubernetes.local"
    assert short is not None and short.fqdn is None


def test_strict_inventory_maps_nodes_as_the_agent_does() -> None:
    inventory, notices = strict_inventory([
        node("node-1", "192.168.10.102", ["10.200.1.0/24"], created="2026-01-02T00:00:00Z"),
        node("node-0", "192.168.10.101", ["10.200.0.0/24"], created="2026-01-01T00:00:00Z"),
        node("server", "192.168.10.100", created="2025-12-31T00:00:00Z")])
    assert [h.name for h in inventory] == ["server", "node-0", "node-1"]  # oldest first
    assert inventory.host("node-0").addresses == (ip_address("192.168.10.101"),)
    assert inventory.host("node-0").pod_cidrs == (ip_network("10.200.0.0/24"),)
    assert inventory.host("server").is_control_plane
    assert [(n.node, n.kind) for n in notices] == [("server", NoticeKind.NO_POD_CIDR)]


def test_strict_inventory_rejects_what_the_agent_would_leave_out() -> None:
    with pytest.raises(InventoryError) as err:
        strict_inventory([node("node-0", "192.168.10.101", ["10.200.0.0/24"]),
                          node("node-1", None, ["10.200.1.0/24"]),
                          node("node-2", "192.168.10.103", ["10.200.0.0/23"],
                               created="2026-02-01T00:00:00Z"),
                          node("node-3", "192.168.10.104", ["10.200.3.5/24"])])
    shown = [str(p) for p in err.value.problems]
    assert any(s.startswith("kubernetes:0: nodes/node-1: has no InternalIP") for s in shown)
    # node-2 is the newer of two overlapping claims: it is the one left out, whichever
    # CIDR sorts first (node-2's /23 does).
    assert ("kubernetes:0: nodes/node-2: left out: pod CIDR 10.200.0.0/23 of node-2 overlaps "
            "10.200.0.0/24 of node-0 (line 1)") in shown, shown
    assert any("nodes/node-3: pod CIDR '10.200.3.5/24' is not a network address" in s
               for s in shown)


def test_a_cluster_without_pod_cidrs_says_so_and_points_to_an_inventory_file() -> None:
    with pytest.raises(InventoryError) as err:
        strict_inventory([node("node-0", "192.168.10.101"), node("node-1", "192.168.10.102")])
    (problem,) = err.value.problems
    assert problem.field == "spec.podCIDRs"
    assert "--allocate-node-cidrs" in problem.message
    assert problem.message.endswith("-i machines.txt")


def test_an_empty_cluster_is_an_error() -> None:
    with pytest.raises(InventoryError, match="no Node objects"):
        strict_inventory([{"kind": "Node", "metadata": {}}])


def test_the_same_cluster_and_file_agree() -> None:
    result = compare(load(MACHINES, "machines.txt"), cluster())
    assert result.disagreements == ()
    assert result.pod_cidrs_compared


def kinds(objects: list[dict[str, Any]], text: str = MACHINES,
          ) -> list[tuple[DisagreementKind, str, str | None, str | None]]:
    return [(d.kind, d.node, d.inventory, d.cluster)
            for d in compare(load(text, "machines.txt"), objects).disagreements]


def test_a_node_missing_from_the_cluster_is_reported_but_not_the_server() -> None:
    assert kinds(cluster(("node-1", None))) == [
        (DisagreementKind.NOT_IN_CLUSTER, "node-1", None, None)]


def test_a_node_missing_from_the_file_is_reported() -> None:
    assert kinds(cluster(("node-2", node("node-2", "192.168.10.103", ["10.200.2.0/24"])))) == [
        (DisagreementKind.NOT_IN_INVENTORY, "node-2", None, None)]


def test_another_pod_cidr_is_reported_with_both_values() -> None:
    found = compare(load(MACHINES, "machines.txt"),
                    cluster(("node-1", node("node-1", "192.168.10.102", ["10.200.9.0/24"]))))
    (d,) = found.disagreements
    assert (d.kind, d.node, d.family) == (DisagreementKind.POD_CIDR, "node-1", Family.V4)
    assert (d.inventory, d.cluster) == ("10.200.1.0/24", "10.200.9.0/24")
    assert d.message == ("node-1's IPv4 pod CIDR is 10.200.1.0/24 in machines.txt but "
                         "10.200.9.0/24 in its Node's spec.podCIDRs")


def test_another_address_is_reported_with_both_values() -> None:
    assert kinds(cluster(("node-0", node("node-0", "192.168.10.201", ["10.200.0.0/24"])))) == [
        (DisagreementKind.ADDRESS, "node-0", "192.168.10.101", "192.168.10.201")]


def test_a_family_on_one_side_only_is_a_disagreement_of_that_family() -> None:
    dual = MACHINES.replace("192.168.10.101 ", "192.168.10.101,fd00:10::101 ").replace(
        "10.200.0.0/24\n", "10.200.0.0/24,fd00:200::/64\n")
    assert kinds(cluster(), dual) == [
        (DisagreementKind.ADDRESS, "node-0", "fd00:10::101", None),
        (DisagreementKind.POD_CIDR, "node-0", "fd00:200::/64", None)]


def test_every_kind_at_once_in_file_order_then_the_cluster_only_nodes() -> None:
    objects = cluster(("node-0", node("node-0", "192.168.10.201", ["10.200.7.0/24"])),
                      ("node-1", None),
                      ("node-5", node("node-5", "192.168.10.105", ["10.200.5.0/24"])))
    assert [(k, n) for k, n, _, _ in kinds(objects)] == [
        (DisagreementKind.ADDRESS, "node-0"), (DisagreementKind.POD_CIDR, "node-0"),
        (DisagreementKind.NOT_IN_CLUSTER, "node-1"),
        (DisagreementKind.NOT_IN_INVENTORY, "node-5")]


def test_a_node_left_out_of_the_cluster_is_missing_there_and_its_notice_says_why() -> None:
    result = compare(load(MACHINES, "machines.txt"), cluster(("node-1", node("node-1", None))))
    assert [(d.kind, d.node) for d in result.disagreements] == [
        (DisagreementKind.NOT_IN_CLUSTER, "node-1")]
    assert [(n.node, n.kind) for n in result.notices] == [("node-1", NoticeKind.NO_INTERNAL_IP)]


def test_without_any_pod_cidr_in_the_cluster_only_names_and_addresses_are_compared() -> None:
    result = compare(load(MACHINES, "machines.txt"),
                     [node("node-0", "192.168.10.101"), node("node-1", "192.168.10.112")])
    assert not result.pod_cidrs_compared
    assert [(d.kind, d.node) for d in result.disagreements] == [
        (DisagreementKind.ADDRESS, "node-1")]
    assert result.notices == ()  # not one "no pod CIDR" per node: NO_POD_CIDRS, once
    assert "--allocate-node-cidrs" in NO_POD_CIDRS


def test_a_node_name_that_is_no_rfc_1123_name_is_never_a_host() -> None:
    """The API server never stores one; a double or a proxy could send one, and the name
    may become an SSH target (--ssh-target hostname)."""
    with pytest.raises(InventoryError) as err:
        strict_inventory([node("node-0", "192.168.10.101", ["10.200.0.0/24"]),
                          node("-oProxyCommand=x", "192.168.10.102", ["10.200.1.0/24"])])
    assert [p.field for p in err.value.problems] == ["nodes/-oProxyCommand=x"]
    assert "is not an RFC 1123 name" in err.value.problems[0].message
    result = compare(load(MACHINES, "machines.txt"),
                     [node("node-0", "192.168.10.101", ["10.200.0.0/24"]),
                      node("Node_1", "192.168.10.102", ["10.200.1.0/24"])])
    assert [(n.node, n.kind) for n in result.notices] == [("Node_1", NoticeKind.BAD_NAME)]
