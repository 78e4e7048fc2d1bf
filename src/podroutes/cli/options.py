"""Options, errors and exit statuses shared by every ``podroutes`` command module.

CLI layer: reads the inventory file, turns library errors into messages and exit
statuses (:class:`~podroutes.cli.exit_status.ExitStatus`), gathers the SSH and
``--local`` flags into one :class:`HostOptions`, and sets up every command that reaches
hosts the same way (:func:`reach`: the inventory, the transport, the hosts to work on).
Used by :mod:`podroutes.cli.main`, :mod:`podroutes.cli.diag` and the other command
modules; only the CLI layer prints.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, TypeVar

import click

from podroutes.cli.exit_status import ExitStatus
from podroutes.core.errors import InventoryError, PodroutesError, Problem, UsageError
from podroutes.core.model import DEFAULT_PROTOCOL, RESERVED_PROTOCOLS, Inventory, SshTargetKind
from podroutes.core.outcome import HostState
from podroutes.inventory import load
from podroutes.remote import multiplex

if TYPE_CHECKING:  # Rich and the transports (asyncio) load when used: see cli/main.py
    from rich.console import Console

    from podroutes.remote.transport import Transport

MAX_INVENTORY_BYTES = 16 << 20
F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


def report_interrupt(states: dict[str, HostState]) -> None:
    """After Ctrl-C: which hosts finished, which were cut off, which never started."""
    err = err_console()
    err.print("[bold red]interrupted[/]: every ssh connection was closed")
    for state in HostState:
        names = [name for name, s in states.items() if s is state]
        if names:
            err.print(f"  {state} ({len(names)}): {', '.join(names)}", soft_wrap=True)


def counted(n: int, word: str, plural: str | None = None) -> str:
    """``1 host``, ``3 hosts``, ``1 change``: the count and the word in agreement."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


#: The width of output that is not a terminal and has no ``COLUMNS``.
PIPE_WIDTH = 120


def width(stream: TextIO) -> int | None:
    """The width to lay out for: ``COLUMNS`` when it is a positive number (a terminal's
    own size otherwise), :data:`PIPE_WIDTH` for a pipe or file without it."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and 0 < int(columns) < 10_000:
        return max(int(columns), 20)
    return None if stream.isatty() else PIPE_WIDTH


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, width=width(sys.stdout))


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=width(sys.stderr))


#: ``-i kubernetes``: the inventory is the cluster's Node objects (a file of that name:
#: ``-i ./kubernetes``). See docs/inventory.md.
KUBERNETES = "kubernetes"
KUBECONFIG_KEY = "podroutes.kubeconfig"


def given_kubeconfig() -> str | None:
    """``--kubeconfig FILE`` of the running command, if given."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(KUBECONFIG_KEY) if ctx is not None else None


def read_inventory(path: str) -> Inventory:
    """Read the inventory file (or stdin, or the cluster's Nodes) and validate it; nothing
    else runs before."""
    if path == KUBERNETES:
        from podroutes.cli.kubernetes import read_cluster  # lightkube loads only for this

        return read_cluster(given_kubeconfig())
    ctx = click.get_current_context(silent=True)
    if given_kubeconfig() is not None and not (ctx and ctx.params.get("compare_kubernetes")):
        raise UsageError("--kubeconfig goes with -i kubernetes (or doctor --compare-kubernetes)")
    source = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            data = _read_limited(sys.stdin.buffer)
        else:
            with open(path, "rb") as handle:
                data = _read_limited(handle)
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


