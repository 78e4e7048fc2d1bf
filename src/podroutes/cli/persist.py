"""``podroutes persist``: write the routes where each host's network manager reads them.

CLI layer: reads the inventory, runs :func:`podroutes.persist.wire.persist_hosts` over the
shared transport options (:mod:`podroutes.cli.options`), prints what was (or, with
``--dry-run``, would be) written per host, a unified diff per file (rendered by
:mod:`podroutes.cli.persist_output`), and picks the exit status: 0 every host persisted
(or already was), 1 some host failed, 2 bad input. Loaded lazily by
:class:`podroutes.cli.main.LazyGroup`.
"""

from __future__ import annotations

import asyncio
import json
import sys

import click

from podroutes.cli.exit_status import ExitStatus
from podroutes.cli.options import (
    HostOptions,
    check_protocol,
    console,
    handle_errors,
    inventory_options,
    reach,
    ssh_options,
)
from podroutes.cli.persist_output import outcome_json, print_persist
from podroutes.core.errors import UsageError
from podroutes.core.iproute import IFNAME_RE
from podroutes.core.model import Manager
from podroutes.core.plan import plan
from podroutes.persist.wire import check_root, persist_hosts

FORMATS = ["auto", *(m.value for m in Manager)]


@click.command("persist")
@inventory_options
@ssh_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="The network manager to write for; auto detects it per host.")
@click.option("--dry-run", is_flag=True, help="Show a diff of every file per host; change nothing.")
@click.option("--interface", metavar="NAME",
              help="The node interface (default: the one holding the host's address).")
@click.option("--root", default="/", show_default=True, metavar="PATH",
              help="Filesystem root the files are read and written under.")
@click.option("--fix-foreign-routes", is_flag=True,
              help="Where systemd-networkd would delete applied routes it does not "
                   "configure, write ManageForeignRoutes=no to its networkd.conf.d.")
@handle_errors
def persist_command(inventory: str, protocol: int, as_json: bool, fmt: str, dry_run: bool,
                    interface: str | None, root: str, fix_foreign_routes: bool,
                    host_options: HostOptions) -> None:
    """Write every host's routes into its network manager's configuration."""
    check_protocol(protocol)  # the flags first, --protocol first of them (reach() checks it too)
    if interface is not None and not IFNAME_RE.match(interface):
        raise UsageError(f"--interface {interface!r}: not an interface name")
    fs_root = check_root(root)
    reached = reach(host_options, inventory, protocol)
    forced = None if fmt == "auto" else Manager(fmt)
    try:
        outcomes = asyncio.run(persist_hosts(
            reached.transport, plan(reached.inventory), protocol, forced=forced,
            interface=interface, root=fs_root, dry_run=dry_run,
            fix_foreign_routes=fix_foreign_routes, parallel=host_options.parallel,
            timeout=host_options.timeout, only=reached.only))
    except KeyboardInterrupt:
        sys.exit(ExitStatus.INTERRUPTED)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "root": root,
                               "hosts": [outcome_json(o) for o in outcomes]}, indent=2))
    else:
        print_persist(console(), outcomes, dry_run)
    sys.exit(ExitStatus.OK if all(o.ok for o in outcomes) else ExitStatus.FAILED)
