"""The lab's addressing plan and the inventories it writes, checked without root."""

from __future__ import annotations

import json
from dataclasses import asdict
from ipaddress import ip_address, ip_network
from pathlib import Path

from podroutes.core.model import Family
from podroutes.core.plan import plan
from podroutes.inventory import load
from podroutes.lab import netns as labmod
from podroutes.lab import topology


def test_dual_stack_addresses_pair_with_the_ipv4_ones() -> None:
    spec = labmod.LabSpec(name="x", nodes=2, pods_per_node=2, dual_stack=True)
    assert [(m.name, m.address, m.address6, m.pod_cidr, m.pod_cidr6) for m in spec.machines()] \
        == [("jumpbox", "192.168.10.10", "fd00:10::10", None, None),
            ("server", "192.168.10.100", "fd00:10::100", None, None),
            ("node-0", "192.168.10.101", "fd00:10::101", "10.200.0.0/24", "fd00:200::/64"),
            ("node-1", "192.168.10.102", "fd00:10::102", "10.200.1.0/24", "fd00:200:1::/64")]
    assert [(p.name, p.address, p.address6) for p in spec.pods()] == [
        ("node-0-pod-0", "10.200.0.2", "fd00:200::2"),
        ("node-0-pod-1", "10.200.0.3", "fd00:200::3"),
        ("node-1-pod-0", "10.200.1.2", "fd00:200:1::2"),
        ("node-1-pod-1", "10.200.1.3", "fd00:200:1::3"),
    ]
    assert spec.families == (4, 6)
    assert spec.pods()[3].address_of(6) == "fd00:200:1::3"


def test_single_stack_has_no_ipv6() -> None:
    spec = labmod.LabSpec(name="x", nodes=3)
    assert spec.families == (4,)
    assert all(m.address6 is None and m.pod_cidr6 is None for m in spec.machines() + spec.pods())
    assert spec.pods()[0].address_of(6) is None


def test_node_ten_and_up_use_hex_cidr_numbers() -> None:
    node10 = topology.machines(12, dual_stack=True)[2 + 10]
    assert (node10.name, node10.address, node10.address6, node10.pod_cidr6) == (
        "node-10", "192.168.10.111", "fd00:10::111", "fd00:200:a::/64")


def test_dual_stack_machines_txt_is_the_documented_comma_form_and_plans_both_families() -> None:
    hosts = topology.machines(2, dual_stack=True)
    text = topology.machines_txt("x", hosts, dual_stack=True)
    assert text.splitlines() == [
        "# machines.txt for podroutes lab 'x' (IPV4,IPV6 FQDN HOSTNAME "
        "[POD_SUBNET,POD_SUBNET6])",
        "192.168.10.100,fd00:10::100 server.kubernetes.local server",
        "192.168.10.101,fd00:10::101 node-0.kubernetes.local node-0 10.200.0.0/24,fd00:200::/64",
        "192.168.10.102,fd00:10::102 node-1.kubernetes.local node-1 "
        "10.200.1.0/24,fd00:200:1::/64",
    ]
    inventory = load(text, "machines.txt")
    routes = {(str(r.dst), str(r.gateway)) for r in plan(inventory).routes_for(
        inventory.host("node-0"))}
    assert routes == {("10.200.1.0/24", "192.168.10.102"), ("fd00:200:1::/64", "fd00:10::102")}
    assert len(plan(inventory).routes_for(inventory.host("server"))) == 4


def test_the_yaml_inventory_holds_the_same_hosts() -> None:
    for dual_stack in (False, True):
        hosts = topology.machines(3, dual_stack)
        txt = load(topology.machines_txt("x", hosts, dual_stack), "machines.txt")
        yaml = load(topology.inventory_yaml("x", hosts), "inventory.yaml")
        assert [(h.name, h.fqdn, h.addresses, h.pod_cidrs) for h in txt] == [
            (h.name, h.fqdn, h.addresses, h.pod_cidrs) for h in yaml]
        assert len(yaml) == 4
    assert load(topology.inventory_yaml("x", topology.machines(1, True)), "i.yaml").host(
        "node-0").address(Family.V6) == ip_address("fd00:10::101")


def test_the_largest_dual_stack_lab_is_a_valid_inventory() -> None:
    hosts = topology.machines(labmod.MAX_NODES, dual_stack=True)
    inventory = load(topology.machines_txt("x", hosts, True), "machines.txt")
    assert len(inventory) == 1 + labmod.MAX_NODES
    last = inventory.host(f"node-{labmod.MAX_NODES - 1}")
    assert last.pod_cidrs == (ip_network("10.200.149.0/24"), ip_network("fd00:200:95::/64"))


def test_lab_json_remembers_dual_stack(tmp_path: Path) -> None:
    spec = labmod.LabSpec(name="ds", root=str(tmp_path), dual_stack=True)
    spec.directory.mkdir()
    labmod.state_file(spec).write_text(json.dumps(asdict(spec)))
    assert labmod.load_spec("ds", str(tmp_path)) == spec
    old = {k: v for k, v in asdict(spec).items() if k != "dual_stack"}  # before the flag
    labmod.state_file(spec).write_text(json.dumps(old))
    assert labmod.load_spec("ds", str(tmp_path)).dual_stack is False
