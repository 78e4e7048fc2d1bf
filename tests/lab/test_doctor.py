"""End-to-end: ``podroutes doctor`` from the jumpbox over real SSH, one fault at a time.

Each fault is made for real inside one lab machine's namespace (a sysctl, a firewall
rule, a route, a link); doctor must report exactly that fault on exactly that host;
where the fix is safe, ``--fix`` (or ``--fix-firewall``) repairs it, otherwise the fix
command doctor printed is run by hand; afterwards doctor is clean and every pod reaches
every other pod. A healthy lab, with routes and rules other tools own, has no findings.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from podroutes.lab import netns as labmod

from .conftest import Lab, install_planned_routes, make_lab, stop_sshd

pytestmark = pytest.mark.lab

PROTO = "147"


@pytest.fixture
def lab4() -> Iterator[Lab]:
    """Two pods per node, so pods on the same node can be told apart from cross-node."""
    spec = make_lab(nodes=2, pods=2)
    try:
        yield Lab(spec)
    finally:
        labmod.down(spec)


def doctor(lab: Lab, *flags: str) -> tuple[int, dict[str, Any]]:
    done = lab.podroutes("doctor", "--json", *flags)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def found(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["kind"], f["host"]) for f in report["findings"]]


def run_fix(lab: Lab, host: str, finding: dict[str, Any]) -> None:
    """Run the commands doctor printed, on the host, as a person would paste them."""
    for command in finding["fix"]:
        lab.sh(host, "sh", "-c", command)


# --- the faults ---------------------------------------------------------------------------


def second_leg(lab: Lab) -> None:
    """node-0 gets a second port (eth1, .201) on the node segment, sends its traffic for
    node-1's pods out of it, and answers ARP for .101 only on eth0: replies come back on
    eth0 while the route back leaves by eth1. Then strict rp_filter."""
    subprocess.run(["ip", "-n", lab.ns("net"), "link", "add", "v-node-0-b", "type", "veth",
                    "peer", "name", "eth1", "netns", lab.ns("node-0")], check=True)
    subprocess.run(["ip", "-n", lab.ns("net"), "link", "set", "v-node-0-b", "master", "br0",
                    "up"], check=True)
    for argv in (("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"),
                 ("ip", "addr", "add", "192.168.10.201/24", "dev", "eth1"),
                 ("ip", "link", "set", "eth1", "up"),
                 ("ip", "route", "replace", "10.200.1.0/24", "via", "192.168.10.102",
                  "dev", "eth1", "proto", PROTO),
                 ("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")):
        lab.sh("node-0", *argv)


def gateway_silent(lab: Lab) -> None:
    """node-0 stops hearing node-1's ARP replies; sending to node-1 leaves a FAILED
    neighbour entry for the gateway 192.168.10.102."""
    lab.sh("node-0", "nft", "add table arp podtest { chain in { type filter hook input "
           "priority 0; arp operation reply arp saddr ip 192.168.10.102 drop; }; }")
    lab.sh("node-0", "sysctl", "-qw", "net.ipv4.neigh.eth0.mcast_solicit=1",
           "net.ipv4.neigh.eth0.retrans_time_ms=100")
    lab.sh("node-0", "ping", "-c", "1", "-W", "1", "192.168.10.102", check=False)
    deadline = time.monotonic() + 5
    while "FAILED" not in lab.sh("node-0", "ip", "neigh", "show", "192.168.10.102"):
        assert time.monotonic() < deadline, "the neighbour entry never FAILED"
        time.sleep(0.1)


def gateway_heard_again(lab: Lab) -> None:
    lab.sh("node-0", "nft", "delete", "table", "arp", "podtest")


def own_cidr_clash(lab: Lab) -> None:
    """KTHW#539: node-0 got the server's route list, including its own pod CIDR, before
    cni0 had its address; the kernel's cni0 route came second and loses."""
    lab.sh("node-0", "ip", "addr", "del", "10.200.0.1/24", "dev", "cni0")
    lab.sh("node-0", "ip", "route", "add", "10.200.0.0/24", "via", "192.168.10.102")
    lab.sh("node-0", "ip", "addr", "add", "10.200.0.1/24", "dev", "cni0")


def br_netfilter(lab: Lab) -> None:
    """Routed traffic is accepted between eth0 and cni0, but br_netfilter hands packets
    bridged on cni0 (pod to pod on node-0) to the FORWARD chain, which drops them."""
    for argv in (("iptables", "-P", "FORWARD", "DROP"),
                 ("iptables", "-A", "FORWARD", "-i", "cni0", "-o", "eth0", "-j", "ACCEPT"),
                 ("iptables", "-A", "FORWARD", "-i", "eth0", "-o", "cni0", "-j", "ACCEPT"),
                 ("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")):
        lab.sh("node-0", *argv)


