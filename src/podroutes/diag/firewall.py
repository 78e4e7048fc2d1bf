"""Firewall rules as values, and what they do to a class of forwarded pod packets.

Pure: the text of ``iptables-save -t filter`` / ``ip6tables-save -t filter`` (and ``-t
nat``) and the JSON of ``nft -j list ruleset`` in, :class:`Chain` values out;
:func:`evaluate` walks a chain for a :class:`Flow` (a set of packets: source and
destination networks, in and out interface) and says whether all of them are accepted;
:func:`evaluate_nat` walks a nat POSTROUTING chain and says whether any of them has its
source rewritten (masquerade or SNAT). Called by :mod:`podroutes.diag.facts` (parsing),
:mod:`podroutes.diag.firewall_checks` and :mod:`podroutes.diag.trace` (evaluation).

The evaluation is conservative in the direction that avoids false alarms: a rule with a
match podroutes does not understand (``-m conntrack``, ``ct state``, ``-p tcp``) neither
counts as accepting the flow nor as dropping it. A rule that drops part of the flow (its
addresses overlap it) counts as dropping it.
"""

from __future__ import annotations

import enum
import json
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network, summarize_address_range
from typing import Any

from podroutes.core.errors import ParseError
from podroutes.core.model import Family, IPNetwork


