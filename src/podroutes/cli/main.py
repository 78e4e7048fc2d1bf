"""The ``podroutes`` command: the only code that prints or picks an exit status.

Reads the inventory (a file or ``-`` for stdin), calls the pure core and the engine, and
renders results with Rich (or JSON with ``--json``). Library errors arrive as one
exception family; ``--debug`` re-raises them with a traceback. Shared options live in
:mod:`podroutes.cli.options`; other command groups load lazily (``LAZY_COMMANDS``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import click

from podroutes.cli import plan_output as render
from podroutes.cli.exit_status import ExitStatus
from podroutes.cli.options import (
    HostOptions,
    check_protocol,
    console,
    err_console,
    handle_errors,
    inventory_options,
    reach,
    read_inventory,
    report_interrupt,
    ssh_options,
)
from podroutes.core.model import Manager, SshTargetKind
from podroutes.core.outcome import HostOutcome, HostState
from podroutes.core.plan import RoutePlan, plan

if TYPE_CHECKING:
    from podroutes.persist.plan import HostPersistence

# Start-up: what a command does not use is not imported (``python -X importtime -m
# podroutes ...``). asyncio, the engine and the transports load in the commands that
# reach hosts, Rich (through the output modules) only when something is printed with it:
# ``plan`` never loads asyncio, ``apply --json`` never loads Rich.

#: Commands that live in their own modules, imported only when they run (or for --help):
#: ``podroutes apply`` does not pay for the agent's, the lab's or doctor's imports.
LAZY_COMMANDS = {
    "lab": "podroutes.cli.lab:lab",
    "persist": "podroutes.cli.persist:persist_command",
    "doctor": "podroutes.cli.diag:doctor_command",
    "trace": "podroutes.cli.diag:trace_command",
    "agent": "podroutes.cli.agent:agent_command",
}


class LazyGroup(click.Group):
    """A group whose other commands are imported by name on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`podroutes plan --json | head`): stop quietly with the
            # status Unix tools have then (128 + SIGPIPE); nothing more goes to the pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(141) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--full", is_flag=True,
              help="Every route even for huge plans: a table row per route; json, script "
                   "and batch above 1,000,000 routes.")
@handle_errors
def plan_command(inventory: str, protocol: int, as_json: bool, fmt: str, ssh_user: str,
                 ssh_target: str, full: bool) -> None:
    """Validate the inventory and print each host's desired routes."""
    check_protocol(protocol)
    route_plan = plan(read_inventory(inventory))
    if (as_json or fmt != "table") and not full and \
            (count := route_plan.route_count()) > STREAM_ROUTE_LIMIT:
        # say the size before streaming minutes of output nobody asked for knowingly
        per_route = {"json": 95, "script": 60, "batch": 55}["json" if as_json else fmt]
        err_console().print(
            f"plan: {len(route_plan.inventory):,} hosts need {count:,} routes (about "
            f"{count * per_route / 1e9:,.1f} GB as {'json' if as_json else fmt}); more than "
            f"{STREAM_ROUTE_LIMIT:,}: pass --full to stream them all, or use the table "
            "(one row per host)")
        sys.exit(ExitStatus.INVALID)
    if as_json or fmt == "json":
        write_chunks(render.iter_plan_json(route_plan, protocol))
    elif fmt == "script":
        from podroutes.remote.transport import SshTransport

        transport = SshTransport(user=ssh_user, target_kind=SshTargetKind(ssh_target))
        write_chunks(render.iter_plan_script(route_plan, protocol, transport.target, ssh_user))
    elif fmt == "batch":
        write_chunks(render.iter_plan_batch(route_plan, protocol))
    elif full or route_plan.route_count() <= TABLE_ROUTE_LIMIT:
        print_plan_table(route_plan)
    else:
        print_plan_summary(route_plan)


#: Above this many routes, ``plan`` prints one row per host instead of one per route.
TABLE_ROUTE_LIMIT = 2000
#: Above this many routes, the streamed formats need ``--full`` (1,000 full-mesh nodes).
STREAM_ROUTE_LIMIT = 1_000_000


def write_chunks(chunks: Iterable[str]) -> None:
    """Stream a rendering to stdout, so a huge plan is never held whole in memory."""
    for chunk in chunks:
        sys.stdout.write(chunk)
    sys.stdout.flush()


def print_plan_summary(route_plan: RoutePlan) -> None:
    """One line per host, as plain aligned columns: a Rich table of thousands of rows
    takes seconds to lay out, this takes milliseconds."""
    rows = list(render.plan_summary_rows(route_plan))
    header = ("host", "address", "pod CIDRs", "routes")
    widths = [max(len(header[i]), *(len(str(r[i])) for r in rows)) for i in range(4)]
    lines = [f"Pod network routes for {route_plan.inventory.source} (per host)",
             "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                         str(r[3]).rjust(widths[3])]) for r in rows]
    write_chunks(line + "\n" for line in lines)
    out = console()
    out.print(f"{len(route_plan.inventory)} hosts, {route_plan.route_count()} routes "
              f"(more than {TABLE_ROUTE_LIMIT}: one row per host; --full lists every route, "
              "--format batch|json|script streams them)")


def print_plan_table(route_plan: RoutePlan) -> None:
    from podroutes.cli.tables import Column, print_table

    columns = (Column("host", no_wrap=True), Column("destination", no_wrap=True),
               Column("gateway", no_wrap=True), Column("meaning", optional=True))
    out = console()
    print_table(out, f"Pod network routes for {route_plan.inventory.source}", columns,
                render.plan_rows(route_plan), sections=True, first_only=0)
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
                  lock_wait: float, host_options: HostOptions) -> None:
    """Converge every host's routes to the plan over SSH (or --local)."""
    import asyncio

    from podroutes.remote.engine import run_hosts

    reached = reach(host_options, inventory, protocol)
    states: dict[str, HostState] = {}
    try:
        with host_progress(len(reached.covered), "applying", quiet=as_json,
                           states=states) as on_done:
            outcomes = asyncio.run(run_hosts(
                reached.transport, plan(reached.inventory), protocol, write=True, force=force,
                dry_run=dry_run, parallel=host_options.parallel, timeout=host_options.timeout,
                lock_wait=lock_wait, states=states, only=reached.only, on_done=on_done))
    except KeyboardInterrupt:
        report_interrupt(states)
        sys.exit(ExitStatus.INTERRUPTED)
    if as_json:
        from podroutes.cli.apply_output import outcome_json

        click.echo(json.dumps({"dry_run": dry_run, "hosts": [outcome_json(o) for o in outcomes]},
                              indent=2))
    else:
        from podroutes.cli.apply_output import print_apply

        print_apply(console(), outcomes, dry_run)
    sys.exit(ExitStatus.FAILED if any(_would_fail(o, dry_run, force) for o in outcomes)
             else ExitStatus.OK)


