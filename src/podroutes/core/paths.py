"""Whether the kernel sends each planned destination where the plan says: path verdicts.

Pure. status, doctor and the agent judge a host by what its kernel does with a packet
for every pod CIDR, not by podroutes' own route entries: a foreign more specific route, a
lower metric, a policy rule sending the traffic to another table, a blackhole, or the
host's own pod CIDR taken off its bridge all cut pods off while every entry podroutes
owns still looks right.

:func:`path_commands` are what a host is asked in the same round trip as its main
tables: its policy rules and the other tables they name (:data:`TABLES_SCRIPT`), and
``ip route get`` for sample addresses of every destination (one ``ip -batch``).
:func:`parse_path_facts` reads the answers; :func:`judge_paths` decides every
destination with :class:`~podroutes.core.forwarding.Fib` (the model of the kernel's
decision) and checks the model against the kernel's own answers: a disagreement is
reported, never guessed away.
"""

from __future__ import annotations

import bisect
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import collapse_addresses
from typing import Any

from podroutes.core.decision import Decision, DecisionKind
from podroutes.core.errors import ParseError
from podroutes.core.forwarding import Fib
from podroutes.core.iproute import parse_routes
from podroutes.core.model import (
    MAIN_TABLE,
    Family,
    Host,
    IPAddress,
    IPNetwork,
    PlannedRoute,
    Route,
    protocol_name,
)
from podroutes.core.routeget import (
    RouteGetAnswer,
    agrees,
    parse_route_get,
    parse_route_get_error,
)
from podroutes.core.rules import DEFAULT_RULES, TABLE_NAMES, Rule, parse_rules

#: Separates the records of :data:`TABLES_SCRIPT`'s output (ASCII record separator).
MARK = "\x1e"

#: A constant script: per family, the policy rules, then every table a rule looks up
#: other than main (main is read by the engine already), and the table names iproute2
#: knows (``rt_tables``), so a named table is mapped to its number.
TABLES_SCRIPT = r"""
for f in /etc/iproute2/rt_tables /usr/share/iproute2/rt_tables /usr/lib/iproute2/rt_tables \
         /etc/iproute2/rt_tables.d/*.conf; do
  [ -f "$f" ] && printf '\036N\n' && cat "$f"
done
for v in 4 6; do
  # rules that cannot be read (IPv6 off, an ip without -j rule) are said so, not "none"
  if out=$(ip -j -$v rule show 2>&1); then printf '\036R %s\n%s\n' "$v" "$out"
  else printf '\036U %s\n%s\n' "$v" "$out"; continue; fi
  # the tables the rules look up, taken from the JSON just read, in the shell (no
  # `ip rule | sed | sort`: three processes a family)
  tables=; rest=$out
  while :; do
    case $rest in *'"table":"'*) rest=${rest#*'"table":"'} ;; *) break ;; esac
    t=${rest%%'"'*}
    case " $tables " in *" $t "*) ;; *) tables="$tables $t" ;; esac
  done
  for t in $tables; do
    [ "$t" = main ] || [ "$t" = 254 ] && continue
    printf '\036T %s %s\n' "$v" "$t"
    # an empty table: ip prints "[" and fails (measured, iproute2 6.1): no routes
    out=$(ip -j -$v route show table "$t" 2>/dev/null) || out='[]'
    printf '%s\n' "$out"
  done
done
printf '\036E\n'
"""

#: Sample addresses asked per destination in the first round trip (its first and last).
SAMPLES_PER_DESTINATION = 2

_FAILED_LINE = re.compile(r"^Command failed -:(\d+)\s*$")


class PathState(enum.StrEnum):
    """How the kernel's path for (part of) a destination differs from the plan."""

    #: A more specific route takes part of the destination elsewhere.
    SHADOWED = "shadowed"
    #: A route of the same prefix with a lower metric wins over the planned one.
    OVERRIDDEN = "overridden by a lower metric"
    #: A policy rule sends the traffic to another table, which routes it elsewhere.
    OTHER_TABLE = "sent to another table"
    #: A blackhole, unreachable or prohibit route or rule drops it.
    DROPPED = "dropped"
    #: No route at all: "Network is unreachable".
    NO_ROUTE = "no route"
    #: The route the kernel uses goes elsewhere (another gateway, a device, less specific).
    ELSEWHERE = "sent elsewhere"
    #: The host's own pod CIDR is not delivered on its bridge.
    OWN_NOT_ON_BRIDGE = "own pod CIDR not on its bridge"
    #: The model cannot tell (a rule on marks, users, ports...) and the kernel was not asked.
    UNCERTAIN = "uncertain"
    #: The kernel's own answer differs from the model's: reported, not guessed.
    KERNEL_DISAGREES = "kernel disagrees"