class Verdict(enum.StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    RETURN = "return"
    JUMP = "jump"
    GOTO = "goto"
    NAT = "nat"  # masquerade or snat: the source address is rewritten (nat tables only)
    NONE = "none"  # a rule that only counts or logs


class Source(enum.StrEnum):
    IPTABLES = "iptables"
    NFT = "nft"


@dataclass(frozen=True, slots=True)
class AddressMatch:
    networks: tuple[IPNetwork, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class NameMatch:
    """An interface name match; a pattern ending in ``+`` (iptables) or ``*`` (nft) is a
    prefix."""

    patterns: tuple[str, ...]
    negated: bool = False

    def matches(self, name: str) -> bool:
        hit = any(name.startswith(p[:-1]) if p.endswith(("+", "*")) else name == p
                  for p in self.patterns)
        return hit != self.negated


@dataclass(frozen=True, slots=True)
class Rule:
    verdict: Verdict
    text: str
    src: AddressMatch | None = None
    dst: AddressMatch | None = None
    iif: NameMatch | None = None
    oif: NameMatch | None = None
    family: Family | None = None  # nft ``ip``/``ip6`` payload matches restrict the family
    target: str | None = None  # the chain of a jump or goto
    #: The rule has a match podroutes cannot evaluate (conntrack, protocol, marks, ...).
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Chain:
    source: Source
    family: str  # ip, ip6, inet, bridge (nft families; iptables is ip, ip6tables ip6)
    table: str
    name: str
    hook: str | None = None
    policy: str | None = None  # accept / drop for base chains
    rules: tuple[Rule, ...] = ()
    kind: str | None = None  # nft base chain type: filter, nat, route

    @property
    def label(self) -> str:
        if self.source is Source.IPTABLES:
            tool = "iptables" if self.family == "ip" else "ip6tables"
            return f"{tool} {self.table} {self.name}"
        return f"nft {self.family} {self.table} {self.name}"


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Every chain of one source (iptables for one family, or all of nftables)."""

    source: Source
    chains: Mapping[tuple[str, str, str], Chain] = field(default_factory=dict)
    #: iptables-save said it is the nf_tables backend (its tables also show in nft).
    nft_backend: bool = False

    def chain(self, family: str, table: str, name: str) -> Chain | None:
        return self.chains.get((family, table, name))

    def forward_chains(self) -> list[Chain]:
        if self.source is Source.IPTABLES:
            return [c for c in self.chains.values()
                    if c.table == "filter" and c.name == "FORWARD"]
        return [c for c in self.chains.values() if c.hook == "forward" and c.policy]

    def postrouting_nat_chains(self) -> list[Chain]:
        """The chains where a forwarded packet's source may be rewritten: iptables' nat
        POSTROUTING, nft's base chains of type nat on the postrouting hook."""
        if self.source is Source.IPTABLES:
            return [c for c in self.chains.values()
                    if c.table == "nat" and c.name == "POSTROUTING"]
        return [c for c in self.chains.values() if c.hook == "postrouting" and c.kind == "nat"]


# --- iptables-save ------------------------------------------------------------------------

_IPT_NEGATABLE = {"-s": "src", "--source": "src", "-d": "dst", "--destination": "dst",
                  "-i": "iif", "--in-interface": "iif", "-o": "oif", "--out-interface": "oif"}
_IPT_VERDICTS = {"ACCEPT": Verdict.ACCEPT, "DROP": Verdict.DROP, "REJECT": Verdict.DROP,
                 "RETURN": Verdict.RETURN, "MASQUERADE": Verdict.NAT, "SNAT": Verdict.NAT}
#: The tables read, and the chain of each that sits on a hook doctor judges.
_IPT_TABLES = {"filter": ("FORWARD", "forward"), "nat": ("POSTROUTING", "postrouting")}


def parse_iptables_save(text: str, family: Family) -> Ruleset:
    """Parse ``iptables-save -t filter`` (or ``ip6tables-save``) output, and ``-t nat``
    (the outputs of both may be given one after the other)."""
    fam = "ip" if family is Family.V4 else "ip6"
    policies: dict[tuple[str, str], str | None] = {}
    rules: dict[tuple[str, str], list[Rule]] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        if table not in _IPT_TABLES:
            continue
        if line.startswith(":"):
            name, policy = [*line[1:].split(), "-"][:2]
            policies[(table, name)] = None if policy == "-" else policy.lower()
            rules.setdefault((table, name), [])
        elif line.startswith("-A "):
            try:
                words = shlex.split(line)
                declared = [n for t, n in policies if t == table]
                rules.setdefault((table, words[1]), []).append(
                    _iptables_rule(words[2:], line, declared))
            except (ValueError, IndexError) as exc:
                raise ParseError(f"iptables-save line {number}: {line!r}: {exc}") from exc
    chains = {(fam, t, name): Chain(Source.IPTABLES, fam, t, name,
                                    _IPT_TABLES[t][1] if name == _IPT_TABLES[t][0] else None,
                                    policies.get((t, name)), tuple(rules.get((t, name), ())))
              for t, name in policies.keys() | rules.keys()}
    return Ruleset(Source.IPTABLES, chains, nft_backend="(nf_tables)" in text)


def _iptables_rule(words: Sequence[str], text: str, chains: Collection[str]) -> Rule:
    fields: dict[str, Any] = {}
    unknown = False
    verdict, target = Verdict.NONE, None
    negate = False
    i = 0
    while i < len(words):
        word = words[i]
        if word == "!":
            negate = True
            i += 1
            continue
        if word in _IPT_NEGATABLE:
            key, value = _IPT_NEGATABLE[word], words[i + 1]
            if key in ("src", "dst"):
                nets = tuple(ip_network(v, strict=False) for v in value.split(","))
                fields[key] = AddressMatch(nets, negate)
            else:
                fields[key] = NameMatch((value,), negate)
            i += 2
        elif word in ("-j", "--jump", "-g", "--goto"):
            name = words[i + 1]
            if name in _IPT_VERDICTS:
                verdict = _IPT_VERDICTS[name]
            elif name in chains:  # iptables-save declares every chain before its rules
                verdict = Verdict.JUMP if word in ("-j", "--jump") else Verdict.GOTO
                target = name
            # else an extension target (LOG, MARK, CT, ...): packets go on
            break  # target options follow; they do not match packets
        elif word == "-m" and words[i + 1] == "comment":
            i += 4 if i + 2 < len(words) and words[i + 2] == "--comment" else 2
        elif word in ("-p", "--protocol") and words[i + 1] in ("all", "0"):
            i += 2
        else:
            unknown = True
            i += 1
        negate = False
    return Rule(verdict, text, fields.get("src"), fields.get("dst"), fields.get("iif"),
                fields.get("oif"), target=target, unknown=unknown)


# --- nft -j list ruleset ------------------------------------------------------------------

_NFT_VERDICTS = {"accept": Verdict.ACCEPT, "drop": Verdict.DROP, "reject": Verdict.DROP,
                 "return": Verdict.RETURN, "jump": Verdict.JUMP, "goto": Verdict.GOTO,
                 "masquerade": Verdict.NAT, "snat": Verdict.NAT}
_NFT_IGNORED = {"counter", "log", "comment", "limit_counter", "notrack"}


def parse_nft_json(text: str) -> Ruleset:
    """Parse ``nft -j list ruleset``: every chain of every table, rules in order."""
    try:
        data = json.loads(text) if text.strip() else {"nftables": []}
        items = data["nftables"]
        heads: dict[tuple[str, str, str], dict[str, Any]] = {}
        rules: dict[tuple[str, str, str], list[Rule]] = {}
        for item in items:
            if not isinstance(item, dict):
                continue
            if "chain" in item:
                c = item["chain"]
                heads[(c["family"], c["table"], c["name"])] = c
            elif "rule" in item:
                r = item["rule"]
                key = (r["family"], r["table"], r["chain"])
                rules.setdefault(key, []).append(_nft_rule(r.get("expr", [])))
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ParseError(f"`nft -j list ruleset` printed something unexpected: {exc}") from exc
    chains = {key: Chain(Source.NFT, key[0], key[1], key[2], head.get("hook"),
                         head.get("policy") if head.get("hook") else None,
                         tuple(rules.get(key, ())), head.get("type"))
              for key, head in heads.items()}
    return Ruleset(Source.NFT, chains)


def _nft_rule(exprs: Sequence[Any]) -> Rule:
    fields: dict[str, Any] = {}
    unknown = False
    verdict, target = Verdict.NONE, None
    family: Family | None = None
    for expr in exprs:
        kind = next(iter(expr)) if isinstance(expr, dict) and expr else None
        if kind in _NFT_VERDICTS:
            verdict = _NFT_VERDICTS[kind]
            if kind in ("jump", "goto"):
                target = expr[kind]["target"]
        elif kind in _NFT_IGNORED or (kind == "xt" and expr["xt"].get("name") == "comment"):
            continue
        elif kind == "xt" and expr["xt"].get("type") == "target" and \
                expr["xt"].get("name") in ("MASQUERADE", "SNAT"):
            verdict = Verdict.NAT  # iptables-nft's own rules, as nft shows them
        elif kind == "match":
            parsed = _nft_match(expr["match"])
            if parsed is None:
                unknown = True
            elif parsed[0] == "family":
                family = parsed[1]
            else:
                fields[parsed[0]] = parsed[1]
                if parsed[0] in ("src", "dst"):
                    family = Family.of(parsed[1].networks[0])
        else:
            unknown = True
    return Rule(verdict, _nft_text(exprs), fields.get("src"), fields.get("dst"),
                fields.get("iif"), fields.get("oif"), family, target, unknown)


def _nft_match(m: Mapping[str, Any]) -> tuple[str, Any] | None:
    op, left, right = m.get("op"), m.get("left"), m.get("right")
    if op not in ("==", "!=", "in") or not isinstance(left, dict):
        return None
    negated = op == "!="
    if "payload" in left and left["payload"].get("protocol") in ("ip", "ip6"):
        key = {"saddr": "src", "daddr": "dst"}.get(left["payload"].get("field", ""))
        networks = _nft_networks(right)
        if key is None or networks is None:
            return None
        return key, AddressMatch(tuple(networks), negated)
    if "meta" in left:
        key = left["meta"].get("key")
        if key in ("iifname", "oifname", "iif", "oif"):
            names: list[Any] = right.get("set", []) if isinstance(right, dict) else [right]
            if not names or not all(isinstance(n, str) for n in names):
                return None
            return key[:3], NameMatch(tuple(str(n) for n in names), negated)
        if key == "nfproto" and not negated and right in ("ipv4", "ipv6"):
            return "family", Family.V4 if right == "ipv4" else Family.V6
    return None


def _nft_networks(right: Any) -> list[IPNetwork] | None:
    values = right["set"] if isinstance(right, dict) and "set" in right else [right]
    out: list[IPNetwork] = []
    try:
        for v in values:
            if isinstance(v, str):
                out.append(ip_network(v))
            elif isinstance(v, dict) and "prefix" in v:
                out.append(ip_network(f"{v['prefix']['addr']}/{v['prefix']['len']}"))
            elif isinstance(v, dict) and "range" in v:
                low, high = (ip_address(x) for x in v["range"])
                out += summarize_address_range(low, high)
            else:
                return None
    except (ValueError, TypeError, KeyError):
        return None
    return out or None


def _nft_text(exprs: Sequence[Any]) -> str:
    return json.dumps(exprs, separators=(",", ":"))[:200]


# --- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """A class of forwarded packets, e.g. "from other nodes' pods to this node's pods"."""

    label: str
    src: IPNetwork
    dst: IPNetwork
    iif: str
    oif: str
    bridged: bool = False

    @property
    def family(self) -> Family:
        return Family.of(self.dst)


class _Hit(enum.Enum):
    NO = 0
    ALL = 1
    SOME = 2  # the rule's addresses cover part of the flow
    UNKNOWN = 3


@dataclass(frozen=True, slots=True)
class Decision:
    """What a chain does to a flow, and which rule (or the policy) decided it."""

    verdict: Verdict  # ACCEPT or DROP
    chain: Chain
    rule: Rule | None  # None: the chain's policy


def _address_hit(match: AddressMatch | None, net: IPNetwork) -> _Hit:
    if match is None:
        return _Hit.ALL
    same = [n for n in match.networks if n.version == net.version]
    if any(net.subnet_of(n) for n in same):  # type: ignore[arg-type]
        return _Hit.NO if match.negated else _Hit.ALL
    if not any(net.overlaps(n) for n in same):
        return _Hit.ALL if match.negated else _Hit.NO
    return _Hit.SOME


def _hit(rule: Rule, flow: Flow) -> _Hit:
    if rule.family is not None and rule.family is not flow.family:
        return _Hit.NO
    if (rule.iif and not rule.iif.matches(flow.iif)) or (
            rule.oif and not rule.oif.matches(flow.oif)):
        return _Hit.NO
    hits = {_address_hit(rule.src, flow.src), _address_hit(rule.dst, flow.dst)}
    if _Hit.NO in hits:
        return _Hit.NO
    if rule.unknown:
        return _Hit.UNKNOWN
    return _Hit.SOME if _Hit.SOME in hits else _Hit.ALL


def evaluate(chain: Chain, flow: Flow, ruleset: Ruleset) -> Decision:
    """Walk a base chain (and the chains it jumps to) for ``flow``."""
    decided = _walk(chain, flow, ruleset, depth=0)
    if decided is not None:
        return decided
    policy = Verdict.DROP if (chain.policy or "accept") == "drop" else Verdict.ACCEPT
    return Decision(policy, chain, None)


def _walk(chain: Chain, flow: Flow, ruleset: Ruleset, depth: int) -> Decision | None:
    """A terminal decision, or None when the packets fall through (or return)."""
    if depth > 16:  # iptables and nft refuse deeper nesting; never loop on bad input
        return None
    for rule in chain.rules:
        hit = _hit(rule, flow)
        if hit in (_Hit.NO, _Hit.UNKNOWN):
            continue
        if rule.verdict is Verdict.DROP:
            return Decision(Verdict.DROP, chain, rule)
        if hit is _Hit.SOME:  # an accept, return or jump that only some packets take
            continue
        if rule.verdict is Verdict.ACCEPT:
            return Decision(Verdict.ACCEPT, chain, rule)
        if rule.verdict is Verdict.RETURN:
            return None
        if rule.verdict in (Verdict.JUMP, Verdict.GOTO) and rule.target:
            sub = ruleset.chain(chain.family, chain.table, rule.target)
            decided = _walk(sub, flow, ruleset, depth + 1) if sub else None
            if decided is not None or rule.verdict is Verdict.GOTO:
                return decided
    return None


def applies_to(chain: Chain, flow: Flow, bridge_calls_iptables: bool) -> bool:
    """Whether packets of ``flow`` pass through ``chain`` at all."""
    if chain.family == "bridge":
        return flow.bridged
    if flow.bridged and not bridge_calls_iptables:
        return False
    if chain.family == "inet":
        return True
    return chain.family == ("ip" if flow.family is Family.V4 else "ip6")


# --- nat: is the source of a flow rewritten? ----------------------------------------------

#: The tables iptables-nft keeps in nftables; seen through iptables-save already.
IPTABLES_NFT_TABLES = {"filter", "mangle", "raw", "security", "nat"}


def nat_chains(iptables: Ruleset | None, nft: Ruleset | None,
               family: Family) -> list[tuple[Chain, Ruleset]]:
    """Every nat chain on the postrouting hook a packet of ``family`` passes, with its
    ruleset; iptables-nft's own tables are taken once, through iptables-save."""
    out = [(c, iptables) for c in iptables.postrouting_nat_chains()] if iptables else []
    if nft is not None:
        mirrored = iptables is not None and iptables.nft_backend
        fam = "ip" if family is Family.V4 else "ip6"
        out += [(c, nft) for c in nft.postrouting_nat_chains()
                if c.family in (fam, "inet")
                and not (mirrored and c.family == fam and c.table in IPTABLES_NFT_TABLES)]
    return out


def _narrowed(flow: Flow, rule: Rule) -> Flow:
    """The part of ``flow`` a rule that hits only some of it selects, where that part is
    one network (a positive address match inside the flow's); else the flow itself."""
    src, dst = flow.src, flow.dst
    for match, net in ((rule.src, src), (rule.dst, dst)):
        if match is None or match.negated:
            continue
        inside = [n for n in match.networks
                  if n.version == net.version and n.subnet_of(net)]  # type: ignore[arg-type]
        if len(inside) == 1 and inside[0] != net:
            if net is src:
                src = inside[0]
            else:
                dst = inside[0]
    return Flow(flow.label, src, dst, flow.iif, flow.oif, flow.bridged)


@dataclass(frozen=True, slots=True)
class NatDecision:
    """What a nat POSTROUTING chain does to (part of) a flow: ``nat`` when some of its
    packets have their source rewritten, by ``rule`` in ``chain``, for ``part``."""

    nat: bool
    base: Chain
    chain: Chain | None = None  # the chain of the deciding rule; None: nothing decided
    rule: Rule | None = None
    part: Flow | None = None  # the packets the rewriting rule hits (e.g. one pod's)


def evaluate_nat(chain: Chain, flow: Flow, ruleset: Ruleset) -> NatDecision:
    """Walk a nat base chain (and the chains it jumps to) for ``flow``: whether any of its
    packets is masqueraded or SNATed. A rule that rewrites part of the flow counts (the
    bridge plugin's rules are per pod address: ``-s 10.200.0.5/32 -j CNI-…``), and a jump
    that only part of the flow takes is followed for that part. An accept ends the walk
    of this chain for the packets it covers; packets that fall off the end are left as
    they are (a nat chain's policy never rewrites)."""
    found = _walk_nat(chain, flow, ruleset, 0)
    return found if found is not None else NatDecision(False, chain)


def _walk_nat(chain: Chain, flow: Flow, ruleset: Ruleset, depth: int,
              base: Chain | None = None) -> NatDecision | None:
    """A decision for all of ``flow`` (nat, or accepted untouched), or None when (some of)
    its packets fall through or return."""
    base = base or chain
    if depth > 16:
        return None
    for rule in chain.rules:
        hit = _hit(rule, flow)
        if hit in (_Hit.NO, _Hit.UNKNOWN):
            continue
        part = flow if hit is _Hit.ALL else _narrowed(flow, rule)
        if rule.verdict is Verdict.NAT:
            return NatDecision(True, base, chain, rule, part)
        if rule.verdict in (Verdict.JUMP, Verdict.GOTO) and rule.target:
            sub = ruleset.chain(chain.family, chain.table, rule.target)
            decided = _walk_nat(sub, part, ruleset, depth + 1, base) if sub else None
            if decided is not None and (decided.nat or hit is _Hit.ALL):
                return decided
            if hit is _Hit.ALL and rule.verdict is Verdict.GOTO:
                return None
            continue
        if hit is _Hit.SOME:  # an accept or return that only some packets take
            continue
        if rule.verdict is Verdict.ACCEPT:
            return NatDecision(False, base, chain, rule, flow)
        if rule.verdict is Verdict.RETURN:
            return None
    return None
