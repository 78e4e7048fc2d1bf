"""Every doctor check on constructed host facts of the KTHW cluster: the healthy cluster has
no findings; each fault gives exactly its finding, on exactly its host, with its fix."""

from __future__ import annotations

import shlex
from dataclasses import replace
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path
from typing import Any

import pytest

from podroutes.core.addresses import Interface
from podroutes.core.model import Family, Inventory, Route
from podroutes.core.plan import RoutePlan, plan
from podroutes.diag.checks import check_all
from podroutes.diag.facts import HostFacts, Neighbour, Networkd
from podroutes.diag.findings import Finding, FindingKind, FixClass
from podroutes.diag.firewall import parse_iptables_save, parse_nft_json
from podroutes.inventory import load

from .samples import DUAL, MACHINES

DATA = Path(__file__).parent.parent / "data" / "doctor"
K = FindingKind
EMPTY_IPTABLES = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"


def healthy(inventory: Inventory) -> dict[str, HostFacts]:
    """Each host as the lab builds it after apply."""
    route_plan = plan(inventory)
    out = {}
    for host, routes in route_plan:
        eth0 = tuple(ip_interface(f"{a}/{24 if a.version == 4 else 64}")
                     for a in host.addresses)
        links = [Interface("lo", 1, True, 65536, None, (ip_interface("127.0.0.1/8"),)),
                 Interface("eth0", 2, True, 1500, None, eth0)]
        table = [Route(dst=i.network, dev="eth0", protocol=2, scope="link") for i in eth0]
        if host.pod_cidrs:
            links.append(Interface("cni0", 3, True, 1500, None, tuple(
                ip_interface(f"{c.network_address + 1}/{c.prefixlen}")
                for c in host.pod_cidrs)))
            table += [Route(dst=c, dev="cni0", protocol=2, scope="link")
                      for c in host.pod_cidrs]
        table += [Route(dst=r.dst, gateway=r.gateway, dev="eth0", protocol=147) for r in routes]
        forwarding = 1 if host.pod_cidrs else 0
        out[host.name] = HostFacts(
            sysctls={"net.ipv4.ip_forward": forwarding,
                     "net.ipv6.conf.all.forwarding": forwarding,
                     "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.eth0.rp_filter": 0},
            interfaces=tuple(links), routes=tuple(table),
            iptables={f: parse_iptables_save(EMPTY_IPTABLES, f) for f in Family},
            nft=parse_nft_json(""))
    return out


@pytest.fixture
def cluster() -> tuple[RoutePlan, dict[str, HostFacts]]:
    inventory = load(MACHINES, "machines.txt")
    return plan(inventory), healthy(inventory)


World = tuple[RoutePlan, dict[str, HostFacts]]


def findings(world: World) -> list[Finding]:
    return check_all(world[0], world[1], protocol=147)


def only(world: World) -> Finding:
    result = findings(world)
    assert len(result) == 1, [(f.kind, f.host, f.what) for f in result]
    return result[0]


def change(world: World, host: str, **fields: Any) -> None:
    world[1][host] = replace(world[1][host], **fields)


def routes(world: World, host: str) -> list[Route]:
    return list(world[1][host].routes)


def sysctls(world: World, host: str, **values: int) -> None:
    merged = dict(world[1][host].sysctls)
    merged.update({k.replace("__", ".").replace("_dash_", "-"): v for k, v in values.items()})
    change(world, host, sysctls=merged)


def test_healthy_cluster_has_no_findings(cluster: World) -> None:
    assert findings(cluster) == []


def test_healthy_dual_stack_cluster_has_no_findings() -> None:
    inventory = load(DUAL, "dual.yaml")
    assert check_all(plan(inventory), healthy(inventory), 147) == []


# --- forwarding ---------------------------------------------------------------------------


def test_forwarding_off_on_a_node(cluster: World) -> None:
    sysctls(cluster, "node-1", net__ipv4__ip_forward=0)
    f = only(cluster)
    assert (f.kind, f.host, f.fix_class) == (K.FORWARDING_OFF, "node-1", FixClass.SAFE)
    assert f.argv == (("sysctl", "-w", "net.ipv4.ip_forward=1"),)
    assert f.fix == ("sysctl -w net.ipv4.ip_forward=1",)


def test_forwarding_off_on_the_server_is_fine(cluster: World) -> None:
    assert cluster[1]["server"].sysctl("net.ipv4.ip_forward") == 0
    assert findings(cluster) == []