@dataclass(frozen=True, slots=True)
class PathIssue:
    """One way the kernel's path for a destination differs from the plan."""

    dst: IPNetwork  # the planned destination (another node's pod CIDR, or the host's own)
    part: IPNetwork  # the part of it affected
    state: PathState
    wanted: str  # "via 192.168.10.102 (node-1)", or "on the bridge"
    decision: Decision  # what the kernel does (the model's decision)
    detail: str  # one sentence a person reads: what takes the traffic, and where
    own: bool = False  # the host's own pod CIDR
    #: The kernel's answer, when it disagrees with the model (or confirms an issue).
    kernel: str | None = None

    @property
    def route(self) -> Route | None:
        """The route that takes the traffic (``None``: a rule's own action, no route)."""
        return self.decision.route


@dataclass(frozen=True, slots=True)
class PathFacts:
    """What :func:`path_commands` read from one host."""

    rules: Mapping[Family, tuple[Rule, ...]] = field(default_factory=dict)
    #: Tables other than main, by family and number, in the kernel's order.
    tables: Mapping[Family, Mapping[int, Sequence[Route]]] = field(default_factory=dict)
    #: ``ip route get`` per sample address: the answer, or the kind of its error.
    answers: Mapping[IPAddress, RouteGetAnswer | DecisionKind] = field(default_factory=dict)
    #: What could not be read, in the host's words (the verdict is then the model's).
    unreadable: tuple[str, ...] = ()


def destinations(host: Host, planned: Sequence[PlannedRoute]) -> list[IPNetwork]:
    """Every destination whose path is judged: the planned routes and the own pod CIDRs."""
    return [r.dst for r in planned] + list(host.pod_cidrs)


def samples(networks: Sequence[IPNetwork], per: int = SAMPLES_PER_DESTINATION,
            ) -> list[IPAddress]:
    """The addresses asked of the kernel: the first and last host address of each."""
    out: list[IPAddress] = []
    for n in networks:
        size = n.num_addresses
        if size <= 2:
            out.append(n.network_address)
            continue
        first = n.network_address + 1
        last = n.broadcast_address - 1 if n.version == 4 else n.broadcast_address
        out += [first, last][:per]
    return list(dict.fromkeys(out))


def path_commands(addresses: Sequence[IPAddress]) -> list[tuple[tuple[str, ...], str | None]]:
    """(argv, stdin) of the commands :func:`parse_path_facts` reads, in its order: the
    rules and tables, then (when there are ``addresses``) one ``ip -batch`` of
    ``route get`` lines."""
    commands: list[tuple[tuple[str, ...], str | None]] = [(("sh", "-c", TABLES_SCRIPT), None)]
    if addresses:
        gets = "".join(f"route get {a}\n" for a in addresses)
        commands.append((("ip", "-j", "-force", "-batch", "-"), gets))
    return commands


def _rt_tables(text: str) -> dict[str, int]:
    names = dict(TABLE_NAMES)
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0].isdigit():
            names.setdefault(words[1], int(words[0]))
    return names


