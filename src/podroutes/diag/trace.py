"""``podroutes trace``: the path a packet takes, hop by hop, by longest-prefix match.

Pure. A :class:`Network` is every host's routing table and local addresses, either
synthesised from the inventory and the plan (:func:`planned_network`: the planned routes,
plus the connected node network and the host's own pod CIDR on its bridge) or built from
tables read on the hosts (:func:`observed_network`). :func:`simulate` follows a packet
from a pod or node to another and ends in one :class:`Outcome`. :func:`kernel_query` and
:func:`compare` turn ``ip route get`` answers (``--live``) into disagreements. Dual-stack:
everything works per address family. Called by :mod:`podroutes.cli.diag` and
:mod:`podroutes.diag.wire`; drawn by :mod:`podroutes.diag.trace_draw`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network

from podroutes.core.decision import Decision, DecisionKind
from podroutes.core.errors import UsageError
from podroutes.core.forwarding import Fib
from podroutes.core.iproute import IFNAME_RE
from podroutes.core.model import MAIN_TABLE, Family, IPAddress, IPNetwork, Route
from podroutes.core.paths import PathFacts
from podroutes.core.plan import RoutePlan
from podroutes.core.rules import DEFAULT_RULES, Rule
from podroutes.diag.facts import FORWARDING_SYSCTL
from podroutes.diag.firewall import Chain, Flow, Ruleset, evaluate_nat

HOP_LIMIT = 64
_KERNEL = 2  # proto kernel: connected routes
_DROP_TYPES = {"blackhole", "unreachable", "prohibit", "throw"}
_DROPS = {DecisionKind.BLACKHOLE, DecisionKind.UNREACHABLE, DecisionKind.PROHIBIT}


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    NO_ROUTE = "dropped: no route"
    BLACKHOLE = "dropped: blackhole"
    FORWARDING_OFF = "dropped: forwarding off"
    LOOPED = "looped"
    LEFT_CLUSTER = "left the cluster"
    #: The model cannot tell which way the kernel sends it (a rule on firewall marks...).
    UNCERTAIN = "uncertain: the kernel may route it more than one way"
    #: The path reaches a host whose table could not be read: nothing is claimed past it.
    UNKNOWN = "unknown: a host on the path was not read"


class EndpointKind(enum.StrEnum):
    POD = "pod"
    NODE = "node"


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: EndpointKind
    address: IPAddress
    host: str  # the node itself, or the node whose pod CIDR holds the pod


@dataclass(frozen=True, slots=True)
class TraceHost:
    name: str
    addresses: tuple[IPAddress, ...]
    pod_cidrs: tuple[IPNetwork, ...]
    routes: tuple[Route, ...]
    #: Every address the host owns, with the interface it is on.
    local: Mapping[IPAddress, str] = field(default_factory=dict)
    bridge: str = "cni0"
    #: Whether the host forwards packets of each family (``ip_forward``); a family not
    #: listed is taken to forward (the plan assumes it, and doctor checks it).
    forwarding: Mapping[Family, bool] = field(default_factory=dict)
    #: Why this host's table is unknown (unreachable, not selected); ``None``: it is known.
    unread: str | None = None
    #: Policy rules per family (none: the kernel's defaults) and the tables other than
    #: main they look up, as read from the host.
    rules: Mapping[Family, Sequence[Rule]] = field(default_factory=dict)
    tables: Mapping[Family, Mapping[int, Sequence[Route]]] = field(default_factory=dict)
    fqdn: str | None = None
    #: The nat chains on the postrouting hook, per family (``--observed``); none: no NAT.
    nat: Mapping[Family, Sequence[tuple[Chain, Ruleset]]] = field(default_factory=dict)
    #: The subnets the host's CNI bridge plugin hands out, when its config was read.
    cni: tuple[IPNetwork, ...] | None = None

    def fib(self, family: Family) -> Fib:
        """This host's forwarding decision for one family: its rules and every table."""
        tables: dict[int, Sequence[Route]] = dict(self.tables.get(family, {}))
        tables[MAIN_TABLE] = [r for r in self.routes
                              if r.family is family and r.table == MAIN_TABLE]
        return Fib(self.rules.get(family, DEFAULT_RULES[family]), tables)


