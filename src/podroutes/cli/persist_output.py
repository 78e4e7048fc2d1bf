"""Human and JSON renderings of persist outcomes and of ``status --check-persist``.

Part of the CLI layer. Writes only to the Rich console it is handed; called by
:mod:`podroutes.cli.persist` (``persist``) and :mod:`podroutes.cli.main`
(``status --check-persist``).
"""

from __future__ import annotations

import shlex
from typing import Any

from rich.console import Console
from rich.table import Table

from podroutes.cli.options import counted
from podroutes.persist.plan import FileAction, HostPersistence, PersistState
from podroutes.persist.wire import PersistOutcome


def outcome_json(o: PersistOutcome) -> dict[str, Any]:
    p = o.plan
    return {
        "host": o.host.name, "ok": o.ok, "error": o.error, "written": o.written,
        "failures": o.failures,
        "manager": str(p.detection.manager) if p else None,
        "interface": p.detection.interface if p else None,
        "why": p.detection.why if p else None,
        "routes": p.routes if p else None,
        "in_sync": p.in_sync if p else None,
        "warnings": list(p.warnings) if p else [],
        "files": [{"path": c.path, "action": str(c.action),
                   "mode": f"{c.mode:o}" if c.mode is not None else None, "diff": c.diff()}
                  for c in (p.changes if p else ())],
        "commands": [list(a) for a in (p.commands if p else ())],
    }


def print_persist(out: Console, outcomes: list[PersistOutcome], dry_run: bool) -> None:
    for o in outcomes:
        p = o.plan
        if p is None:
            out.print(f"[bold]{o.host.name}[/]: [red]failed[/]: {o.error}", soft_wrap=True)
            continue
        det = p.detection
        state = ("[green]already persisted[/]" if p.in_sync else
                 "would change" if dry_run else
                 "[red]failed[/]" if not o.ok else "[green]persisted[/]")
        out.print(f"[bold]{o.host.name}[/]: {det.manager.label} on {det.interface}, "
                  f"{p.routes} route{'s' if p.routes != 1 else ''}: {state}")
        out.print(f"  [dim]{det.why}[/]", soft_wrap=True)
        if not dry_run and o.error is not None:
            # Stopped before anything ran: never list an action as done.
            out.print(f"  [red]failed[/]: {o.error}; nothing written", soft_wrap=True)
            continue
        if not dry_run and o.failures:
            # Stopped part way: what ran is unknown line by line; say so, claim nothing.
            for failure in o.failures:
                out.print(f"  [red]failed[/]: {failure}", soft_wrap=True)
            out.print("  [yellow]stopped at the first failure: earlier steps may have been "
                      "applied; run persist again[/]", soft_wrap=True)
            continue
        for c in p.changes:
            if c.action is FileAction.UNCHANGED and not dry_run:
                continue
            out.print(f"  {c.action} {c.path}", markup=False)
            if dry_run and c.action is not FileAction.UNCHANGED:
                for line in c.diff().splitlines():
                    style = ("green" if line.startswith("+") else
                             "red" if line.startswith("-") else "")
                    out.print(f"    [{style}]{line}[/]" if style else f"    {line}",
                              markup=bool(style), soft_wrap=True, highlight=False)
        for argv in p.commands:
            out.print(("  would run: " if dry_run else "  ran: ") + _shell(argv),
                      markup=False, soft_wrap=True)
        for warning in p.warnings:
            out.print(f"  [yellow]warning[/]: {warning}", soft_wrap=True)
        for failure in o.failures:
            out.print(f"  [red]failed[/]: {failure}", soft_wrap=True)
    good = sum(1 for o in outcomes if o.ok)
    changed = sum(1 for o in outcomes if o.plan is not None and not o.plan.in_sync
                  and (dry_run or o.ok))
    verb = "would change" if dry_run else "changed"
    out.print(f"{counted(len(outcomes), 'host')}: {changed} {verb}, "
              f"{sum(1 for o in outcomes if o.plan and o.plan.in_sync)} already persisted, "
              f"{len(outcomes) - good} failed" + (" [dim](dry run: nothing was changed)[/]"
                                                   if dry_run else ""))


def _shell(argv: tuple[str, ...]) -> str:
    return shlex.join(argv)


# --- status --check-persist (called by podroutes.cli.main) ---------------------------------

_PERSIST_STYLE = {
    PersistState.BOTH: "green", PersistState.APPLIED_ONLY: "yellow",
    PersistState.PERSISTED_ONLY: "yellow", PersistState.NEITHER: "red",
    PersistState.STALE: "magenta",
}


def persistence_json(p: HostPersistence) -> dict[str, Any]:
    """``status --check-persist``: one host's persisted state (the ``persistence`` key)."""
    return {"manager": str(p.manager) if p.manager else None, "in_sync": p.in_sync,
            "error": p.error, "interface": p.detail.get("interface"),
            "why": p.detail.get("why"),
            "routes": [{"state": str(r.state), "dst": r.dst, "gateway": r.gateway}
                       for r in p.routes]}


def print_persistence(out: Console, hosts: list[HostPersistence]) -> None:
    """``status --check-persist``: does each route survive a reboot?"""
    table = Table(title="podroutes status: persisted across a reboot?")
    for column in ("host", "manager", "destination", "gateway", "state"):
        table.add_column(column)
    for p in hosts:
        if p.error is not None:
            table.add_row(p.host, "", "", "", f"[red]not checked: {p.error}[/]")
            table.add_section()
            continue
        manager = p.manager.label if p.manager else ""
        for index, r in enumerate(p.routes):
            table.add_row(p.host if index == 0 else "", manager if index == 0 else "", r.dst,
                          r.gateway, f"[{_PERSIST_STYLE[r.state]}]{r.state}[/]")
        if not p.routes:
            table.add_row(p.host, manager, "", "", "[green]nothing to persist[/]")
        table.add_section()
    out.print(table)
    drift = [p.host for p in hosts if not p.in_sync and p.error is None]
    unchecked = [p.host for p in hosts if p.error is not None]
    if not drift and not unchecked:
        out.print(f"[green]persisted[/]: every planned route of all "
                  f"{counted(len(hosts), 'host')} survives a reboot")
        return
    parts = []
    if drift:
        parts.append(f"{counted(len(drift), 'host')} not persisted as planned: "
                     f"{', '.join(drift)}")
    if unchecked:
        parts.append(f"{counted(len(unchecked), 'host')} not checked: {', '.join(unchecked)}")
    out.print("; ".join(parts), soft_wrap=True)
