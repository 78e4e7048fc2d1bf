"""Human and JSON renderings of apply/status outcomes. Part of the CLI layer.

Writes only to the Rich console it is handed; called by :mod:`podroutes.cli.main`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podroutes.cli.options import counted
from podroutes.core.diff import HostDiff, RouteState, RouteStatus
from podroutes.core.model import protocol_name
from podroutes.core.outcome import HostOutcome, counts
from podroutes.core.paths import PathIssue

if TYPE_CHECKING:  # Rich loads when a table is printed: `apply --json` never needs it
    from rich.console import Console

_STATE_STYLE = {
    RouteState.IN_SYNC: "green", RouteState.MISSING: "yellow", RouteState.WRONG_GATEWAY: "red",
    RouteState.UNOWNED: "cyan", RouteState.STALE: "magenta", RouteState.CONFLICT: "bold red",
    RouteState.OTHER_METRIC: "dim",
}


def _status_json(s: RouteStatus) -> dict[str, Any]:
    o = s.observed
    return {
        "state": str(s.state), "dst": str(s.dst),
        "desired_gateway": str(s.desired_gateway) if s.desired_gateway else None,
        "observed_gateway": str(o.gateway) if o and o.gateway else None,
        "observed_protocol": o.protocol if o else None,
        "via_host": s.via_host,
    }


def outcome_json(o: HostOutcome) -> dict[str, Any]:
    def diff_json(d: HostDiff | None) -> dict[str, Any] | None:
        if d is None:
            return None
        return {
            "counts": counts(d),
            "changes": [{"action": str(c.action), "dst": str(c.dst),
                         "gateway": str(c.gateway) if c.gateway else None,
                         "command": "ip " + c.batch_line()} for c in d.changes],
            "routes": [_status_json(s) for s in d.statuses],
        }

    return {
        "host": o.host.name,
        "converged": o.converged,
        # One word per host, so a script never loses one host's drift behind another's
        # failure (the exit status can say only one thing).
        "verdict": host_verdict(o),
        "error": o.error,
        "error_type": type(o.failure).__name__ if o.failure is not None else None,
        "applied": o.applied,
        "before": diff_json(o.before),
        "after": diff_json(o.after),
        "results": [{"outcome": str(r.outcome), "action": str(r.change.action),
                     "dst": str(r.change.dst), "command": "ip " + r.change.batch_line(),
                     "message": r.message or None} for r in o.results],
        "paths": [path_json(i) for i in o.paths],
        "path_notes": list(o.path_notes),
    }


def host_verdict(o: HostOutcome) -> str:
    """``unreachable`` (not read), ``in sync``, or ``drift``."""
    if o.error is not None or o.before is None:
        return "unreachable"
    return "in sync" if o.converged else "drift"


def path_json(i: PathIssue) -> dict[str, Any]:
    """One way the kernel's path differs from the plan."""
    route = i.route
    return {
        "dst": str(i.dst), "part": str(i.part), "state": str(i.state), "own": i.own,
        "wanted": i.wanted, "kernel_decision": str(i.decision), "detail": i.detail,
        "route": None if route is None else {
            "dst": str(route.dst), "gateway": str(route.gateway) if route.gateway else None,
            "dev": route.dev, "type": route.type, "metric": route.metric,
            "table": route.table, "protocol": protocol_name(route.protocol)},
        "kernel_answer": i.kernel,
    }


def _conflict_line(s: RouteStatus) -> str:
    o = s.observed
    assert o is not None
    now = f"via {o.gateway}" if o.gateway else (o.type if o.type != "unicast" else f"dev {o.dev}")
    return (f"{s.dst} should go via {s.desired_gateway} ({s.via_host}) but is {now} "
            f"(proto {protocol_name(o.protocol)}, not ours): left alone; --force takes it over")


