"""The ``podroutes`` command: the only code that prints or picks an exit status.

Reads the inventory (a file or ``-`` for stdin), calls the pure core and the engine, and
renders results with Rich (or JSON with ``--json``). Library errors arrive as one
exception family; ``--debug`` re-raises them with a traceback.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from podroutes import render
from podroutes.engine import HostState, run_hosts
from podroutes.errors import InventoryError, PodroutesError, Problem, UsageError
from podroutes.inventory import load
from podroutes.model import DEFAULT_PROTOCOL, RESERVED_PROTOCOLS, Inventory, SshTargetKind
from podroutes.plan import RoutePlan, plan
from podroutes.report import outcome_json, print_apply, print_status
from podroutes.transport import LocalTransport, SshTransport, Transport

MAX_INVENTORY_BYTES = 16 << 20
F = TypeVar("F", bound=Callable[..., Any])


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1
    INVALID = 2
    DRIFT = 3
    INTERRUPTED = 130


def report_interrupt(states: dict[str, HostState]) -> None:
    """After Ctrl-C: which hosts finished, which were cut off, which never started."""
    err = err_console()
    err.print("[bold red]interrupted[/]: every ssh connection was closed")
    for state in HostState:
        names = [name for name, s in states.items() if s is state]
        if names:
            err.print(f"  {state} ({len(names)}): {', '.join(names)}", soft_wrap=True)


def console() -> Console:
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)


def read_inventory(path: str) -> Inventory:
    """Read the inventory file (or stdin) and validate it; nothing else runs before."""
    source = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_INVENTORY_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INVENTORY_BYTES + 1)
    except OSError as exc:
        raise InventoryError([Problem(source, 0, "file", exc.strerror or str(exc))]) from exc
    if len(data) > MAX_INVENTORY_BYTES:
        raise InventoryError([Problem(source, 0, "file",
                                      f"larger than {MAX_INVENTORY_BYTES >> 20} MiB")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError([Problem(source, line, "file", "is not UTF-8 text")]) from exc
    return load(text, source)


def handle_errors(func: F) -> F:
    """Turn library errors into a message and the exit status the CLI contract names."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PodroutesError as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            err = err_console()
            if isinstance(exc, InventoryError):
                err.print(f"[bold red]invalid inventory[/] ({len(exc.problems)} problem"
                          f"{'s' if len(exc.problems) != 1 else ''}); nothing was changed:")
                for problem in exc.problems:  # one line each, never wrapped: grep-able
                    err.print(f"  {problem}", markup=False, soft_wrap=True)
                sys.exit(ExitStatus.INVALID)
            err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
            sys.exit(ExitStatus.INVALID if isinstance(exc, UsageError) else ExitStatus.FAILED)

    return wrapper  # type: ignore[return-value]


def inventory_options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--protocol", type=int, default=DEFAULT_PROTOCOL, show_default=True,
                        help="Route protocol number that marks podroutes' own routes.")(func)
    return click.option("-i", "--inventory", required=True, metavar="PATH",
                        help="machines.txt or YAML inventory; '-' reads stdin.")(func)


def ssh_options(func: F) -> F:
    options = [
        click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh -F FILE."),
        click.option("--ssh-user", default="root", show_default=True),
        click.option("--ssh-target", type=click.Choice([k.value for k in SshTargetKind]),
                     default="address", show_default=True, help="What to connect to."),
        click.option("--ssh-option", multiple=True, metavar="KEY=VALUE",
                     help="Extra ssh -o option (repeatable)."),
        click.option("--parallel", type=click.IntRange(1, 1024), default=32,
                     show_default=True, help="Hosts worked on at once."),
        click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
                     help="Seconds allowed per host."),
        click.option("--local", is_flag=True,
                     help="Use this machine's shell instead of SSH (one-host inventories)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def check_protocol(protocol: int) -> None:
    if not 1 <= protocol <= 254 or protocol in RESERVED_PROTOCOLS:
        raise UsageError(f"--protocol {protocol}: must be 1-254 and not one a well-known "
                         "daemon uses (2-4, 8-18, 42, 80, 84, 99, 186-192)")


def make_transport(opts: dict[str, Any], inventory: Inventory) -> Transport:
    if opts["local"]:
        if len(inventory) != 1:
            raise UsageError("--local works on a one-host inventory")
        return LocalTransport()
    transport = SshTransport(
        user=opts["ssh_user"], target_kind=SshTargetKind(opts["ssh_target"]),
        config_file=opts["ssh_config"], options=tuple(opts["ssh_option"]),
        connect_timeout=min(10.0, opts["timeout"]),
    )
    for host in inventory:  # resolve every target now: a bad flag fails before connecting
        transport.target(host)
    return transport


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of messages.")
@click.version_option(package_name="podroutes")
def main(debug: bool) -> None:
    """Plan, apply and verify pod network routes on clusters without an overlay."""


@main.command("plan")
@inventory_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "script", "batch"]),
              default="table", show_default=True)