@dataclass(frozen=True, slots=True)
class Network:
    hosts: tuple[TraceHost, ...]
    source: str  # "plan" or "observed"

    def host(self, name: str) -> TraceHost:
        return next(h for h in self.hosts if h.name == name)

    def owner(self, address: IPAddress) -> TraceHost | None:
        """The host that has ``address`` (a node address, its bridge's, any local one)."""
        return next((h for h in self.hosts if address in h.local or address in h.addresses),
                    None)

    def pod_host(self, address: IPAddress) -> TraceHost | None:
        return next((h for h in self.hosts for c in h.pod_cidrs
                     if c.version == address.version and address in c), None)


@dataclass(frozen=True, slots=True)
class Hop:
    host: str
    arrived_on: str | None  # None: the packet starts here (from the node itself)
    route: Route | None
    next_address: IPAddress | None = None  # the gateway, or the destination on-link
    next_host: str | None = None
    note: str = ""
    #: The source after this hop's nat POSTROUTING rewrote it (None: left as it was).
    rewritten: IPAddress | None = None
    nat_by: str = ""  # the chain (and rule) that rewrote it


@dataclass(frozen=True, slots=True)
class Trace:
    src: Endpoint
    dst: Endpoint
    outcome: Outcome
    hops: tuple[Hop, ...]
    reason: str
    loop: tuple[str, ...] = ()
    source: str = "plan"
    #: What else the path shows: a NAT on the way, an address the CNI config contradicts.
    notes: tuple[str, ...] = ()


def _node_network(addresses: Sequence[IPAddress]) -> IPNetwork:
    """The smallest network (at least a /24 or /64) holding every node address."""
    first = addresses[0]
    prefix = 24 if first.version == 4 else 64
    while True:
        net = ip_network(f"{first}/{prefix}", strict=False)
        if all(a in net for a in addresses) or prefix == 0:
            return net
        prefix -= 1


def planned_network(route_plan: RoutePlan, protocol: int, node_dev: str = "eth0",
                    bridge: str = "cni0") -> Network:
    """Each host's table as the plan makes it: planned routes, the connected node network
    on ``node_dev`` and the host's own pod CIDRs on ``bridge``."""
    inventory = route_plan.inventory
    nets = {}
    for family in Family:
        addresses = [a for h in inventory if (a := h.address(family)) is not None]
        if addresses:
            nets[family] = _node_network(addresses)
    hosts = []
    for host, planned in route_plan:
        routes = [Route(dst=r.dst, gateway=r.gateway, dev=node_dev, protocol=protocol)
                  for r in planned]
        local: dict[IPAddress, str] = {a: node_dev for a in host.addresses}
        for address in host.addresses:
            routes.append(Route(dst=nets[Family.of(address)], dev=node_dev, protocol=_KERNEL,
                                scope="link"))
        for cidr in host.pod_cidrs:
            routes.append(Route(dst=cidr, dev=bridge, protocol=_KERNEL, scope="link"))
            local[cidr.network_address + 1] = bridge
        hosts.append(TraceHost(host.name, host.addresses, host.pod_cidrs, tuple(routes),
                               local, bridge, fqdn=host.fqdn))
    return Network(tuple(hosts), "plan")


def observed_network(route_plan: RoutePlan, tables: Mapping[str, Sequence[Route]],
                     local: Mapping[str, Mapping[IPAddress, str]],
                     bridge: str = "cni0", *,
                     forwarding: Mapping[str, Mapping[Family, bool]] | None = None,
                     unread: Mapping[str, str] | None = None,
                     paths: Mapping[str, PathFacts] | None = None,
                     nat: Mapping[str, Mapping[Family, Sequence[tuple[Chain, Ruleset]]]]
                     | None = None,
                     cni: Mapping[str, tuple[IPNetwork, ...]] | None = None) -> Network:
    """Each host's real main table, addresses and forwarding, as read from it, with its
    policy rules and other tables (``paths``), its nat chains and the subnets its CNI
    config hands out. A host without a table is ``unread`` (with the reason given, or
    "not read")."""
    hosts = []
    for h in route_plan.inventory:
        seen = (paths or {}).get(h.name)
        hosts.append(TraceHost(
            h.name, h.addresses, h.pod_cidrs, tuple(tables.get(h.name, ())),
            dict(local.get(h.name, {})), bridge, dict((forwarding or {}).get(h.name, {})),
            None if h.name in tables else (unread or {}).get(h.name, "not read"),
            dict(seen.rules) if seen else {}, dict(seen.tables) if seen else {}, h.fqdn,
            dict((nat or {}).get(h.name, {})), (cni or {}).get(h.name)))
    return Network(tuple(hosts), "observed")


