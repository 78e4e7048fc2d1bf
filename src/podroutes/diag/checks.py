"""``podroutes doctor``'s checks: host facts and the plan in, findings out.

Pure. :func:`check_all` runs every per-host check on each host's
:class:`~podroutes.diag.facts.HostFacts` and the cross-host checks (MTU) on all of them, and
returns :class:`~podroutes.diag.findings.Finding` values in inventory order. The firewall
checks live in :mod:`podroutes.diag.firewall_checks`. Called by :mod:`podroutes.diag.wire`.

A route or rule podroutes does not own is reported only when the kernel's decision for a
planned destination or the host's own pod CIDR goes through it (:mod:`.path_checks`),
besides podroutes' own stale routes and routes inside the host's own pod CIDR; unrelated
routes and rules are left alone.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from podroutes.core.addresses import choose_gateway_address, unfit_reason
from podroutes.core.diff import Action, RouteState, diff
from podroutes.core.forwarding import Fib
from podroutes.core.iproute import batch_line, route_spec
from podroutes.core.model import MAIN_TABLE, Family, IPAddress, IPNetwork, Route, protocol_name
from podroutes.core.plan import RoutePlan
from podroutes.core.rules import DEFAULT_RULES
from podroutes.diag.cni import DEFAULT_BRIDGE
from podroutes.diag.cni_checks import check_cni
from podroutes.diag.facts import FORWARDING_SYSCTL, FactKind, HostFacts
from podroutes.diag.findings import Finding, FindingKind, FixClass, HostContext, runnable
from podroutes.diag.firewall_checks import check_firewall, check_nat
from podroutes.diag.path_checks import (
    check_paths,
    connected_metric,
    connected_route,
    restore_bridge_route,
)
from podroutes.diag.probe import PROVES


def _ip(line: str) -> tuple[str, ...]:
    return ("ip", *line.split(" "))


def route_to(ctx: HostContext, address: IPAddress) -> Route | None:
    """The route the host's kernel uses for a packet it sends to ``address``: the model
    of :mod:`podroutes.core.forwarding` over its rules and every table read."""
    family = Family.of(address)
    paths = ctx.facts.paths
    tables: dict[int, Sequence[Route]] = dict(paths.tables.get(family, {})) if paths else {}
    tables[MAIN_TABLE] = [r for r in ctx.facts.routes if r.family is family]
    rules = paths.rules.get(family, DEFAULT_RULES[family]) if paths else DEFAULT_RULES[family]
    return Fib(rules, tables).decide(address).route


def check_forwarding(ctx: HostContext) -> list[Finding]:
    out = []
    for cidr in ctx.host.pod_cidrs:
        key = FORWARDING_SYSCTL[Family.of(cidr)]
        if key not in ctx.facts.sysctls or ctx.facts.sysctl(key) == 1:
            continue
        out.append(runnable(
            FindingKind.FORWARDING_OFF, ctx.host.name, f"{key} is {ctx.facts.sysctl(key)}",
            f"{ctx.host.name} must forward its pods' packets ({cidr}) between {ctx.bridge} "
            f"and the node network; with forwarding off it drops them both ways (persist "
            f"the fix with '{key} = 1' in /etc/sysctl.d/)",
            [("sysctl", "-w", f"{key}=1")], FixClass.SAFE))
    return out


_RA = 9  # iproute2's "ra": a route learned from a router advertisement


def check_accept_ra(ctx: HostContext) -> list[Finding]:
    """A forwarding IPv6 host ignores router advertisements unless ``accept_ra=2``; a node
    whose IPv6 routes came from RAs loses them (and its default route) as they expire."""
    if ctx.host.pod_cidr(Family.V6) is None:
        return []
    if ctx.facts.sysctl(FORWARDING_SYSCTL[Family.V6]) != 1:
        return []  # forwarding off is its own finding; RAs are still accepted then
    node = ctx.node_interface(Family.V6)
    if node is None:
        return []
    key = f"net.ipv6.conf.{node.name}.accept_ra"
    if key not in ctx.facts.sysctls or ctx.facts.sysctl(key) == 2:
        return []
    learned = [r for r in ctx.facts.routes
               if r.family is Family.V6 and r.protocol == _RA and r.dev == node.name]
    if not learned:
        return []  # the node does not rely on router advertisements
    shown = ", ".join(str(r.dst) + (f" via {r.gateway}" if r.gateway else "")
                      for r in learned[:3])
    return [Finding(
        FindingKind.ACCEPT_RA, ctx.host.name, f"{key} is {ctx.facts.sysctl(key)}",
        f"IPv6 forwarding is on, and a forwarding host ignores router advertisements "
        f"unless accept_ra=2: the RA-learned routes on {node.name} ({shown}) will expire "
        f"and not come back, and {ctx.host.name} loses its IPv6 routes to the outside "
        f"(persist the fix with '{key} = 2' in /etc/sysctl.d/)",
        (shlex.join(("sysctl", "-w", f"{key}=2")),))]


def check_node_addresses(ctx: HostContext) -> list[Finding]:
    """The inventory address of a host is the gateway every other host routes its pods
    via: it must not be a temporary (privacy) or deprecated address, which change or go
    away (flannel#2293). Says which stable address to use instead, and why."""
    out = []
    for address in ctx.host.addresses:
        found = next((a for a in ctx.facts.addresses if a.address == address), None)
        if found is None or (why := unfit_reason(found)) is None:
            continue
        choice = choose_gateway_address(ctx.facts.addresses, found.ifname,
                                        Family.of(address))
        instead = (f"use {choice.gateway} instead ({choice.reason})" if choice.gateway
                   else f"give {found.ifname} a stable address ({choice.reason})")
        out.append(Finding(
            FindingKind.UNSTABLE_NODE_ADDRESS, ctx.host.name,
            f"the inventory address {address} is {why}",
            f"every other host routes {ctx.host.name}'s pods via {address}; when it "
            f"changes or expires, those routes point at nothing: {instead}",
            (f"# edit the inventory: {ctx.host.name}'s address"
             + (f" -> {choice.gateway}" if choice.gateway else ""),)))
    return out


def check_rp_filter(ctx: HostContext) -> list[Finding]:
    """Strict reverse-path filtering drops packets whose route back leaves by another
    interface than the one they came in on (IPv4 only: IPv6 has no rp_filter sysctl)."""
    node = ctx.node_interface(Family.V4)
    if node is None or ctx.facts.rp_filter(node.name) != 1:
        return []
    asymmetric = []
    for other in ctx.inventory:
        cidr = other.pod_cidr(Family.V4)
        if other.name == ctx.host.name or cidr is None:
            continue
        back = route_to(ctx, cidr.network_address + 2)  # a pod of that node
        if back is not None and back.type == "unicast" and back.dev and back.dev != node.name:
            asymmetric.append(f"{cidr} ({other.name}'s pods) leaves by {back.dev}")
    if not asymmetric:
        return []
    key = f"net.ipv4.conf.{node.name}.rp_filter"
    all_value = ctx.facts.sysctl("net.ipv4.conf.all.rp_filter")
    return [Finding(
        FindingKind.RP_FILTER, ctx.host.name,
        f"strict rp_filter on {node.name} (max(all={all_value}, {node.name}="
        f"{ctx.facts.sysctl(key)}) = 1) while routes are asymmetric: the route back to "
        + "; ".join(asymmetric),
        f"pod packets from other nodes arrive on {node.name}, but the route back to their "
        f"source leaves by another interface, so strict reverse-path filtering drops them "
        f"before they are forwarded to the pods",
        (f"sysctl -w {key}=2",))]  # loose mode: max(all, iface) = 2


def check_routes(ctx: HostContext) -> list[Finding]:
    out = []
    d = diff(ctx.planned, ctx.facts.routes, ctx.protocol, force=True)
    changes = {(c.dst, c.action): c for c in d.changes}
    on_link = _on_link(ctx)
    for s in d.statuses:
        host, o = ctx.host.name, s.observed
        if s.state is RouteState.MISSING:
            line = changes[(s.dst, Action.ADD)].batch_line()
            what = f"no route to {s.dst} ({s.via_host}'s pods) via {s.desired_gateway}"
            why = (f"{host} does not know where {s.via_host}'s pods are: their packets "
                   f"are dropped or leave by the default route")
            safe = s.desired_gateway is None or on_link(s.desired_gateway)
            out.append(runnable(FindingKind.ROUTE_MISSING, host, what, why, [_ip(line)],
                                FixClass.SAFE) if safe else
                       Finding(FindingKind.ROUTE_MISSING, host, what, why, ("ip " + line,)))
        elif s.state in (RouteState.WRONG_GATEWAY, RouteState.CONFLICT):
            assert o is not None
            action = Action.CHANGE if s.state is RouteState.WRONG_GATEWAY else Action.OVERRIDE
            now = f"via {o.gateway}" if o.gateway else (o.type if o.type != "unicast"
                                                        else f"dev {o.dev}")
            owner = "podroutes' own" if o.protocol == ctx.protocol else \
                f"not podroutes' (proto {protocol_name(o.protocol)}); " \
                "`podroutes apply --force` takes it over"
            out.append(Finding(
                FindingKind.ROUTE_WRONG_GATEWAY, host,
                f"{s.dst} ({s.via_host}'s pods) goes {now}, not via {s.desired_gateway} "
                f"({owner})",
                f"packets for {s.via_host}'s pods are sent to the wrong host, which drops "
                f"them, sends them back (a loop) or out of the cluster",
                ("ip " + changes[(s.dst, action)].batch_line(),)))
        elif s.state is RouteState.STALE and o is not None and not _in_own(ctx, o.dst):
            out.append(Finding(
                FindingKind.ROUTE_STALE, host,
                f"podroutes' route {o.dst} via {o.gateway} is in no host's plan",
                "a pod CIDR that moved or a node that left: packets for it go to a host "
                "that no longer has those pods",
                ("ip " + batch_line("del", route_spec(o.dst, o.gateway, o.protocol,
                                                      o.metric, o.table)),)))
    return out


def _in_own(ctx: HostContext, dst: IPNetwork) -> bool:
    return any(dst.version == c.version and dst.subnet_of(c)  # type: ignore[arg-type]
               for c in ctx.host.pod_cidrs)


def _on_link(ctx: HostContext) -> Callable[[IPAddress], bool]:
    networks = [a.network for i in ctx.facts.interfaces if i.name != ctx.bridge
                for a in i.addresses]
    readable = FactKind.ADDR not in ctx.facts.unreadable and bool(ctx.facts.interfaces)
    return lambda gw: not readable or any(gw in n for n in networks)


def _clashes(ctx: HostContext) -> list[Route]:
    """Main-table routes that send part of the host's own pod CIDR to a gateway."""
    return [r for r in ctx.facts.routes
            if r.table == MAIN_TABLE and _in_own(ctx, r.dst) and (r.gateway or r.nexthops)]


def check_own_cidr_clash(ctx: HostContext) -> list[Finding]:
    """A route pointing (part of) the host's own pod CIDR at another host. The fix puts
    the bridge's connected route back when the clash took its place, and removes the
    clash only where that leaves the connected route in charge."""
    out = []
    for r in _clashes(ctx):
        gateway = r.gateway or r.nexthops[0]
        other = ctx.host_of(gateway)
        cidr = next(c for c in ctx.host.pod_cidrs if _in_own_one(r.dst, c))
        restore = restore_bridge_route(ctx, cidr)
        argvs: list[tuple[str, ...]] = [restore] if restore is not None else []
        same_slot = restore is not None and r.dst == cidr and (
            r.effective_metric == connected_metric(Family.of(cidr)))
        if not same_slot:  # a replace in the same slot already overwrote the clash
            argvs.append(_ip(batch_line("del", route_spec(r.dst, r.gateway, r.protocol,
                                                          r.metric))))
        connected = restore is None and connected_route(ctx, cidr) is None
        what = (f"route {r.dst} via {gateway}{f' ({other.name})' if other else ''} points "
                f"this host's own pod CIDR at another host")
        why = (f"it clashes with the kernel's `{cidr} dev {ctx.bridge}` route (KTHW#539): "
               f"packets for {ctx.host.name}'s own pods leave by the node network and loop "
               f"between nodes")
        if connected:  # no bridge route to fall back on: deleting alone would cut pods off
            out.append(Finding(FindingKind.OWN_CIDR_CLASH, ctx.host.name, what, why,
                               tuple(shlex.join(a) for a in argvs),
                               note=f"{ctx.bridge} cannot carry {cidr} yet (see the bridge "
                                    f"findings): fix the bridge first, or the pods on "
                                    f"{ctx.host.name} stay unreachable"))
            continue
        out.append(runnable(FindingKind.OWN_CIDR_CLASH, ctx.host.name, what, why, argvs,
                            FixClass.SAFE))
    return out


def _in_own_one(dst: IPNetwork, cidr: IPNetwork) -> bool:
    return dst.version == cidr.version and dst.subnet_of(cidr)  # type: ignore[arg-type]


def check_kernel_paths(ctx: HostContext) -> list[Finding]:
    """The kernel's path for every destination (:mod:`podroutes.diag.path_checks`); an
    own pod CIDR with a clashing route or a broken bridge is left to those findings."""
    bridge = ctx.facts.interface(ctx.bridge)
    clashing = _clashes(ctx)
    explained = [c for c in ctx.host.pod_cidrs
                 if any(_in_own_one(r.dst, c) for r in clashing) or bridge is None
                 or not bridge.up
                 or not any(a.ip == c.network_address + 1 for a in bridge.addresses)]
    return check_paths(ctx, explained)


def check_bridge(ctx: HostContext) -> list[Finding]:
    if not ctx.host.pod_cidrs or not ctx.facts.interfaces:
        return []
    name, host = ctx.bridge, ctx.host.name
    bridge = ctx.facts.interface(name)
    if bridge is None:
        cidr = ctx.host.pod_cidrs[0]
        return [Finding(
            FindingKind.BRIDGE_MISSING, host, f"there is no {name} bridge",
            f"the kernel has no `{cidr} dev {name}` route, so packets for {host}'s pods "
            f"have nowhere to go (the CNI bridge plugin creates {name} when the first pod "
            f"starts: a node without pods yet has none)",
            (f"ip link add {name} type bridge",
             *(f"ip addr add {c.network_address + 1}/{c.prefixlen} dev {name}"
               for c in ctx.host.pod_cidrs), f"ip link set {name} up"))]
    out = []
    if not bridge.up:
        out.append(Finding(
            FindingKind.BRIDGE_DOWN, host, f"{name} is down",
            f"a down bridge has no routes: packets for {host}'s pods are dropped, and its "
            f"pods lose their default gateway", (f"ip link set {name} up",)))
    cni = ctx.facts.cni
    handed = cni.bridge.subnets if cni is not None and cni.bridge is not None else ()
    for cidr in ctx.host.pod_cidrs:
        first = cidr.network_address + 1
        if not any(a.ip == first for a in bridge.addresses):
            wrong = [s for s in handed if s.version == cidr.version and s != cidr and
                     any(a.ip == s.network_address + 1 for a in bridge.addresses)]
            out.append(Finding(
                FindingKind.BRIDGE_ADDRESS, host,
                f"{name} does not have {first}, the first address of {cidr}",
                f"pods use {first} as their default gateway and the kernel derives the "
                f"`{cidr} dev {name}` route from it: without it pods on {host} reach nothing "
                f"off-node and nothing reaches them",
                (f"ip addr add {first}/{cidr.prefixlen} dev {name}",),
                note=f"{name} has {wrong[0].network_address + 1}, the gateway of "
                     f"{wrong[0]} that the CNI configuration hands out (see "
                     f"cni-subnet-mismatch): fix that file, then recreate the pods"
                     if wrong else ""))
    return out


def check_gateways(ctx: HostContext) -> list[Finding]:
    out = []
    on_link = _on_link(ctx)
    failed = {n.address for n in ctx.facts.neighbours if "FAILED" in n.states}
    for route in ctx.planned:
        gw, host = route.gateway, ctx.host.name
        if not on_link(gw):
            out.append(Finding(
                FindingKind.GATEWAY_NOT_ON_LINK, host,
                f"gateway {gw} ({route.via_host}) is on none of {host}'s networks",
                f"host-gw routing needs L2 adjacency: the kernel refuses `ip route add "
                f"{route.dst} via {gw}` (Nexthop has invalid gateway), so {route.via_host}'s "
                f"pods are unreachable from {host}", ("ip -br addr", f"ip route get {gw}"),
                note=f"put {host} and {route.via_host} on one L2 segment, or use an overlay "
                     f"or BGP between hosts in different subnets"))
        elif gw in failed:
            out.append(Finding(
                FindingKind.GATEWAY_UNREACHABLE, host,
                f"gateway {gw} ({route.via_host}) does not answer ARP/ND (neighbour FAILED)",
                f"packets for {route.dst} are handed to {gw}, but {host} cannot find it on "
                f"the link, so they are dropped", (f"ping -c 1 {gw}",),
                note=f"make sure {route.via_host} is up and on {host}'s L2 segment; the "
                     f"ping makes the kernel try again at once"))
    return out


def check_networkd(ctx: HostContext) -> list[Finding]:
    nd = ctx.facts.networkd
    node = ctx.node_interface(Family.V4) or ctx.node_interface(Family.V6)
    if not nd.active or not nd.manage_foreign_routes or node is None:
        return []
    network_file = nd.managed.get(node.index)
    if network_file is None:
        return []
    base = network_file.rsplit("/", 1)[-1]
    persisted = {route for path, routes in nd.persisted.items()
                 if path == network_file or f"/{base}.d/" in path for route in routes}
    lost = [r for r in ctx.planned if (r.dst, r.gateway) not in persisted]
    if not lost:
        return []
    sections = " ".join(f"[Route] Destination={r.dst} Gateway={r.gateway};" for r in lost)
    return [Finding(
        FindingKind.NETWORKD_FOREIGN_ROUTES, ctx.host.name,
        f"systemd-networkd manages {node.name} ({network_file}) with ManageForeignRoutes "
        f"enabled, and {len(lost)} pod route(s) are not in its configuration",
        "networkd removes routes it did not configure: the next `networkctl reload`, "
        "`netplan apply` or reboot deletes these routes and pods lose each other",
        ("mkdir -p /etc/systemd/networkd.conf.d && printf '[Network]\\n"
         "ManageForeignRoutes=no\\n' > /etc/systemd/networkd.conf.d/50-podroutes.conf",),
        note=f"better: run `podroutes persist` (where you run podroutes) to write the routes "
             f"into networkd's own configuration for {network_file}, so they also survive a "
             f"reboot ({sections})")]


def check_mtu(contexts: Sequence[HostContext]) -> list[Finding]:
    """Node interfaces of one cluster should share an MTU; hosts off the common value (ties
    go to the largest) are reported."""
    mtus = {}
    for ctx in contexts:
        node = ctx.node_interface(Family.V4) or ctx.node_interface(Family.V6)
        if node is not None and node.mtu:
            mtus[ctx.host.name] = (node.name, node.mtu)
    if len(set(m for _, m in mtus.values())) < 2:
        return []
    counts = Counter(m for _, m in mtus.values())
    common = max(counts, key=lambda m: (counts[m], m))
    peers = [h for h, (_, m) in mtus.items() if m == common]
    out = []
    for host, (dev, mtu) in mtus.items():
        if mtu != common:
            out.append(Finding(
                FindingKind.MTU_MISMATCH, host,
                f"{dev} has MTU {mtu}; the other nodes' interfaces have {common} "
                f"({', '.join(peers[:5])}{', ...' if len(peers) > 5 else ''})",
                f"packets between {min(mtu, common)} and {max(mtu, common)} bytes are "
                f"dropped on the way in or out of {host}: ping works, but larger transfers "
                f"(TCP with DF set) stall",
                (f"ip link set dev {dev} mtu {common}",)))
    return out


def check_probes(ctx: HostContext) -> list[Finding]:
    """``doctor --probe``: a ping from this node's bridge address to another node's that
    got no reply (what it proves: :data:`podroutes.diag.probe.PROVES`)."""
    out = []
    for p in ctx.facts.probes or ():
        if p.answered:
            continue
        out.append(Finding(
            FindingKind.PROBE_UNANSWERED, ctx.host.name,
            f"a ping from {p.source} (this node's bridge) to {p.target} ({p.target_host}'s "
            f"bridge) got no reply",
            f"the routes between {ctx.host.name}'s and {p.target_host}'s pod CIDRs do not "
            f"carry packets both ways, or a firewall on the way drops them; {PROVES}",
            (f"podroutes trace {p.source} {p.target} --live",),
            note="run it where you run podroutes; the other findings usually name the cause"))
    return out


HOST_CHECKS: tuple[Callable[[HostContext], list[Finding]], ...] = (
    check_forwarding, check_accept_ra, check_node_addresses, check_firewall, check_nat,
    check_rp_filter, check_routes, check_kernel_paths,
    check_own_cidr_clash, check_bridge, check_gateways, check_networkd, check_cni,
    check_probes)


def host_bridge(facts: HostFacts, bridge: str | None) -> str:
    """The bridge doctor checks on a host: ``--bridge``, else the one its CNI
    configuration's bridge plugin uses, else the plugin's default (cni0)."""
    if bridge is not None:
        return bridge
    cni = facts.cni
    return cni.bridge.name if cni is not None and cni.bridge is not None else DEFAULT_BRIDGE


def contexts(route_plan: RoutePlan, facts: Mapping[str, HostFacts], protocol: int,
             bridge: str | None = None) -> list[HostContext]:
    return [HostContext(host, facts[host.name], route_plan.routes_for(host),
                        route_plan.inventory, protocol,
                        host_bridge(facts[host.name], bridge), bridge)
            for host in route_plan.inventory if host.name in facts]


def check_all(route_plan: RoutePlan, facts: Mapping[str, HostFacts], protocol: int,
              bridge: str | None = None) -> list[Finding]:
    """Every finding on every host whose facts were read, in inventory order."""
    ctxs = contexts(route_plan, facts, protocol, bridge)
    findings = [f for ctx in ctxs for check in HOST_CHECKS for f in check(ctx)]
    findings += check_mtu(ctxs)
    order = {h.name: i for i, h in enumerate(route_plan.inventory)}
    kinds = list(FindingKind)
    return sorted(findings, key=lambda f: (order[f.host], kinds.index(f.kind)))
