"""Firewall parsers on real captured output (tests/data/doctor/, see capture.sh there) and
the evaluation of a flow of pod packets through a chain."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from podroutes.core.errors import ParseError
from podroutes.core.model import Family
from podroutes.diag.firewall import (
    Flow,
    Source,
    Verdict,
    applies_to,
    evaluate,
    parse_iptables_save,
    parse_nft_json,
)

DATA = Path(__file__).parent.parent / "data" / "doctor"
DOCKER = (DATA / "iptables-save-docker.txt").read_text()
NFT = (DATA / "nft-ruleset.json").read_text()

INBOUND = Flow("from other nodes' pods", ip_network("10.200.1.0/24"),
               ip_network("10.200.0.0/24"), "eth0", "cni0")
OUTBOUND = Flow("to other nodes' pods", ip_network("10.200.0.0/24"),
                ip_network("10.200.1.0/24"), "cni0", "eth0")
BRIDGED = Flow("same node", ip_network("10.200.0.0/24"), ip_network("10.200.0.0/24"),
               "cni0", "cni0", bridged=True)


def flow(src: str, dst: str, iif: str = "eth0", oif: str = "cni0") -> Flow:
    return Flow("f", ip_network(src), ip_network(dst), iif, oif)


# --- iptables-save ------------------------------------------------------------------------


def test_docker_capture_parses_policy_chains_and_jumps() -> None:
    rules = parse_iptables_save(DOCKER, Family.V4)
    assert rules.source is Source.IPTABLES and rules.nft_backend
    forward = rules.chain("ip", "filter", "FORWARD")
    assert forward is not None and forward.policy == "drop" and forward.hook == "forward"
    assert len(forward.rules) == 7
    assert [r.target for r in forward.rules[:3]] == [
        "KUBE-FORWARD", "DOCKER-USER", "DOCKER-ISOLATION-STAGE-1"]
    assert forward.rules[0].verdict is Verdict.JUMP and not forward.rules[0].unknown  # comment
    assert forward.rules[3].unknown  # -m conntrack
    negated = forward.rules[5]  # -i docker0 ! -o docker0 -j ACCEPT
    assert negated.iif and negated.iif.patterns == ("docker0",) and not negated.iif.negated
    assert negated.oif and negated.oif.negated
    assert [c.name for c in rules.forward_chains()] == ["FORWARD"]
    assert rules.chain("ip", "filter", "DOCKER-USER").policy is None  # type: ignore[union-attr]


def test_docker_forward_chain_drops_pod_traffic_by_its_policy() -> None:
    rules = parse_iptables_save(DOCKER, Family.V4)
    forward = rules.chain("ip", "filter", "FORWARD")
    assert forward is not None
    for f in (INBOUND, OUTBOUND, BRIDGED):
        decision = evaluate(forward, f, rules)
        assert decision.verdict is Verdict.DROP and decision.rule is None, f.label


def test_narrow_accept_rules_at_the_top_let_pod_traffic_through() -> None:
    fixed = DOCKER.replace(
        "-A FORWARD -m comment --comment \"kubernetes",
        "-A FORWARD -s 10.200.0.0/24 -m comment --comment podroutes -j ACCEPT\n"
        "-A FORWARD -d 10.200.0.0/24 -m comment --comment podroutes -j ACCEPT\n"
        "-A FORWARD -m comment --comment \"kubernetes", 1)
    rules = parse_iptables_save(fixed, Family.V4)
    forward = rules.chain("ip", "filter", "FORWARD")
    assert forward is not None
    for f in (INBOUND, OUTBOUND, BRIDGED):
        assert evaluate(forward, f, rules).verdict is Verdict.ACCEPT, f.label


@pytest.mark.parametrize(("rule", "verdict", "by_rule"), [
    ("-A FORWARD -d 10.200.0.0/16 -j ACCEPT", Verdict.ACCEPT, True),  # all of the flow
    ("-A FORWARD -d 10.200.0.0/25 -j ACCEPT", Verdict.DROP, False),  # only half of it
    ("-A FORWARD -d 10.200.0.128/25 -j DROP", Verdict.DROP, True),  # drops half: reported
    ("-A FORWARD ! -s 10.0.0.0/8 -j DROP", Verdict.DROP, False),  # pods are in 10/8
    ("-A FORWARD -i eth0 -o cni0 -j ACCEPT", Verdict.ACCEPT, True),
    ("-A FORWARD -i cni+ -j ACCEPT", Verdict.DROP, False),  # inbound comes in on eth0
    ("-A FORWARD -o cni+ -j ACCEPT", Verdict.ACCEPT, True),
    ("-A FORWARD -p tcp -j ACCEPT", Verdict.DROP, False),  # not all pod traffic is TCP
    # a drop podroutes cannot judge (conntrack state) is not blamed: the policy decides
    ("-A FORWARD -m conntrack --ctstate INVALID -j DROP", Verdict.DROP, False),
    ("-A FORWARD -j REJECT --reject-with icmp-port-unreachable", Verdict.DROP, True),
])
def test_one_rule_then_policy_drop(rule: str, verdict: Verdict, by_rule: bool) -> None:
    text = f"*filter\n:FORWARD DROP [0:0]\n{rule}\nCOMMIT\n"
    rules = parse_iptables_save(text, Family.V4)
    forward = rules.chain("ip", "filter", "FORWARD")
    assert forward is not None
    decision = evaluate(forward, INBOUND, rules)
    assert decision.verdict is verdict
    assert (decision.rule is not None) is by_rule


def test_jump_return_and_goto() -> None:
    text = ("*filter\n:FORWARD DROP [0:0]\n:PODS - [0:0]\n:GONE - [0:0]\n"
            "-A FORWARD -j PODS\n-A FORWARD -g GONE\n-A FORWARD -j ACCEPT\n"
            "-A PODS -s 10.200.9.0/24 -j RETURN\n-A PODS -d 10.200.0.0/24 -j ACCEPT\n"
            "-A GONE -j LOG --log-prefix x\nCOMMIT\n")
    rules = parse_iptables_save(text, Family.V4)
    forward = rules.chain("ip", "filter", "FORWARD")
    assert forward is not None
    assert evaluate(forward, INBOUND, rules).verdict is Verdict.ACCEPT  # PODS accepts
    # from 10.200.9.0/24: PODS returns; the goto to GONE falls off its end: policy
    assert evaluate(forward, flow("10.200.9.0/24", "10.200.0.0/24"), rules).verdict \
        is Verdict.DROP


def test_empty_iptables_save_is_an_accepting_ruleset() -> None:
    rules = parse_iptables_save((DATA / "ip6tables-save-empty.txt").read_text(), Family.V6)
    (forward,) = rules.forward_chains()
    assert forward.family == "ip6" and forward.policy == "accept" and forward.rules == ()
    assert parse_iptables_save("", Family.V4).forward_chains() == []


def test_bad_iptables_line_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="iptables-save line 3"):
        parse_iptables_save("*filter\n:FORWARD ACCEPT\n-A FORWARD -s not-an-ip -j DROP\n",
                            Family.V4)


# --- nft -j list ruleset ------------------------------------------------------------------


def test_nft_capture_parses_tables_base_chains_and_rules() -> None:
    rules = parse_nft_json(NFT)
    bases = {(c.family, c.table, c.name): c.policy for c in rules.forward_chains()}
    assert bases == {("inet", "podtest", "fw_chain"): "drop", ("bridge", "brt", "f"): "accept",
                     ("ip", "filter", "FORWARD"): "drop"}  # iptables-nft's, captured too
    chain = rules.chain("inet", "podtest", "fw_chain")
    assert chain is not None and len(chain.rules) == 9
    assert chain.rules[0].unknown  # ct state
    assert chain.rules[3].dst is not None and chain.rules[3].dst.networks == (
        ip_network("10.9.0.0/23"),)  # nft merged the set {10.9.0.0/24, 10.9.1.0/24}
    assert chain.rules[4].family is Family.V6
    assert chain.rules[8].dst is not None and chain.rules[8].dst.networks == (
        ip_network("10.9.3.0/24"),)  # a range
    assert chain.label == "nft inet podtest fw_chain"


@pytest.mark.parametrize(("f", "verdict", "decided_by"), [
    (flow("10.9.0.0/24", "10.200.1.0/24", "cni0", "eth0"), Verdict.ACCEPT, 1),  # iif/oif
    (flow("10.8.0.0/24", "10.9.1.0/24"), Verdict.ACCEPT, 3),  # daddr set
    (flow("10.8.0.0/24", "10.9.5.0/24"), Verdict.DROP, 6),  # sub returns, then != eth1 drop
    (flow("192.168.0.0/24", "10.9.5.0/24"), Verdict.ACCEPT, None),  # accepted inside sub
    (flow("fd01::/64", "fd00::/64"), Verdict.ACCEPT, 4),  # ip6 rule; ip rules skip IPv6
    (flow("10.8.0.0/24", "10.7.0.0/24", "eth1", "cni0"), Verdict.ACCEPT, 7),  # oifname set
    (flow("10.8.0.0/24", "10.7.0.0/24", "eth1", "eth9"), Verdict.DROP, None),  # the policy
])
def test_nft_chain_walk(f: Flow, verdict: Verdict, decided_by: int | None) -> None:
    rules = parse_nft_json(NFT)
    chain = rules.chain("inet", "podtest", "fw_chain")
    assert chain is not None
    decision = evaluate(chain, f, rules)
    assert decision.verdict is verdict
    if decided_by is not None:
        assert decision.rule is chain.rules[decided_by]


def test_which_chains_see_which_flows() -> None:
    rules = parse_nft_json(NFT)
    inet = rules.chain("inet", "podtest", "fw_chain")
    bridge = rules.chain("bridge", "brt", "f")
    assert inet is not None and bridge is not None
    assert applies_to(inet, INBOUND, bridge_calls_iptables=False)
    assert not applies_to(bridge, INBOUND, bridge_calls_iptables=True)
    assert applies_to(bridge, BRIDGED, bridge_calls_iptables=False)
    assert not applies_to(inet, BRIDGED, bridge_calls_iptables=False)  # br_netfilter off
    assert applies_to(inet, BRIDGED, bridge_calls_iptables=True)
    ipt = parse_iptables_save(DOCKER, Family.V4).chain("ip", "filter", "FORWARD")
    assert ipt is not None
    assert not applies_to(ipt, flow("fd01::/64", "fd00::/64"), bridge_calls_iptables=True)


def test_iptables_nft_tables_show_in_nft_too() -> None:
    """The capture ran iptables-nft first: its FORWARD chain is in nft's ruleset, with its
    xt matches (conntrack) unknown and its comment match ignored."""
    chain = parse_nft_json(NFT).chain("ip", "filter", "FORWARD")
    assert chain is not None and chain.policy == "drop" and len(chain.rules) == 7
    assert chain.rules[0].target == "KUBE-FORWARD" and not chain.rules[0].unknown
    assert chain.rules[3].unknown


def test_nft_output_that_is_not_json_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_nft_json("Error: Could not process rule")
    assert parse_nft_json("").chains == {}