def parse_tables(text: str) -> tuple[dict[Family, tuple[Rule, ...]],
                                     dict[Family, dict[int, list[Route]]], list[str]]:
    """:data:`TABLES_SCRIPT`'s output: rules and the named tables per family, and what
    could not be read (a family whose rules are unread keeps the kernel's defaults)."""
    records = text.split(MARK)[1:]
    names = _rt_tables("\n".join(r[2:] for r in records if r.startswith("N\n")))
    rules: dict[Family, tuple[Rule, ...]] = {}
    tables: dict[Family, dict[int, list[Route]]] = {}
    unread: list[str] = []
    for record in records:
        header, _, body = record.partition("\n")
        words = header.split()
        if not words or words[0] not in ("R", "T", "U") or len(words) < 2:
            continue
        family = Family.V4 if words[1] == "4" else Family.V6
        if words[0] == "U":
            unread.append(f"IPv{family.value} rules: {body.strip()[:120] or 'not readable'}")
            continue
        if words[0] == "R":
            parsed = tuple(parse_rules(body, family, names))
            if parsed:  # the kernel always has rule 0: none read means nothing learnt
                rules[family] = parsed
            continue
        name = words[2] if len(words) > 2 else ""
        number = names.get(name) if not name.isdigit() else int(name)
        if number is None:
            raise ParseError(f"table {name!r} is named by a rule but in no rt_tables file")
        tables.setdefault(family, {})[number] = parse_routes(body, family, number)
    return rules, tables, unread


def parse_gets(addresses: Sequence[IPAddress], stdout: str, stderr: str,
               ) -> dict[IPAddress, RouteGetAnswer | DecisionKind]:
    """``ip -j -force -batch -`` of ``route get`` lines: each success prints one line of
    JSON in order, each failure "Command failed -:N" after its message on stderr."""
    failed: dict[int, str] = {}
    previous: list[str] = []
    for line in stderr.splitlines():
        match = _FAILED_LINE.match(line)
        if match:
            failed[int(match.group(1)) - 1] = " ".join(previous)
            previous = []
        elif line.strip():
            previous.append(line.strip())
    printed = iter(line for line in stdout.splitlines() if line.strip())
    out: dict[IPAddress, RouteGetAnswer | DecisionKind] = {}
    for index, address in enumerate(addresses):
        if index in failed:
            out[address] = parse_route_get_error(failed[index])
        else:
            text = next(printed, None)
            if text is None:
                break  # ip stopped early; what was not answered stays unconfirmed
            out[address] = parse_route_get(text, Family.of(address))
    return out


def parse_path_facts(addresses: Sequence[IPAddress],
                     outputs: Sequence[tuple[int, str, str]]) -> PathFacts:
    """The outputs (status, stdout, stderr) of :func:`path_commands` for ``addresses``."""
    unreadable: list[str] = []
    rules: dict[Family, tuple[Rule, ...]] = {}
    others: dict[Family, dict[int, list[Route]]] = {}
    try:
        rules, others, unread = parse_tables(outputs[0][1])
        unreadable += unread
    except ParseError as exc:
        unreadable.append(f"rules and tables: {exc}")
    answers: dict[IPAddress, RouteGetAnswer | DecisionKind] = {}
    if addresses and len(outputs) > 1:
        try:
            answers = parse_gets(addresses, outputs[1][1], outputs[1][2])
        except ParseError as exc:
            unreadable.append(f"ip route get: {exc}")
    return PathFacts(rules, {f: dict(t) for f, t in others.items()}, answers,
                     tuple(unreadable))


# --- the verdict ---------------------------------------------------------------------------


def _route_text(r: Route) -> str:
    how = (f"via {r.gateway}" if r.gateway else
           "via " + ",".join(map(str, r.nexthops)) if r.nexthops else
           r.type if r.type != "unicast" else f"dev {r.dev}")
    where = "" if r.table == MAIN_TABLE else f" table {r.table}"
    metric = f" metric {r.metric}" if r.metric else ""
    dev = f" dev {r.dev}" if r.dev and (r.gateway or r.nexthops) else ""
    return f"{r.dst} {how}{dev}{metric} proto {protocol_name(r.protocol)}{where}"


