"""Options, errors and exit statuses shared by every ``podroutes`` command module.

CLI layer: reads the inventory file, turns library errors into messages and exit
statuses, builds the transport from the SSH flags. Used by :mod:`podroutes.cli.main`,
:mod:`podroutes.cli.diag` and the other command modules; only the CLI layer prints.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from podroutes.cli.exit_status import ExitStatus
from podroutes.core.errors import InventoryError, PodroutesError, Problem, UsageError
from podroutes.core.model import DEFAULT_PROTOCOL, RESERVED_PROTOCOLS, Inventory, SshTargetKind
from podroutes.core.outcome import HostState
from podroutes.inventory import load
from podroutes.remote.transport import LocalTransport, SshTransport, Transport

MAX_INVENTORY_BYTES = 16 << 20
F = TypeVar("F", bound=Callable[..., Any])


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
                     help="Work on this machine's own table instead of over SSH."),
        click.option("--host", "local_host", metavar="NAME",
                     help="With --local: which inventory host this machine is."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def check_protocol(protocol: int) -> None:
    if not 1 <= protocol <= 254 or protocol in RESERVED_PROTOCOLS:
        raise UsageError(f"--protocol {protocol}: must be 1-254 and not one a well-known "
                         "daemon uses (2-4, 8-18, 42, 80, 84, 99, 186-192)")


def local_hosts(opts: dict[str, Any], inventory: Inventory) -> list[str] | None:
    """With ``--local``, the one host this machine is; ``None`` means every host."""
    if not opts.get("local"):
        if opts.get("local_host"):
            raise UsageError("--host NAME only makes sense with --local")
        return None
    name = opts.get("local_host")
    if name is None:
        if len(inventory) != 1:
            raise UsageError("--local with a multi-host inventory needs --host NAME")
        return [inventory.hosts[0].name]
    if name not in {h.name for h in inventory}:
        raise UsageError(f"--host {name}: no such host in {inventory.source}")
    return [name]


def make_transport(opts: dict[str, Any], inventory: Inventory) -> Transport:
    if opts["local"]:
        local_hosts(opts, inventory)
        return LocalTransport()
    transport = SshTransport(
        user=opts["ssh_user"], target_kind=SshTargetKind(opts["ssh_target"]),
        config_file=opts["ssh_config"], options=tuple(opts["ssh_option"]),
        connect_timeout=min(10.0, opts["timeout"]),
    )
    for host in inventory:  # resolve every target now: a bad flag fails before connecting
        transport.target(host)
    return transport
