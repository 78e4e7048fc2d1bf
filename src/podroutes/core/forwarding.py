"""The kernel's forwarding decision, as a pure model: which route Linux uses for a packet
to an address, given the host's policy rules and routing tables.

Owns :class:`Rule` (one ``ip -j rule show`` entry, :func:`parse_rules`,
:data:`DEFAULT_RULES`), :class:`Decision` (what the kernel does with one address,
:func:`decide`, :class:`Fib`), :class:`Part` (the same over a whole pod CIDR,
:func:`decide_network`, :func:`sample_addresses`), and the reading of the kernel's own
answer (:func:`parse_route_get`, :func:`parse_route_get_error`, :func:`agrees`).
podroutes' verdicts ("in sync", "healthy", "delivered") follow these decisions rather
than a comparison of route entries: doctor's checks and trace decide here, and the wire
layer asks the kernel (``ip route get``) about :func:`sample_addresses` to confirm it.

Pure: text and values in, values out; no I/O. Build one :class:`Fib` per host to decide
many destinations (it indexes the tables once); :func:`decide` and :func:`decide_network`
build one per call.

Kernel semantics, each measured with ``ip -j route get`` in a network namespace (Linux
6.18, iproute2 6.1; ``tests/data/forwarding/README.md`` has the commands):

- Rules are tried in priority order (``ip rule show``'s order). A rule matches when all
  its selectors do; ``not`` inverts the whole match. ``goto P`` continues at the first
  rule of priority ``P`` (none there: the rule is skipped, ``ip`` prints ``unresolved``);
  ``nop`` continues; ``blackhole``/``unreachable``/``prohibit`` rules end the decision.
- ``from``: IPv4 compares the packet's source, and an originated packet without one has
  source 0.0.0.0 (``from 0.0.0.0/8`` and ``not from 10.0.0.0/8`` match it); IPv6 without
  a source matches no ``from`` but ``all`` (``not from X`` then matches). An originated
  IPv4 packet from an address that is not local fails (Network is unreachable).
  ``iif``: an originated packet comes from ``lo``. ``oif``: only a packet whose output
  device is pinned matches it, never a forwarded one.
- A lookup rule searches its table by longest prefix, then the lowest metric; IPv4 takes
  the first route of that metric in table order (``ip route append``), IPv6 the highest
  router preference (``pref high``), then the first. A table without a match, and a
  ``throw`` route, continue with the next rule. ``suppress_prefixlength N`` rejects a
  result of prefix length <= N and continues, but never a blackhole, unreachable or
  prohibit route: those end the decision first. No rule left: Network is unreachable.
- Routes flagged ``linkdown`` (their device has no carrier) are still used, in both
  families, while ``ignore_routes_with_linkdown`` is 0 (the default; at 1 the next metric
  of the same prefix wins). ``parse_routes`` does not keep the flag, so the model assumes
  the default. A device set down takes its routes away (both families).
- A forwarded IPv4 packet (``iif``) from a martian source (0/8, 127/8, multicast) is
  dropped (BLACKHOLE). A gateway route out of ``lo`` (its gateway is a local address in
  that table) does not use the gateway: CONNECTED on ``lo``, as ``ip route get`` says.

UNCERTAIN, where it could change the outcome: rule selectors on the packet or socket
(``fwmark`` when no ``mark`` is given, ``uidrange``, ``ipproto``, ports, ``tos``,
``dscp``, ``tun_id``, ``l3mdev``, keys this module does not know), ``suppress_ifgroup``
(device groups), several IPv6 routes of one prefix, metric and preference (the kernel's
round-robin pointer decides), several IPv4 default routes of one metric for an
originated packet (``fib_select_default`` asks the neighbour table), route types the
model does not know (``multicast``, ``nat``...), a pinned ``oif`` unless the chosen route
leaves by it, and a forwarded IPv4 packet whose route back to its source is local or
broadcast (dropped as a martian when the kernel checks sources fully, which depends on
flags ``ip`` does not show, rp_filter and accept_local). Not modelled: IPv6 with
forwarding off (the kernel then skips routers whose neighbour entry is FAILED; a node
forwards), rp_filter itself (a failed reverse lookup is taken as accepted, as with
rp_filter 0), and what ``parse_routes`` drops: a route's TOS, IPv6 source-specific
routes (``from``), IPv4 routes ``via inet6`` (read as on-link), the devices of a
multipath route's nexthops.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from podroutes.core.errors import ParseError
from podroutes.core.jsontext import json_list
from podroutes.core.model import MAIN_TABLE, Family, IPAddress, IPNetwork, Route

LOCAL_TABLE = 255
DEFAULT_TABLE = 253
#: Table names every iproute2 knows (``/etc/iproute2/rt_tables``); ``ip -N`` prints numbers.
TABLE_NAMES: Mapping[str, int] = {"main": MAIN_TABLE, "local": LOCAL_TABLE,
                                  "default": DEFAULT_TABLE}
#: At most this many parts per destination network; past it, the rest is UNCERTAIN.
MAX_PARTS = 4096
#: At most this many forks at rules the model cannot evaluate, per decision.
MAX_FORKS = 64
_WIDTH = {Family.V4: 32, Family.V6: 128}
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


class DecisionKind(enum.StrEnum):
    """What the kernel does with a packet to one address."""

    #: Forwarded to a gateway (or to one of a multipath route's gateways).
    VIA = "via"
    #: Sent straight out of a device, the destination on-link (e.g. the bridge's CIDR).
    CONNECTED = "connected"
    #: Delivered to the host itself (a local, broadcast or anycast route).
    LOCAL = "local"
    #: Dropped silently: a blackhole route or rule, or (forwarded IPv4) a martian source.
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"
    #: Nothing matched: "Network is unreachable".
    NO_ROUTE = "no-route"
    #: Something the model cannot evaluate could change the outcome (see the reason).
    UNCERTAIN = "uncertain"


_DROPS = {"blackhole": DecisionKind.BLACKHOLE, "unreachable": DecisionKind.UNREACHABLE,
          "prohibit": DecisionKind.PROHIBIT}
_DROP_KINDS = frozenset(_DROPS.values())
_DELIVERED = frozenset({"local", "broadcast", "anycast"})
_ACTION_KINDS = {RuleAction.BLACKHOLE: DecisionKind.BLACKHOLE,
                 RuleAction.UNREACHABLE: DecisionKind.UNREACHABLE,
                 RuleAction.PROHIBIT: DecisionKind.PROHIBIT}


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
                table = _table_number(entry["table"], table_names)
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
    prefixlen = _WIDTH[family] if length is None else int(str(length))
    network = ip_network(f"{address}/{prefixlen}", strict=False)
    if network.version != family:
        raise ValueError(f"IPv{network.version} selector in IPv{family.value} rules")
    return None if prefixlen == 0 else network


def _table_number(value: object, names: Mapping[str, int]) -> int:
    text = str(value)
    if text.isdigit():
        return int(text)
    if text in names:
        return names[text]
    raise ParseError(f"unknown routing table name {text!r} (read with `ip -N`, or pass "
                     f"its number in table_names)")


# --- decisions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What the kernel does with a packet to one address.

    ``route`` is the route it uses (``None`` for NO_ROUTE, for a rule's own
    blackhole/unreachable/prohibit action, and for most UNCERTAIN decisions), ``table`` the
    table it came from, ``priority`` the rule that decided. UNCERTAIN carries a ``reason``
    and the ``candidates`` the model could not choose between (certain decisions; none
    when it cannot even tell those, e.g. a VRF's table).
    """

    kind: DecisionKind
    route: Route | None = None
    table: int | None = None
    priority: int | None = None
    reason: str = ""
    candidates: tuple[Decision, ...] = ()

    @property
    def gateways(self) -> tuple[IPAddress, ...]:
        """The next hops a VIA decision sends to (several for a multipath route)."""
        if self.route is None:
            return ()
        if self.route.nexthops:
            return self.route.nexthops
        return () if self.route.gateway is None else (self.route.gateway,)

    def same_outcome(self, other: Decision) -> bool:
        """Whether both send the packet the same way: the same kind and route (for a
        rule's own action, the same kind), whichever rule decided."""
        if DecisionKind.UNCERTAIN in (self.kind, other.kind):
            return self == other
        return self.kind is other.kind and self.route == other.route

    def __str__(self) -> str:
        if self.kind is DecisionKind.UNCERTAIN:
            return f"uncertain: {self.reason}"
        where = [] if self.priority is None else [f"rule {self.priority}"]
        r = self.route
        if r is None:
            return self.kind.value + (f" ({where[0]})" if where else "")
        if self.kind is DecisionKind.VIA:
            text = "via " + ", ".join(map(str, self.gateways))
            text += f" dev {r.dev}" if r.dev and not r.nexthops else ""
        elif self.kind is DecisionKind.CONNECTED:
            text = f"dev {r.dev}"
        else:
            text = self.kind.value
        where.insert(0, str(r.dst) + ("" if r.table == MAIN_TABLE else f" table {r.table}"))
        return f"{text} ({', '.join(where)})"