def test_ipv6_forwarding_for_an_ipv6_pod_cidr() -> None:
    inventory = load(DUAL, "dual.yaml")
    world = (plan(inventory), healthy(inventory))
    sysctls(world, "node-0", net__ipv6__conf__all__forwarding=0)
    f = only(world)
    assert (f.kind, f.host) == (K.FORWARDING_OFF, "node-0")
    assert f.fix == ("sysctl -w net.ipv6.conf.all.forwarding=1",)


# --- firewalls ----------------------------------------------------------------------------


def test_docker_forward_policy_drop(cluster: World) -> None:
    docker = parse_iptables_save((DATA / "iptables-save-docker.txt").read_text(), Family.V4)
    change(cluster, "node-0", iptables={Family.V4: docker})
    f = only(cluster)
    assert (f.kind, f.host, f.fix_class) == (K.IPTABLES_FORWARD_DROP, "node-0", FixClass.FIREWALL)
    assert "policy is DROP" in f.what
    assert "from other nodes' pods (10.200.1.0/24) to this node's pods" in f.what
    assert f.fix == (
        "iptables -I FORWARD 1 -s 10.200.0.0/24 -m comment --comment podroutes -j ACCEPT",
        "iptables -I FORWARD 1 -d 10.200.0.0/24 -m comment --comment podroutes -j ACCEPT")
    assert [shlex.join(a) for a in f.argv] == list(f.fix)


def test_docker_drop_on_the_server_is_no_finding(cluster: World) -> None:
    docker = parse_iptables_save((DATA / "iptables-save-docker.txt").read_text(), Family.V4)
    change(cluster, "server", iptables={Family.V4: docker})  # the server forwards no pods
    assert findings(cluster) == []


def test_drop_with_accept_rules_for_the_pods_is_fine(cluster: World) -> None:
    text = ("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -s 10.200.0.0/16 -j ACCEPT\n"
            "-A FORWARD -d 10.200.0.0/24 -j ACCEPT\n-A FORWARD -d 192.168.10.0/24 -j ACCEPT\n"
            "COMMIT\n")
    change(cluster, "node-0", iptables={Family.V4: parse_iptables_save(text, Family.V4)})
    assert findings(cluster) == []


def test_a_drop_in_any_nft_table_wins(cluster: World) -> None:
    ruleset = parse_nft_json((DATA / "nft-ruleset.json").read_text())
    empty_nft_backend = parse_iptables_save("# Generated by iptables-save v1.8.9 (nf_tables)\n"
                                            + EMPTY_IPTABLES, Family.V4)
    # iptables says ACCEPT, but the captured ruleset also holds iptables-nft's own FORWARD
    # (policy drop): that one is judged through iptables-save only, never twice.
    change(cluster, "node-1", nft=ruleset, iptables={Family.V4: empty_nft_backend})
    f = only(cluster)
    assert (f.kind, f.host) == (K.NFT_FORWARD_DROP, "node-1")
    assert f.what.startswith("nft inet podtest fw_chain drops forwarded pod traffic")
    assert "a drop in any base chain wins" in f.why
    assert f.fix == ("nft insert rule inet podtest fw_chain ip saddr 10.200.1.0/24 accept "
                     "comment podroutes",
                     "nft insert rule inet podtest fw_chain ip daddr 10.200.1.0/24 accept "
                     "comment podroutes")


def test_nft_names_podroutes_will_not_put_in_a_command(cluster: World) -> None:
    text = ('{"nftables": [{"chain": {"family": "inet", "table": "a;b", "name": "fw", '
            '"hook": "forward", "type": "filter", "prio": 0, "policy": "drop"}}]}')
    change(cluster, "node-1", nft=parse_nft_json(text))
    f = only(cluster)
    assert f.kind is K.NFT_FORWARD_DROP and not f.automatic and f.fix == ()
    assert "add accept rules for 10.200.1.0/24" in f.note


BR_RULES = ("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i cni0 -o eth0 -j ACCEPT\n"
            "-A FORWARD -i eth0 -o cni0 -j ACCEPT\nCOMMIT\n")


@pytest.mark.parametrize(("loaded", "calls", "expect"), [
    (True, 1, K.BR_NETFILTER), (True, 0, None), (False, None, None)])
