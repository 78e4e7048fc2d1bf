"""``podroutes lab ...``: build, inspect, use and remove the namespace lab. CLI layer."""

from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console
from rich.table import Table

from podroutes.cli.exit_status import ExitStatus
from podroutes.cli.options import console, err_console
from podroutes.core.errors import LabError
from podroutes.lab import netns as labmod
from podroutes.lab.seed import MANAGERS
from podroutes.lab.smoke import Ping, matrix, neighbour_table_fulls

_name = click.option("--name", default="podroutes", show_default=True, help="Lab name.")


def _out() -> Console:
    return console()


def _fail(exc: LabError) -> None:
    err_console().print(f"[bold red]lab:[/] {exc}")
    sys.exit(ExitStatus.FAILED)


@click.group("lab")
def lab() -> None:
    """The Kubernetes-the-Hard-Way topology in network namespaces on this machine."""


@lab.command("up")
@_name
@click.option("--nodes", type=int, default=2, show_default=True)
@click.option("--pods-per-node", type=int, default=2, show_default=True)
@click.option("--dual-stack", is_flag=True,
              help="Also IPv6: node addresses fd00:10::N, pod CIDRs fd00:200:I::/64.")
@click.option("--manager", type=click.Choice(MANAGERS),
              help="Seed every machine's own /etc with this network manager's base config "
                   "for eth0 (networkd and netplan also run systemd-networkd in it).")
@click.option("--ipmasq/--no-ipmasq", default=True, show_default=True,
              help="Give every pod the nat rules the CNI bridge plugin writes with "
                   "\"ipMasq\": true (KTHW's 10-bridge.conf): pods then reach other nodes' "
                   "pods as their node's address.")
@click.option("--cni-subnet", "cni_subnets", multiple=True, metavar="NODE=CIDR",
              help="Write CIDR as NODE's SUBNET in its 10-bridge.conf instead of its pod "
                   "CIDR (a wrong sed): its cni0 and pods take addresses from it; "
                   "machines.txt keeps the right CIDR. Repeatable.")
def up_command(name: str, nodes: int, pods_per_node: int, dual_stack: bool,
               manager: str | None, ipmasq: bool, cni_subnets: tuple[str, ...]) -> None:
    """Build the lab: jumpbox, server, nodes with cni0, KTHW's 10-bridge.conf and pods, an
    sshd per machine."""
    try:
        pairs = []
        for given in cni_subnets:
            node, sep, cidr = given.partition("=")
            if not sep:
                raise LabError(f"--cni-subnet {given!r}: use NODE=CIDR, e.g. "
                               "node-1=10.200.9.0/24")
            pairs.append((node, cidr))
        spec = labmod.up(labmod.LabSpec(name=name, nodes=nodes, pods_per_node=pods_per_node,
                                        dual_stack=dual_stack, manager=manager, ipmasq=ipmasq,
                                        cni_subnets=tuple(pairs)))
    except LabError as exc:
        _fail(exc)
        return
    d = spec.directory
    out = _out()
    extra = (" (dual-stack)" if dual_stack else "") + (f" ({manager})" if manager else "") + \
        ("" if ipmasq else " (no ipMasq rules)")
    out.print(f"[green]lab {name!r} is up[/]{extra}: jumpbox, "
              f"server, {nodes} nodes, {nodes * pods_per_node} pods, "
              f"{len(spec.machines())} sshd")
    # paths and commands to copy: each on a line of its own, never wrapped
    out.print(f"  inventory:  {d}/machines.txt", soft_wrap=True)
    out.print(f"  (YAML:      {d}/inventory.yaml)", soft_wrap=True)
    out.print(f"  ssh config: {d}/ssh_config", soft_wrap=True)
    out.print("  apply from the jumpbox:")
    out.print(f"    podroutes lab exec --name {name} jumpbox -- podroutes apply "
              f"-i {d}/machines.txt --ssh-config {d}/ssh_config --ssh-target hostname",
              soft_wrap=True, markup=False)


@lab.command("down")
@_name
def down_command(name: str) -> None:
    """Remove everything the lab made, and nothing else."""
    try:
        gone = labmod.down(labmod.load_spec(name))
    except LabError as exc:
        _fail(exc)
        return
    _out().print(f"lab {name!r} removed ({len(gone)} namespaces)")


