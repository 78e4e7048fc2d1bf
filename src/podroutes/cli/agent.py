"""``podroutes agent``: the in-cluster (or systemd) mode that keeps this node's routes converged.

CLI layer: parses flags, sets up structured logging on stderr, runs
:func:`podroutes.agent.app.serve` until SIGTERM/SIGINT and exits 0; a flag that cannot
work exits 2 before anything is touched (:func:`podroutes.cli.options.handle_errors`).
Loaded lazily by :class:`podroutes.cli.main.LazyGroup`.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import click

from podroutes.cli.options import check_protocol, handle_errors
from podroutes.core.model import DEFAULT_PROTOCOL


@click.command("agent")
@click.option("--node-name", envvar="NODE_NAME", metavar="NAME",
              help="This node's name (the Node object, or the inventory host). Default: "
                   "$NODE_NAME, else the host name.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), metavar="FILE",
              help="Kubernetes mode with this kubeconfig. Default: the in-cluster service "
                   "account ($KUBECONFIG or ~/.kube/config outside a cluster).")
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Inventory-file mode: machines.txt or YAML, re-read when it changes "
                   "(no Kubernetes needed).")
@click.option("--resync", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              metavar="SECONDS", help="Full reconcile at least this often.")
@click.option("--protocol", type=int, default=DEFAULT_PROTOCOL, show_default=True,
              help="Route protocol number that marks podroutes' own routes.")
@click.option("--metrics-address", default="127.0.0.1:9101", show_default=True,
              metavar="HOST:PORT", help="Where /metrics, /healthz and /readyz listen "
              "(':9101' for every address; 'off' for none).")
@click.option("--cleanup-on-exit", is_flag=True,
              help="On SIGTERM remove every route carrying our protocol (default: leave the "
                   "routes in place; they keep traffic flowing).")
@click.option("--netns", metavar="NAME",
              help="Manage the table of this named network namespace (tests, labs).")
@click.option("--unavailable-after", type=click.FloatRange(0), default=30.0,
              show_default=True, metavar="SECONDS",
              help="Set NetworkUnavailable=True once routes have failed to converge for "
                   "this long.")
@click.option("--poll", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              metavar="SECONDS", help="Inventory-file mode: how often to check the file.")
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json",
              show_default=True)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@handle_errors
def agent_command(node_name: str | None, kubeconfig: str | None, inventory: Path | None,
                  resync: float, protocol: int, metrics_address: str, cleanup_on_exit: bool,
                  netns: str | None, unavailable_after: float, poll: float, log_format: str,
                  log_level: str) -> None:
    """Keep this node's pod routes converged: watch Nodes (or an inventory file) and the
    kernel's table, and repair drift within a second."""
    # Imported here: the agent's libraries (lightkube, prometheus-client, pyroute2) would
    # otherwise slow down every other podroutes command's start.
    from podroutes.agent import logs
    from podroutes.agent.app import Settings, check, serve
    from podroutes.agent.metrics import parse_listen

    check_protocol(protocol)
    address = None if metrics_address in ("", "off") else metrics_address
    if address is not None:
        parse_listen(address)
    settings = Settings(
        node=node_name or socket.gethostname().split(".")[0], protocol=protocol,
        kubeconfig=kubeconfig, inventory=inventory, resync=resync, metrics_address=address,
        cleanup_on_exit=cleanup_on_exit, netns=netns, unavailable_after=unavailable_after,
        poll=poll)
    check(settings)
    logs.setup(sys.stderr, log_level, log_format)
    asyncio.run(serve(settings))