def _kind_of(route: Route) -> DecisionKind:
    """What using ``route`` does; UNCERTAIN for a type the model does not know."""
    if route.type == "unicast":
        if route.nexthops or (route.gateway is not None and route.dev != "lo"):
            return DecisionKind.VIA
        # A gateway out of lo is a local address in the route's table (the kernel checks a
        # gateway there first): it is not used, `ip route get` says "dev lo" (measured).
        return DecisionKind.CONNECTED
    if route.type in _DELIVERED:
        return DecisionKind.LOCAL
    return _DROPS.get(route.type, DecisionKind.UNCERTAIN)


def tables_of(routes: Iterable[Route]) -> dict[int, list[Route]]:
    """Routes grouped by table, in the order given (the kernel's, as ``ip`` prints them):
    what :func:`decide` reads. E.g. ``parse_routes`` of ``ip -j -4 route show table all``
    (``-4``/``-6`` matters: without it ``table all`` prints both families)."""
    out: dict[int, list[Route]] = {}
    for r in routes:
        out.setdefault(r.table, []).append(r)
    return out


class _Table:
    """One table's routes of one family, indexed by prefix length, then network."""

    __slots__ = ("by_length", "lengths", "starts")

    def __init__(self, routes: Iterable[Route], family: Family) -> None:
        self.by_length: dict[int, dict[int, list[Route]]] = {}
        for r in routes:
            if r.dst.version == family:
                self.by_length.setdefault(r.dst.prefixlen, {}).setdefault(
                    int(r.dst.network_address), []).append(r)
        self.lengths = sorted(self.by_length, reverse=True)
        self.starts = {n: sorted(nets) for n, nets in self.by_length.items()}

    def longest(self, address: int, width: int) -> list[Route]:
        """The routes of the longest prefix that contains ``address``, in table order."""
        for length in self.lengths:
            found = self.by_length[length].get(address >> (width - length) << (width - length))
            if found:
                return found
        return []

    def inside(self, first: int, last: int, above: int) -> Iterable[tuple[int, int]]:
        """(network, length) of every prefix longer than ``above`` within [first, last]."""
        for length in self.lengths:
            if length <= above:
                break
            nets = self.starts[length]
            for n in nets[bisect.bisect_left(nets, first):bisect.bisect_right(nets, last)]:
                yield n, length