def print_apply(out: Console, outcomes: list[HostOutcome], dry_run: bool) -> None:
    if dry_run:
        for o in outcomes:
            if o.error or o.before is None:
                out.print(f"[bold]{o.host.name}[/]: [red]{o.error}[/]")
                continue
            if not o.before.changes:
                out.print(f"[bold]{o.host.name}[/]: nothing to change")
                continue
            out.print(f"[bold]{o.host.name}[/]: would run")
            out.print("  ip -force -batch - <<EOF", markup=False)
            for change in o.before.changes:
                out.print("  " + change.batch_line(), markup=False)
            out.print("  EOF", markup=False)
        _print_conflicts(out, outcomes)
        out.print("[dim]dry run: nothing was changed[/]")
        return
    from rich.table import Table

    table = Table(title="podroutes apply")
    table.add_column("host")
    for name in ("added", "changed", "adopted", "removed", "unchanged", "conflicts"):
        table.add_column(name, justify="right")
    table.add_column("result")
    total_changes = 0
    for o in outcomes:
        if o.before is None:
            table.add_row(o.host.name, *[""] * 6, f"[red]failed: {o.error}[/]")
            continue
        c = counts(o.before)
        total_changes += len(o.before.changes)
        final = o.after or o.before
        only_conflicts = all(s.state in (RouteState.IN_SYNC, RouteState.CONFLICT)
                             for s in final.statuses)
        result = ("[green]converged[/]" if o.converged else
                  f"[red]failed: {o.error}[/]" if o.error else
                  "[yellow]conflict left alone[/]" if only_conflicts else "[red]not converged[/]")
        table.add_row(o.host.name, str(c["add"]), str(c["change"] + c["override"]),
                      str(c["adopt"]), str(c["remove"]), str(c["unchanged"]),
                      str(c["conflicts"]), result)
    out.print(table)
    for o in outcomes:
        for f in o.failed:
            out.print(f"[red]{o.host.name}[/]: {f.outcome}: ip {f.change.batch_line()}",
                      markup=True)
            out.print(f"    {f.message}", markup=False, soft_wrap=True)
    _print_conflicts(out, outcomes)
    ok = sum(1 for o in outcomes if o.converged)
    if total_changes == 0 and ok == len(outcomes):
        out.print(f"[green]no changes[/]: all {counted(ok, 'host')} "
                  f"{'was' if ok == 1 else 'were'} already converged")
    else:
        out.print(f"{ok}/{counted(len(outcomes), 'host')} converged, "
                  f"{counted(total_changes, 'change')} sent")


def _print_conflicts(out: Console, outcomes: list[HostOutcome]) -> None:
    for o in outcomes:
        final = o.after or o.before
        for s in final.conflicts if final else ():
            out.print(f"[yellow]{o.host.name}[/]: " + _conflict_line(s), markup=True)


def print_status(out: Console, outcomes: list[HostOutcome]) -> None:
    from rich.table import Table

    table = Table(title="podroutes status")
    for column in ("host", "destination", "desired", "actual", "state"):
        table.add_column(column)
    for o in outcomes:
        if o.before is None:
            table.add_row(o.host.name, "", "", "", f"[red]unreachable: {o.error}[/]")
            table.add_section()
            continue
        for index, s in enumerate(o.before.statuses):
            actual = ""
            if s.observed is not None:
                gw = s.observed.gateway or s.observed.type
                actual = f"via {gw} proto {protocol_name(s.observed.protocol)}"
            desired = f"via {s.desired_gateway} ({s.via_host})" if s.desired_gateway else "-"
            style = _STATE_STYLE[s.state]
            table.add_row(o.host.name if index == 0 else "", str(s.dst), desired, actual,
                          f"[{style}]{s.state}[/]")
        for index, i in enumerate(o.paths):
            first = index == 0 and not o.before.statuses
            table.add_row(o.host.name if first else "", str(i.part), i.wanted,
                          i.detail, f"[red]{i.state}[/]")
        if not o.before.statuses and not o.paths:
            table.add_row(o.host.name, "", "", "", "[green]in sync[/] (no routes needed)")
        table.add_section()
    out.print(table)
    for o in outcomes:
        for note in o.path_notes:
            out.print(f"[yellow]{o.host.name}[/]: path verdict from the model only: {note}",
                      soft_wrap=True)
    drift = sum(1 for o in outcomes if o.before and not (o.before.in_sync and not o.paths))
    down = sum(1 for o in outcomes if o.error)
    if not drift and not down:
        out.print(f"[green]in sync[/]: all {len(outcomes)} hosts match the plan")
    else:
        out.print(f"{counted(drift, 'host')} drifted, {down} unreachable, of {len(outcomes)}")