@click.option("--ssh-user", default="root", show_default=True, help="For --format script.")
@click.option("--ssh-target", type=click.Choice([k.value for k in SshTargetKind]),
              default="hostname", show_default=True, help="For --format script.")
@handle_errors
def plan_command(inventory: str, protocol: int, as_json: bool, fmt: str, ssh_user: str,
                 ssh_target: str) -> None:
    """Validate the inventory and print each host's desired routes."""
    check_protocol(protocol)
    route_plan = plan(read_inventory(inventory))
    if as_json or fmt == "json":
        click.echo(render.to_json(render.plan_json(route_plan, protocol)))
    elif fmt == "script":
        transport = SshTransport(user=ssh_user, target_kind=SshTargetKind(ssh_target))
        click.echo(render.plan_script(route_plan, protocol, transport.target, ssh_user), nl=False)
    elif fmt == "batch":
        click.echo(render.plan_batch(route_plan, protocol), nl=False)
    else:
        print_plan_table(route_plan)


def print_plan_table(route_plan: RoutePlan) -> None:
    from rich.table import Table

    table = Table(title=f"Pod network routes for {route_plan.inventory.source}")
    for column in ("host", "destination", "gateway", "meaning"):
        table.add_column(column)
    previous = None
    for host, dst, gateway, meaning in render.plan_rows(route_plan):
        if previous is not None and host != previous:
            table.add_section()
        table.add_row(host if host != previous else "", dst, gateway, meaning)
        previous = host
    out = console()
    out.print(table)
    out.print(f"{len(route_plan.inventory)} hosts, {route_plan.route_count()} routes")


@main.command("apply")
@inventory_options
@ssh_options
@click.option("--dry-run", is_flag=True, help="Print each host's exact commands; change nothing.")
@click.option("--force", is_flag=True, help="Take over conflicting routes of other owners.")
@click.option("--lock-wait", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds to wait for another apply's lock on a host before failing it.")
@handle_errors
def apply_command(inventory: str, protocol: int, as_json: bool, dry_run: bool, force: bool,
                  lock_wait: float, **opts: Any) -> None:
    """Converge every host's routes to the plan over SSH (or --local)."""
    check_protocol(protocol)
    inv = read_inventory(inventory)
    transport = make_transport(opts, inv)
    states: dict[str, HostState] = {}
    try:
        outcomes = asyncio.run(run_hosts(
            transport, plan(inv), protocol, write=True, force=force, dry_run=dry_run,
            parallel=opts["parallel"], timeout=opts["timeout"], lock_wait=lock_wait,
            states=states))
    except KeyboardInterrupt:
        report_interrupt(states)
        sys.exit(ExitStatus.INTERRUPTED)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "hosts": [outcome_json(o) for o in outcomes]},
                              indent=2))
    else:
        print_apply(console(), outcomes, dry_run)
    failed = any(o.error or (not dry_run and not o.converged) for o in outcomes)
    sys.exit(ExitStatus.FAILED if failed else ExitStatus.OK)


@main.command("status")
@inventory_options
@ssh_options
@handle_errors
def status_command(inventory: str, protocol: int, as_json: bool, **opts: Any) -> None:
    """Show desired against actual routes on every host."""
    check_protocol(protocol)
    inv = read_inventory(inventory)
    transport = make_transport(opts, inv)
    states: dict[str, HostState] = {}
    try:
        outcomes = asyncio.run(run_hosts(transport, plan(inv), protocol, write=False,
                                         parallel=opts["parallel"], timeout=opts["timeout"],
                                         states=states))
    except KeyboardInterrupt:
        report_interrupt(states)
        sys.exit(ExitStatus.INTERRUPTED)
    if as_json:
        click.echo(json.dumps({"hosts": [outcome_json(o) for o in outcomes]}, indent=2))
    else:
        print_status(console(), outcomes)
    if any(o.error for o in outcomes):
        sys.exit(ExitStatus.FAILED)
    sys.exit(ExitStatus.OK if all(o.converged for o in outcomes) else ExitStatus.DRIFT)


def _register_commands() -> None:
    """Command groups that live in their own CLI modules."""
    from podroutes.labcli import lab

    main.add_command(lab)


_register_commands()


def run() -> None:  # pragma: no cover - console-script entry point
    main(prog_name="podroutes")


if __name__ == "__main__":  # pragma: no cover
    run()