@dataclass(frozen=True, slots=True)
class _Flow:
    """The packet being decided, as the rules' selectors see it."""

    dst: int
    src: int | None
    iif: str | None
    oif: str | None
    mark: int | None


class _Next(enum.Enum):
    """A matching rule that did not decide: on to the next rule (or the goto's)."""

    NEXT = "next"


_NEXT = _Next.NEXT


@dataclass(frozen=True, slots=True)
class _Suppressible:
    """A lookup's result that a ``suppress_ifgroup`` rule may reject (device groups are
    not in the model): final, or on to the next rule."""

    decision: Decision


_Outcome = Decision | _Next | _Suppressible


class Fib:
    """A host's rules and tables, indexed once, to decide any number of addresses of
    either family. ``tables`` maps a table number to its routes in the kernel's order
    (see :func:`tables_of`); routes and rules of the other family are ignored."""

    __slots__ = ("_rules", "_tables")

    def __init__(self, rules: Sequence[Rule], tables: Mapping[int, Sequence[Route]]) -> None:
        self._rules = {f: sorted((r for r in rules if r.family is f), key=lambda r: r.priority)
                       for f in Family}
        self._tables = {f: {n: _Table(routes, f) for n, routes in tables.items()}
                        for f in Family}

    def decide(self, dst: IPAddress, *, src: IPAddress | None = None, iif: str | None = None,
               oif: str | None = None, mark: int | None = None) -> Decision:
        """What the kernel does with a packet to ``dst``; see :func:`decide`."""
        family = Family.of(dst)
        if src is not None and src.version != dst.version:
            raise ValueError(f"source {src} and destination {dst} differ in family")
        source = None if src is None else int(src)
        if iif is None and family is Family.V4:
            source = source or 0  # originated without a source: 0.0.0.0 (measured)
            if source and not self._is_local(source):
                return Decision(DecisionKind.NO_ROUTE, reason=f"{src} is not an address of "
                                "this host: the kernel originates nothing from it")
        elif iif is None and source == 0:
            source = None  # IPv6 `from ::`: no source
        elif iif is not None and family is Family.V4 and _martian(source or 0):
            return Decision(DecisionKind.BLACKHOLE, reason=f"the source {src or '0.0.0.0'} is "
                            f"a martian: the kernel drops what arrives from it")
        flow = _Flow(int(dst), source, iif, oif, mark)
        decision = self._walk(family, flow, 0, [MAX_FORKS])
        if oif is not None and (decision.kind is DecisionKind.NO_ROUTE or (
                decision.route is not None and decision.route.dev != oif)):
            return Decision(DecisionKind.UNCERTAIN, reason=f"the output device is pinned to "
                            f"{oif}: the kernel skips routes through other devices, and may "
                            "take the destination as on-link")
        if iif is None or family is Family.V6 or source is None:
            return decision
        if decision.kind is not DecisionKind.UNCERTAIN:
            return self._check_source(flow, source, decision)
        checked = [self._check_source(flow, source, c) for c in decision.candidates]
        if all(c.kind is not DecisionKind.UNCERTAIN for c in checked):
            return decision
        return replace(decision, reason="; ".join(
            [decision.reason, *(c.reason for c in checked if c.kind is DecisionKind.UNCERTAIN)]),
            candidates=_merged(checked))

    def _check_source(self, flow: _Flow, source: int, decision: Decision) -> Decision:
        """IPv4's input path checks the source once routed (``fib_validate_source``): a
        lookup back to it (in from the forward route's device, ``lo`` for local delivery)
        that finds a local or broadcast route drops the packet as a martian. The kernel
        does that check whenever custom rules or user-made ``local`` routes ever existed
        (flags ``ip`` does not show) or rp_filter is on, and otherwise refuses only the
        host's interface addresses; ``accept_local`` lets local ones through. A reverse
        lookup that fails (no route, blackhole...) is accepted while rp_filter is 0."""
        if decision.kind not in (DecisionKind.VIA, DecisionKind.CONNECTED, DecisionKind.LOCAL):
            return decision
        route = decision.route
        back_in = "lo" if decision.kind is DecisionKind.LOCAL else (
            route.dev if route is not None and route.dev else "?")  # multipath: not known
        reverse = self._walk(Family.V4, _Flow(source, flow.dst, back_in, None, 0), 0,
                             [MAX_FORKS])
        outcomes = reverse.candidates if reverse.kind is DecisionKind.UNCERTAIN else (reverse,)
        if outcomes and all(d.kind is not DecisionKind.LOCAL for d in outcomes):
            return decision
        where = "" if reverse.route is None else f" ({reverse.route.dst})"
        martian = Decision(DecisionKind.BLACKHOLE, reason=f"the route back to the source "
                           f"{IPv4Address(source)} is local{where}: dropped as a martian")
        return Decision(DecisionKind.UNCERTAIN, reason=f"the route back to the source "
                        f"{IPv4Address(source)} delivers locally{where}: the kernel drops the "
                        "packet as a martian if it checks sources fully (custom rules or local "
                        "routes ever added, rp_filter on) and accept_local is 0",
                        candidates=(decision, martian))

    def _is_local(self, address: int) -> bool:
        """What the kernel asks of an IPv4 source: a ``local`` route in the local table."""
        local = self._tables[Family.V4].get(LOCAL_TABLE)
        return local is not None and any(r.type == "local" for r in local.longest(address, 32))

    def _walk(self, family: Family, flow: _Flow, start: int, forks: list[int]) -> Decision:
        """Try the rules from index ``start`` on. ``forks`` counts down the forks left."""
        rules = self._rules[family]
        i = start
        while i < len(rules):
            rule = rules[i]
            match = _matches(rule, flow, family)
            if match is False:
                i += 1
                continue
            outcome = self._apply(family, rule, flow)
            if match is None and (outcome is not _NEXT or rule.action is RuleAction.GOTO):
                # Whether the rule matches changes the outcome: decide both ways.
                forks[0] -= 1
                if forks[0] < 0:
                    return Decision(DecisionKind.UNCERTAIN, reason=f"more than {MAX_FORKS} "
                                    "rules whose selectors the model cannot evaluate")
                taken = self._finish(family, flow, i, outcome, forks)
                skipped = self._walk(family, flow, i + 1, forks)
                return _either(taken, skipped, f"rule {rule.priority} may match (it selects "
                               f"on {', '.join(_unknowns(rule, flow))})")
            if outcome is not _NEXT:
                return self._finish(family, flow, i, outcome, forks)
            i = self._after(family, i)
        return Decision(DecisionKind.NO_ROUTE)

    def _after(self, family: Family, i: int) -> int:
        """Where the rules continue after rule ``i`` matched without deciding."""
        rules = self._rules[family]
        rule = rules[i]
        if rule.action is not RuleAction.GOTO:
            return i + 1
        return next((j for j in range(i + 1, len(rules)) if rules[j].priority == rule.goto),
                    i + 1)  # no rule there ("unresolved"): skipped

    def _finish(self, family: Family, flow: _Flow, i: int, outcome: _Outcome,
                forks: list[int]) -> Decision:
        """The decision once rule ``i`` has matched with ``outcome``."""
        if isinstance(outcome, Decision):
            return outcome
        if isinstance(outcome, _Suppressible):
            forks[0] -= 1
            rule = self._rules[family][i]
            return _either(outcome.decision, self._walk(family, flow, i + 1, forks),
                           f"rule {rule.priority} rejects routes out of devices of group "
                           f"{rule.suppress_ifgroup}, which the model does not know")
        return self._walk(family, flow, self._after(family, i), forks)

    def _apply(self, family: Family, rule: Rule, flow: _Flow) -> _Outcome:
        """A matching rule's action."""
        if rule.action in _ACTION_KINDS:
            return Decision(_ACTION_KINDS[rule.action], priority=rule.priority)
        if rule.action is not RuleAction.LOOKUP:
            return _NEXT
        if rule.table is None:
            return Decision(DecisionKind.UNCERTAIN, priority=rule.priority,
                            reason=f"rule {rule.priority} looks up a VRF's table (l3mdev)")
        table = self._tables[family].get(rule.table)
        found = [] if table is None else table.longest(flow.dst, _WIDTH[family])
        if not found:
            return _NEXT
        chosen = _choose(found, family)
        if isinstance(chosen, list):
            return Decision(DecisionKind.UNCERTAIN, table=rule.table, priority=rule.priority,
                            reason=f"{len(chosen)} routes to {chosen[0].dst} of metric "
                            f"{chosen[0].effective_metric} and the same preference: the "
                            "kernel takes the one its round-robin pointer is at",
                            candidates=tuple(_route_decision(r, rule) for r in chosen))
        if chosen.type == "throw":
            return _NEXT
        decision = _route_decision(chosen, rule)
        if decision.kind in _DROP_KINDS:
            return decision  # an error: suppress_* never sees it (measured)
        if decision.kind is DecisionKind.UNCERTAIN:
            return Decision(DecisionKind.UNCERTAIN, chosen, rule.table, rule.priority,
                            f"a {chosen.type} route ({chosen.dst}), which the model does "
                            "not know")
        if (rule.suppress_prefixlength is not None
                and chosen.dst.prefixlen <= rule.suppress_prefixlength):
            return _NEXT
        if (family is Family.V4 and flow.iif is None and chosen.dst.prefixlen == 0
                and decision.kind is DecisionKind.VIA and not chosen.nexthops):
            rivals = [r for r in found if r.type == "unicast" and r.gateway is not None
                      and not r.nexthops and r.effective_metric == chosen.effective_metric]
            if len(rivals) > 1:
                return Decision(DecisionKind.UNCERTAIN, table=rule.table,
                                priority=rule.priority, reason=f"{len(rivals)} default "
                                f"routes of metric {chosen.effective_metric}: the kernel "
                                "picks one by its neighbours' state",
                                candidates=tuple(_route_decision(r, rule) for r in rivals))
        if rule.suppress_ifgroup is not None:
            return _Suppressible(decision)
        return decision

    def decide_network(self, dst: IPNetwork, *, src: IPAddress | None = None,
                       iif: str | None = None, oif: str | None = None,
                       mark: int | None = None) -> list[Part]:
        """What the kernel does with packets to each address of ``dst``; see
        :func:`decide_network`."""
        family = Family.of(dst)
        first = int(dst.network_address)
        last = first + dst.num_addresses - 1
        bounds: set[tuple[int, int]] = set()
        tables = self._tables[family]
        # A forwarded IPv4 packet's source check looks back *from* the destination.
        from_too = iif is not None and family is Family.V4
        for rule in self._rules[family]:
            for net in (rule.dst, rule.src) if from_too else (rule.dst,):
                if net is not None and net.prefixlen > dst.prefixlen \
                        and first <= int(net.network_address) <= last:
                    bounds.add((int(net.network_address), net.prefixlen))
            if rule.action is RuleAction.LOOKUP and rule.table in tables:
                bounds.update(tables[rule.table].inside(first, last, dst.prefixlen))
        pieces, crowded = _split(first, dst.prefixlen, _WIDTH[family], sorted(bounds))
        make = type(dst)
        out = []
        for network, length in pieces:
            piece = make((network, length))
            if (network, length) in crowded:
                decision = Decision(DecisionKind.UNCERTAIN, reason=f"{dst} splits into more "
                                    f"than {MAX_PARTS} parts; {piece} was not split further")
            else:
                decision = self.decide(piece.network_address, src=src, iif=iif, oif=oif,
                                       mark=mark)
            out.append(Part(piece, decision))
        return out


