"""The nat evaluation on nat tables captured from real tools with the CNI bridge plugin's
exact rules (tests/data/nat/README.md), and doctor's pod-to-pod-nat finding and fix."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path

import pytest

from podroutes.core.model import Family
from podroutes.diag.checks import check_all
from podroutes.diag.findings import FindingKind, FixClass
from podroutes.diag.firewall import (
    Flow,
    Ruleset,
    Verdict,
    evaluate_nat,
    parse_iptables_save,
    parse_nft_json,
)
from podroutes.inventory import load

from .test_doctor_checks import EMPTY_IPTABLES, World, healthy, plan

DATA = Path(__file__).parent.parent / "data" / "nat"
THREE = """\
192.168.10.100 server.kubernetes.local server
192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24
192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24
192.168.10.103 node-2.kubernetes.local node-2 10.200.2.0/24
"""


def text(name: str) -> str:
    return (DATA / name).read_text()


def flow(src: str, dst: str) -> Flow:
    return Flow("test", ip_network(src), ip_network(dst), "cni0", "eth0")


def decide(ruleset: Ruleset, src: str, dst: str) -> tuple[bool, str | None, str | None]:
    [chain] = ruleset.postrouting_nat_chains()
    d = evaluate_nat(chain, flow(src, dst), ruleset)
    return d.nat, d.chain.name if d.chain else None, str(d.part.src) if d.part else None


IPT = parse_iptables_save(text("ipt-nat-bridge.txt"), Family.V4)
NFT = parse_nft_json(text("nft-bridge-plugin.json"))


def test_bridge_plugin_chain_layout_is_parsed() -> None:
    [post] = IPT.postrouting_nat_chains()
    assert (post.table, post.name, post.hook, post.policy) == \
        ("nat", "POSTROUTING", "postrouting", "accept")
    assert [r.verdict for r in post.rules] == [Verdict.JUMP, Verdict.JUMP]
    assert str(post.rules[0].src) == \
        "AddressMatch(networks=(IPv4Network('10.200.0.2/32'),), negated=False)"
    sub = IPT.chain("ip", "nat", post.rules[0].target or "")
    assert sub is not None and sub.name.startswith("CNI-") and len(sub.name) == 28
    assert [r.verdict for r in sub.rules] == [Verdict.ACCEPT, Verdict.NAT]
    assert sub.rules[1].dst is not None and sub.rules[1].dst.negated
    assert not IPT.forward_chains()


@pytest.mark.parametrize("ruleset", [IPT, NFT], ids=["iptables", "nft-backend"])
def test_pod_to_pod_is_masqueraded_pod_to_own_subnet_is_not(ruleset: Ruleset) -> None:
    nat, chain, part = decide(ruleset, "10.200.0.0/24", "10.200.1.0/24")
    assert nat and part == "10.200.0.2/32"
    assert chain is not None and (chain.startswith("CNI-") or chain == "masq_checks")
    assert decide(ruleset, "10.200.0.3/32", "10.200.1.7/32")[0]
    assert not decide(ruleset, "10.200.0.2/32", "10.200.0.9/32")[0]  # own subnet: ACCEPT
    assert not decide(ruleset, "10.200.0.2/32", "224.0.0.5/32")[0]  # multicast
    assert not decide(ruleset, "10.200.0.99/32", "10.200.1.7/32")[0]  # no pod: no rule


def test_iptables_nft_mirror_in_nft_json_is_understood() -> None:
    mirror = parse_nft_json(text("nft-iptables-nft-bridge.json"))
    assert decide(mirror, "10.200.0.0/24", "10.200.1.0/24")[0]


@pytest.mark.parametrize(("name", "parse"), [
    ("ipt-nat-bridge-fixed.txt", lambda t: parse_iptables_save(t, Family.V4)),
    ("nft-bridge-plugin-fixed.json", parse_nft_json),
], ids=["iptables", "nft-backend"])
def test_after_the_fix_pod_to_pod_keeps_its_source(name: str, parse: object) -> None:
    ruleset = parse(text(name))  # type: ignore[operator]
    for dst in ("10.200.1.0/24", "10.200.2.0/24"):
        assert not decide(ruleset, "10.200.0.0/24", dst)[0]
    assert decide(ruleset, "10.200.0.0/24", "8.8.8.0/24")[0]  # the internet: still NAT


def world(iptables: str | None = None, nft: str | None = None, host: str = "node-0") -> World:
    inventory = load(THREE, "machines.txt")
    facts = healthy(inventory)
    ipt = {f: parse_iptables_save(EMPTY_IPTABLES, f) for f in Family}
    if iptables is not None:
        ipt[Family.V4] = parse_iptables_save(EMPTY_IPTABLES + iptables, Family.V4)
    facts[host] = replace(facts[host], iptables=ipt,
                          nft=parse_nft_json(nft) if nft is not None else facts[host].nft)
    return plan(inventory), facts


def test_pod_to_pod_nat_finding_and_its_iptables_fix() -> None:
    w = world(iptables=text("ipt-nat-bridge.txt"))
    [finding] = check_all(w[0], w[1], 147)
    assert (finding.kind, finding.host) == (FindingKind.POD_TO_POD_NAT, "node-0")
    assert finding.fix_class is FixClass.FIREWALL and finding.automatic
    assert "10.200.0.2/32" in finding.what and "MASQUERADE" in finding.what
    assert "192.168.10.101" in finding.why
    assert finding.argv == (("iptables", "-t", "nat", "-I", "POSTROUTING", "1", "-s",
                             "10.200.0.0/24", "-d", "10.200.1.0/24,10.200.2.0/24", "-m",
                             "comment", "--comment", "podroutes", "-j", "RETURN"),)
    assert ("iptables -t nat -D POSTROUTING -s 10.200.0.0/24 -d 10.200.1.0/24,10.200.2.0/24 "
            "-m comment --comment podroutes -j RETURN") in finding.note


def test_after_the_fix_doctor_is_clean_so_a_second_fix_adds_nothing() -> None:
    w = world(iptables=text("ipt-nat-bridge-fixed.txt"))
    assert check_all(w[0], w[1], 147) == []
    w = world(nft=text("nft-bridge-plugin-fixed.json"))
    assert check_all(w[0], w[1], 147) == []


def test_nft_backend_fix_goes_into_masq_checks_which_the_plugin_never_flushes() -> None:
    w = world(nft=text("nft-bridge-plugin.json"))
    [finding] = check_all(w[0], w[1], 147)
    assert finding.kind is FindingKind.POD_TO_POD_NAT
    assert finding.argv == (("nft", "insert", "rule", "inet", "cni_plugins_masquerade",
                             "masq_checks", "ip", "saddr", "10.200.0.0/24", "ip", "daddr",
                             "{ 10.200.1.0/24, 10.200.2.0/24 }", "return", "comment",
                             "podroutes"),)
    assert "nft delete rule inet cni_plugins_masquerade masq_checks" in finding.note


def test_iptables_nft_tables_are_judged_once() -> None:
    w = world(iptables=text("ipt-nat-bridge.txt"), nft=text("nft-iptables-nft-bridge.json"))
    assert [f.kind for f in check_all(w[0], w[1], 147)] == [FindingKind.POD_TO_POD_NAT]


def test_a_node_without_pods_nat_rules_has_no_finding() -> None:
    w = world(iptables=text("ipt-nat-bridge.txt"), host="node-1")  # rules for 10.200.0.x
    assert check_all(w[0], w[1], 147) == []
