"""Human and JSON renderings of apply/status outcomes. Part of the CLI layer.

Writes only to the Rich console it is handed; called by :mod:`podroutes.cli.main`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podroutes.cli.options import counted
from podroutes.cli.tables import NARROW, Column, print_table
from podroutes.core.diff import HostDiff, RouteState, RouteStatus
from podroutes.core.model import Route, protocol_name
from podroutes.core.outcome import HostOutcome, counts
from podroutes.core.paths import PathIssue

if TYPE_CHECKING:  # Rich loads when a table is printed: `apply --json` never needs it
    from rich.console import Console

    from podroutes.cli.tables import Cell

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
        "observed_metric": o.effective_metric if o else None,
        "observed_extras": list(o.extras) if o else [],
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


def _where(o: Route) -> str:
    """Where a route sends packets, in ``ip`` words: ``via GW``, ``blackhole``, ``dev X``."""
    return f"via {o.gateway}" if o.gateway else (o.type if o.type != "unicast" else f"dev {o.dev}")


def _conflict_line(s: RouteStatus) -> str:
    o = s.observed
    assert o is not None
    now = _where(o)
    if o.gateway == s.desired_gateway and o.extras:
        return (f"{s.dst} via {o.gateway} (proto {protocol_name(o.protocol)}, not ours) "
                f"also carries {', '.join(o.extras)}, which adopting would drop: left "
                "alone; --force takes it over")
    return (f"{s.dst} should go via {s.desired_gateway} ({s.via_host}) but is {now} "
            f"(proto {protocol_name(o.protocol)}, not ours): left alone; --force takes it over")


def _beside_line(s: RouteStatus, diff: HostDiff) -> str:
    """A foreign route to a planned destination at another metric: which one traffic takes."""
    o = s.observed
    assert o is not None
    now = _where(o)
    ours = next((x.observed for x in diff.statuses if x.dst == s.dst and x.observed is not None
                 and x.state is RouteState.IN_SYNC), None)
    theirs = f"{s.dst} {now} metric {o.effective_metric} (proto {protocol_name(o.protocol)})"
    same = " (same gateway)" if o.gateway == s.desired_gateway else ""
    winner = ("this one (podroutes' is missing)" if ours is None else
              "this one" if o.effective_metric < ours.effective_metric
              else f"podroutes' (metric {ours.effective_metric})")
    return f"{theirs} is there too{same}, not ours: left alone; the kernel uses {winner}"


def print_beside(out: Console, outcomes: list[HostOutcome]) -> None:
    """Foreign routes to planned destinations at other metrics, and which one wins."""
    for o in outcomes:
        final = o.after or o.before
        if final is None:
            continue
        for s in final.statuses:
            if s.state is RouteState.OTHER_METRIC:
                out.print(f"[yellow]{o.host.name}[/]: " + _beside_line(s, final), markup=True)


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
    from rich.text import Text

    narrow = out.width < NARROW
    headers = (("add", "change", "adopt", "remove", "same", "conflict") if narrow else
               ("added", "changed", "adopted", "removed", "unchanged", "conflicts"))
    columns = (Column("host", no_wrap=True), *(Column(h, right=True) for h in headers),
               Column("result", no_wrap=True))
    rows: list[list[Cell]] = []
    total_changes = 0
    for o in outcomes:
        if o.before is None:
            rows.append([o.host.name, *[""] * 6, Text("failed", "red")])
            continue
        c = counts(o.before)
        total_changes += len(o.before.changes)
        final = o.after or o.before
        only_conflicts = all(s.state in (RouteState.IN_SYNC, RouteState.CONFLICT)
                             for s in final.statuses)
        result = (Text("converged", "green") if o.converged else
                  Text("failed", "red") if o.error else
                  Text("conflict left alone", "yellow") if only_conflicts
                  else Text("not converged", "red"))
        rows.append([o.host.name, str(c["add"]), str(c["change"] + c["override"]),
                     str(c["adopt"]), str(c["remove"]), str(c["unchanged"]),
                     str(c["conflicts"]), result])
    print_table(out, "podroutes apply", columns, rows)
    _print_errors(out, outcomes)
    for o in outcomes:
        for f in o.failed:
            out.print(f"[red]{o.host.name}[/]: {f.outcome}: ip {f.change.batch_line()}",
                      markup=True)
            out.print(f"    {f.message}", markup=False, soft_wrap=True)
    _print_conflicts(out, outcomes)
    print_beside(out, outcomes)
    ok = sum(1 for o in outcomes if o.converged)
    if total_changes == 0 and ok == len(outcomes):
        out.print(f"[green]no changes[/]: all {counted(ok, 'host')} "
                  f"{'was' if ok == 1 else 'were'} already converged")
    else:
        out.print(f"{ok}/{counted(len(outcomes), 'host')} converged, "
                  f"{counted(total_changes, 'change')} sent")


def _print_errors(out: Console, outcomes: list[HostOutcome]) -> None:
    """Why each failed host failed: prose below the table, wrapped at words."""
    from rich.markup import escape

    for o in outcomes:
        if o.error:
            out.print(f"[red]{o.host.name}[/]: failed: " + escape(o.error))


def _print_conflicts(out: Console, outcomes: list[HostOutcome]) -> None:
    for o in outcomes:
        final = o.after or o.before
        for s in final.conflicts if final else ():
            out.print(f"[yellow]{o.host.name}[/]: " + _conflict_line(s), markup=True)


def print_status(out: Console, outcomes: list[HostOutcome], full: bool = False) -> None:
    """Rows that are not simply in sync (every row with ``full``), one line naming the
    hosts that are in sync, and why unreachable hosts could not be read."""
    from rich.markup import escape
    from rich.text import Text

    columns = (Column("host", no_wrap=True), Column("destination", no_wrap=True),
               Column("desired"), Column("actual"), Column("state"))
    rows: list[list[Cell]] = []
    in_sync: list[str] = []
    for o in outcomes:
        if o.before is None:
            rows.append([o.host.name, "", "", "", Text("unreachable", "red")])
            continue
        if o.before.in_sync and not o.paths:
            in_sync.append(o.host.name)
        for s in o.before.statuses:
            if s.state is RouteState.IN_SYNC and not full:
                continue
            actual = ""
            if s.observed is not None:
                gw = s.observed.gateway or s.observed.type
                actual = f"via {gw} proto {protocol_name(s.observed.protocol)}"
                if s.state is RouteState.OTHER_METRIC:
                    actual += f" metric {s.observed.effective_metric}"
                if s.observed.extras and s.state is RouteState.CONFLICT:
                    actual += " " + " ".join(s.observed.extras)
            desired = f"via {s.desired_gateway} ({s.via_host})" if s.desired_gateway else "-"
            rows.append([o.host.name, str(s.dst), desired, actual,
                         Text(str(s.state), _STATE_STYLE[s.state])])
        for i in o.paths:
            rows.append([o.host.name, str(i.part), i.wanted, i.detail,
                         Text(str(i.state), "red")])
        if not o.before.statuses and not o.paths and full:
            rows.append([o.host.name, "", "", "", Text("in sync (no routes needed)", "green")])
    if rows:
        print_table(out, "podroutes status", columns, rows, sections=True, first_only=0)
    if in_sync and len(in_sync) < len(outcomes):
        synced = set(in_sync)
        routes = sum(len(o.before.statuses) for o in outcomes
                     if o.before is not None and o.host.name in synced)
        names = ", ".join(in_sync) if len(in_sync) <= 12 else \
            ", ".join(in_sync[:10]) + f" and {len(in_sync) - 10} more"
        listed = "" if full else "; --full lists them"
        out.print(f"[green]in sync[/]: {counted(len(in_sync), 'host')} "
                  f"({counted(routes, 'route')}{listed}): {escape(names)}")
    _print_errors(out, outcomes)
    for o in outcomes:
        for note in o.path_notes:
            out.print(f"[yellow]{o.host.name}[/]: path verdict from the model only: {note}",
                      soft_wrap=True)
    _print_conflicts(out, outcomes)
    print_beside(out, outcomes)
    drift = sum(1 for o in outcomes if o.before and not (o.before.in_sync and not o.paths))
    down = sum(1 for o in outcomes if o.error)
    if not drift and not down:
        routes = sum(len(o.before.statuses) for o in outcomes if o.before is not None)
        listed = "" if full else "; --full lists them"
        verb = "matches" if len(outcomes) == 1 else "match"
        out.print(f"[green]in sync[/]: all {counted(len(outcomes), 'host')} {verb} the plan "
                  f"({counted(routes, 'route')}{listed})")
    else:
        out.print(f"{counted(drift, 'host')} drifted, {down} unreachable, of {len(outcomes)}")