def _split(first: int, length: int, width: int, bounds: list[tuple[int, int]],
           ) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """The fewest prefixes that cover (first, length), none strictly containing a prefix
    of ``bounds`` (all inside it), in address order; and those left whole because of
    :data:`MAX_PARTS`."""
    out: list[tuple[int, int]] = []
    crowded: set[tuple[int, int]] = set()
    stack = [(first, length, [b for b in bounds if b[1] > length])]
    while stack:
        network, plen, inner = stack.pop()
        if not inner:
            out.append((network, plen))
        elif len(out) + len(stack) + 2 > MAX_PARTS:
            out.append((network, plen))
            crowded.add((network, plen))
        else:
            upper = network + (1 << (width - plen - 1))
            stack.append((upper, plen + 1,
                          [b for b in inner if b[0] >= upper and b[1] > plen + 1]))
            stack.append((network, plen + 1,
                          [b for b in inner if b[0] < upper and b[1] > plen + 1]))
    return out, crowded


def _matches(rule: Rule, flow: _Flow, family: Family) -> bool | None:
    """Whether ``rule`` matches the flow; ``None`` when that depends on what the model
    cannot evaluate. The kernel ANDs the selectors, then applies ``not`` to the result."""
    if not _selectors_match(rule, flow, family):
        return rule.invert
    if _unknowns(rule, flow):
        return None
    return not rule.invert


