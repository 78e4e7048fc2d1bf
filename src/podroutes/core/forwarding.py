"""The kernel's forwarding decision, as a pure model: which route Linux uses for a packet
to an address, given the host's policy rules and routing tables.

Owns :func:`decide` (what the kernel does with one address), :func:`decide_network` (the
same over a whole pod CIDR, part by part), :class:`Fib` (one host's rules and tables,
indexed once) and :func:`tables_of`. It tries the rules of :mod:`podroutes.core.rules`
(which also says which packets a rule selects), answers in
:mod:`podroutes.core.decision`'s values, splits networks with
:mod:`podroutes.core.parts`, and :mod:`podroutes.core.routeget` reads the kernel's own
answer to compare. podroutes' verdicts ("in sync", "healthy", "delivered") follow these
decisions rather than a comparison of route entries: :mod:`podroutes.core.paths` decides
every planned destination here for status, doctor and the agent, and asks the kernel
(``ip route get``) to confirm it.

Pure: text and values in, values out; no I/O. Build one :class:`Fib` per host to decide
many destinations (it indexes the tables once); :func:`decide` and :func:`decide_network`
build one per call.

Kernel semantics, each measured with ``ip -j route get`` in a network namespace (Linux
6.18, iproute2 6.1; ``tests/data/forwarding/README.md`` has the commands); which
packets a rule selects is in :mod:`podroutes.core.rules`' docstring:

- Rules are tried in priority order (``ip rule show``'s order). ``goto P`` continues at
  the first rule of priority ``P`` (none there: the rule is skipped, ``ip`` prints
  ``unresolved``); ``nop`` continues; ``blackhole``/``unreachable``/``prohibit`` rules
  end the decision.
- An originated IPv4 packet from an address that is not local fails (Network is
  unreachable).
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
``dscp``, ``tun_id``, ``l3mdev``, keys :func:`~podroutes.core.rules.parse_rules` does
not know), ``suppress_ifgroup`` (device groups), several IPv6 routes of one prefix,
metric and preference (the kernel's round-robin pointer decides), several IPv4 default
routes of one metric for an originated packet (``fib_select_default`` asks the neighbour
table), route types the model does not know (``multicast``, ``nat``...), a pinned
``oif`` unless the chosen route leaves by it, and a forwarded IPv4 packet whose route
back to its source is local or broadcast (dropped as a martian when the kernel checks
sources fully, which depends on flags ``ip`` does not show, rp_filter and accept_local).
Not modelled: IPv6 with forwarding off (the kernel then skips routers whose neighbour
entry is FAILED; a node forwards), rp_filter itself (a failed reverse lookup is taken as
accepted, as with rp_filter 0), and what ``parse_routes`` drops: a route's TOS, IPv6
source-specific routes (``from``), IPv4 routes ``via inet6`` (read as on-link), the
devices of a multipath route's nexthops.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, ip_network

from podroutes.core.decision import Decision, DecisionKind, kind_of
from podroutes.core.model import Family, IPAddress, IPNetwork, Route
from podroutes.core.parts import Part, parts_of
from podroutes.core.rules import (
    LOCAL_TABLE,
    WIDTH,
    Flow,
    Rule,
    RuleAction,
    matches,
    unknowns,
    within,
)

#: At most this many forks at rules the model cannot evaluate, per decision.
MAX_FORKS = 64

_ACTION_KINDS = {RuleAction.BLACKHOLE: DecisionKind.BLACKHOLE,
                 RuleAction.UNREACHABLE: DecisionKind.UNREACHABLE,
                 RuleAction.PROHIBIT: DecisionKind.PROHIBIT}
_DROP_KINDS = frozenset(_ACTION_KINDS.values())


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
        flow = Flow(int(dst), source, iif, oif, mark)
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

    def _check_source(self, flow: Flow, source: int, decision: Decision) -> Decision:
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
        reverse = self._walk(Family.V4, Flow(source, flow.dst, back_in, None, 0), 0,
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

    def _walk(self, family: Family, flow: Flow, start: int, forks: list[int]) -> Decision:
        """Try the rules from index ``start`` on. ``forks`` counts down the forks left."""
        rules = self._rules[family]
        i = start
        while i < len(rules):
            rule = rules[i]
            match = matches(rule, flow, family)
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
                               f"on {', '.join(unknowns(rule, flow))})")
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

    def _finish(self, family: Family, flow: Flow, i: int, outcome: _Outcome,
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

    def _apply(self, family: Family, rule: Rule, flow: Flow) -> _Outcome:
        """A matching rule's action."""
        if rule.action in _ACTION_KINDS:
            return Decision(_ACTION_KINDS[rule.action], priority=rule.priority)
        if rule.action is not RuleAction.LOOKUP:
            return _NEXT
        if rule.table is None:
            return Decision(DecisionKind.UNCERTAIN, priority=rule.priority,
                            reason=f"rule {rule.priority} looks up a VRF's table (l3mdev)")
        table = self._tables[family].get(rule.table)
        found = [] if table is None else table.longest(flow.dst, WIDTH[family])
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
        return parts_of(dst, bounds, lambda address: self.decide(
            address, src=src, iif=iif, oif=oif, mark=mark))


_MARTIAN_SOURCES = tuple(ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32"))


def _martian(source: int) -> bool:
    """An IPv4 source the input path drops before routing: this network, loopback,
    multicast, the limited broadcast."""
    return any(within(source, n, 32) for n in _MARTIAN_SOURCES)


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
    if all(kind_of(r) is DecisionKind.LOCAL for r in best) or all(
            (r.type, r.gateway, r.dev, r.nexthops)
            == (first.type, first.gateway, first.dev, first.nexthops) for r in best):
        return first
    return best


def _route_decision(route: Route, rule: Rule) -> Decision:
    return Decision(kind_of(route), route, route.table, rule.priority)


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
    (:func:`~podroutes.core.rules.parse_rules`, or
    :data:`~podroutes.core.rules.DEFAULT_RULES`) and ``tables`` (:func:`tables_of`).

    ``iif`` ``None`` decides a packet the host originates (``ip route get DST``); a device
    name, one forwarded in from it (``ip route get DST from SRC iif DEV``), e.g. a pod's
    packet arriving from the bridge, ``src`` the pod's address. ``src`` ``None``: no
    source chosen yet. ``oif`` pins the output device; ``mark`` is the firewall mark
    (``ip route get`` uses 0; without one, ``fwmark`` rules are UNCERTAIN where they
    matter). To decide many addresses, build one :class:`Fib` and call its ``decide``.
    """
    return Fib(rules, tables).decide(dst, src=src, iif=iif, oif=oif, mark=mark)


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
    specific inside: one part. Past :data:`~podroutes.core.parts.MAX_PARTS` parts, the
    prefixes left whole are UNCERTAIN parts. Arguments as :func:`decide`; build a
    :class:`Fib` for many networks.
    """
    return Fib(rules, tables).decide_network(dst, src=src, iif=iif, oif=oif, mark=mark)
