"""Human and JSON renderings of doctor reports and traces. Part of the CLI layer.

Writes only to the Rich console it is handed; called by :mod:`podroutes.cli.diag`. The
human doctor report groups findings by host and stays readable at 30 hosts: the shape
first (one line per kind), each kind's explanation once, healthy hosts on one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console

from podroutes.cli.options import counted
from podroutes.core.model import Inventory
from podroutes.core.prose import wrap
from podroutes.diag.findings import Finding, FixClass
from podroutes.diag.probe import PROVES
from podroutes.diag.trace import Disagreement, KernelAnswer, Trace
from podroutes.diag.trace_draw import draw
from podroutes.diag.wire import DoctorReport

_HOW = {FixClass.SAFE: "doctor --fix does this", FixClass.FIREWALL: "doctor --fix-firewall "
        "does this", FixClass.MANUAL: "not automatic: check, then run it yourself"}


def finding_json(f: Finding) -> dict[str, Any]:
    return {"host": f.host, "kind": str(f.kind), "what": f.what, "why": f.why,
            "fix": list(f.fix), "fix_class": str(f.fix_class), "automatic": f.automatic,
            "note": f.note or None}


def doctor_json(report: DoctorReport, inventory: Inventory) -> dict[str, Any]:
    return {
        "healthy": not report.findings and not report.errors,
        "hosts": [{"host": h.name, "error": report.errors.get(h.name),
                   "findings": sum(1 for f in report.findings if f.host == h.name),
                   "not_checked": {str(k): v for k, v in
                                   (report.facts[h.name].unreadable.items()
                                    if h.name in report.facts else ())}}
                  for h in inventory],
        "findings": [finding_json(f) for f in report.findings],
        "before": [finding_json(f) for f in report.before] if report.before is not None
        else None,
        "fixes": [{"host": x.host, "command": x.command, "status": x.status,
                   "stderr": x.stderr} for x in report.fixes],
        "probes": None if not _probed(report) else {
            "proves": PROVES,
            "pings": [{"host": name, "source": str(p.source), "target": str(p.target),
                       "target_host": p.target_host, "answered": p.answered}
                      for name, facts in report.facts.items() for p in facts.probes or ()]},
        "fixed": [finding_json(f) for f in report.fixed],
        "remaining": [finding_json(f) for f in report.remaining],
        "worse": [finding_json(f) for f in report.worse],
    }


def _probed(report: DoctorReport) -> bool:
    return any(f.probes is not None for f in report.facts.values())


def _names(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def print_doctor(out: Console, report: DoctorReport, inventory: Inventory) -> None:
    if report.fixes:
        out.print("[bold]fixes run[/]")
        for x in report.fixes:
            result = "[green]ok[/]" if x.status == 0 else f"[red]failed: {x.stderr}[/]"
            out.print(f"  {x.host}: ", end="")
            out.print(x.command, markup=False, end="")
            out.print(f"  {result}")
        fixed, remaining, worse = report.fixed, report.remaining, report.worse
        out.print(f"re-read and re-judged: [green]{len(fixed)} fixed[/], "
                  f"{len(remaining)} remain, "
                  + (f"[bold red]{len(worse)} new since the fixes[/]" if worse else "none new"))
        for f in worse:
            out.print(f"  [bold red]worse[/] {f.host}: {f.kind}: ", end="")
            out.print(f.what, markup=False, soft_wrap=True)
        out.print()
    by_host: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_host.setdefault(f.host, []).append(f)
    if len(by_host) > 1:  # at 30 hosts, the shape first
        kinds: dict[str, list[str]] = {}
        for f in report.findings:
            hosts = kinds.setdefault(str(f.kind), [])
            if f.host not in hosts:
                hosts.append(f.host)
        for kind, hosts in kinds.items():
            out.print(f"[yellow]{kind}[/] on {len(hosts)} host{'s' * (len(hosts) != 1)}: "
                      f"{_names(hosts)}")
        out.print()
    explained: set[str] = set()
    for host in inventory:
        findings = by_host.get(host.name, [])
        if not findings:
            continue
        address = ", ".join(str(a) for a in host.addresses)
        out.print(f"[bold]{host.name}[/] ({address}): {len(findings)} finding"
                  f"{'s' * (len(findings) != 1)}")
        for f in findings:
            what = wrap(f.what, out.width, f"  ✗ {f.kind}: ", "      ")
            out.print(f"  [red]✗[/] [bold]{f.kind}[/]: ", end="")
            out.print("\n".join([what[0][len(f"  ✗ {f.kind}: "):], *what[1:]]),
                      markup=False, soft_wrap=True)
            if f.kind in explained:
                out.print(f"      why: as for {f.kind} above", markup=False)
            else:
                out.print("\n".join(wrap(f.why, out.width, "      why: ")), markup=False,
                          soft_wrap=True)
                explained.add(f.kind)
            for command in f.fix:  # a command to copy: one line, never wrapped
                out.print(f"      fix: {command}", markup=False, soft_wrap=True)
            if f.note:
                out.print("\n".join(wrap(f.note, out.width, "      note: ")), markup=False,
                          soft_wrap=True)
            out.print(f"      ({_HOW[f.fix_class]})", style="dim", markup=False)
        out.print()
    healthy = [h.name for h in inventory if h.name not in by_host and h.name not in
               report.errors]
    for name, error in report.errors.items():
        out.print(f"[red]{name}: could not be checked:[/] ", end="")
        out.print(error, markup=False)
    for name, facts in report.facts.items():
        for kind, why in facts.unreadable.items():
            out.print(f"[dim]{name}: {kind} not checked ({why})[/]", markup=True)
    if _probed(report):
        pings = [p for f in report.facts.values() for p in f.probes or ()]
        answered = sum(p.answered for p in pings)
        out.print(f"probe: {answered} of {len(pings)} pings between bridge addresses "
                  f"answered. {PROVES[0].upper()}{PROVES[1:]}.", soft_wrap=True)
    if healthy:
        out.print(f"[green]healthy[/]: {_names(healthy)}")
    total = len(report.findings)
    fixable = sum(1 for f in report.findings if f.automatic)
    out.print(f"{counted(len(inventory.hosts), 'host')}: {counted(total, 'finding')} on "
              f"{counted(len(by_host), 'host')}"
              + (f", {fixable} with an automatic fix" if fixable else "")
              + (f", {len(report.errors)} not reachable" if report.errors else ""))



def print_trace(out: Console, result: Trace, inv: Inventory, answers: dict[int, KernelAnswer],
                disagreements: dict[int, Disagreement]) -> None:
    addresses = {h.name: ", ".join(str(a) for a in h.addresses) for h in inv}
    out.print(draw(result, addresses, answers, disagreements, out.width), markup=False,
              end="", soft_wrap=True)
    for d in disagreements.values():
        out.print(f"[red]✗ {d.host}[/]: the kernel answers ", end="")
        out.print(f"{d.kernel}, the simulation says {d.expected}", markup=False)


def print_errors(out: Console, errors: dict[str, str]) -> None:
    for name, error in errors.items():
        out.print(f"[red]{name}: could not be read:[/] ", end="")
        out.print(error, markup=False, soft_wrap=True)