def test_br_netfilter_sends_bridged_pod_traffic_through_forward(
        cluster: World, loaded: bool, calls: int | None, expect: FindingKind | None) -> None:
    change(cluster, "node-0", iptables={Family.V4: parse_iptables_save(BR_RULES, Family.V4)})
    if loaded:
        sysctls(cluster, "node-0", net__bridge__bridge_dash_nf_dash_call_dash_iptables=calls or 0)
    result = findings(cluster)
    if expect is None:
        assert result == []
        return
    (f,) = result
    assert (f.kind, f.host, f.fix_class) == (expect, "node-0", FixClass.FIREWALL)
    assert "between pods on this node (bridged on cni0)" in f.what
    assert "bridge-nf-call-iptables=1" in f.why


def test_forward_drop_with_br_netfilter_is_one_finding(cluster: World) -> None:
    text = "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"
    change(cluster, "node-0", iptables={Family.V4: parse_iptables_save(text, Family.V4)})
    sysctls(cluster, "node-0", net__bridge__bridge_dash_nf_dash_call_dash_iptables=1)
    f = only(cluster)
    assert f.kind is K.IPTABLES_FORWARD_DROP
    assert "cannot even reach each other" in f.why


# --- rp_filter ----------------------------------------------------------------------------


def asymmetric(world: World) -> None:
    """node-0 sends node-1's pods' traffic out of a second interface, eth1."""
    eth1 = Interface("eth1", 4, True, 1500, None, (ip_interface("192.168.10.201/24"),))
    table = [replace(r, dev="eth1") if str(r.dst) == "10.200.1.0/24" else r
             for r in routes(world, "node-0")]
    change(world, "node-0", interfaces=(*world[1]["node-0"].interfaces, eth1),
           routes=tuple(table))


def test_strict_rp_filter_with_asymmetric_routes(cluster: World) -> None:
    asymmetric(cluster)
    assert findings(cluster) == []  # rp_filter off: asymmetry alone is fine
    sysctls(cluster, "node-0", net__ipv4__conf__all__rp_filter=1)
    f = only(cluster)
    assert (f.kind, f.host, f.fix_class) == (K.RP_FILTER, "node-0", FixClass.MANUAL)
    assert "max(all=1, eth0=0) = 1" in f.what and "10.200.1.0/24" in f.what
    assert f.fix == ("sysctl -w net.ipv4.conf.eth0.rp_filter=2",)
    sysctls(cluster, "node-0", net__ipv4__conf__eth0__rp_filter=2)  # the fix: loose
    assert findings(cluster) == []


def test_strict_rp_filter_with_symmetric_routes_is_fine(cluster: World) -> None:
    for host in ("server", "node-0", "node-1"):
        sysctls(cluster, host, net__ipv4__conf__all__rp_filter=1)
    assert findings(cluster) == []


# --- routes -------------------------------------------------------------------------------


def test_missing_route(cluster: World) -> None:
    change(cluster, "node-0", routes=tuple(
        r for r in routes(cluster, "node-0") if str(r.dst) != "10.200.1.0/24"))
    f = only(cluster)
    assert (f.kind, f.host, f.fix_class) == (K.ROUTE_MISSING, "node-0", FixClass.SAFE)
    assert f.fix == ("ip route add 10.200.1.0/24 via 192.168.10.102 proto 147",)


def set_route(world: World, host: str, dst: str, **fields: Any) -> None:
    change(world, host, routes=tuple(replace(r, **fields) if str(r.dst) == dst else r
                                     for r in routes(world, host)))


def test_wrong_gateway_of_our_own_route(cluster: World) -> None:
    set_route(cluster, "node-0", "10.200.1.0/24", gateway=ip_address("192.168.10.100"))
    f = only(cluster)
    assert (f.kind, f.host, f.fix_class) == (K.ROUTE_WRONG_GATEWAY, "node-0", FixClass.MANUAL)
    assert "goes via 192.168.10.100, not via 192.168.10.102 (podroutes' own)" in f.what
    assert f.fix == ("ip route replace 10.200.1.0/24 via 192.168.10.102 proto 147",)


def test_foreign_conflict_is_a_wrong_gateway_that_names_its_owner(cluster: World) -> None:
    set_route(cluster, "node-0", "10.200.1.0/24", gateway=ip_address("192.168.10.100"),
              protocol=4)
    f = only(cluster)
    assert f.kind is K.ROUTE_WRONG_GATEWAY and "proto static" in f.what and "--force" in f.what


