"""End-to-end in a dual-stack lab: IPv4 and IPv6 routes, both pinged, both pruned.

The lab (``lab up --dual-stack``) gives every machine fd00:10::N beside 192.168.10.N and
every node fd00:200:I::/64 beside 10.200.I.0/24; podroutes runs from the jumpbox over
real SSH as in test_e2e.py. What a user sees: pods fail to reach other nodes' pods in
both families before apply and reach them after; routes go via each family's node
address; a second apply, from either inventory form, changes nothing; removing one
family's CIDR removes exactly that family's routes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from podroutes.inventory import load
from podroutes.lab import netns as labmod

from .conftest import Lab, cross_node, unique_name

pytestmark = pytest.mark.lab

PROTO = 147
NODE0 = ("192.168.10.101", "fd00:10::101", "10.200.0.0/24", "fd00:200::/64")
NODE1 = ("192.168.10.102", "fd00:10::102", "10.200.1.0/24", "fd00:200:1::/64")


def owned(lab: Lab, machine: str) -> dict[str, str]:
    """podroutes' routes on a machine, both families: destination -> gateway."""
    return {str(r.dst): str(r.gateway) for r in lab.routes(machine) if r.protocol == PROTO}


def _root_netns_state() -> tuple[str, ...]:
    def ip(*args: str) -> str:
        return subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                              check=True).stdout
    return (ip("route", "show", "table", "all"), ip("-6", "route", "show", "table", "all"),
            ip("link"), ip("addr"), ip("netconf"))