def _classify(dst: IPNetwork, gateway: IPAddress, decision: Decision,
              main: Sequence[Route]) -> tuple[PathState, str] | None:
    """Why the decision for (part of) a planned ``dst via gateway`` is wrong; ``None``: it
    sends to the planned gateway."""
    kind, route = decision.kind, decision.route
    if kind is DecisionKind.VIA and gateway in decision.gateways:
        return None
    if kind is DecisionKind.UNCERTAIN:
        if decision.candidates and all(
                c.kind is DecisionKind.VIA and gateway in c.gateways for c in decision.candidates):
            return None
        return PathState.UNCERTAIN, f"the model cannot tell: {decision.reason}"
    if kind is DecisionKind.NO_ROUTE:
        return PathState.NO_ROUTE, "no route matches: the kernel answers Network is unreachable"
    if route is None:  # a rule's own action
        return PathState.DROPPED, f"policy rule {decision.priority} {kind.value}s it"
    text = _route_text(route)
    if kind in (DecisionKind.BLACKHOLE, DecisionKind.UNREACHABLE, DecisionKind.PROHIBIT):
        return PathState.DROPPED, f"dropped by {text}"
    if route.table != MAIN_TABLE:
        return PathState.OTHER_TABLE, (f"policy rule {decision.priority} sends it to table "
                                       f"{route.table}, where {text} takes it")
    if route.dst.prefixlen > dst.prefixlen:
        return PathState.SHADOWED, f"shadowed by the more specific {text}"
    if route.dst == dst and any(
            r.dst == dst and r.gateway == gateway and r.table == MAIN_TABLE
            and r.effective_metric > route.effective_metric for r in main):
        return PathState.OVERRIDDEN, f"{text} has a lower metric and wins over the planned route"
    return PathState.ELSEWHERE, f"{text} takes it"


def _on_bridge(decision: Decision, bridge: str | None) -> bool:
    """Delivered on the bridge: its connected route, or (for the bridge's own address and
    the CIDR's broadcast address) the local table's routes on it."""
    route = decision.route
    return (decision.kind in (DecisionKind.CONNECTED, DecisionKind.LOCAL)
            and route is not None and route.dev != "lo"
            and (bridge is None or route.dev == bridge))


def _classify_own(dst: IPNetwork, decision: Decision, bridge: str | None,
                  ) -> tuple[PathState, str] | None:
    """Why the host's own pod CIDR is not delivered on its bridge; ``None``: it is."""
    kind, route = decision.kind, decision.route
    if _on_bridge(decision, bridge):
        return None
    if kind is DecisionKind.UNCERTAIN:
        if decision.candidates and all(_on_bridge(c, bridge) for c in decision.candidates):
            return None
        return PathState.UNCERTAIN, f"the model cannot tell: {decision.reason}"
    where = f"on {bridge}" if bridge else "on a bridge"
    if route is None:
        return PathState.OWN_NOT_ON_BRIDGE, (
            f"this host's pods are not reachable {where}: "
            + ("no route matches" if kind is DecisionKind.NO_ROUTE
               else f"policy rule {decision.priority} {kind.value}s it"))
    if route.dst.prefixlen < dst.prefixlen and route.table == MAIN_TABLE:
        why = (f"there is no route for it {where} (the bridge is gone, has no address in "
               f"{dst}, or no pod has started yet), so {_route_text(route)} takes it")
    else:
        why = f"{_route_text(route)} takes it instead of the bridge"
    return PathState.OWN_NOT_ON_BRIDGE, why


class _Answers:
    """The kernel's answers sorted by address, so the answers inside a part are found by
    bisection (10,000 answers and 5,000 destinations: a lookup each, not 50 million
    containment tests)."""

    def __init__(self, answers: Mapping[IPAddress, RouteGetAnswer | DecisionKind]) -> None:
        self._by_version: dict[int, tuple[list[int], list[tuple[IPAddress, Any]]]] = {}
        for version in (4, 6):
            found = sorted(((int(a), a, v) for a, v in answers.items() if a.version == version),
                           key=lambda item: item[0])
            self._by_version[version] = ([k for k, _, _ in found],
                                         [(a, v) for _, a, v in found])

    def inside(self, part: IPNetwork) -> list[tuple[IPAddress, RouteGetAnswer | DecisionKind]]:
        keys, values = self._by_version[part.version]
        low = bisect.bisect_left(keys, int(part.network_address))
        high = bisect.bisect_right(keys, int(part.broadcast_address))
        return values[low:high]


def _kernel_check(part: IPNetwork, decision: Decision, answers: _Answers,
                  ) -> tuple[bool, str | None]:
    """(whether every kernel answer inside ``part`` agrees with ``decision``, the first
    disagreeing answer as text, else the first agreeing one, else ``None``)."""
    seen = None
    for address, answer in answers.inside(part):
        text = f"{address}: {answer}" if isinstance(answer, RouteGetAnswer) \
            else f"{address}: {answer.value}"
        if not agrees(decision, answer):
            return False, text
        seen = seen or text
    return True, seen


