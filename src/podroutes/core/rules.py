"""Policy rules, as a pure model: what ``ip -j rule show`` says, and which packets each
rule selects.

Owns :class:`Rule` (one ``ip -j rule show`` entry: :class:`RuleAction`,
:func:`parse_rules`, :data:`DEFAULT_RULES`), the routing tables' numbers and names
(:data:`LOCAL_TABLE`, :data:`DEFAULT_TABLE`, :data:`TABLE_NAMES`, :func:`table_number`)
and the match of one rule against a packet (:class:`Flow`, :func:`matches`,
:func:`unknowns`, :func:`within`). :mod:`podroutes.core.forwarding` tries the rules in
order with these; :mod:`podroutes.core.paths` parses a host's rules here;
:mod:`podroutes.core.routeget` reads the table an ``ip route get`` answer names with
:func:`table_number`.

Pure: text and values in, values out; no I/O.

Kernel semantics, each measured with ``ip -j route get`` in a network namespace (Linux
6.18, iproute2 6.1; ``tests/data/forwarding/README.md`` has the commands); what the
kernel does once a rule matches is in :mod:`podroutes.core.forwarding`'s docstring:

- A rule matches when all its selectors do; ``not`` inverts the whole match.
- ``from``: IPv4 compares the packet's source, and an originated packet without one has
  source 0.0.0.0 (``from 0.0.0.0/8`` and ``not from 10.0.0.0/8`` match it); IPv6 without
  a source matches no ``from`` but ``all`` (``not from X`` then matches).
  ``iif``: an originated packet comes from ``lo``. ``oif``: only a packet whose output
  device is pinned matches it, never a forwarded one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from podroutes.core.errors import ParseError
from podroutes.core.jsontext import json_list
from podroutes.core.model import MAIN_TABLE, Family, IPNetwork

LOCAL_TABLE = 255
DEFAULT_TABLE = 253
#: Table names every iproute2 knows (``/etc/iproute2/rt_tables``); ``ip -N`` prints numbers.
TABLE_NAMES: Mapping[str, int] = {"main": MAIN_TABLE, "local": LOCAL_TABLE,
                                  "default": DEFAULT_TABLE}
#: Bits in an address of each family.
WIDTH = {Family.V4: 32, Family.V6: 128}
_ALL_ONES = 0xFFFFFFFF


class RuleAction(enum.StrEnum):
    """What a policy rule does when it matches."""

    LOOKUP = "lookup"
    GOTO = "goto"
    NOP = "nop"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"


#: ``ip -j rule`` prints these actions as ``"action"`` (``ip -N``: as numbers).
_ACTION_NAMES: Mapping[str, RuleAction] = {
    "blackhole": RuleAction.BLACKHOLE, "6": RuleAction.BLACKHOLE,
    "unreachable": RuleAction.UNREACHABLE, "7": RuleAction.UNREACHABLE,
    "prohibit": RuleAction.PROHIBIT, "8": RuleAction.PROHIBIT,
}



@dataclass(frozen=True, slots=True)
class Rule:
    """One policy rule, as ``ip -j rule show`` prints it.

    ``src``/``dst`` ``None`` mean ``all``. ``table`` is the table a LOOKUP rule searches
    (``None`` for ``l3mdev``: the VRF's table); ``goto`` the priority a GOTO rule jumps
    to. ``unevaluable`` names the selectors the model cannot evaluate for a packet
    (``uidrange``, ``ipproto``, ``sport``, ``dport``, ``tos``, ``tun_id``, ``l3mdev``...):
    wherever such a rule could change the outcome, the decision is UNCERTAIN. ``fwmark``
    is evaluated when the caller gives a mark, and is unevaluable otherwise.
    """

    family: Family
    priority: int
    action: RuleAction
    table: int | None = None
    goto: int | None = None
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    iif: str | None = None
    oif: str | None = None
    #: The ``iif``/``oif`` device does not exist (``[detached]``): the rule never matches.
    detached: bool = False
    fwmark: int | None = None
    fwmask: int = _ALL_ONES
    invert: bool = False
    suppress_prefixlength: int | None = None
    suppress_ifgroup: str | None = None
    unevaluable: tuple[str, ...] = ()

    def __str__(self) -> str:
        words = [f"{self.priority}:", "not" if self.invert else "",
                 f"from {self.src or 'all'}", f"to {self.dst}" if self.dst else "",
                 f"iif {self.iif}" if self.iif else "", f"oif {self.oif}" if self.oif else "",
                 f"fwmark {self.fwmark:#x}/{self.fwmask:#x}" if self.fwmark is not None
                 else "", *self.unevaluable]
        if self.action is RuleAction.LOOKUP:
            words.append("lookup l3mdev" if self.table is None else f"lookup {self.table}")
        elif self.action is RuleAction.GOTO:
            words.append(f"goto {self.goto}")
        else:
            words.append(self.action.value)
        if self.suppress_prefixlength is not None:
            words.append(f"suppress_prefixlength {self.suppress_prefixlength}")
        if self.suppress_ifgroup is not None:
            words.append(f"suppress_ifgroup {self.suppress_ifgroup}")
        return " ".join(w for w in words if w)


def _default_rules(family: Family) -> tuple[Rule, ...]:
    rules = [Rule(family, 0, RuleAction.LOOKUP, LOCAL_TABLE),
             Rule(family, 32766, RuleAction.LOOKUP, MAIN_TABLE)]
    if family is Family.V4:  # measured: IPv6 has no "32767: lookup default" rule
        rules.append(Rule(family, 32767, RuleAction.LOOKUP, DEFAULT_TABLE))
    return tuple(rules)


#: A fresh network namespace's rules: ``0 lookup local``, ``32766 lookup main`` and, for
#: IPv4 only, ``32767 lookup default``.
DEFAULT_RULES: Mapping[Family, tuple[Rule, ...]] = {f: _default_rules(f) for f in Family}

#: ``ip -j rule`` keys the model reads, or that select nothing (``protocol`` says who made
#: the rule; ``flow_from``/``flow_to`` are the realms it sets).
_KNOWN_KEYS = frozenset({
    "priority", "not", "src", "srclen", "dst", "dstlen", "iif", "iif_detached", "oif",
    "oif_detached", "fwmark", "fwmask", "table", "action", "goto", "nop", "unresolved",
    "suppress_prefixlen", "suppress_ifgroup", "protocol", "flow_from", "flow_to"})
#: Keys of selectors on the packet or the socket, by the name ``ip rule`` gives them.
_PACKET_SELECTORS = {
    "uid_start": "uidrange", "uid_end": "uidrange", "ipproto": "ipproto",
    "sport": "sport", "sport_start": "sport", "sport_end": "sport",
    "dport": "dport", "dport_start": "dport", "dport_end": "dport",
    "tos": "tos", "dsfield": "tos", "dscp": "dscp", "tun_id": "tun_id", "l3mdev": "l3mdev",
    "flowlabel": "flowlabel", "flowlabel_mask": "flowlabel"}


def parse_rules(text: str, family: Family,
                table_names: Mapping[str, int] = TABLE_NAMES) -> list[Rule]:
    """Parse ``ip -j -4|-6 rule show`` (or ``ip -N -j ...``: numbers instead of names),
    in the kernel's order. Raises :class:`~podroutes.core.errors.ParseError` on anything
    else, a table name not in ``table_names`` included (``ip -N`` prints none)."""
    return [_rule(entry, family, table_names) for entry in json_list(text, "ip -j rule")]


def _rule(entry: Any, family: Family, table_names: Mapping[str, int]) -> Rule:
    if not isinstance(entry, dict) or "priority" not in entry:
        raise ParseError(f"`ip -j rule` entry without a priority: {entry!r}")
    table: int | None = None
    goto: int | None = None
    try:
        priority = int(entry["priority"])
        src = _selector(entry.get("src"), entry.get("srclen"), family)
        dst = _selector(entry.get("dst"), entry.get("dstlen"), family)
        fwmark = int(str(entry["fwmark"]), 0) if "fwmark" in entry else None
        fwmask = int(str(entry["fwmask"]), 0) if "fwmask" in entry else _ALL_ONES
        suppress = (int(entry["suppress_prefixlen"]) if "suppress_prefixlen" in entry
                    else None)
        if "goto" in entry:
            action, goto = RuleAction.GOTO, int(entry["goto"])
        elif "nop" in entry:
            action = RuleAction.NOP
        elif "action" in entry:
            action = _ACTION_NAMES[str(entry["action"])]
        else:
            action = RuleAction.LOOKUP
            if "table" in entry:
                table = table_number(entry["table"], table_names)
            elif "l3mdev" not in entry:
                raise ParseError(f"`ip -j rule` entry without an action: {entry!r}")
    except ParseError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise ParseError(f"`ip -j rule` entry with a bad value: {entry!r}") from exc
    unevaluable = tuple(dict.fromkeys(
        _PACKET_SELECTORS.get(str(key), str(key)) for key in entry if key not in _KNOWN_KEYS))
    return Rule(family, priority, action, table, goto, src, dst,
                None if entry.get("iif") is None else str(entry["iif"]),
                None if entry.get("oif") is None else str(entry["oif"]),
                "iif_detached" in entry or "oif_detached" in entry, fwmark, fwmask,
                "not" in entry, suppress,
                None if "suppress_ifgroup" not in entry else str(entry["suppress_ifgroup"]),
                unevaluable)


def _selector(address: object, length: object, family: Family) -> IPNetwork | None:
    """A ``src``/``dst`` selector; ``ip`` leaves out the length of a host address."""
    if address is None or address == "all":
        return None
    prefixlen = WIDTH[family] if length is None else int(str(length))
    network = ip_network(f"{address}/{prefixlen}", strict=False)
    if network.version != family:
        raise ValueError(f"IPv{network.version} selector in IPv{family.value} rules")
    return None if prefixlen == 0 else network


def table_number(value: object, names: Mapping[str, int]) -> int:
    """The number of a table ``ip`` printed as a number or as one of ``names``."""
    text = str(value)
    if text.isdigit():
        return int(text)
    if text in names:
        return names[text]
    raise ParseError(f"unknown routing table name {text!r} (read with `ip -N`, or pass "
                     f"its number in table_names)")


# --- which packets a rule selects -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """The packet being decided, as the rules' selectors see it."""

    dst: int
    src: int | None
    iif: str | None
    oif: str | None
    mark: int | None


def matches(rule: Rule, flow: Flow, family: Family) -> bool | None:
    """Whether ``rule`` matches the flow; ``None`` when that depends on what the model
    cannot evaluate. The kernel ANDs the selectors, then applies ``not`` to the result."""
    if not _selectors_match(rule, flow, family):
        return rule.invert
    if unknowns(rule, flow):
        return None
    return not rule.invert


def _selectors_match(rule: Rule, flow: Flow, family: Family) -> bool:
    """The evaluable selectors, ANDed."""
    width = WIDTH[family]
    if rule.detached:
        return False
    if rule.iif is not None and rule.iif != (flow.iif or "lo"):
        return False  # an originated packet comes from lo (measured, both families)
    if rule.oif is not None and rule.oif != flow.oif:
        return False
    if (rule.fwmark is not None and flow.mark is not None
            and (rule.fwmark ^ flow.mark) & rule.fwmask):
        return False
    if rule.dst is not None and not within(flow.dst, rule.dst, width):
        return False
    # IPv6 without a source: only `from all` matches (measured)
    return rule.src is None or (flow.src is not None and within(flow.src, rule.src, width))


def unknowns(rule: Rule, flow: Flow) -> list[str]:
    """The selectors of ``rule`` the model cannot evaluate for ``flow``."""
    unknown = ["fwmark"] if rule.fwmark is not None and flow.mark is None else []
    return unknown + list(rule.unevaluable)


def within(address: int, network: IPNetwork, width: int) -> bool:
    """Whether ``address`` (an integer of ``width`` bits) is inside ``network``."""
    shift = width - network.prefixlen
    return address >> shift == int(network.network_address) >> shift
