"""Doctor's firewall checks: does any FORWARD chain drop this host's pod traffic, does any
nat POSTROUTING chain rewrite the source of its pods' traffic to other nodes' pods?

Pure. For a host with a pod CIDR, builds the classes of packets it must forward (to and
from its pods, from and to other nodes' pods and the node network, and between its own
pods when ``br_netfilter`` hands bridged packets to iptables), walks every chain on the
forward hook (iptables, ip6tables, and every nftables table: a drop in any base chain
wins, even when another table accepts) and turns each dropping chain into a
:class:`~podroutes.diag.findings.Finding` whose fix adds narrow accept rules for the host's
own pod CIDR, never a policy change. :func:`check_nat` walks every nat chain on the
postrouting hook for packets from the host's pods to other nodes' pod CIDRs; its fix is one
rule, commented ``podroutes``, that returns them at the top of the chain (the bridge
plugin's ``ipMasq`` NAT is then skipped for pod-to-pod traffic only). Called by
:mod:`podroutes.diag.checks`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import collapse_addresses, ip_network

from podroutes.core.model import Family, IPNetwork
from podroutes.diag.findings import Finding, FindingKind, FixClass, HostContext, runnable
from podroutes.diag.firewall import (
    Chain,
    Decision,
    Flow,
    NatDecision,
    Ruleset,
    Source,
    Verdict,
    applies_to,
    evaluate,
    evaluate_nat,
    nat_chains,
)

COMMENT = "podroutes"
#: Table and chain names doctor will put into an ``nft`` command.
_NFT_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")
#: The tables iptables-nft keeps in nftables; seen through iptables-save already.
_IPTABLES_NFT_TABLES = {"filter", "mangle", "raw", "security", "nat"}


def flows(ctx: HostContext, family: Family) -> list[Flow]:
    """The packets a host forwards for its pods, as classes; empty without a pod CIDR."""
    own = ctx.host.pod_cidr(family)
    node = ctx.node_interface(family)
    if own is None or node is None:
        return []
    node_net = next(a.network for a in node.addresses if a.ip == ctx.host.address(family))
    others: list[IPNetwork] = [c for h in ctx.inventory if h.name != ctx.host.name
                               if (c := h.pod_cidr(family)) is not None]
    out = []
    for block in collapse_addresses(others):  # type: ignore[type-var]  # one family
        out.append(Flow(f"from other nodes' pods ({block}) to this node's pods",
                        block, own, node.name, ctx.bridge))
        out.append(Flow(f"from this node's pods to other nodes' pods ({block})",
                        own, block, ctx.bridge, node.name))
    out.append(Flow(f"from the node network ({node_net}) to this node's pods",
                    node_net, own, node.name, ctx.bridge))
    out.append(Flow(f"from this node's pods to the node network ({node_net})",
                    own, node_net, ctx.bridge, node.name))
    out.append(Flow(f"between pods on this node (bridged on {ctx.bridge})",
                    own, own, ctx.bridge, ctx.bridge, bridged=True))
    return out


def _chains(ctx: HostContext, family: Family) -> Iterator[tuple[Chain, Ruleset]]:
    iptables = ctx.facts.iptables.get(family)
    if iptables is not None:
        for chain in iptables.forward_chains():
            yield chain, iptables
    nft = ctx.facts.nft
    if nft is None:
        return
    mirrored = iptables is not None and iptables.nft_backend
    fam = "ip" if family is Family.V4 else "ip6"
    for chain in nft.forward_chains():
        if mirrored and chain.family == fam and chain.table in _IPTABLES_NFT_TABLES:
            continue  # iptables-nft's own table: already judged through iptables-save
        yield chain, nft


def check_firewall(ctx: HostContext) -> list[Finding]:
    findings = []
    for family in Family:
        classes = flows(ctx, family)
        if not classes:
            continue
        suffix = "iptables" if family is Family.V4 else "ip6tables"
        calls = ctx.facts.br_netfilter and \
            ctx.facts.sysctl(f"net.bridge.bridge-nf-call-{suffix}") == 1
        for chain, ruleset in _chains(ctx, family):
            dropped = [(flow, decision) for flow in classes
                       if applies_to(chain, flow, calls)
                       for decision in [evaluate(chain, flow, ruleset)]
                       if decision.verdict is Verdict.DROP]
            if dropped:
                findings.append(_finding(ctx, family, chain, dropped, calls))
    return findings


def _decided_by(decision: Decision) -> str:
    chain = decision.chain
    if decision.rule is None:
        return f"its policy is {(chain.policy or '').upper()}"
    return f"rule `{decision.rule.text}` drops them"


def _finding(ctx: HostContext, family: Family, chain: Chain,
             dropped: list[tuple[Flow, Decision]], calls: bool) -> Finding:
    own = ctx.host.pod_cidr(family)
    assert own is not None
    routed = [f for f, _ in dropped if not f.bridged]
    bridged = [f for f, _ in dropped if f.bridged]
    first = dropped[0][1]
    lines = "; ".join(f.label for f, _ in dropped)
    what = f"{chain.label} drops forwarded pod traffic ({_decided_by(first)}): {lines}"
    if routed:
        kind = FindingKind.IPTABLES_FORWARD_DROP if chain.source is Source.IPTABLES \
            else FindingKind.NFT_FORWARD_DROP
        why = (f"every packet between {ctx.host.name}'s pods ({own}) and other nodes is "
               f"forwarded, so it passes this chain and is dropped: pods on other nodes "
               f"cannot reach these pods, nor these pods them (Docker sets the FORWARD "
               f"policy to DROP)")
        if chain.source is Source.NFT:
            why += "; in nftables a drop in any base chain wins even when another table accepts"
        if bridged and chain.family != "bridge":
            why += (f"; and since br_netfilter hands bridged packets to the firewall, pods "
                    f"on {ctx.host.name} cannot even reach each other")
    else:
        kind = FindingKind.NFT_FORWARD_DROP if chain.family == "bridge" else \
            FindingKind.BR_NETFILTER
        why = (f"br_netfilter is loaded with net.bridge.bridge-nf-call-"
               f"{'ip' if family is Family.V4 else 'ip6'}tables=1, so packets bridged on "
               f"{ctx.bridge} between pods of {ctx.host.name} pass the FORWARD chain, which "
               f"drops them: pods on the same node cannot reach each other "
               f"(set the sysctl to 0 only if nothing, such as kube-proxy, needs it)") \
            if chain.family != "bridge" else (
            f"the bridge-family chain filters packets bridged on {ctx.bridge}: pods on "
            f"{ctx.host.name} cannot reach each other")
    argvs = _accept_rules(chain, own)
    if argvs is None:
        return Finding(kind, ctx.host.name, what, why, (),
                       note=f"add accept rules for {own} (saddr and daddr) to {chain.label}; "
                            f"its names are not ones podroutes puts in an nft command")
    return runnable(kind, ctx.host.name, what, why, argvs, FixClass.FIREWALL)


def _accept_rules(chain: Chain, own: IPNetwork) -> list[tuple[str, ...]] | None:
    """Two narrow accept rules (from and to the host's pod CIDR) at the top of the chain."""
    cidr = str(ip_network(own))
    if chain.source is Source.IPTABLES:
        tool = "iptables" if own.version == 4 else "ip6tables"
        return [(tool, "-I", chain.name, "1", flag, cidr, "-m", "comment",
                 "--comment", COMMENT, "-j", "ACCEPT") for flag in ("-s", "-d")]
    if not (_NFT_NAME.match(chain.table) and _NFT_NAME.match(chain.name)
            and chain.family in ("ip", "ip6", "inet", "bridge")):
        return None
    proto = "ip" if own.version == 4 else "ip6"
    return [("nft", "insert", "rule", chain.family, chain.table, chain.name,
             proto, field, cidr, "accept", "comment", COMMENT) for field in ("saddr", "daddr")]


# --- nat: pod-to-pod traffic must keep its source -----------------------------------------

#: The bridge plugin's nftables table: it flushes its ``postrouting`` chain at every pod
#: start, so doctor's rule goes at the top of the chain that chain jumps to.
_CNI_NFT_TABLE = "cni_plugins_masquerade"


def nat_flows(ctx: HostContext, family: Family) -> list[Flow]:
    """From this node's pods to each block of the other nodes' pod CIDRs."""
    own = ctx.host.pod_cidr(family)
    node = ctx.node_interface(family)
    if own is None or node is None:
        return []
    others: list[IPNetwork] = [c for h in ctx.inventory if h.name != ctx.host.name
                               if (c := h.pod_cidr(family)) is not None]
    return [Flow(f"from this node's pods ({own}) to other nodes' pods ({block})",
                 own, block, ctx.bridge, node.name)
            for block in collapse_addresses(others)]  # type: ignore[type-var]  # one family


def check_nat(ctx: HostContext) -> list[Finding]:
    """``pod-to-pod-nat``: a nat POSTROUTING path rewrites the source of packets from this
    node's pods to another node's pods (the bridge plugin's ``ipMasq: true``)."""
    findings = []
    for family in Family:
        classes = nat_flows(ctx, family)
        for chain, ruleset in nat_chains(ctx.facts.iptables.get(family), ctx.facts.nft,
                                         family):
            natted = [(flow, d) for flow in classes
                      if applies_to(chain, flow, False)
                      for d in [evaluate_nat(chain, flow, ruleset)] if d.nat]
            if natted:
                findings.append(_nat_finding(ctx, family, chain, natted))
    return findings


def nat_rule_argv(chain: Chain, own: IPNetwork,
                  blocks: list[IPNetwork]) -> tuple[str, ...] | None:
    """The one rule that returns pod-to-pod traffic at the top of a nat chain."""
    dsts = ",".join(str(ip_network(b)) for b in blocks)
    cidr = str(ip_network(own))
    if chain.source is Source.IPTABLES:
        tool = "iptables" if own.version == 4 else "ip6tables"
        return (tool, "-t", "nat", "-I", chain.name, "1", "-s", cidr, "-d", dsts,
                "-m", "comment", "--comment", COMMENT, "-j", "RETURN")
    if not (_NFT_NAME.match(chain.table) and _NFT_NAME.match(chain.name)
            and chain.family in ("ip", "ip6", "inet")):
        return None
    proto = "ip" if own.version == 4 else "ip6"
    dst = dsts if len(blocks) == 1 else "{ " + ", ".join(dsts.split(",")) + " }"
    return ("nft", "insert", "rule", chain.family, chain.table, chain.name,
            proto, "saddr", cidr, proto, "daddr", dst, "return", "comment", COMMENT)


def nat_removal(chain: Chain, argv: tuple[str, ...]) -> str:
    """The command that removes the rule ``argv`` inserted."""
    if chain.source is Source.IPTABLES:
        at = argv.index("-I")
        return shlex.join((*argv[:at], "-D", argv[at + 1], *argv[at + 3:]))
    listing = shlex.join(("nft", "-a", "list", "chain", chain.family, chain.table, chain.name))
    return (f"{listing} | grep 'comment \"{COMMENT}\"' (note its handle H), then "
            f"{shlex.join(('nft', 'delete', 'rule', chain.family, chain.table, chain.name))}"
            f" handle H")


_COMMENT_MATCH = re.compile(r'\s+-m comment --comment ("(?:[^"\\]|\\.)*"|\S+)')


def _bare(text: str) -> str:
    """An iptables rule without ``-A CHAIN`` and its comment (the bridge plugin's is a
    container id); nft rules as they are."""
    if not text.startswith("-A "):
        return text
    return _COMMENT_MATCH.sub("", text).split(" ", 2)[-1]


def _nat_finding(ctx: HostContext, family: Family, base: Chain,
                 natted: list[tuple[Flow, NatDecision]]) -> Finding:
    own = ctx.host.pod_cidr(family)
    assert own is not None
    first = natted[0][1]
    where = first.chain or base
    rule = first.rule
    by = f"`{_bare(rule.text)}` in {where.name}" if rule is not None else where.name
    part = first.part.src if first.part is not None else own
    node = ctx.host.address(family)
    sources = str(own) if part == own else f"{part} and maybe more of {own}"
    what = (f"{base.label} rewrites the source of pod-to-pod traffic ({sources} → "
            f"{', '.join(str(f.dst) for f, _ in natted)}) by {by}")
    why = (f"other nodes' pods see {ctx.host.name}'s pods as {node or 'the node address'}, "
           f"not as themselves: Kubernetes requires pods to reach each other without NAT, "
           f"and NetworkPolicy by pod IP, logs and anything that checks the client address "
           f"break (the CNI bridge plugin with \"ipMasq\": true masquerades every packet that "
           f"leaves its pod's own subnet)")
    # The bridge plugin flushes its own nft postrouting chain: go where it jumps instead.
    target = where if base.table == _CNI_NFT_TABLE and where is not base else base
    argv = nat_rule_argv(target, own, [f.dst for f, _ in natted])
    if argv is None:
        return Finding(FindingKind.POD_TO_POD_NAT, ctx.host.name, what, why, (),
                       note=f"add a rule returning {own} → other nodes' pods at the top of "
                            f"{target.label}; its names are not ones podroutes puts in an "
                            f"nft command")
    return replace(runnable(FindingKind.POD_TO_POD_NAT, ctx.host.name, what, why, [argv],
                            FixClass.FIREWALL),
                   note=f"the rule is podroutes' own (comment \"{COMMENT}\"); to remove it: "
                        f"{nat_removal(target, argv)}")
