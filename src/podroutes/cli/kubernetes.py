"""The cluster as an inventory: ``-i kubernetes`` for every command, and doctor's
comparison of an inventory file with the cluster (``doctor --compare-kubernetes``).

CLI layer: lists Node objects once through :func:`podroutes.agent.kube.list_nodes` (the
agent's own client and kubeconfig loading), maps them with the agent's own mapping
(:mod:`podroutes.inventory.kubernetes`), prints the notices about nodes on stderr and
renders the comparison (human and JSON). Imported only when a command reads the cluster
(:func:`podroutes.cli.options.read_inventory`, :mod:`podroutes.cli.diag`), so other runs
never load lightkube. Every failure to read the cluster exits 2 before any host is
contacted.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

from podroutes.cli.options import KUBERNETES, err_console, given_kubeconfig
from podroutes.core.errors import UsageError
from podroutes.core.model import Inventory
from podroutes.inventory.kubernetes import NO_POD_CIDRS, Comparison, compare, strict_inventory


def _nodes(kubeconfig: str | None) -> list[dict[str, Any]]:
    from podroutes.agent.kube import list_nodes  # lightkube and httpx load only here

    try:
        objects, _ = list_nodes(kubeconfig)
    except UsageError as exc:
        raise UsageError(f"{exc}; no host was contacted") from exc
    return objects


def read_cluster(kubeconfig: str | None) -> Inventory:
    """The inventory of ``-i kubernetes``: every Node, held to an inventory file's rules
    (:func:`~podroutes.inventory.kubernetes.strict_inventory`); a node without a pod CIDR
    is said on stderr (it gets routes, none lead to it)."""
    if os.path.isfile(KUBERNETES):
        raise UsageError("-i kubernetes reads the cluster's Node objects, and a file named "
                         "'kubernetes' is here too: write -i ./kubernetes to read the file")
    inventory, notices = strict_inventory(_nodes(kubeconfig))
    err = err_console()
    for notice in notices:
        err.print(f"[yellow]warning:[/] {notice}", soft_wrap=True)
    return inventory


def compare_cluster(inventory: Inventory) -> Comparison:
    """``inventory`` (a file) against the cluster of ``--kubeconfig``."""
    return compare(inventory, _nodes(given_kubeconfig()))


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    return {
        "pod_cidrs_compared": comparison.pod_cidrs_compared,
        "disagreements": [
            {"kind": str(d.kind), "node": d.node,
             "family": None if d.family is None else f"ipv{d.family.value}",
             "inventory": d.inventory, "cluster": d.cluster, "message": d.message}
            for d in comparison.disagreements],
        "notices": [{"node": n.node, "notice": str(n.kind), "message": n.message,
                     "routable": n.routable} for n in comparison.notices],
    }


def print_comparison(out: Console, comparison: Comparison, source: str) -> None:
    """doctor's section: the inventory file against the cluster's Nodes."""
    count = len(comparison.disagreements)
    out.print()
    if count:
        noun = "disagreement" if count == 1 else "disagreements"
        out.print(f"[bold]{source} against the cluster's Nodes:[/] [yellow]{count} {noun}[/]")
    else:
        out.print(f"[bold]{source} against the cluster's Nodes:[/] [green]they agree[/]")
    for d in comparison.disagreements:
        out.print(f"  {d.kind}: {d.message}", markup=False, soft_wrap=True)
    for notice in comparison.notices:
        out.print(f"  note: {notice}", markup=False, soft_wrap=True)
    if not comparison.pod_cidrs_compared:
        out.print(f"  note: pod CIDRs not compared: {NO_POD_CIDRS}", markup=False,
                  soft_wrap=True)
