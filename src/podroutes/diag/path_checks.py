"""doctor's checks of the path the kernel gives each destination, and the bridge route fix.

Pure. :func:`check_paths` turns :func:`podroutes.core.outcome.path_issues` (the kernel's
forwarding decision for every planned pod CIDR and the host's own, judged against the
plan and confirmed with ``ip route get``) into findings with the exact commands that fix
them. Routes and rules podroutes does not own are never removed by ``--fix``: their
commands are printed for a person to run. :func:`restore_bridge_route` is the one
automatic fix here: the kernel's ``POD_CIDR dev BRIDGE`` route put back, which is what a
host's own pods need (never a bare delete that leaves them with no route at all).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from podroutes.core.decision import DecisionKind
from podroutes.core.diff import diff
from podroutes.core.iproute import route_spec, text_of
from podroutes.core.model import MAIN_TABLE, Family, IPNetwork, Route, protocol_name
from podroutes.core.outcome import path_issues
from podroutes.core.paths import PathIssue, PathState
from podroutes.diag.findings import Finding, FindingKind, FixClass, HostContext

#: The metric the kernel gives a connected route (IPv4 none, IPv6 256).
_CONNECTED_METRIC = {Family.V4: None, Family.V6: 256}

_KINDS = {
    PathState.SHADOWED: FindingKind.ROUTE_SHADOWED,
    PathState.OVERRIDDEN: FindingKind.ROUTE_OVERRIDDEN,
    PathState.OTHER_TABLE: FindingKind.ROUTE_POLICY,
    PathState.DROPPED: FindingKind.ROUTE_DROPPED,
    PathState.NO_ROUTE: FindingKind.ROUTE_DROPPED,
    PathState.ELSEWHERE: FindingKind.ROUTE_ELSEWHERE,
    PathState.OWN_NOT_ON_BRIDGE: FindingKind.OWN_CIDR_OFF_BRIDGE,
    PathState.UNCERTAIN: FindingKind.PATH_UNCERTAIN,
    PathState.KERNEL_DISAGREES: FindingKind.PATH_MODEL_DISAGREES,
}


def connected_metric(family: Family) -> int:
    """The metric slot of a connected route as the kernel makes it (IPv4 0, IPv6 256)."""
    return _CONNECTED_METRIC[family] or 0


def delete_command(route: Route) -> str:
    """``ip route del ...`` naming exactly ``route`` (its type, slot, table)."""
    words = [] if route.type == "unicast" else [route.type]
    words += route_spec(route.dst, route.gateway, None, route.metric, route.table)
    words += ["proto", protocol_name(route.protocol)]  # as ip prints it, and accepts it
    return "ip route del " + " ".join(shlex.quote(w) for w in words)


def connected_route(ctx: HostContext, cidr: IPNetwork) -> Route | None:
    """The kernel's ``CIDR dev BRIDGE`` route, if the main table has it."""
    return next((r for r in ctx.facts.routes
                 if r.dst == cidr and r.table == MAIN_TABLE and r.dev == ctx.bridge
                 and r.gateway is None and not r.nexthops and r.type == "unicast"), None)


def restore_bridge_route(ctx: HostContext, cidr: IPNetwork) -> tuple[str, ...] | None:
    """The argv that puts the kernel's connected route for ``cidr`` back on the bridge,
    or ``None`` when it cannot work (no bridge, bridge down, no first address on it:
    the bridge findings say what to do) or is not needed (it is there)."""
    if connected_route(ctx, cidr) is not None:
        return None
    bridge = ctx.facts.interface(ctx.bridge)
    first = cidr.network_address + 1
    if bridge is None or not bridge.up or not any(a.ip == first for a in bridge.addresses):
        return None
    family = Family.of(cidr)
    argv = ["ip", family.flag, "route", "replace", text_of(cidr), "dev", ctx.bridge,
            "proto", "kernel", "scope", "link"]
    metric = _CONNECTED_METRIC[family]
    argv += ["src", text_of(first)] if metric is None else ["metric", str(metric)]
    return tuple(argv)


def _fix(issue: PathIssue) -> tuple[str, ...]:
    """What a person runs to give the destination its planned path back."""
    route, decision = issue.route, issue.decision
    if issue.state in (PathState.KERNEL_DISAGREES, PathState.UNCERTAIN) or (
            route is None and decision.priority is None):
        return (f"ip route get {issue.part.network_address + 1}",)
    if issue.state is PathState.NO_ROUTE:
        return ("podroutes apply",)
    if route is None:  # a rule's own action
        return (f"ip -{issue.part.version} rule del priority {decision.priority}",)
    if issue.state is PathState.OTHER_TABLE:
        return (f"ip -{issue.part.version} rule del priority {decision.priority}",
                delete_command(route))
    return (delete_command(route),)


def _why(issue: PathIssue, host: str) -> str:
    if issue.state is PathState.KERNEL_DISAGREES:
        return ("doctor's model of the kernel and the kernel itself disagree about this "
                "destination; run the command to see what the kernel does, and report it")
    if issue.state is PathState.UNCERTAIN:
        return ("a policy rule matches on something doctor cannot see (a firewall mark, a "
                "user, a port): the kernel may route some pod traffic elsewhere")
    whose = f"{host}'s own pods" if issue.own else "those pods"
    dropped = issue.decision.kind in (DecisionKind.BLACKHOLE, DecisionKind.UNREACHABLE,
                                      DecisionKind.PROHIBIT, DecisionKind.NO_ROUTE)
    fate = "are dropped" if dropped else "go to the wrong place (dropped, looped or sent out)"
    if issue.own:
        return (f"the kernel does not deliver {issue.part} on {issue.wanted.removeprefix('on ')}"
                f": packets for {whose} {fate}")
    return (f"the planned route is in place, but the kernel does not use it for "
            f"{issue.part}: packets for {whose} {fate}")


def check_paths(ctx: HostContext, explained: Sequence[IPNetwork] = ()) -> list[Finding]:
    """A finding per way the kernel's path differs from the plan. ``explained``: own pod
    CIDRs another finding already covers (a clashing route, a missing bridge)."""
    paths = ctx.facts.paths
    if paths is None:
        return []
    before = diff(ctx.planned, ctx.facts.routes, ctx.protocol, force=True)
    out = []
    for issue in path_issues(ctx.host, ctx.planned, ctx.facts.routes, paths, before,
                             ctx.bridge):
        if issue.own and issue.dst in explained and issue.state is not \
                PathState.KERNEL_DISAGREES:
            continue
        what = (f"{issue.part} ({'own pod CIDR' if issue.own else issue.wanted}): "
                f"{issue.detail}")
        fix_class = FixClass.MANUAL
        argv: tuple[tuple[str, ...], ...] = ()
        restore = restore_bridge_route(ctx, issue.dst) if issue.own else None
        fix = _fix(issue)
        if restore is not None and issue.route is not None and issue.route.dst == issue.dst \
                and issue.route.table == MAIN_TABLE:
            fix, fix_class, argv = (shlex.join(restore),), FixClass.SAFE, (restore,)
        out.append(Finding(_KINDS[issue.state], ctx.host.name, what, _why(issue, ctx.host.name),
                           fix, fix_class, argv,
                           note="" if fix_class is FixClass.SAFE or issue.own else
                           "the route or rule is not podroutes': doctor never removes it, "
                           "run the command if it is not needed"))
    return out