def judge_paths(host: Host, planned: Sequence[PlannedRoute], main: Sequence[Route],
                facts: PathFacts, bridge: str | None = None) -> list[PathIssue]:
    """Every way the kernel's path for a destination of ``host`` differs from the plan.

    ``main`` is the host's main table (both families) as the engine read it; ``facts``
    the rules, other tables and kernel answers. Each planned route must send its whole
    pod CIDR to its gateway; each own pod CIDR must be delivered on ``bridge`` (any
    bridge when ``None``: status does not know its name). Decided for packets the host
    sends (as ``ip route get DST`` asks); where policy rules exist beyond the kernel's
    defaults, also for a pod's packets forwarded in from the bridge."""
    issues: list[PathIssue] = []
    answers = _Answers(facts.answers)
    by_family: dict[Family, list[Route]] = {}
    for route in main:
        by_family.setdefault(route.family, []).append(route)
    for family in Family:
        wanted = [r for r in planned if r.family is family]
        own = [c for c in host.pod_cidrs if c.version == family]
        if not wanted and not own:
            continue
        rules = facts.rules.get(family, DEFAULT_RULES[family])
        tables: dict[int, Sequence[Route]] = dict(facts.tables.get(family, {}))
        tables[MAIN_TABLE] = by_family.get(family, [])
        fib = Fib(rules, tables)
        flows: list[tuple[IPAddress | None, str | None, str]] = [(None, None, "")]
        if own and tuple(rules) != DEFAULT_RULES[family]:
            # a pod's address (the first after the bridge's own), as a pod sends from
            flows.append((own[0].network_address + 2, bridge or "cni0", " (pod traffic)"))
        for src, iif, label in flows:
            for r in wanted:
                for part in fib.decide_network(r.dst, src=src, iif=iif):
                    found = _classify(r.dst, r.gateway, part.decision, tables[MAIN_TABLE])
                    issues += _issue(r.dst, part.network, found, part.decision, answers,
                                     f"via {r.gateway} ({r.via_host})", label, src is None)
            for cidr in own:
                for part in fib.decide_network(cidr, src=src, iif=iif):
                    found = _classify_own(cidr, part.decision, bridge)
                    issues += _issue(cidr, part.network, found, part.decision, answers,
                                     f"on {bridge or 'its bridge'}", label, src is None, own=True)
    return _grouped(issues)


def _grouped(issues: Sequence[PathIssue]) -> list[PathIssue]:
    """One issue per destination, state and decision: the parts one route takes are
    merged (a blackhole over a /24 whose bridge address is still local is one issue, not
    fourteen), and a pod's packets going the way the host's own do are said once."""
    groups: dict[tuple[IPNetwork, PathState, Decision], list[PathIssue]] = {}
    for issue in issues:
        groups.setdefault((issue.dst, issue.state, issue.decision), []).append(issue)
    out = []
    for (dst, _, _), members in groups.items():
        unique = sorted({m.part for m in members}, key=lambda n: int(n.network_address))
        parts: list[IPNetwork] = list(collapse_addresses(unique))  # type: ignore[type-var]
        first = members[0]
        if len(parts) == 1:
            out.append(replace(first, part=parts[0]))
        else:
            size = sum(p.num_addresses for p in parts)
            out.append(replace(first, part=dst, detail=first.detail + (
                f" (for {size} of its {dst.num_addresses} addresses)")))
    return out


def _issue(dst: IPNetwork, part: IPNetwork, found: tuple[PathState, str] | None,
           decision: Decision, answers: _Answers, wanted: str, label: str, asked: bool,
           own: bool = False) -> list[PathIssue]:
    """The issue for one part, checked against the kernel's answers (which were asked
    for the host's own packets only: ``asked``)."""
    agree, kernel = _kernel_check(part, decision, answers) if asked else (True, None)
    if not agree:
        return [PathIssue(dst, part, PathState.KERNEL_DISAGREES, wanted, decision,
                          f"the model says {decision}, the kernel answers {kernel}: "
                          "podroutes reports this instead of guessing", own, kernel)]
    if found is None:
        return []
    state, detail = found
    return [PathIssue(dst, part, state, wanted, decision, detail + label, own, kernel)]