def _endpoint(network: Network, text: str, family: Family | None) -> Endpoint | str:
    """An endpoint, or (for a host name whose family is still open) the host's name."""
    try:
        address = ip_address(text)
    except ValueError:
        host = next((h for h in network.hosts
                     if text in (h.name, h.fqdn, f"{h.fqdn}.")), None)
        if host is None:
            names = ", ".join(h.name for h in network.hosts[:10])
            more = ", ..." if len(network.hosts) > 10 else ""
            raise UsageError(f"{text!r} is neither an IP address nor a host of the "
                             f"inventory ({names}{more})") from None
        return host.name
    if address.version == 6 and address.ipv4_mapped is not None:
        raise UsageError(f"{text} is an IPv4-mapped IPv6 address: trace "
                         f"{address.ipv4_mapped} instead")
    node = network.owner(address)
    if node is not None and address in node.addresses:
        return Endpoint(EndpointKind.NODE, address, node.name)
    pod_host = network.pod_host(address)
    if pod_host is None:
        same = [str(c) for h in network.hosts for c in h.pod_cidrs
                if c.version == address.version]
        cidrs = ", ".join(same[:6]) + (", ..." if len(same) > 6 else "")
        raise UsageError(f"{address} is in no pod CIDR ({cidrs or 'none'}) and is no "
                         f"node's address (a pod can have such an address when its node's "
                         f"CNI config hands out another subnet: `podroutes doctor` reports "
                         f"that as cni-subnet-mismatch)")
    cidr = next(c for c in pod_host.pod_cidrs if address in c)
    if address == cidr.network_address:
        raise UsageError(f"{text} is the network address of {cidr} ({pod_host.name}), "
                         "not a pod")
    if cidr.version == 4 and address == cidr.broadcast_address:
        raise UsageError(f"{text} is the broadcast address of {cidr} ({pod_host.name}), "
                         "not a pod")
    if address == cidr.network_address + 1:  # the bridge's own address: the node itself
        return Endpoint(EndpointKind.NODE, address, pod_host.name)
    return Endpoint(EndpointKind.POD, address, pod_host.name)


def resolve(network: Network, src: str, dst: str) -> tuple[Endpoint, Endpoint]:
    """SRC and DST as the user wrote them (pod IP, node IP or host name) → endpoints of
    one family. Raises :class:`UsageError` (exit 2) on anything else."""
    a, b = _endpoint(network, src, None), _endpoint(network, dst, None)
    family = next((Family.of(e.address) for e in (a, b) if isinstance(e, Endpoint)), None)

    def pin(e: Endpoint | str) -> Endpoint:
        if isinstance(e, Endpoint):
            return e
        host = network.host(e)
        fam = family or (Family.V4 if any(x.version == 4 for x in host.addresses)
                         else Family.V6)
        address = next((x for x in host.addresses if x.version == fam), None)
        if address is None:
            raise UsageError(f"host {e} has no IPv{fam.value} address")
        return Endpoint(EndpointKind.NODE, address, host.name)

    first = pin(a)
    family = family or Family.of(first.address)
    second = pin(b)
    if first.address.version != second.address.version:
        raise UsageError(f"{src} is IPv{first.address.version} but {dst} is "
                         f"IPv{second.address.version}: trace one family at a time")
    return first, second


def decide(host: TraceHost, dst: IPAddress, src: IPAddress, arrived: str | None) -> Decision:
    """What ``host``'s kernel does with the packet: the model of
    :mod:`podroutes.core.forwarding` over its rules and tables, for a packet the host
    sends itself (``arrived`` None) or one forwarded in from ``arrived``."""
    fib = host.fib(Family.of(dst))
    if arrived is None:
        return fib.decide(dst)
    return fib.decide(dst, src=src, iif=arrived)


def cni_notes(network: Network, *endpoints: Endpoint) -> list[str]:
    """What the hosts' CNI configs (when read) say against the inventory about the pods
    at either end: an address of a node's pod CIDR that its CNI never hands out
    (cni-subnet-mismatch)."""
    out = []
    for e in endpoints:
        host = network.host(e.host)
        if e.kind is not EndpointKind.POD or host.cni is None:
            continue
        handed = [c for c in host.cni if c.version == e.address.version]
        cidr = next((c for c in host.pod_cidrs if e.address in c), None)
        shown = ", ".join(str(c) for c in handed) or "no such addresses"
        if cidr is not None and not any(e.address in c for c in handed):
            out.append(f"{e.address} is in {host.name}'s pod CIDR {cidr}, but "
                       f"{host.name}'s CNI hands out {shown} (cni-subnet-mismatch): no pod "
                       f"on {host.name} has this address")
    return out