def sh(host: str, command: str) -> Callable[[Lab], None]:
    def make(lab: Lab) -> None:
        lab.sh(host, "sh", "-c", command)

    return make


NFT_DROP = ("nft 'add table inet allow { chain fw { type filter hook forward priority -10; "
            "policy accept; ip daddr 10.200.0.0/16 accept; }; }'; "
            "nft 'add table inet block { chain fw { type filter hook forward priority 0; "
            "policy drop; ct state established,related accept; }; }'")


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str
    host: str
    make: Callable[[Lab], None]
    fix_flag: str | None  # None: doctor prints a manual fix; the test runs it
    breaks_smoke: bool = True
    undo: Callable[[Lab], None] | None = None  # what no command can fix (a dead link)
    pods: int = 1


FAULTS = [
    Fault("ip_forward", "forwarding-off", "node-1",
          sh("node-1", "sysctl -qw net.ipv4.ip_forward=0"), "--fix"),
    Fault("iptables", "iptables-forward-drop", "node-1",
          sh("node-1", "iptables -P FORWARD DROP"), "--fix-firewall"),
    Fault("nftables", "nft-forward-drop", "node-0", sh("node-0", NFT_DROP), "--fix-firewall"),
    Fault("br_netfilter", "br-netfilter", "node-0", br_netfilter, "--fix-firewall", pods=2),
    Fault("rp_filter", "rp-filter", "node-0", second_leg, None),
    Fault("missing", "route-missing", "node-0",
          sh("node-0", "ip route del 10.200.1.0/24"), "--fix"),
    Fault("wrong_gateway", "route-wrong-gateway", "node-0",
          sh("node-0", "ip route replace 10.200.1.0/24 via 192.168.10.100 proto 147"), None),
    Fault("stale", "route-stale", "node-1",
          sh("node-1", "ip route add 10.201.0.0/24 via 192.168.10.101 proto 147"), None,
          breaks_smoke=False),
    Fault("own_cidr_clash", "own-cidr-clash", "node-0", own_cidr_clash, "--fix"),
    Fault("cni0_down", "bridge-down", "node-1", sh("node-1", "ip link set cni0 down"), None),
    Fault("cni0_address", "bridge-address", "node-1",
          sh("node-1", "ip addr del 10.200.1.1/24 dev cni0"), None),
    Fault("gateway_l2", "gateway-unreachable", "node-0", gateway_silent, None,
          breaks_smoke=False, undo=gateway_heard_again),
    Fault("mtu", "mtu-mismatch", "node-1", sh("node-1", "ip link set eth0 mtu 1400"), None,
          breaks_smoke=False),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_doctor_finds_exactly_the_fault_and_the_fix_repairs_it(fault: Fault) -> None:
    spec = make_lab(nodes=2, pods=fault.pods)
    try:
        lab = Lab(spec)
        if fault.id == "br_netfilter" and not os.path.exists("/proc/sys/net/bridge"):
            pytest.skip("br_netfilter is not loaded on this machine (tests never load it)")
        install_planned_routes(lab)
        status, healthy = doctor(lab)
        assert (status, found(healthy)) == (0, []), healthy
        fault.make(lab)

        status, report = doctor(lab)
        assert status == 3
        assert found(report) == [(fault.kind, fault.host)], report["findings"]
        finding = report["findings"][0]
        assert finding["what"] and finding["why"] and finding["fix"], finding
        if fault.breaks_smoke:
            assert lab.smoke_failures() != []

        if fault.fix_flag is not None:
            if fault.fix_flag == "--fix-firewall":  # --fix alone never touches a firewall
                status, still = doctor(lab, "--fix")
                assert found(still) == [(fault.kind, fault.host)] and still["fixes"] == []
            status, fixed = doctor(lab, fault.fix_flag)
            assert [f["command"] for f in fixed["fixes"]] == finding["fix"]
            assert all(f["status"] == 0 for f in fixed["fixes"]), fixed["fixes"]
            assert found({"findings": fixed["before"]}) == [(fault.kind, fault.host)]
        else:
            assert not finding["automatic"]
            status, untouched = doctor(lab, "--fix", "--fix-firewall")
            assert found(untouched) == [(fault.kind, fault.host)] and untouched["fixes"] == []
            if fault.undo is not None:
                fault.undo(lab)
            run_fix(lab, fault.host, finding)

        status, after = doctor(lab)
        assert (status, found(after)) == (0, []), after["findings"]
        assert lab.smoke_failures() == []
        if fault.id == "iptables":  # the fix added narrow rules; the policy is the user's
            rules = lab.sh("node-1", "iptables", "-S", "FORWARD")
            assert "-P FORWARD DROP" in rules
            assert "-A FORWARD -d 10.200.1.0/24 -m comment --comment podroutes -j ACCEPT" \
                in rules
    finally:
        labmod.down(spec)


def test_healthy_lab_has_no_findings_even_with_what_other_tools_own(lab4: Lab) -> None:
    applied = lab4.podroutes("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # Routes, rules and settings podroutes has no business with, none of them a fault:
    lab4.sh("node-0", "ip", "route", "add", "10.99.0.0/16", "via", "192.168.10.100",
            "proto", "static")
    lab4.sh("node-0", "ip", "route", "add", "10.200.0.0/16", "via", "192.168.10.100",
            "proto", "bird")  # a daemon's less specific summary route
    lab4.sh("node-1", "ip", "route", "add", "blackhole", "10.250.0.0/16")
    lab4.sh("server", "iptables", "-P", "FORWARD", "DROP")  # the server forwards no pods
    for node, cidr in (("node-0", "10.200.0.0/24"), ("node-1", "10.200.1.0/24")):
        for flag in ("-s", "-d"):  # a dropping policy, with the pods' traffic let through
            lab4.sh(node, "iptables", "-A", "FORWARD", flag, cidr, "-j", "ACCEPT")
        lab4.sh(node, "iptables", "-P", "FORWARD", "DROP")
        lab4.sh(node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")  # routes symmetric
    lab4.sh("node-1", "nft", "add table inet other { chain fw { type filter hook forward "
            "priority 10; policy accept; }; }")
    status, report = doctor(lab4)
    assert (status, found(report)) == (0, []), report["findings"]
    assert report["healthy"] is True
    assert lab4.smoke_failures() == []
    human = lab4.podroutes("doctor")
    assert human.returncode == 0
    assert "healthy: server, node-0, node-1" in human.stdout
    assert "0 findings" in human.stdout


def test_human_output_groups_findings_by_host_with_the_fix(lab: Lab) -> None:
    lab.sh("node-1", "sysctl", "-qw", "net.ipv4.ip_forward=0")
    done = lab.podroutes("doctor")
    assert done.returncode == 3
    out = done.stdout
    assert "route-missing on 3 hosts: server, node-0, node-1" in out  # the shape first
    assert "node-1 (192.168.10.102): 2 findings" in out
    assert "fix: sysctl -w net.ipv4.ip_forward=1" in out
    assert "fix: ip route add 10.200.0.0/24 via 192.168.10.101 proto 147" in out
    assert out.index("server (192.168.10.100)") < out.index("node-0 (") < out.index("node-1 (")
    assert "3 hosts: 5 findings on 3 hosts, 5 with an automatic fix" in out
    fixed = lab.podroutes("doctor", "--fix")
    assert fixed.returncode == 0, fixed.stdout
    assert "node-1: sysctl -w net.ipv4.ip_forward=1  ok" in fixed.stdout
    route = lab.route("node-0", "10.200.1.0/24")
    assert route is not None and (str(route.gateway), route.protocol) == ("192.168.10.102", 147)
    assert lab.smoke_failures() == []
    assert stop_sshd(lab, "node-1")  # a host that cannot be read fails alone
    down = lab.podroutes("doctor")
    assert down.returncode == 1
    assert "node-1: could not be checked:" in down.stdout and "refused" in down.stdout
    assert "healthy: server, node-0" in down.stdout


def test_a_deprecated_node_address_is_found_in_a_dual_stack_lab(dual_lab: Lab) -> None:
    """flannel#2293: node-1's inventory IPv6 address goes deprecated (preferred lifetime
    0, as when its prefix is withdrawn); every other host routes node-1's pods via it.
    doctor names it on node-1 and only there."""
    lab = dual_lab
    assert lab.podroutes("apply").returncode == 0  # machines.txt in the dual-stack form
    status, report = doctor(lab)
    assert (status, found(report)) == (0, [])
    lab.sh("node-1", "ip", "-6", "addr", "change", "fd00:10::102/64", "dev", "eth0",
           "preferred_lft", "0")
    status, report = doctor(lab)
    assert status == 3
    assert found(report) == [("unstable-node-address", "node-1")]
    [finding] = report["findings"]
    assert "fd00:10::102 is deprecated" in finding["what"]
