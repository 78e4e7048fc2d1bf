"""Text renderings of a plan: JSON, the hand-run ssh script, ``ip -batch`` input, rows.

Pure: values in, strings out. The CLI decides where they go (only it prints).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from podroutes.core.diff import diff
from podroutes.core.iproute import shell_command
from podroutes.core.model import Host, PlannedRoute
from podroutes.core.plan import RoutePlan


def meaning(via_host: str) -> str:
    return f"{via_host}'s pod CIDR"


def plan_rows(route_plan: RoutePlan) -> list[tuple[str, str, str, str]]:
    """(host, destination, gateway, meaning) rows, like the routing summary table of
    Kubernetes the Hard Way's chapter on pod network routes."""
    rows = []
    for host, routes in route_plan:
        for r in routes:
            rows.append((host.name, str(r.dst), f"{r.gateway} ({r.via_host})", meaning(r.via_host)))
    return rows


def _host_json(host: Host, routes: Sequence[PlannedRoute]) -> dict[str, Any]:
    return {
        "name": host.name,
        "fqdn": host.fqdn,
        "addresses": [str(a) for a in host.addresses],
        "pod_cidrs": [str(c) for c in host.pod_cidrs],
        "routes": [
            {"dst": str(r.dst), "gateway": str(r.gateway), "via_host": r.via_host,
             "family": f"ipv{r.family.value}"}
            for r in routes
        ],
    }


def plan_json(route_plan: RoutePlan, protocol: int) -> dict[str, Any]:
    return {
        "inventory": route_plan.inventory.source,
        "protocol": protocol,
        "hosts": [_host_json(host, routes) for host, routes in route_plan],
    }


def iter_plan_json(route_plan: RoutePlan, protocol: int) -> Iterator[str]:
    """:func:`plan_json` as JSON text, one host at a time: memory stays linear in the
    number of hosts however many routes the plan holds (5,000 nodes: 25 million)."""
    head = json.dumps({"inventory": route_plan.inventory.source, "protocol": protocol})
    yield head[:-1] + ', "hosts": ['
    for index, (host, routes) in enumerate(route_plan):
        yield ("," if index else "") + "\n  " + json.dumps(_host_json(host, routes))
    yield "\n]}\n"


def iter_plan_batch(route_plan: RoutePlan, protocol: int) -> Iterator[str]:
    """Per-host ``ip -batch`` input for hosts whose tables hold none of these routes yet."""
    for host, routes in route_plan:
        noun = "route" if len(routes) == 1 else "routes"
        yield f"# {host.name}: ip -batch -  ({len(routes)} {noun})\n"
        yield diff(routes, [], protocol).batch()


def plan_batch(route_plan: RoutePlan, protocol: int) -> str:
    return "".join(iter_plan_batch(route_plan, protocol))


def plan_summary_rows(route_plan: RoutePlan) -> Iterator[tuple[str, str, str, int]]:
    """(host, addresses, pod CIDRs, route count) per host, without building any route."""
    counts = route_plan.counts_per_host()
    for host in route_plan.inventory:
        yield (host.name, ", ".join(map(str, host.addresses)),
               ", ".join(map(str, host.pod_cidrs)) or "-", counts[host.name])


def iter_plan_script(
    route_plan: RoutePlan, protocol: int, target_of: Callable[[Host], str], user: str
) -> Iterator[str]:
    """The script a person would run from the jumpbox: ``ssh root@HOST <<EOF ... EOF``."""
    yield "\n".join([
        "#!/bin/sh",
        f"# Pod network routes for {route_plan.inventory.source}, as run by hand.",
        f"# 'proto {protocol}' marks them as podroutes' own; 'ip route add' fails with",
        "# 'File exists' on a re-run. 'podroutes apply' does the same idempotently.",
        "set -e",
    ]) + "\n"
    for host, routes in route_plan:
        lines = [""]
        if not routes:
            lines.append(f"# {host.name}: no routes needed")
        else:
            port = f"-p {host.ssh.port} " if host.ssh.port else ""
            login = f"{host.ssh.user or user}@{target_of(host)}"
            lines.append(f"ssh {port}{shlex.quote(login)} <<'EOF'")
            for change in diff(routes, [], protocol).changes:
                lines.append("  " + shell_command(change.batch_line()))
            lines.append("EOF")
        yield "\n".join(lines) + "\n"


def plan_script(
    route_plan: RoutePlan, protocol: int, target_of: Callable[[Host], str], user: str
) -> str:
    return "".join(iter_plan_script(route_plan, protocol, target_of, user))


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)