def _nat(here: TraceHost, source: IPAddress, dst: IPAddress, arrived: str | None,
         dev: str | None) -> tuple[IPAddress, str] | None:
    """The source after ``here``'s nat POSTROUTING chains, and what rewrote it; None when
    they leave it alone (or were not read). A masquerade takes the out interface's
    address of the source's family (the host's inventory address when it is there)."""
    family = Family.of(dst)
    one = 32 if family is Family.V4 else 128
    flow = Flow("trace", ip_network(f"{source}/{one}"), ip_network(f"{dst}/{one}"),
                arrived or "", dev or "")
    for chain, ruleset in here.nat.get(family, ()):
        decided = evaluate_nat(chain, flow, ruleset)
        if not decided.nat:
            continue
        on_dev = [a for a, d in here.local.items() if d == dev and a.version == dst.version]
        new = next((a for a in here.addresses if a in on_dev), on_dev[0] if on_dev else None)
        if new is None:
            return None
        where = decided.chain or chain
        return new, f"{where.name} ({chain.label})"
    return None


def simulate(network: Network, src: Endpoint, dst: Endpoint,
             hop_limit: int = HOP_LIMIT) -> Trace:
    hops: list[Hop] = []
    here = network.host(src.host)
    arrived: str | None = here.bridge if src.kind is EndpointKind.POD else None
    seen: dict[str, int] = {}
    source = src.address  # as the packet carries it: a NAT on the way rewrites it
    notes = cni_notes(network, src, dst)

    def end(outcome: Outcome, reason: str, loop: tuple[str, ...] = ()) -> Trace:
        return Trace(src, dst, outcome, tuple(hops), reason, loop, network.source,
                     tuple(notes))

    while True:
        if here.name in seen or len(hops) >= hop_limit:
            cycle = (*(h.host for h in hops[seen.get(here.name, 0):]), here.name)
            return end(Outcome.LOOPED, f"the packet returns to {here.name}: "
                       f"{' → '.join(cycle)}; it circles until its TTL runs out", cycle)
        seen[here.name] = len(hops)
        if here.unread is not None:
            hops.append(Hop(here.name, arrived, None, note=f"not read: {here.unread}"))
            return end(Outcome.UNKNOWN, f"{here.name} is on the path but its table could not "
                       f"be read ({here.unread}): the rest of the path is unknown")
        if dst.address in here.local:
            hops.append(Hop(here.name, arrived, None, note=f"{dst.address} is local"))
            return end(Outcome.DELIVERED, f"{dst.address} is an address of {here.name}")
        family = Family.of(dst.address)
        decision = decide(here, dst.address, source, arrived)
        bridged = (decision.kind is DecisionKind.CONNECTED and decision.route is not None
                   and arrived is not None and decision.route.dev == arrived)
        if arrived is not None and not bridged and not here.forwarding.get(family, True):
            # The packet came from a pod or another host and is not for this host: the
            # kernel drops it unless it forwards this family (a pod's packet for a pod on
            # the same bridge is switched there, never routed).
            sysctl = FORWARDING_SYSCTL[family]
            hops.append(Hop(here.name, arrived, None, note=f"{sysctl} = 0"))
            return end(Outcome.FORWARDING_OFF, f"dropped at {here.name}: forwarding off "
                       f"({sysctl} = 0), so it does not pass packets on")
        if decision.kind is DecisionKind.UNCERTAIN:
            hops.append(Hop(here.name, arrived, decision.route, note=decision.reason))
            return end(Outcome.UNCERTAIN, f"{here.name}'s kernel may route it more than one "
                       f"way: {decision.reason}")
        route = decision.route
        if decision.kind is DecisionKind.NO_ROUTE:
            hops.append(Hop(here.name, arrived, None, note="no route matches"))
            return end(Outcome.NO_ROUTE, f"{here.name} has no route to {dst.address} "
                       f"(and no default route)")
        if decision.kind in _DROPS or route is None:
            what = (f"{route.type} {route.dst}" if route is not None else
                    f"policy rule {decision.priority} ({decision.kind.value})")
            hops.append(Hop(here.name, arrived, route, note=f"dropped: {what}"))
            return end(Outcome.BLACKHOLE, f"{here.name} drops it: {what}")
        if decision.kind is DecisionKind.LOCAL:
            hops.append(Hop(here.name, arrived, route, note=f"{dst.address} is local"))
            return end(Outcome.DELIVERED, f"{dst.address} is delivered to {here.name} itself "
                       f"({route.type} route)")
        gateway = route.gateway or (route.nexthops[0] if route.nexthops else None)
        note = "multipath: the first nexthop is shown" if route.nexthops else ""
        if gateway is None:  # on-link: the destination itself is the next hop
            if route.dev == here.bridge and any(dst.address in c for c in here.pod_cidrs):
                hops.append(Hop(here.name, arrived, route, dst.address))
                return end(Outcome.DELIVERED, f"{here.name} hands it to pod {dst.address} "
                           f"on {here.bridge}")
            nxt = network.owner(dst.address)
        else:
            nxt = network.owner(gateway)
        target = gateway or dst.address
        if nxt is None or nxt.name == here.name:
            hops.append(Hop(here.name, arrived, route, target, None, note))
            how = "the default route" if route.dst.prefixlen == 0 else f"route {route.dst}"
            return end(Outcome.LEFT_CLUSTER, f"{here.name} sends it out of the cluster by "
                       f"{how} via {target}{f' dev {route.dev}' if route.dev else ''}, "
                       f"which is no host of the inventory")
        nat = _nat(here, source, dst.address, arrived, route.dev)
        if nat is not None:
            notes.append(f"source rewritten to {nat[0]} at {here.name} by {nat[1]}: "
                         f"{dst.address} sees {nat[0]}, not {src.address} (pod-to-pod-nat)")
            source = nat[0]
        hops.append(Hop(here.name, arrived, route, target, nxt.name, note,
                        nat[0] if nat else None, nat[1] if nat else ""))
        arrived = nxt.local.get(target, route.dev)
        here = nxt


