"""``--local --host NAME`` for doctor and trace: the diag wire functions open a session
only on the hosts named in ``only`` (as :func:`podroutes.remote.engine.run_hosts` does);
a host not named is never read, judged or changed, while the whole inventory still
shapes the plan. Against a fake transport that records every session it opens and
every command a host is sent; nothing runs on this machine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pytest
from click.testing import CliRunner

from podroutes.cli.main import main
from podroutes.core.model import Host, Inventory
from podroutes.core.plan import plan
from podroutes.diag.facts import FACT_COMMANDS, FactKind
from podroutes.diag.trace import planned_network, resolve, simulate
from podroutes.diag.wire import ask_kernels, doctor, observe
from podroutes.inventory import load
from podroutes.remote.session import Command, CommandResult

from .samples import MACHINES

PROTOCOL = 147
_ROUTES = {FACT_COMMANDS[FactKind.ROUTE4], FACT_COMMANDS[FactKind.ROUTE6]}


class FakeSession:
    def __init__(self, transport: FakeTransport, host: str) -> None:
        self.transport, self.host = transport, host

    async def __aenter__(self) -> FakeSession:
        self.transport.opened.append(self.host)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None

    async def run_many(self, commands: Sequence[Command],
                       pause: object = None) -> list[CommandResult]:
        results = []
        for c in commands:
            self.transport.sent.append((self.host, c.argv))
            if c.argv in _ROUTES or c.argv == FACT_COMMANDS[FactKind.ADDR]:
                # no addresses, empty tables: every planned route is missing
                results.append(CommandResult(c.argv, 0, "[]", ""))
            elif c.argv[:3] == ("ip", "route", "replace") or c.argv[:2] == ("sysctl", "-w"):
                results.append(CommandResult(c.argv, 0, "", ""))  # a fix: "done"
            else:
                results.append(CommandResult(c.argv, 127, "", "sh: not found"))
        return results


class FakeTransport:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def session(self, host: Host) -> FakeSession:
        return FakeSession(self, host.name)

    def describe(self, host: Host) -> str:
        return f"fake {host.name}"


@pytest.fixture
def inventory() -> Inventory:
    return load(MACHINES, "machines.txt")


def test_doctor_reads_every_host_without_only(inventory: Inventory) -> None:
    transport = FakeTransport()
    report = asyncio.run(doctor(transport, plan(inventory), PROTOCOL))  # type: ignore[arg-type]
    assert sorted(transport.opened) == ["node-0", "node-1", "server"]
    assert set(report.facts) == {"server", "node-0", "node-1"}
    assert {f.host for f in report.findings} > {"node-0"}  # the fake finds routes missing


def test_doctor_only_reads_judges_and_fixes_the_named_host(inventory: Inventory) -> None:
    transport = FakeTransport()
    report = asyncio.run(doctor(transport, plan(inventory), PROTOCOL,  # type: ignore[arg-type]
                                fix=True, fix_firewall=True, only=["node-0"]))
    assert transport.opened == ["node-0", "node-0"]  # read, then repair and read again
    assert {host for host, _ in transport.sent} == {"node-0"}
    assert set(report.facts) == {"node-0"}
    assert report.errors == {}
    assert report.before is not None and report.before
    assert {f.host for f in report.before} == {"node-0"}
    assert {f.host for f in report.findings} <= {"node-0"}
    assert report.fixes and {x.host for x in report.fixes} == {"node-0"}
    # the rest of the inventory still shapes node-0's plan: routes to node-1's pods
    assert any("10.200.1.0/24" in x.command for x in report.fixes)


def test_observe_only_reads_the_named_host(inventory: Inventory) -> None:
    transport = FakeTransport()
    facts, errors = asyncio.run(observe(transport, inventory, 4, 5.0,  # type: ignore[arg-type]
                                        only=["node-1"]))
    assert transport.opened == ["node-1"]
    assert set(facts) == {"node-1"} and errors == {}


def test_ask_kernels_only_asks_the_hops_on_the_named_host(inventory: Inventory) -> None:
    network = planned_network(plan(inventory), PROTOCOL)
    trace = simulate(network, *resolve(network, "10.200.0.2", "10.200.1.2"))
    on_node0 = {i for i, hop in enumerate(trace.hops) if hop.host == "node-0"}
    assert on_node0 and {hop.host for hop in trace.hops} >= {"node-0", "node-1"}

    everywhere = FakeTransport()
    answers, _ = asyncio.run(ask_kernels(everywhere, inventory, trace,  # type: ignore[arg-type]
                                         4, 5.0))
    assert set(everywhere.opened) >= {"node-0", "node-1"}

    transport = FakeTransport()
    answers, errors = asyncio.run(ask_kernels(transport, inventory, trace,  # type: ignore[arg-type]
                                              4, 5.0, only=["node-0"]))
    assert transport.opened == ["node-0"]
    assert set(answers) == on_node0 and errors == {}


@pytest.mark.parametrize("args", [
    ["doctor"], ["trace", "10.200.0.2", "10.200.1.2", "--observed"],
])
def test_doctor_and_trace_reject_host_without_local(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "machines.txt"
    path.write_text(MACHINES)
    result = CliRunner().invoke(main, [*args, "-i", str(path), "--host", "node-0"])
    assert result.exit_code == 2
    assert "--host NAME only makes sense with --local" in result.output


@pytest.fixture
def fake_local(monkeypatch: pytest.MonkeyPatch) -> FakeTransport:
    """``--local`` reaches this fake instead of this machine's shell."""
    transport = FakeTransport()
    monkeypatch.setattr("podroutes.cli.options.make_transport", lambda options, inv: transport)
    return transport


def test_doctor_local_host_reports_and_fixes_only_that_host(
        tmp_path: Path, fake_local: FakeTransport) -> None:
    path = tmp_path / "machines.txt"
    path.write_text(MACHINES)
    result = CliRunner().invoke(main, ["doctor", "-i", str(path), "--local", "--host",
                                       "node-0", "--fix", "--json"])
    assert result.exit_code == 3, result.output  # the fake's routes stay missing
    data = json.loads(result.output)
    assert [h["host"] for h in data["hosts"]] == ["node-0"]
    assert {f["host"] for f in data["findings"]} == {"node-0"}
    assert {x["host"] for x in data["fixes"]} == {"node-0"}
    assert set(fake_local.opened) == {"node-0"}


def test_doctor_local_host_human_report_counts_only_that_host(
        tmp_path: Path, fake_local: FakeTransport) -> None:
    path = tmp_path / "machines.txt"
    path.write_text(MACHINES)
    result = CliRunner().invoke(main, ["doctor", "-i", str(path), "--local", "--host",
                                       "node-0"])
    assert result.exit_code == 3, result.output
    assert "node-0 (192.168.10.101): 1 finding" in result.output
    assert "node-1 (" not in result.output and "server" not in result.output
    assert "healthy" not in result.output  # node-1 and server were not checked
    assert "1 host: 1 finding on 1 host" in result.output
    assert set(fake_local.opened) == {"node-0"}


def test_trace_observed_local_host_reads_only_that_host(
        tmp_path: Path, fake_local: FakeTransport) -> None:
    path = tmp_path / "machines.txt"
    path.write_text(MACHINES)
    result = CliRunner().invoke(main, ["trace", "10.200.0.2", "10.200.1.2", "-i", str(path),
                                       "--live", "--local", "--host", "node-0", "--json"])
    assert result.exit_code in (0, 3), result.output
    assert set(fake_local.opened) == {"node-0"}