def test_hand_made_route_with_the_right_gateway_is_fine(cluster: World) -> None:
    set_route(cluster, "node-0", "10.200.1.0/24", protocol=3)  # adoptable: traffic flows
    assert findings(cluster) == []


def test_stale_route_of_ours(cluster: World) -> None:
    stale = Route(dst=ip_network("10.201.0.0/24"), gateway=ip_address("192.168.10.101"),
                  dev="eth0", protocol=147)
    change(cluster, "node-1", routes=(*routes(cluster, "node-1"), stale))
    f = only(cluster)
    assert (f.kind, f.host) == (K.ROUTE_STALE, "node-1")
    assert f.fix == ("ip route del 10.201.0.0/24 via 192.168.10.101 proto 147",)


def test_routes_other_tools_own_are_never_findings(cluster: World) -> None:
    others = [Route(dst=ip_network("0.0.0.0/0"), gateway=ip_address("192.168.10.1"),
                    dev="eth0", protocol=16),
              Route(dst=ip_network("10.99.0.0/16"), gateway=ip_address("192.168.10.100"),
                    dev="eth0", protocol=4),
              Route(dst=ip_network("10.200.0.0/16"), gateway=ip_address("192.168.10.100"),
                    dev="eth0", protocol=12),
              Route(dst=ip_network("10.250.0.0/16"), type="blackhole", protocol=3),
              Route(dst=ip_network("10.200.1.0/24"), gateway=ip_address("192.168.10.100"),
                    dev="eth0", protocol=4, table=100)]
    change(cluster, "node-0", routes=(*routes(cluster, "node-0"), *others))
    assert findings(cluster) == []


def test_own_cidr_clash(cluster: World) -> None:
    clash = Route(dst=ip_network("10.200.0.0/24"), gateway=ip_address("192.168.10.102"),
                  dev="eth0", protocol=3)
    change(cluster, "node-0", routes=(clash, *routes(cluster, "node-0")))
    f = only(cluster)
    assert (f.kind, f.host, f.fix_class) == (K.OWN_CIDR_CLASH, "node-0", FixClass.SAFE)
    assert "via 192.168.10.102 (node-1)" in f.what and "KTHW#539" in f.why
    assert f.fix == ("ip route del 10.200.0.0/24 via 192.168.10.102 proto 3",)


def test_own_cidr_clash_made_by_podroutes_is_not_also_stale(cluster: World) -> None:
    clash = Route(dst=ip_network("10.200.0.0/24"), gateway=ip_address("192.168.10.100"),
                  dev="eth0", protocol=147, metric=50)
    change(cluster, "node-0", routes=(*routes(cluster, "node-0"), clash))
    f = only(cluster)
    assert f.kind is K.OWN_CIDR_CLASH
    assert f.fix == ("ip route del 10.200.0.0/24 via 192.168.10.100 proto 147 metric 50",)


# --- the bridge ---------------------------------------------------------------------------


def links(world: World, host: str) -> list[Interface]:
    return list(world[1][host].interfaces)


def test_bridge_missing(cluster: World) -> None:
    change(cluster, "node-1", interfaces=tuple(i for i in links(cluster, "node-1")
                                               if i.name != "cni0"))
    f = only(cluster)
    assert (f.kind, f.host) == (K.BRIDGE_MISSING, "node-1")
    assert "ip addr add 10.200.1.1/24 dev cni0" in f.fix


def test_bridge_down(cluster: World) -> None:
    change(cluster, "node-1", interfaces=tuple(replace(i, up=False) if i.name == "cni0" else i
                                               for i in links(cluster, "node-1")))
    f = only(cluster)
    assert (f.kind, f.host, f.fix) == (K.BRIDGE_DOWN, "node-1", ("ip link set cni0 up",))


def test_bridge_without_the_first_address_of_each_pod_cidr() -> None:
    inventory = load(DUAL, "dual.yaml")
    world = (plan(inventory), healthy(inventory))
    change(world, "node-1", interfaces=tuple(
        replace(i, addresses=i.addresses[:1]) if i.name == "cni0" else i
        for i in links(world, "node-1")))
    f = only(world)
    assert (f.kind, f.host) == (K.BRIDGE_ADDRESS, "node-1")
    assert f.fix == ("ip addr add fd00:200:1::1/64 dev cni0",)