def test_dual_stack_lab_topology() -> None:
    before = _root_netns_state()
    spec = labmod.up(labmod.LabSpec(name=unique_name(), nodes=2, pods_per_node=2,
                                    dual_stack=True))
    try:
        lab = Lab(spec)
        assert _root_netns_state() == before
        # node addresses of both families, IPv6 usable at once (nodad, never tentative)
        [eth0] = json.loads(lab.sh("node-1", "ip", "-j", "addr", "show", "eth0"))
        info = {a["local"]: a for a in eth0["addr_info"] if a["scope"] == "global"}
        assert set(info) == {"192.168.10.102", "fd00:10::102"}
        assert info["fd00:10::102"]["prefixlen"] == 64
        assert info["fd00:10::102"].get("nodad") is True
        assert "tentative" not in info["fd00:10::102"]
        [cni0] = json.loads(lab.sh("node-1", "ip", "-j", "-6", "addr", "show", "cni0"))
        assert [a["local"] for a in cni0["addr_info"] if a["scope"] == "global"] == [
            "fd00:200:1::1"]
        # forwarding in both families on nodes only, inside their namespaces
        v6_forwarding = "/proc/sys/net/ipv6/conf/all/forwarding"
        assert lab.sh("node-0", "cat", v6_forwarding).strip() == "1"
        assert lab.sh("node-0", "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
        assert lab.sh("server", "cat", v6_forwarding).strip() == "0"
        # pods: both families, a default route of each family via cni0
        pod = {str(r.dst): r for r in lab.routes("node-1-pod-1")}
        assert (str(pod["0.0.0.0/0"].gateway), str(pod["::/0"].gateway)) == (
            "10.200.1.1", "fd00:200:1::1")
        [pod_eth0] = json.loads(lab.sh("node-1-pod-1", "ip", "-j", "addr", "show", "eth0"))
        assert {a["local"] for a in pod_eth0["addr_info"] if a["scope"] == "global"} == {
            "10.200.1.3", "fd00:200:1::3"}
        # the inventory in the documented dual-stack comma form, and the same hosts as YAML
        assert (lab.dir / "machines.txt").read_text().splitlines()[1:] == [
            "192.168.10.100,fd00:10::100 server.kubernetes.local server",
            "192.168.10.101,fd00:10::101 node-0.kubernetes.local node-0 "
            "10.200.0.0/24,fd00:200::/64",
            "192.168.10.102,fd00:10::102 node-1.kubernetes.local node-1 "
            "10.200.1.0/24,fd00:200:1::/64",
        ]
        machines = load((lab.dir / "machines.txt").read_text(), "machines.txt")
        yaml = load((lab.dir / "inventory.yaml").read_text(), "inventory.yaml")
        assert [(h.name, h.fqdn, h.addresses, h.pod_cidrs) for h in machines] == [
            (h.name, h.fqdn, h.addresses, h.pod_cidrs) for h in yaml]
        # ssh over IPv6 from the jumpbox, host key pinned for the IPv6 address too
        out = lab.sh("jumpbox", "ssh", "-F", str(lab.dir / "ssh_config"), "fd00:10::101",
                     "cat /proc/sys/net/ipv6/conf/all/forwarding")
        assert out.strip() == "1"
        assert "Connection from fd00:10::10 " in lab.sshd_log("node-0")
        state = labmod.status(spec)
        assert state["healthy"] is True and state["dual_stack"] is True
        node1 = next(m for m in state["machines"] if m["name"] == "node-1")  # type: ignore[attr-defined]
        assert node1["address6"] == "fd00:10::102"
        # lab.json remembers the stack, so smoke and down work from the name alone
        assert labmod.load_spec(spec.name, spec.root).dual_stack is True
    finally:
        labmod.down(spec)
    assert _root_netns_state() == before
    assert not set(spec.all_namespaces()) & labmod.existing_namespaces()


def test_smoke_fails_before_apply_and_passes_after_in_both_families(dual_lab: Lab) -> None:
    before = dual_lab.smoke_failures_by_family()
    assert set(before) == {4, 6}
    for family in (4, 6):  # exactly the cross-node pairs, both directions
        assert cross_node(before[family]) == before[family]
        assert sorted(before[family]) == [("node-0-pod-0", "node-1-pod-0"),
                                          ("node-1-pod-0", "node-0-pod-0")]

    applied = dual_lab.podroutes("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "3/3 hosts converged" in applied.stdout

    assert dual_lab.smoke_failures_by_family() == {4: [], 6: []}
    status = dual_lab.podroutes("status")
    assert status.returncode == 0, status.stdout
    assert "in sync" in status.stdout
    # each family via that family's node address, with podroutes' protocol
    assert owned(dual_lab, "node-0") == {NODE1[2]: NODE1[0], NODE1[3]: NODE1[1]}
    assert owned(dual_lab, "node-1") == {NODE0[2]: NODE0[0], NODE0[3]: NODE0[1]}
    assert owned(dual_lab, "server") == {NODE0[2]: NODE0[0], NODE0[3]: NODE0[1],
                                         NODE1[2]: NODE1[0], NODE1[3]: NODE1[1]}
    v6 = dual_lab.route("node-0", NODE1[3])
    assert v6 is not None and v6.metric == 1024 and v6.dev == "eth0"
    own = dual_lab.route("node-0", NODE0[3])  # its own CIDR stays the kernel's cni0 route
    assert own is not None and (own.protocol, own.dev) == (2, "cni0")


def test_second_apply_changes_nothing_from_either_inventory_form(dual_lab: Lab) -> None:
    assert dual_lab.podroutes("apply").returncode == 0
    routes = {m: dual_lab.routes(m) for m in ("server", "node-0", "node-1")}
    for inventory in (dual_lab.machines_txt, dual_lab.dir / "inventory.yaml"):
        again = dual_lab.podroutes("apply", "--json", inventory=inventory)
        assert again.returncode == 0, again.stderr
        for host in json.loads(again.stdout)["hosts"]:
            assert host["before"]["changes"] == [], (inventory, host)
            assert host["applied"] is False
    assert "no changes" in dual_lab.podroutes("apply").stdout
    assert {m: dual_lab.routes(m) for m in routes} == routes
    status = dual_lab.podroutes("status", "--json", inventory=dual_lab.dir / "inventory.yaml")
    assert status.returncode == 0, status.stdout


def test_dry_run_shows_ipv6_commands_and_changes_nothing(dual_lab: Lab) -> None:
    before = {m: dual_lab.routes(m) for m in ("server", "node-0", "node-1")}
    dry = dual_lab.podroutes("apply", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "route add fd00:200:1::/64 via fd00:10::102 proto 147" in dry.stdout
    assert "route add 10.200.1.0/24 via 192.168.10.102 proto 147" in dry.stdout
    assert {m: dual_lab.routes(m) for m in before} == before


def test_pruning_is_per_family(dual_lab: Lab) -> None:
    assert dual_lab.podroutes("apply").returncode == 0
    lines = dual_lab.machines_txt.read_text().splitlines()

    def without(cidr: str) -> str:
        path = dual_lab.dir / f"without-{cidr.replace('/', '_').replace(':', '-')}.txt"
        path.write_text("\n".join(
            line.replace(f",{cidr}", "").replace(f"{cidr},", "") for line in lines) + "\n")
        return str(path)

    # node-1 keeps its IPv4 pod CIDR and IPv6 address but no longer owns fd00:200:1::/64
    applied = dual_lab.podroutes("apply", "--json", inventory=without(NODE1[3]))
    assert applied.returncode == 0, applied.stderr
    hosts = {h["host"]: h["before"]["counts"] for h in json.loads(applied.stdout)["hosts"]}
    assert (hosts["server"]["remove"], hosts["node-0"]["remove"], hosts["node-1"]["remove"]) \
        == (1, 1, 0)
    assert owned(dual_lab, "node-0") == {NODE1[2]: NODE1[0]}
    assert owned(dual_lab, "node-1") == {NODE0[2]: NODE0[0], NODE0[3]: NODE0[1]}
    assert NODE1[3] not in owned(dual_lab, "server") and NODE1[2] in owned(dual_lab, "server")
    failures = dual_lab.smoke_failures_by_family()
    assert failures[4] == []
    assert sorted(failures[6]) == [("node-0-pod-0", "node-1-pod-0"),
                                   ("node-1-pod-0", "node-0-pod-0")]

    # and the other way round: IPv4 goes, IPv6 comes back
    applied = dual_lab.podroutes("apply", "--json", inventory=without(NODE1[2]))
    assert applied.returncode == 0, applied.stderr
    hosts = {h["host"]: h["before"]["counts"] for h in json.loads(applied.stdout)["hosts"]}
    assert (hosts["node-0"]["remove"], hosts["node-0"]["add"]) == (1, 1)
    assert owned(dual_lab, "node-0") == {NODE1[3]: NODE1[1]}
    failures = dual_lab.smoke_failures_by_family()
    assert failures[6] == []
    assert sorted(failures[4]) == [("node-0-pod-0", "node-1-pod-0"),
                                   ("node-1-pod-0", "node-0-pod-0")]


def test_ssh_over_ipv6_with_pinned_host_keys(dual_lab: Lab) -> None:
    """The inventory names every host by its IPv6 address; the lab's known_hosts pins
    those addresses, so strict host key checking passes and apply converges."""
    inventory = dual_lab.dir / "by-ipv6.yaml"
    text = (dual_lab.dir / "inventory.yaml").read_text()
    for address in ("fd00:10::100", "fd00:10::101", "fd00:10::102"):
        text = text.replace(f"    ipv6: {address}\n",
                            f"    ipv6: {address}\n    ssh: {{target: '{address}'}}\n")
    inventory.write_text(text)
    applied = dual_lab.podroutes("apply", inventory=inventory)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Connection from fd00:10::10 " in dual_lab.sshd_log("node-1")
    assert dual_lab.smoke_failures_by_family() == {4: [], 6: []}


def test_smoke_prints_one_matrix_per_family(dual_lab: Lab) -> None:
    cli = subprocess.run([sys.executable, "-m", "podroutes", "lab", "smoke", "--name",
                          dual_lab.spec.name], capture_output=True, text=True, check=False)
    assert cli.returncode == 1
    assert "pod-to-pod IPv4 ping matrix" in cli.stdout
    assert "pod-to-pod IPv6 ping matrix" in cli.stdout
    assert "IPv6: 2 of 2 pairs failed" in cli.stdout
    assert "smoke: 4 of 4 pairs failed" in cli.stdout
    assert "Destination unreachable: No route" in cli.stdout  # the node's ICMPv6 answer
    data = json.loads(dual_lab.smoke().stdout)
    assert data["families"] == [4, 6]
    six = [r for r in data["results"] if r["family"] == 6]
    assert {r["dst_address"] for r in six} == {"fd00:200::2", "fd00:200:1::2"}