def _read_limited(handle: BinaryIO) -> bytes:
    """Up to one byte more than :data:`MAX_INVENTORY_BYTES`, 64 KiB at a time: memory
    grows with the file, not with the limit (``read(limit)`` allocates the whole limit)."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_INVENTORY_BYTES:
        chunk = handle.read(min(1 << 16, MAX_INVENTORY_BYTES + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


#: Problems listed on a terminal before "... and N more" (``--json`` lists every one).
SHOWN_PROBLEMS = 20


def report_problems(problems: Sequence[Problem], as_json: bool) -> None:
    """A rejected inventory: every problem as JSON on stdout with ``--json``; otherwise
    the first :data:`SHOWN_PROBLEMS` on stderr, one grep-able line each, and how many more."""
    if as_json:
        click.echo(json.dumps({"error": "invalid inventory", "changed": False, "problems": [
            {"source": p.source, "line": p.line, "field": p.field, "message": p.message}
            for p in problems]}, indent=2))
        return
    err = err_console()
    err.print(f"[bold red]invalid inventory[/] ({counted(len(problems), 'problem')}); "
              "nothing was changed:")
    for problem in problems[:SHOWN_PROBLEMS]:  # one line each, never wrapped: grep-able
        err.print(f"  {problem}", markup=False, soft_wrap=True)
    if len(problems) > SHOWN_PROBLEMS:
        err.print(f"  ... and {len(problems) - SHOWN_PROBLEMS:,} more (--json lists them all)",
                  markup=False)


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
                report_problems(exc.problems, as_json=bool(kwargs.get("as_json")))
                sys.exit(ExitStatus.INVALID)
            err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
            sys.exit(ExitStatus.INVALID if isinstance(exc, UsageError) else ExitStatus.FAILED)

    return wrapper  # type: ignore[return-value]


def _remember_kubeconfig(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[KUBECONFIG_KEY] = value


def inventory_options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--protocol", type=int, default=DEFAULT_PROTOCOL, show_default=True,
                        help="Route protocol number that marks podroutes' own routes.")(func)
    func = click.option("--kubeconfig", type=click.Path(dir_okay=False), metavar="FILE",
                        expose_value=False, callback=_remember_kubeconfig,
                        help="With -i kubernetes: the cluster's kubeconfig (default: the "
                             "in-cluster service account, $KUBECONFIG, ~/.kube/config).")(func)
    return click.option("-i", "--inventory", required=True, metavar="PATH",
                        help="machines.txt or YAML inventory; '-' reads stdin; 'kubernetes' "
                             "reads the cluster's Node objects.")(func)


#: Seconds an ssh connection master stays after its last use (``--ssh-persist``).
DEFAULT_SSH_PERSIST = 60


@dataclass(frozen=True, slots=True)
class HostOptions:
    """How a command reaches its hosts: the flags of :func:`ssh_options`, typed, once."""

    ssh_config: str | None  # ssh -F FILE
    ssh_user: str
    ssh_target: SshTargetKind  # what to connect to
    ssh_option: tuple[str, ...]  # extra ssh -o KEY=VALUE
    parallel: int  # hosts worked on at once
    timeout: float  # seconds per host
    local: bool  # this machine's own shell instead of SSH
    local_host: str | None  # with --local: which inventory host this machine is
    ssh_persist: int = DEFAULT_SSH_PERSIST  # seconds an ssh master stays; 0: no reuse


def ssh_options(func: Callable[..., R]) -> Callable[..., R]:
    """The flags of every command that reaches hosts; the command gets them as one
    :class:`HostOptions` in its ``host_options`` parameter."""

    @functools.wraps(func)
    def gather(*args: object, ssh_config: str | None, ssh_user: str, ssh_target: str,
               ssh_option: tuple[str, ...], parallel: int, timeout: float, local: bool,
               local_host: str | None, ssh_persist: int, **kwargs: object) -> R:
        host_options = HostOptions(
            ssh_config=ssh_config, ssh_user=ssh_user, ssh_target=SshTargetKind(ssh_target),
            ssh_option=tuple(ssh_option), parallel=parallel, timeout=timeout, local=local,
            local_host=local_host, ssh_persist=ssh_persist)
        return func(*args, host_options=host_options, **kwargs)

    options = [
        click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh -F FILE."),
        click.option("--ssh-user", default="root", show_default=True),
        click.option("--ssh-target", type=click.Choice([k.value for k in SshTargetKind]),
                     default="address", show_default=True, help="What to connect to."),
        click.option("--ssh-option", multiple=True, metavar="KEY=VALUE",
                     help="Extra ssh -o option (repeatable)."),
        click.option("--ssh-persist", type=click.IntRange(0, 86400),
                     default=DEFAULT_SSH_PERSIST, show_default=True, metavar="SECONDS",
                     help="Reuse ssh connections: a master per host stays SECONDS after "
                          "its last use (0: off; your ssh config wins if it sets "
                          "ControlMaster/ControlPath/ControlPersist)."),
        click.option("--parallel", type=click.IntRange(1, 1024), default=32,
                     show_default=True, help="Hosts worked on at once."),
        click.option("--timeout", type=click.FloatRange(0.1), default=30.0, show_default=True,
                     help="Seconds allowed per host."),
        click.option("--local", is_flag=True,
                     help="Work on this machine's own table instead of over SSH."),
        click.option("--host", "local_host", metavar="NAME",
                     help="With --local: which inventory host this machine is."),
    ]
    command: Callable[..., R] = gather
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True, slots=True)
class Reach:
    """What a command that reaches hosts works with, from :func:`reach`."""

    inventory: Inventory  # the whole inventory: it shapes every host's plan
    transport: Transport
    only: tuple[str, ...] | None  # the hosts to read or change; None: every host

    @property
    def covered(self) -> Inventory:
        """The inventory cut down to the hosts worked on (for reports)."""
        if self.only is None:
            return self.inventory
        return replace(self.inventory,
                       hosts=tuple(h for h in self.inventory if h.name in self.only))


def reach(options: HostOptions, inventory_path: str, protocol: int) -> Reach:
    """The set-up of every command that reaches hosts: check ``--protocol``, read the
    inventory, then :func:`connect`. Nothing is sent to any host."""
    check_protocol(protocol)
    return connect(options, read_inventory(inventory_path))


def connect(options: HostOptions, inventory: Inventory) -> Reach:
    """The transport and the hosts to work on (``--local --host NAME``: that one); a bad
    flag fails here, before any host is contacted."""
    transport = make_transport(options, inventory)
    return Reach(inventory, transport, local_hosts(options, inventory))


def check_protocol(protocol: int) -> None:
    if not 1 <= protocol <= 254 or protocol in RESERVED_PROTOCOLS:
        raise UsageError(f"--protocol {protocol}: must be 1-254 and not one a well-known "
                         "daemon uses (2-4, 8-18, 42, 80, 84, 99, 186-192)")


def local_hosts(options: HostOptions, inventory: Inventory) -> tuple[str, ...] | None:
    """With ``--local``, the one host this machine is; ``None`` means every host."""
    if not options.local:
        if options.local_host:
            raise UsageError("--host NAME only makes sense with --local")
        return None
    name = options.local_host
    if name is None:
        if len(inventory) != 1:
            raise UsageError("--local with a multi-host inventory needs --host NAME")
        return (inventory.hosts[0].name,)
    if name not in {h.name for h in inventory}:
        raise UsageError(f"--host {name}: no such host in {inventory.source}")
    return (name,)


def make_transport(options: HostOptions, inventory: Inventory) -> Transport:
    from podroutes.remote.transport import LocalTransport, SshTransport

    if options.local:
        return LocalTransport()
    transport = SshTransport(
        user=options.ssh_user, target_kind=options.ssh_target,
        config_file=options.ssh_config, options=options.ssh_option,
        connect_timeout=min(10.0, options.timeout),
    )
    if options.ssh_persist:
        transport = replace(transport, multiplex=multiplex.plan(
            options.ssh_config, options.ssh_option, options.ssh_persist))
    for host in inventory:  # resolve every target now: a bad flag fails before connecting
        transport.target(host)
    return transport
