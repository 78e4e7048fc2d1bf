"""``podroutes doctor`` and ``podroutes trace``: the CLI layer of diagnosis.

Prints (Rich, or JSON with ``--json``) and picks exit statuses: doctor 0 healthy, 3
findings remain, 1 a host could not be read; trace 0 delivered, 3 dropped, looped, left
the cluster or the kernel disagreed, 1 a host could not be read; 2 bad input for both.
Loaded lazily by :class:`podroutes.cli.main.LazyGroup`; reuses :mod:`podroutes.cli.options`;
renders through :mod:`podroutes.cli.diag_output`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from podroutes.cli.diag_output import doctor_json, print_doctor, print_errors, print_trace
from podroutes.cli.exit_status import ExitStatus
from podroutes.cli.options import (
    KUBERNETES,
    HostOptions,
    check_protocol,
    connect,
    console,
    handle_errors,
    inventory_options,
    reach,
    read_inventory,
    ssh_options,
)
from podroutes.core.errors import UsageError
from podroutes.core.iproute import IFNAME_RE
from podroutes.core.model import Family, Inventory
from podroutes.core.plan import plan
from podroutes.diag.firewall import nat_chains
from podroutes.diag.trace import (
    Disagreement,
    KernelAnswer,
    Outcome,
    Trace,
    compare,
    observed_network,
    planned_network,
    resolve,
    simulate,
)
from podroutes.diag.trace_draw import trace_json
from podroutes.diag.wire import ask_kernels, doctor, observe


def _bridge(name: str | None) -> str | None:
    if name is not None and not IFNAME_RE.match(name):
        raise UsageError(f"--bridge {name!r}: not an interface name")
    return name


def bridge_option(func: Any) -> Any:
    return click.option("--bridge", default=None,
                        help="The pods' bridge on every node. Default: doctor uses the bridge "
                             "each node's CNI configuration names (else cni0, as the bridge "
                             "plugin does); trace uses cni0 (KTHW).")(func)


@click.command("doctor")
@inventory_options
@ssh_options
@bridge_option
@click.option("--fix", is_flag=True,
              help="Apply the safe fixes: forwarding on, missing routes, the bridge route "
                   "of the node's own pod CIDR (own-CIDR clashes); then re-read and re-judge.")
@click.option("--fix-firewall", is_flag=True,
              help="Add narrow accept rules for pod CIDRs where a firewall drops them "
                   "(never changes a policy), and one rule at the top of nat POSTROUTING "
                   "that exempts pod-to-pod traffic from masquerading.")
@click.option("--probe", is_flag=True,
              help="Also ping from each node's bridge address to every other node's "
                   "(both families): proves the pod CIDR routes both ways, not forwarding.")
@click.option("--compare-kubernetes", is_flag=True,
              help="Also list the cluster's Nodes (--kubeconfig) and report where they "
                   "disagree with the inventory file: a node on one side only, another "
                   "pod CIDR, another address.")
@handle_errors
def doctor_command(inventory: str, protocol: int, as_json: bool, bridge: str | None, fix: bool,
                   fix_firewall: bool, probe: bool, compare_kubernetes: bool,
                   host_options: HostOptions) -> None:
    """Find every known cause of pods not reaching each other, on every host."""
    if compare_kubernetes and inventory == KUBERNETES:
        raise UsageError("--compare-kubernetes compares an inventory file with the cluster: "
                         "give the file with -i (not -i kubernetes)")
    reached = reach(host_options, inventory, protocol)
    comparison = None
    if compare_kubernetes:  # read before any host is contacted: a failure exits 2 first
        from podroutes.cli.kubernetes import compare_cluster
        comparison = compare_cluster(reached.inventory)
    report = asyncio.run(doctor(reached.transport, plan(reached.inventory), protocol,
                                bridge=_bridge(bridge), fix=fix, fix_firewall=fix_firewall,
                                parallel=host_options.parallel, timeout=host_options.timeout,
                                only=reached.only, probe=probe))
    checked = reached.covered  # --local --host NAME: that host only, never the others
    if as_json:
        data = doctor_json(report, checked)
        if comparison is not None:
            from podroutes.cli.kubernetes import comparison_json
            data["kubernetes"] = comparison_json(comparison)
        click.echo(json.dumps(data, indent=2))
    else:
        print_doctor(console(), report, checked)
        if comparison is not None:
            from podroutes.cli.kubernetes import print_comparison
            print_comparison(console(), comparison, reached.inventory.source)
    if report.errors:
        sys.exit(ExitStatus.FAILED)
    disagree = comparison is not None and bool(comparison.disagreements)
    sys.exit(ExitStatus.DRIFT if report.findings or disagree else ExitStatus.OK)


@click.command("trace")
@click.argument("src")
@click.argument("dst")
@inventory_options
@ssh_options
@bridge_option
@click.option("--observed", is_flag=True, help="Use each host's real table (read over SSH).")
@click.option("--live", is_flag=True,
              help="Ask each hop's kernel (ip route get) and compare; implies --observed.")
@click.option("--node-dev", default="eth0", show_default=True,
              help="The node interface name drawn for planned tables.")
@handle_errors
def trace_command(src: str, dst: str, inventory: str, protocol: int, as_json: bool,
                  bridge: str | None, observed: bool, live: bool, node_dev: str,
                  host_options: HostOptions) -> None:
    """Show the hop-by-hop path of a packet from SRC to DST (pod IP, node IP or host)."""
    check_protocol(protocol)
    inv = read_inventory(inventory)
    route_plan = plan(inv)
    if not IFNAME_RE.match(node_dev):
        raise UsageError(f"--node-dev {node_dev!r}: not an interface name")
    network = planned_network(route_plan, protocol, node_dev, _bridge(bridge) or "cni0")
    resolve(network, src, dst)  # bad input exits 2 before any host is contacted
    errors: dict[str, str] = {}
    if observed or live:
        reached = connect(host_options, inv)  # --local --host NAME: NAME's table only
        facts, errors = asyncio.run(observe(reached.transport, inv, host_options.parallel,
                                            host_options.timeout, only=reached.only))
        # A host that could not be read (or, with --local --host, was not selected) is
        # "unread": a path through it ends there as unknown, a path around it is traced.
        unread = {h.name: errors.get(h.name, "not selected (--local --host)")
                  for h in inv if h.name not in facts}
        network = observed_network(
            route_plan, {n: f.routes for n, f in facts.items()},
            {n: f.local_addresses() for n, f in facts.items()}, _bridge(bridge) or "cni0",
            forwarding={n: f.forwarding() for n, f in facts.items()}, unread=unread,
            paths={n: f.paths for n, f in facts.items() if f.paths is not None},
            nat={n: {fam: nat_chains(f.iptables.get(fam), f.nft, fam) for fam in Family}
                 for n, f in facts.items()},
            cni={n: f.cni.bridge.subnets for n, f in facts.items()
                 if f.cni is not None and f.cni.bridge is not None})
    a, b = resolve(network, src, dst)
    result = simulate(network, a, b)
    answers: dict[int, KernelAnswer] = {}
    disagreements: dict[int, Disagreement] = {}
    if live:  # a second connection to each hop host: the hops follow from every table
        answers, asked = asyncio.run(ask_kernels(reached.transport, inv, result,
                                                 host_options.parallel, host_options.timeout,
                                                 only=reached.only))
        errors.update(asked)
        for index, answer in answers.items():
            found = compare(result.hops[index], answer)
            if found is not None:
                disagreements[index] = found
    _print_trace(as_json, result, inv, answers, disagreements, errors)
    if result.outcome is Outcome.UNKNOWN:
        sys.exit(ExitStatus.FAILED)
    ok = result.outcome is Outcome.DELIVERED and not disagreements
    sys.exit(ExitStatus.OK if ok else ExitStatus.DRIFT)


def _print_trace(as_json: bool, result: Trace, inv: Inventory,
                 answers: dict[int, KernelAnswer], disagreements: dict[int, Disagreement],
                 errors: dict[str, str]) -> None:
    if as_json:
        data = trace_json(result, list(disagreements.values()), answers)
        data["errors"] = errors
        click.echo(json.dumps(data, indent=2))
        return
    out = console()
    print_trace(out, result, inv, answers, disagreements)
    print_errors(out, errors)