# --- --live: the kernel's own answer ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KernelAnswer:
    local: bool = False
    gateway: IPAddress | None = None
    dev: str | None = None
    error: str | None = None

    def __str__(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if self.local:
            return "local"
        return f"{f'via {self.gateway} ' if self.gateway else ''}dev {self.dev}"


@dataclass(frozen=True, slots=True)
class Disagreement:
    host: str
    expected: str
    kernel: KernelAnswer


def kernel_query(hop: Hop, trace: Trace) -> tuple[str, ...]:
    """The ``ip route get`` that asks ``hop``'s kernel what it does with the packet:
    as forwarded traffic (``from SRC iif DEV``) when it arrived from elsewhere."""
    argv = ("ip", "-j", "route", "get", str(trace.dst.address))
    source = trace.src.address  # as the packet arrives: after a NAT on an earlier hop
    for earlier in trace.hops[:trace.hops.index(hop)] if hop in trace.hops else ():
        source = earlier.rewritten or source
    if hop.arrived_on is None:
        return (*argv, "from", str(source))
    if not IFNAME_RE.match(hop.arrived_on):
        raise ValueError(f"not an interface name: {hop.arrived_on!r}")
    return (*argv, "from", str(source), "iif", hop.arrived_on)


def parse_route_get(status: int, stdout: str, stderr: str) -> KernelAnswer:
    if status != 0:
        message = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {status}"
        return KernelAnswer(error=message.removeprefix("RTNETLINK answers: "))
    try:
        entry = json.loads(stdout)[0]
        gateway = ip_address(entry["gateway"]) if "gateway" in entry else None
    except (ValueError, IndexError, KeyError, TypeError):
        return KernelAnswer(error=f"unreadable answer: {stdout.strip()[:80]}")
    return KernelAnswer(entry.get("type") == "local", gateway, entry.get("dev"))


def expected(hop: Hop) -> str:
    if hop.route is None:
        if hop.note.endswith("is local"):
            return "local"
        return "error: forwarding off" if hop.note.endswith("= 0") else "error: no route"
    if hop.route.type in _DROP_TYPES:
        return f"error: {hop.route.type}"
    gateway = hop.route.gateway or (hop.route.nexthops[0] if hop.route.nexthops else None)
    return f"{f'via {gateway} ' if gateway else ''}dev {hop.route.dev}"


def compare(hop: Hop, answer: KernelAnswer) -> Disagreement | None:
    """None when the kernel does what the simulation says at this hop."""
    want = expected(hop)
    if want.startswith("error:"):
        agree = answer.error is not None
    elif want == "local":
        agree = answer.local
    else:
        route = hop.route
        assert route is not None
        gateway = route.gateway or (route.nexthops[0] if route.nexthops else None)
        agree = (answer.error is None and not answer.local and answer.gateway == gateway
                 and (route.dev is None or answer.dev == route.dev or bool(route.nexthops)))
    return None if agree else Disagreement(hop.host, want, answer)
