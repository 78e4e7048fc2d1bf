"""The CLI's one set-up for the commands that reach hosts: the SSH and ``--local`` flags
gathered into one typed :class:`~podroutes.cli.options.HostOptions`, and
:func:`~podroutes.cli.options.reach` (inventory, transport, the hosts to work on)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from podroutes.cli.main import main
from podroutes.cli.options import HostOptions, connect, reach, ssh_options
from podroutes.core.errors import UsageError
from podroutes.core.model import SshTargetKind
from podroutes.inventory import load
from podroutes.remote.transport import LocalTransport, SshTransport

from .samples import MACHINES

DEFAULTS = HostOptions(ssh_config=None, ssh_user="root", ssh_target=SshTargetKind.ADDRESS,
                       ssh_option=(), parallel=32, timeout=30.0, local=False, local_host=None)


def gathered(*args: str) -> HostOptions:
    """The HostOptions a command decorated with ``ssh_options`` receives for ``args``."""
    seen: list[HostOptions] = []

    @click.command()
    @click.option("--other", default="x")
    @ssh_options
    def command(other: str, host_options: HostOptions) -> None:
        assert other == "x"
        seen.append(host_options)

    result = CliRunner().invoke(command, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen[0]


def options(**changes: object) -> HostOptions:
    return replace(DEFAULTS, **changes)  # type: ignore[arg-type]


def test_ssh_options_gathers_the_defaults_into_one_value() -> None:
    assert gathered() == DEFAULTS


def test_ssh_options_gathers_every_flag_typed() -> None:
    got = gathered("--ssh-config", "cfg", "--ssh-user", "admin", "--ssh-target", "fqdn",
                   "--ssh-option", "Port=2222", "--ssh-option", "User=x", "--parallel", "4",
                   "--timeout", "2.5", "--local", "--host", "node-0", "--ssh-persist", "5")
    assert got == HostOptions(ssh_config="cfg", ssh_user="admin",
                              ssh_target=SshTargetKind.FQDN, ssh_option=("Port=2222", "User=x"),
                              parallel=4, timeout=2.5, local=True, local_host="node-0",
                              ssh_persist=5)
    with pytest.raises(AttributeError):
        got.parallel = 1  # type: ignore[misc]  # frozen: built once


@pytest.mark.parametrize("name", ["apply", "status", "persist", "doctor", "trace"])
def test_every_command_that_reaches_hosts_takes_the_same_flags(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    flags = {o for p in command.params for o in p.opts}
    assert {"--ssh-config", "--ssh-user", "--ssh-target", "--ssh-option", "--parallel",
            "--timeout", "--local", "--host", "--ssh-persist"} <= flags


@pytest.fixture
def machines(tmp_path: Path) -> str:
    path = tmp_path / "machines.txt"
    path.write_text(MACHINES)
    return str(path)


def test_reach_over_ssh_works_on_every_host(machines: str) -> None:
    reached = reach(options(ssh_user="admin", ssh_option=("Port=2222",), timeout=3.0,
                            ssh_persist=0), machines, 147)
    assert [h.name for h in reached.inventory] == ["server", "node-0", "node-1"]
    assert reached.only is None
    assert reached.covered is reached.inventory
    assert reached.transport == SshTransport(user="admin", target_kind=SshTargetKind.ADDRESS,
                                             options=("Port=2222",), connect_timeout=3.0)


def test_reach_local_host_selects_that_host_and_keeps_the_whole_inventory(
        machines: str) -> None:
    reached = reach(options(local=True, local_host="node-0"), machines, 147)
    assert isinstance(reached.transport, LocalTransport)
    assert reached.only == ("node-0",)
    assert [h.name for h in reached.inventory] == ["server", "node-0", "node-1"]
    assert [h.name for h in reached.covered] == ["node-0"]
    assert reached.covered.source == reached.inventory.source


def test_local_on_a_one_host_inventory_needs_no_host_name() -> None:
    inventory = load("192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n", "one")
    assert connect(options(local=True), inventory).only == ("node-0",)


@pytest.mark.parametrize(("changes", "message"), [
    ({"local": True}, "--local with a multi-host inventory needs --host NAME"),
    ({"local": True, "local_host": "node-9"}, "--host node-9: no such host"),
    ({"local_host": "node-0"}, "--host NAME only makes sense with --local"),
])
def test_reach_rejects_a_bad_host_selection(machines: str, changes: dict[str, object],
                                            message: str) -> None:
    with pytest.raises(UsageError, match=message):
        reach(options(**changes), machines, 147)


def test_reach_checks_the_protocol_before_reading_the_inventory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--protocol 2"):
        reach(DEFAULTS, str(tmp_path / "missing.txt"), 2)


@pytest.mark.parametrize(("args", "says"), [
    (["plan", "--format", "script", "--ssh-user", "-oProxyCommand=id"], "--ssh-user"),
    (["status", "--ssh-user", "-oProxyCommand=id"], "not a login name"),
    (["status", "--ssh-config", "/nonexistent/ssh_config"], "no such readable file"),
    (["doctor", "--ssh-option", "-oProxyCommand"], "expected Key=Value"),
])
def test_ssh_flags_are_checked_before_anything_connects(tmp_path: Path, args: list[str],
                                                        says: str) -> None:
    """Nothing that starts with '-' reaches ssh as a user; a missing config file is one
    clear error (exit 2), not a failure on every host."""
    machines = tmp_path / "machines.txt"
    machines.write_text(MACHINES)
    result = CliRunner().invoke(main, [*args, "-i", str(machines)])
    assert result.exit_code == 2, result.output
    assert says in result.output and "-oProxyCommand=id@" not in result.output