def _selectors_match(rule: Rule, flow: _Flow, family: Family) -> bool:
    """The evaluable selectors, ANDed."""
    width = _WIDTH[family]
    if rule.detached:
        return False
    if rule.iif is not None and rule.iif != (flow.iif or "lo"):
        return False  # an originated packet comes from lo (measured, both families)
    if rule.oif is not None and rule.oif != flow.oif:
        return False
    if (rule.fwmark is not None and flow.mark is not None
            and (rule.fwmark ^ flow.mark) & rule.fwmask):
        return False
    if rule.dst is not None and not _within(flow.dst, rule.dst, width):
        return False
    # IPv6 without a source: only `from all` matches (measured)
    return rule.src is None or (flow.src is not None and _within(flow.src, rule.src, width))


def _unknowns(rule: Rule, flow: _Flow) -> list[str]:
    """The selectors of ``rule`` the model cannot evaluate for ``flow``."""
    unknown = ["fwmark"] if rule.fwmark is not None and flow.mark is None else []
    return unknown + list(rule.unevaluable)


_MARTIAN_SOURCES = tuple(ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32"))


def _martian(source: int) -> bool:
    """An IPv4 source the input path drops before routing: this network, loopback,
    multicast, the limited broadcast."""
    return any(_within(source, n, 32) for n in _MARTIAN_SOURCES)


def _within(address: int, network: IPNetwork, width: int) -> bool:
    shift = width - network.prefixlen
    return address >> shift == int(network.network_address) >> shift


#: RFC 4191 router preference, as the kernel ranks it.
_PREFERENCE = {"low": 1, "medium": 2, "high": 3}


def _choose(found: list[Route], family: Family) -> Route | list[Route]:
    """The route of one prefix the kernel uses, or the rivals (IPv6) between which the
    model cannot choose."""
    lowest = min(r.effective_metric for r in found)
    best = [r for r in found if r.effective_metric == lowest]
    if family is Family.V4 or len(best) == 1:
        return best[0]
    top = max(_PREFERENCE.get(r.pref or "medium", 2) for r in best)
    best = [r for r in best if _PREFERENCE.get(r.pref or "medium", 2) == top]
    first = best[0]
    if all(_kind_of(r) is DecisionKind.LOCAL for r in best) or all(
            (r.type, r.gateway, r.dev, r.nexthops)
            == (first.type, first.gateway, first.dev, first.nexthops) for r in best):
        return first
    return best


def _route_decision(route: Route, rule: Rule) -> Decision:
    return Decision(_kind_of(route), route, route.table, rule.priority)


def _merged(decisions: Iterable[Decision]) -> tuple[Decision, ...]:
    """The certain outcomes of ``decisions`` (an UNCERTAIN one's candidates), once each."""
    out: list[Decision] = []
    for d in decisions:
        for c in (d.candidates if d.kind is DecisionKind.UNCERTAIN else (d,)):
            if not any(c.same_outcome(k) for k in out):
                out.append(c)
    return tuple(out)


def _either(taken: Decision, skipped: Decision, why: str) -> Decision:
    """One decision when both ways lead to the same outcome, else UNCERTAIN between them."""
    if taken.same_outcome(skipped):
        return taken
    candidates = _merged((taken, skipped))
    inner = [d.reason for d in (taken, skipped) if d.kind is DecisionKind.UNCERTAIN]
    reason = "; ".join([f"{why}: " + " or ".join(map(str, candidates)), *inner])
    return Decision(DecisionKind.UNCERTAIN, reason=reason, candidates=candidates)


def decide(rules: Sequence[Rule], tables: Mapping[int, Sequence[Route]], dst: IPAddress, *,
           src: IPAddress | None = None, iif: str | None = None, oif: str | None = None,
           mark: int | None = None) -> Decision:
    """What the kernel does with a packet to ``dst``, given the host's ``rules``
    (:func:`parse_rules`, or :data:`DEFAULT_RULES`) and ``tables`` (:func:`tables_of`).

    ``iif`` ``None`` decides a packet the host originates (``ip route get DST``); a device
    name, one forwarded in from it (``ip route get DST from SRC iif DEV``), e.g. a pod's
    packet arriving from the bridge, ``src`` the pod's address. ``src`` ``None``: no
    source chosen yet. ``oif`` pins the output device; ``mark`` is the firewall mark
    (``ip route get`` uses 0; without one, ``fwmark`` rules are UNCERTAIN where they
    matter). To decide many addresses, build one :class:`Fib` and call its ``decide``.
    """
    return Fib(rules, tables).decide(dst, src=src, iif=iif, oif=oif, mark=mark)


# --- a whole destination network -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """A sub-network of a destination over which the kernel decides the same way."""

    network: IPNetwork
    decision: Decision


def decide_network(rules: Sequence[Rule], tables: Mapping[int, Sequence[Route]],
                   dst: IPNetwork, *, src: IPAddress | None = None, iif: str | None = None,
                   oif: str | None = None, mark: int | None = None) -> list[Part]:
    """What the kernel does with packets to each address of ``dst`` (e.g. a pod CIDR).

    The parts cover ``dst`` exactly, in address order, and each part's decision holds for
    every address in it: ``dst`` is split by each more specific route inside it (in the
    tables the rules look up) and each rule ``to`` selector inside it (and, forwarded
    IPv4, each ``from``: the source check looks back from the destination), into the fewest
    prefixes none of which contains such a boundary; each is decided by its first
    address. No address is enumerated: a /64 costs what its boundaries cost. Nothing more
    specific inside: one part. Past :data:`MAX_PARTS` parts, the prefixes left whole are
    UNCERTAIN parts. Arguments as :func:`decide`; build a :class:`Fib` for many networks.
    """
    return Fib(rules, tables).decide_network(dst, src=src, iif=iif, oif=oif, mark=mark)


def sample_addresses(dst: IPNetwork, parts: Sequence[Part] = (),
                     limit: int = 64) -> list[IPAddress]:
    """The addresses of ``dst`` to ask the kernel about (``ip route get``) to confirm the
    model: the first host address (network + 1), the last (IPv4: broadcast - 1), the
    first address of one part per distinct outcome, then of the other parts; in that
    order, without repeats, at most ``limit``. A /31, /32, /127 or /128 gives its own
    addresses."""
    first = int(dst.network_address)
    size = dst.num_addresses
    if size <= 2:
        wanted = list(range(first, first + size))
    else:
        wanted = [first + 1, first + size - (2 if dst.version == 4 else 1)]
    shown: list[Decision] = []
    rest: list[int] = []
    for p in parts:
        start = int(p.network.network_address)
        if any(p.decision.same_outcome(d) for d in shown):
            rest.append(start)
        else:
            shown.append(p.decision)
            wanted.append(start)
    make = IPv4Address if dst.version == 4 else IPv6Address
    unique = dict.fromkeys(n for n in wanted + rest if first <= n < first + size)
    return [make(n) for n in list(unique)[:limit]]


# --- the kernel's own answer ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteGetAnswer:
    """``ip -j route get ADDR``'s answer when it found a route: the kind, the gateway (for
    a multipath route, the one nexthop the kernel hashed to), the device and the table
    (``ip`` prints it unless it is main)."""

    dst: IPAddress
    kind: DecisionKind
    gateway: IPAddress | None
    dev: str | None
    table: int

    def __str__(self) -> str:
        if self.kind is DecisionKind.LOCAL:
            text = "local"
        else:
            text = (f"via {self.gateway} " if self.gateway else "") + f"dev {self.dev}"
        return text + ("" if self.table == MAIN_TABLE else f" table {self.table}")


_ANSWER_TYPES = {"local": DecisionKind.LOCAL, "broadcast": DecisionKind.LOCAL,
                 "anycast": DecisionKind.LOCAL}


def parse_route_get(text: str, family: Family,
                    table_names: Mapping[str, int] = TABLE_NAMES) -> RouteGetAnswer:
    """Parse ``ip -j route get ADDR``'s output (exit status 0): a list of one entry with
    ``dst``, ``gateway`` (``via`` for an IPv4 route via inet6), ``dev``, ``type`` (absent
    for unicast) and ``table`` (absent for main). Raises
    :class:`~podroutes.core.errors.ParseError` on anything else."""
    data = json_list(text, "ip -j route get")
    if len(data) != 1 or not isinstance(data[0], dict) or "dst" not in data[0]:
        raise ParseError(f"`ip -j route get` printed no single route: {text.strip()!r}")
    entry = data[0]
    try:
        dst = ip_address(entry["dst"])
        gateway = None
        if "gateway" in entry:
            gateway = ip_address(entry["gateway"])
        elif isinstance(entry.get("via"), dict) and "host" in entry["via"]:
            gateway = ip_address(entry["via"]["host"])
    except (ValueError, TypeError) as exc:
        raise ParseError(f"`ip -j route get` entry with a bad address: {entry!r}") from exc
    if dst.version != family:
        raise ParseError(f"`ip -j route get` answered IPv{dst.version}, not "
                         f"IPv{family.value}: {entry!r}")
    type_ = str(entry.get("type", "unicast"))
    if type_ == "unicast":
        kind = DecisionKind.CONNECTED if gateway is None else DecisionKind.VIA
    elif type_ in _ANSWER_TYPES:
        kind = _ANSWER_TYPES[type_]
    else:
        raise ParseError(f"`ip -j route get` answered a {type_} route: {entry!r}")
    table = _table_number(entry["table"], table_names) if "table" in entry else MAIN_TABLE
    dev = entry.get("dev")
    return RouteGetAnswer(dst, kind, gateway, None if dev is None else str(dev), table)


#: ``ip route get``'s errors (``RTNETLINK answers: ...``), measured in both families.
_ERRORS = {
    "Network is unreachable": DecisionKind.NO_ROUTE,  # ENETUNREACH
    "No route to host": DecisionKind.UNREACHABLE,  # EHOSTUNREACH
    "Permission denied": DecisionKind.PROHIBIT,  # EACCES
    "Invalid argument": DecisionKind.BLACKHOLE,  # EINVAL
}


def parse_route_get_error(stderr: str) -> DecisionKind:
    """What a failed ``ip route get`` (exit status 2) says about the address.

    Measured, both families: "Network is unreachable" when nothing matched, when a
    ``throw`` fell through every rule, or for an ``unreachable`` *rule* (NO_ROUTE); "No
    route to host" for an ``unreachable`` route (UNREACHABLE); "Permission denied" for a
    prohibit route or rule (PROHIBIT); "Invalid argument" for a blackhole route or rule
    (BLACKHOLE). With ``iif``, "Invalid argument" is also a rejected source (``rp_filter``,
    a martian, no ``from``), and IPv4 with forwarding off answers "No route to host";
    without, an IPv4 ``from`` that is not local answers "Network is unreachable". Raises
    :class:`~podroutes.core.errors.ParseError` for any other error."""
    for text, kind in _ERRORS.items():
        if text in stderr:
            return kind
    raise ParseError(f"`ip route get` failed in a way the model does not know: "
                     f"{stderr.strip()!r}")


def agrees(decision: Decision, answer: RouteGetAnswer | DecisionKind) -> bool:
    """Whether the kernel's answer for one address (:func:`parse_route_get`, or
    :func:`parse_route_get_error`'s kind when it failed) is what ``decision`` predicts:
    the same kind (an ``unreachable`` rule, unlike a route, fails as NO_ROUTE), the same
    table (IPv4 with only the default rules merges the local table into main, and then
    reports local routes as main), the gateway (one of a multipath route's), and the
    device unless the route is multipath or delivers locally. An UNCERTAIN decision
    agrees with what one of its candidates agrees with: consistent with the model, not
    confirmed by it."""
    if decision.kind is DecisionKind.UNCERTAIN:
        return any(agrees(c, answer) for c in decision.candidates)
    if isinstance(answer, DecisionKind):
        expected = decision.kind
        if expected is DecisionKind.UNREACHABLE and decision.route is None:
            expected = DecisionKind.NO_ROUTE
        return answer is expected
    route = decision.route
    if answer.kind is not decision.kind or route is None:
        return False
    if answer.table != decision.table and not (
            decision.table == LOCAL_TABLE and answer.table == MAIN_TABLE):
        return False  # IPv4 with only the default rules: local merged into main (measured)
    if decision.kind is DecisionKind.VIA:
        return answer.gateway in decision.gateways and (
            bool(route.nexthops) or route.dev is None or route.dev == answer.dev)
    if decision.kind is DecisionKind.CONNECTED:
        return answer.gateway is None and (route.dev is None or route.dev == answer.dev)
    return True