@lab.command("status")
@_name
@click.option("--json", "as_json", is_flag=True)
def status_command(name: str, as_json: bool) -> None:
    """Report which of the lab's namespaces and sshds are there."""
    try:
        state = labmod.status(labmod.load_spec(name))
    except LabError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        table = Table(title=f"lab {name!r} ({state['directory']})")
        for column in ("machine", "role", "address", "namespace", "sshd"):
            table.add_column(column)
        for m in state["machines"]:  # type: ignore[attr-defined]
            ns = "[green]up[/]" if m["namespace_present"] else "[red]missing[/]"
            sshd = "" if m["role"] == "pod" else (
                f"[green]pid {m['sshd_pid']}[/]" if m["sshd_pid"] else "[red]stopped[/]")
            address = ", ".join(a for a in (m["address"], m.get("address6")) if a)
            table.add_row(m["name"], m["role"], address, ns, sshd)
        _out().print(table)
    sys.exit(ExitStatus.OK if state["healthy"] else ExitStatus.FAILED)


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@_name
@click.argument("machine")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(name: str, machine: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside a lab machine (e.g. the jumpbox): lab exec jumpbox -- CMD."""
    if command[0] == "podroutes":  # the same podroutes as this one, venv or not
        command = (sys.executable, "-m", "podroutes", *command[1:])
    try:
        argv = labmod.exec_argv(labmod.load_spec(name), machine, command, os.getcwd())
    except LabError as exc:
        _fail(exc)
        return
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@lab.command("smoke")
@_name
@click.option("--json", "as_json", is_flag=True)
def smoke_command(name: str, as_json: bool) -> None:
    """Ping every pod from every other pod (in each family of the lab); print the
    matrices; exit 1 if any pair fails."""
    try:
        spec = labmod.load_spec(name)
        labmod.require_root()
        fulls = neighbour_table_fulls()
        results = matrix(spec)
        table_full = neighbour_table_fulls() > fulls
    except LabError as exc:
        _fail(exc)
        return
    failed = [r for r in results if not r.ok]
    full_note = ("the kernel's neighbour (ARP/NDP) table was full during the smoke: it "
                 "holds net.ipv4.neigh.default.gc_thresh3 entries (1024 by default) for ALL "
                 "namespaces together, and a lab of about 30 nodes x 2 pods needs more; "
                 "pairs can fail for want of an ARP entry, not of a route: try fewer nodes "
                 "or pods, or stop other labs")
    if as_json:
        click.echo(json.dumps({
            "pairs": len(results), "failed": len(failed), "families": list(spec.families),
            "neighbour_table_full": table_full,
            "natted": sum(1 for r in results if r.natted),
            "results": [{"src": r.src.name, "dst": r.dst.name, "family": r.family,
                         "src_address": r.src_address, "dst_address": r.dst_address,
                         "ok": r.ok, "detail": r.detail, "seen_source": r.seen,
                         "nat": r.natted}
                        for r in results]}, indent=2))
        sys.exit(ExitStatus.FAILED if failed else ExitStatus.OK)
    out = _out()
    for family in spec.families:
        out.print(_matrix_table(spec, name, family, [r for r in results if r.family == family]))
    for r in failed[:10]:
        which = f"IPv{r.family} " if spec.dual_stack else ""
        out.print(f"  [red]✗[/] {which}{r.src.name} → {r.dst.name} ({r.dst_address}): "
                  f"{r.detail}")
    if spec.dual_stack:
        for family in spec.families:
            bad = sum(1 for r in failed if r.family == family)
            total = sum(1 for r in results if r.family == family)
            out.print(f"  IPv{family}: " + ("[green]all pairs pass[/]" if not bad else
                                            f"[red]{bad} of {total} pairs failed[/]"))
    natted = [r for r in results if r.natted]
    if natted:
        r = natted[0]
        out.print(f"  [yellow]N[/]: the destination saw another source than the sending pod "
                  f"(a NAT on the way, e.g. the CNI bridge plugin's ipMasq rules): "
                  f"{len(natted)} pairs, e.g. {r.src.name} ({r.src_address}) → {r.dst.name} "
                  f"seen as {r.seen}")
    verdict = "[green]all pairs reach each other[/]" if not failed else \
        f"[red]{len(failed)} of {len(results)} pairs failed[/]"
    if natted:
        verdict += f"; [yellow]{len(natted)} with their source rewritten[/]"
    if table_full:
        out.print(f"[yellow]warning[/]: {full_note}")
    out.print(f"smoke: {verdict}")
    sys.exit(ExitStatus.FAILED if failed else ExitStatus.OK)


def _matrix_table(spec: labmod.LabSpec, name: str, family: int, results: list[Ping]) -> Table:
    pods = spec.pods()
    ok = {(r.src.name, r.dst.name): r.ok for r in results}
    natted = {(r.src.name, r.dst.name) for r in results if r.natted}
    which = f"IPv{family} " if spec.dual_stack else ""
    table = Table(title=f"pod-to-pod {which}ping matrix, lab {name!r} (row pings column)")
    table.add_column("from \\ to")
    for p in pods:
        table.add_column(f"{p.name}\n{p.address_of(family)}", justify="center")
    for a in pods:
        table.add_row(f"{a.name} {a.address_of(family)}", *(
            "·" if a is b else ("[red]✗[/]" if not ok[(a.name, b.name)] else
                                "[yellow]N[/]" if (a.name, b.name) in natted else "[green]✓[/]")
            for b in pods))
    return table