# --- gateways -----------------------------------------------------------------------------


def test_gateway_neighbour_failed(cluster: World) -> None:
    change(cluster, "node-0", neighbours=(
        Neighbour(ip_address("192.168.10.102"), "eth0", ("FAILED",)),
        Neighbour(ip_address("192.168.10.100"), "eth0", ("REACHABLE",)),
        Neighbour(ip_address("192.168.10.77"), "eth0", ("FAILED",))))  # no gateway: fine
    f = only(cluster)
    assert (f.kind, f.host) == (K.GATEWAY_UNREACHABLE, "node-0")
    assert f.fix == ("ping -c 1 192.168.10.102",)


def test_gateway_not_on_link_makes_the_missing_route_manual(cluster: World) -> None:
    narrow = Interface("eth0", 2, True, 1500, None, (ip_interface("192.168.10.101/32"),))
    change(cluster, "node-0", routes=tuple(
        r for r in routes(cluster, "node-0") if str(r.dst) != "10.200.1.0/24"),
        interfaces=tuple(narrow if i.name == "eth0" else i for i in links(cluster, "node-0")))
    kinds = [(f.kind, f.host, f.automatic) for f in findings(cluster)]
    assert kinds == [(K.ROUTE_MISSING, "node-0", False),
                     (K.GATEWAY_NOT_ON_LINK, "node-0", False)]


# --- systemd-networkd ---------------------------------------------------------------------

NETWORK_FILE = "/etc/systemd/network/10-eth0.network"


@pytest.mark.parametrize(("active", "foreign", "persisted", "expect"), [
    (True, True, (), True),
    (True, True, ((ip_network("10.200.1.0/24"), ip_address("192.168.10.102")),), False),
    (True, False, (), False),
    (False, True, (), False),
])
def test_networkd_manage_foreign_routes(cluster: World, active: bool, foreign: bool,
                                        persisted: tuple[Any, ...], expect: bool) -> None:
    nd = Networkd(active, {2: NETWORK_FILE}, foreign, {NETWORK_FILE: persisted})
    change(cluster, "node-0", networkd=nd)
    result = findings(cluster)
    if not expect:
        assert result == []
        return
    (f,) = result
    assert (f.kind, f.host) == (K.NETWORKD_FOREIGN_ROUTES, "node-0")
    assert "ManageForeignRoutes=no" in f.fix[0]
    assert "[Route] Destination=10.200.1.0/24 Gateway=192.168.10.102" in f.note


# --- MTU ----------------------------------------------------------------------------------


def set_mtu(world: World, host: str, mtu: int) -> None:
    change(world, host, interfaces=tuple(replace(i, mtu=mtu) if i.name == "eth0" else i
                                         for i in links(world, host)))


def test_mtu_mismatch_names_the_odd_host(cluster: World) -> None:
    set_mtu(cluster, "node-1", 1400)
    f = only(cluster)
    assert (f.kind, f.host) == (K.MTU_MISMATCH, "node-1")
    assert f.fix == ("ip link set dev eth0 mtu 1500",)
    assert "(server, node-0)" in f.what


def test_mtu_tie_goes_to_the_larger() -> None:
    inventory = load(MACHINES.splitlines(keepends=True)[1] +
                     MACHINES.splitlines(keepends=True)[2], "two.txt")
    world = (plan(inventory), healthy(inventory))
    set_mtu(world, "node-0", 9000)
    f = only(world)
    assert (f.host, f.fix) == ("node-1", ("ip link set dev eth0 mtu 9000",))


def test_findings_come_in_inventory_order_then_kind(cluster: World) -> None:
    set_mtu(cluster, "server", 1400)
    sysctls(cluster, "node-1", net__ipv4__ip_forward=0)
    change(cluster, "node-1", routes=tuple(
        r for r in routes(cluster, "node-1") if r.protocol != 147))
    assert [(f.host, f.kind) for f in findings(cluster)] == [
        ("server", K.MTU_MISMATCH), ("node-1", K.FORWARDING_OFF),
        ("node-1", K.ROUTE_MISSING)]


def test_a_host_whose_facts_were_not_read_is_skipped(cluster: World) -> None:
    del cluster[1]["node-1"]
    assert findings(cluster) == []


# --- IPv6 router advertisements on a forwarding node --------------------------------------


