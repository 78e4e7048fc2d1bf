"""The node agrees with the plan: each lab node's own KTHW 10-bridge.conf and the nat rules
the CNI bridge plugin writes with "ipMasq": true, judged by doctor run from the jumpbox
over SSH and confirmed by the smoke matrix (which reports the source each destination
saw)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from podroutes.lab import netns as labmod

from .conftest import Lab, install_planned_routes, make_lab

pytestmark = pytest.mark.lab


def doctor(lab: Lab, *flags: str) -> tuple[int, dict[str, Any]]:
    done = lab.podroutes("doctor", "--json", *flags)
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, json.loads(done.stdout)


def kinds(report: dict[str, Any], key: str = "findings") -> list[tuple[str, str]]:
    return sorted((f["kind"], f["host"]) for f in report[key] or [])


def smoke(lab: Lab) -> list[dict[str, Any]]:
    return list(json.loads(lab.smoke().stdout)["results"])


def node_of(pod: str) -> str:
    return pod.split("-pod-")[0]


def podroutes_rules(lab: Lab, machine: str) -> list[str]:
    return [line for line in lab.sh(machine, "iptables-save", "-t", "nat").splitlines()
            if "--comment podroutes" in line]


def test_a_wrong_subnet_on_one_node_is_found_there_and_breaks_its_pairs() -> None:
    spec = make_lab(nodes=3, pods=1, cni_subnets=(("node-1", "10.200.9.0/24"),))
    try:
        lab = Lab(spec)
        conf = json.loads(lab.msh("node-1", "cat", "/etc/cni/net.d/10-bridge.conf"))
        assert conf["ipam"]["ranges"] == [[{"subnet": "10.200.9.0/24"}]]
        install_planned_routes(lab)
        status, report = doctor(lab)
        assert status == 3
        mismatch = [f for f in report["findings"] if f["kind"] == "cni-subnet-mismatch"]
        assert [f["host"] for f in mismatch] == ["node-1"]
        assert "hands out 10.200.9.0/24" in mismatch[0]["what"]
        assert "10.200.1.0/24" in mismatch[0]["what"]
        # cni0 took the CNI range's gateway, as the bridge plugin does: bridge-address there
        assert {h for _, h in kinds(report)} == {"node-1"}
        results = smoke(lab)
        broken = sorted((r["src"], r["dst"]) for r in results if not r["ok"])
        assert broken == sorted((r["src"], r["dst"]) for r in results
                                if "node-1" in (node_of(r["src"]), node_of(r["dst"])))
        assert broken  # and every other pair passes
        # trace: the routes lead to node-1, whose cni0 has no 10.200.1.0/24, and the note
        # says why: the CNI hands out another range
        done = lab.podroutes("trace", "10.200.0.2", "10.200.1.2", "--observed", "--json")
        assert done.returncode == 3, done.stderr
        traced = json.loads(done.stdout)
        assert [h["host"] for h in traced["hops"]] == ["node-0", "node-1"]
        assert traced["outcome"] != "delivered"
        assert traced["notes"] == [
            "10.200.1.2 is in node-1's pod CIDR 10.200.1.0/24, but node-1's CNI hands out "
            "10.200.9.0/24 (cni-subnet-mismatch): no pod on node-1 has this address"]
    finally:
        labmod.down(spec)


def test_ipmasq_nat_is_found_on_every_node_fixed_once_and_removable() -> None:
    spec = make_lab(nodes=2, pods=2, ipmasq=True)
    try:
        lab = Lab(spec)
        install_planned_routes(lab)
        nodes = {m.name: m.address for m in spec.machines()}
        pods = {p.name: p.address for p in spec.pods()}

        # with the bridge plugin's rules, pods on other nodes see the node's address
        results = smoke(lab)
        assert all(r["ok"] for r in results)
        for r in results:
            crossing = node_of(r["src"]) != node_of(r["dst"])
            want = nodes[node_of(r["src"])] if crossing else pods[r["src"]]
            assert (r["seen_source"], r["nat"]) == (want, crossing), r

        done = lab.podroutes("trace", "10.200.0.2", "10.200.1.3", "--live", "--json")
        assert done.returncode == 0, done.stderr  # delivered, and each kernel agrees
        traced = json.loads(done.stdout)
        assert traced["hops"][0]["rewritten_source"] == nodes["node-0"]
        assert traced["hops"][0]["nat_by"].startswith("CNI-")
        assert traced["notes"][0].startswith(f"source rewritten to {nodes['node-0']} at "
                                             f"node-0 by CNI-")

        status, report = doctor(lab)
        assert status == 3
        assert kinds(report) == [("pod-to-pod-nat", "node-0"), ("pod-to-pod-nat", "node-1")]
        [node0] = [f for f in report["findings"] if f["host"] == "node-0"]
        assert node0["fix_class"] == "firewall" and node0["automatic"]
        assert node0["fix"] == ["iptables -t nat -I POSTROUTING 1 -s 10.200.0.0/24 -d "
                                "10.200.1.0/24 -m comment --comment podroutes -j RETURN"]

        status, fixed = doctor(lab, "--fix-firewall")
        assert status == 0
        assert kinds(fixed, "fixed") == kinds(report)
        assert fixed["remaining"] == [] and fixed["worse"] == [] and fixed["findings"] == []
        assert [f["status"] for f in fixed["fixes"]] == [0, 0]
        results = smoke(lab)
        assert all(r["ok"] and not r["nat"] and r["seen_source"] == pods[r["src"]]
                   for r in results)
        done = lab.podroutes("trace", "10.200.0.2", "10.200.1.3", "--observed", "--json")
        assert json.loads(done.stdout)["notes"] == []

        # a second --fix-firewall finds nothing and adds nothing
        before = {n: podroutes_rules(lab, n) for n in ("node-0", "node-1")}
        assert [len(rules) for rules in before.values()] == [1, 1]
        status, again = doctor(lab, "--fix-firewall")
        assert status == 0 and again["fixes"] == [] and again["findings"] == []
        assert {n: podroutes_rules(lab, n) for n in before} == before

        # the documented removal command (the finding's note) removes exactly that rule
        removal = node0["note"].split("to remove it: ", 1)[1]
        assert removal.startswith("iptables -t nat -D POSTROUTING ")
        lab.sh("node-0", *shlex.split(removal))
        assert podroutes_rules(lab, "node-0") == [] and podroutes_rules(lab, "node-1") != []
        status, back = doctor(lab)
        assert status == 3 and kinds(back) == [("pod-to-pod-nat", "node-0")]
    finally:
        labmod.down(spec)


def test_a_missing_an_unreadable_and_a_non_gateway_cni_config_are_found_where_they_are(
        lab: Lab) -> None:
    """On the lab's real files (each node's own /etc/cni/net.d), one fault per node:
    node-0's config removed, then a broken file sorting before it; node-1's bridge not a
    gateway; and --bridge naming another bridge than node-1's config. Each finding is on
    its node only; the healthy lab has none."""
    install_planned_routes(lab)
    status, report = doctor(lab)
    assert (status, kinds(report)) == (0, [])

    lab.msh("node-0", "rm", "/etc/cni/net.d/10-bridge.conf")
    conf = json.loads(lab.msh("node-1", "cat", "/etc/cni/net.d/10-bridge.conf"))
    conf["isGateway"] = False
    lab.msh("node-1", "sh", "-c", "printf '%s' " + shlex.quote(json.dumps(conf)) +
            " > /etc/cni/net.d/10-bridge.conf")
    status, report = doctor(lab)
    assert status == 3
    assert ("cni-missing", "node-0") in kinds(report)
    assert ("cni-not-gateway", "node-1") in kinds(report)
    assert {k for k, _ in kinds(report)} <= {"cni-missing", "cni-not-gateway"}

    lab.msh("node-0", "sh", "-c", "printf '{\"cniVersion\": ' > /etc/cni/net.d/00-a.conf")
    status, report = doctor(lab)
    assert ("cni-invalid", "node-0") in kinds(report)
    assert ("cni-missing", "node-0") not in kinds(report)

    status, report = doctor(lab, "--bridge", "br-other")
    assert ("cni-bridge-mismatch", "node-1") in kinds(report)
    assert not [h for k, h in kinds(report) if k == "cni-bridge-mismatch" and h != "node-1"]