def _would_fail(o: HostOutcome, dry_run: bool, force: bool) -> bool:
    """Whether apply fails on this host; a dry run answers for the real run: a conflict
    kept (no --force) or a change withheld (gateway off-link) leaves the host unconverged."""
    if o.error:
        return True
    if not dry_run:
        return not o.converged
    return bool(o.results) or bool(o.before and o.before.conflicts and not force)


def still_running(states: Mapping[str, HostState], limit: int = 3) -> str:
    """The hosts a run still waits for, as the progress bar names them."""
    running = [name for name, state in states.items() if state is HostState.RUNNING] or [
        name for name, state in states.items() if state is HostState.PENDING]
    shown = ", ".join(running[:limit])
    return shown + (f" and {len(running) - limit} more" if len(running) > limit else "")


@contextlib.contextmanager
def host_progress(total: int, verb: str, quiet: bool, states: Mapping[str, HostState],
                  ) -> Iterator[Callable[[HostOutcome], None] | None]:
    """A Rich progress bar over hosts on a terminal (stderr), naming the hosts still
    running (never one that finished: a hung host is the one named); nothing with --json
    or when stderr is not a terminal, so scripts and logs see only the result."""
    if quiet or total < 2:  # before making a console: --json never loads Rich
        yield None
        return
    err = err_console()
    if not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn(f"{verb} {{task.description}}"), BarColumn(),
                  MofNCompleteColumn(), console=err, transient=True) as progress:
        task = progress.add_task("", total=total)

        def done(outcome: HostOutcome) -> None:
            progress.update(task, advance=1, description=still_running(states))

        yield done


@main.command("status")
@inventory_options
@ssh_options
@click.option("--check-persist", is_flag=True,
              help="Also read each host's network manager configuration and report routes "
                   "applied but not persisted, and persisted but not applied (drift, 3).")
@click.option("--persist-format", type=click.Choice(["auto", *(m.value for m in Manager)]),
              default="auto", show_default=True,
              help="With --check-persist: the manager to read (as persist --format).")
@click.option("--full", is_flag=True,
              help="List every route, also those in sync (by default: only what differs).")
@handle_errors
def status_command(inventory: str, protocol: int, as_json: bool, check_persist: bool,
                   persist_format: str, full: bool, host_options: HostOptions) -> None:
    """Show desired against actual routes on every host."""
    import asyncio

    from podroutes.cli.apply_output import outcome_json, print_status
    from podroutes.remote.engine import run_hosts

    reached = reach(host_options, inventory, protocol)
    transport, only = reached.transport, reached.only
    parallel, timeout = host_options.parallel, host_options.timeout
    states: dict[str, HostState] = {}
    persistence: dict[str, HostPersistence] | None = None
    if check_persist:  # its modules load only when asked for
        from podroutes.cli.persist_output import persistence_json, print_persistence
        from podroutes.persist.wire import read_persistence
    try:
        outcomes = asyncio.run(run_hosts(transport, plan(reached.inventory), protocol,
                                         write=False, parallel=parallel, timeout=timeout,
                                         states=states, only=only, judge=True))
        if check_persist:  # a second connection per host: the engine reads routes only
            forced = None if persist_format == "auto" else Manager(persist_format)
            persistence = asyncio.run(read_persistence(
                transport, plan(reached.inventory), forced=forced, parallel=parallel,
                timeout=timeout, only=only))
    except KeyboardInterrupt:
        report_interrupt(states)
        sys.exit(ExitStatus.INTERRUPTED)
    if as_json:
        hosts = [outcome_json(o) for o in outcomes]
        if persistence is not None:
            for host in hosts:
                host["persistence"] = persistence_json(persistence[host["host"]])
        click.echo(json.dumps({"hosts": hosts}, indent=2))
    else:
        print_status(console(), outcomes, full)
        if persistence is not None:
            print_persistence(console(), list(persistence.values()))
    unpersisted = persistence is not None and not all(p.in_sync for p in persistence.values())
    if any(o.error for o in outcomes) or any(p.error for p in (persistence or {}).values()):
        sys.exit(ExitStatus.FAILED)
    converged = all(o.converged for o in outcomes) and not unpersisted
    sys.exit(ExitStatus.OK if converged else ExitStatus.DRIFT)


def run() -> None:  # pragma: no cover - console-script entry point
    main(prog_name="podroutes")


if __name__ == "__main__":  # pragma: no cover
    run()