def _ra_world(accept_ra: int, with_ra_routes: bool = True) -> World:
    inventory = load(DUAL, "dual.yaml")
    world = (plan(inventory), healthy(inventory))
    sysctls(world, "node-0", **{"net__ipv6__conf__eth0__accept_ra": accept_ra})
    if with_ra_routes:
        change(world, "node-0", routes=(*routes(world, "node-0"), Route(
            dst=ip_network("::/0"), gateway=ip_address("fe80::1"), dev="eth0", protocol=9,
            metric=1024, expires=1700)))
    return world


def test_accept_ra_1_on_a_forwarding_node_that_relies_on_ras() -> None:
    f = only(_ra_world(accept_ra=1))
    assert (f.kind, f.host, f.fix_class) == (K.ACCEPT_RA, "node-0", FixClass.MANUAL)
    assert f.fix == ("sysctl -w net.ipv6.conf.eth0.accept_ra=2",)
    assert "::/0 via fe80::1" in f.why and "accept_ra=2" in f.why


@pytest.mark.parametrize(("accept_ra", "with_ra_routes"), [(2, True), (1, False), (0, False)])
def test_no_accept_ra_finding_when_ras_are_accepted_or_not_relied_on(
    accept_ra: int, with_ra_routes: bool
) -> None:
    assert findings(_ra_world(accept_ra, with_ra_routes)) == []


def test_the_sysctls_read_from_proc_equal_sysctls_own() -> None:
    """The script reads /proc/sys/net in the shell (no sysctl process walking every
    setting); on this machine it gives what `sysctl` itself prints for the same names,
    accept_ra and rp_filter per interface included."""
    import subprocess

    from podroutes.diag.facts import SYSCTL_SCRIPT, parse_sysctls
    ours = parse_sysctls(subprocess.run(["sh", "-c", SYSCTL_SCRIPT], capture_output=True,
                                        text=True, check=True).stdout)
    assert "net.ipv4.ip_forward" in ours and "net.ipv6.conf.lo.accept_ra" in ours
    assert "net.ipv4.conf.all.rp_filter" in ours
    pattern = (r"^net\.(ipv4\.ip_forward|ipv4\.conf\.[^.]+\.rp_filter"
               r"|ipv6\.conf\.all\.forwarding|ipv6\.conf\.[^.]+\.accept_ra"
               r"|bridge\.bridge-nf-call-ip6?tables)$")
    theirs = parse_sysctls(subprocess.run(["sysctl", "-e", "-a", "-r", pattern],
                                          capture_output=True, text=True).stdout)
    assert ours == theirs


# --- a node address that is temporary or deprecated (flannel#2293) ------------------------


@pytest.mark.parametrize(("address", "why"), [
    ("2001:db8:10:0:8028:3427:3057:66dc", "temporary"),
    ("2001:db8:10::5", "deprecated"),
])
def test_a_temporary_or_deprecated_node_address_is_a_finding(address: str, why: str) -> None:
    """Captured `ip -j addr` (tests/data/ip-j-addr.json): the server's inventory address is
    one of its unstable ones; doctor names it and the stable address to use instead."""
    from podroutes.core.addresses import parse_addresses

    text = DUAL.replace("'fd00:10::100'", f"'{address}'")
    inventory = load(text, "dual.yaml")
    world = (plan(inventory), healthy(inventory))
    captured = parse_addresses((Path(__file__).parent.parent / "data" /
                                "ip-j-addr.json").read_text())
    change(world, "server", addresses=tuple(captured))
    # (the changed address also moves the server off fd00:10::/64: other findings follow)
    [f] = [f for f in findings(world) if f.kind is K.UNSTABLE_NODE_ADDRESS]
    assert (f.kind, f.host, f.fix_class) == (K.UNSTABLE_NODE_ADDRESS, "server", FixClass.MANUAL)
    assert f.what.startswith(f"the inventory address {address} is {why}")
    assert "use 2001:db8:10::1234 instead" in f.why
    assert not f.automatic


def test_a_stable_node_address_is_no_finding() -> None:
    from podroutes.core.addresses import parse_addresses

    inventory = load(DUAL, "dual.yaml")
    world = (plan(inventory), healthy(inventory))
    captured = parse_addresses((Path(__file__).parent.parent / "data" /
                                "ip-j-addr.json").read_text())
    change(world, "server", addresses=tuple(captured))  # fd00:10::100 there is permanent
    assert findings(world) == []
