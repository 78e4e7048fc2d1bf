"""Text renderings of a plan: JSON, the hand-run ssh script, ``ip -batch`` input, rows.

Pure: values in, strings out. The CLI decides where they go (only it prints).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from podroutes.diff import diff
from podroutes.iproute import shell_command
from podroutes.model import Host
from podroutes.plan import RoutePlan


def meaning(via_host: str) -> str:
    return f"{via_host}'s pod CIDR"


def plan_rows(route_plan: RoutePlan) -> list[tuple[str, str, str, str]]:
    """(host, destination, gateway, meaning) rows, like the seed's routing summary."""
    rows = []
    for host, routes in route_plan:
        for r in routes:
            rows.append((host.name, str(r.dst), f"{r.gateway} ({r.via_host})", meaning(r.via_host)))
    return rows


def plan_json(route_plan: RoutePlan, protocol: int) -> dict[str, Any]:
    return {
        "inventory": route_plan.inventory.source,
        "protocol": protocol,
        "hosts": [
            {
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
            for host, routes in route_plan
        ],
    }


def plan_batch(route_plan: RoutePlan, protocol: int) -> str:
    """Per-host ``ip -batch`` input for hosts whose tables hold none of these routes yet."""
    parts = []
    for host, routes in route_plan:
        noun = "route" if len(routes) == 1 else "routes"
        parts.append(f"# {host.name}: ip -batch -  ({len(routes)} {noun})\n")
        parts.append(diff(routes, [], protocol).batch())
    return "".join(parts)


def plan_script(
    route_plan: RoutePlan, protocol: int, target_of: Callable[[Host], str], user: str
) -> str:
    """The script a person would run from the jumpbox: ``ssh root@HOST <<EOF ... EOF``."""
    lines = [
        "#!/bin/sh",
        f"# Pod network routes for {route_plan.inventory.source}, as run by hand.",
        f"# 'proto {protocol}' marks them as podroutes' own; 'ip route add' fails with",
        "# 'File exists' on a re-run. 'podroutes apply' does the same idempotently.",
        "set -e",
    ]
    for host, routes in route_plan:
        lines.append("")
        if not routes:
            lines.append(f"# {host.name}: no routes needed")
            continue
        port = f"-p {host.ssh.port} " if host.ssh.port else ""
        login = f"{host.ssh.user or user}@{target_of(host)}"
        lines.append(f"ssh {port}{shlex.quote(login)} <<'EOF'")
        for change in diff(routes, [], protocol).changes:
            lines.append("  " + shell_command(change.batch_line()))
        lines.append("EOF")
    return "\n".join(lines) + "\n"


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)
