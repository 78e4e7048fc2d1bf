"""The lab's guards that need no root to check: names, sizes, the root requirement."""

from __future__ import annotations

import pytest

from podroutes.core.errors import LabError
from podroutes.lab import netns as labmod


def test_lab_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labmod.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        labmod.up(labmod.LabSpec(name="nope"))


@pytest.mark.parametrize(("spec", "message"), [
    (labmod.LabSpec(name="Bad_Name"), "lowercase"),
    (labmod.LabSpec(name="x" * 25), "1-24"),
    (labmod.LabSpec(name="ok", nodes=0), "--nodes 0"),
    (labmod.LabSpec(name="ok", nodes=151), "--nodes 151"),
    (labmod.LabSpec(name="ok", pods_per_node=0), "--pods-per-node 0"),
    (labmod.LabSpec(name="ok", cni_subnets=(("node-9", "10.200.9.0/24"),)), "no node 'node-9'"),
    (labmod.LabSpec(name="ok", cni_subnets=(("node-1", "10.200.9.0/33"),)), "not an IPv4"),
    (labmod.LabSpec(name="ok", cni_subnets=(("node-1", "192.168.10.0/25"),)), "outside the node"),
    (labmod.LabSpec(name="ok", cni_subnets=(("server", "10.200.9.0/24"),)), "no node 'server'"),
])
def test_lab_spec_validation(spec: labmod.LabSpec, message: str) -> None:
    with pytest.raises(LabError, match=message):
        labmod.validate_spec(spec)


def test_a_cni_subnet_readdresses_that_nodes_pods_only() -> None:
    spec = labmod.LabSpec(name="x", nodes=2, pods_per_node=2,
                          cni_subnets=(("node-1", "10.200.9.0/24"),))
    assert [p.address for p in spec.pods()] == ["10.200.0.2", "10.200.0.3", "10.200.9.2",
                                                "10.200.9.3"]
    assert [spec.cni_subnet(m) for m in spec.machines()] == [
        None, None, "10.200.0.0/24", "10.200.9.0/24"]
    assert [m.pod_cidr for m in spec.machines()][3] == "10.200.1.0/24"  # the inventory's


def test_lab_addresses_follow_the_seed() -> None:
    spec = labmod.LabSpec(name="x", nodes=2, pods_per_node=2)
    assert [(m.name, m.address, m.pod_cidr) for m in spec.machines()] == [
        ("jumpbox", "192.168.10.10", None), ("server", "192.168.10.100", None),
        ("node-0", "192.168.10.101", "10.200.0.0/24"),
        ("node-1", "192.168.10.102", "10.200.1.0/24"),
    ]
    assert [(p.name, p.address) for p in spec.pods()] == [
        ("node-0-pod-0", "10.200.0.2"), ("node-0-pod-1", "10.200.0.3"),
        ("node-1-pod-0", "10.200.1.2"), ("node-1-pod-1", "10.200.1.3"),
    ]
    assert all(ns.startswith("x-") for ns in spec.all_namespaces())
