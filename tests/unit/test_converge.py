"""The engine's per-host step (``_converge``) and ``run_hosts`` around it, against a
scripted fake host (:mod:`tests.unit.fakesession`, a test double: it records every command
sent and answers from an in-memory table; nothing runs, no root needed).

What is checked: the commands sent, in which order and in how many round trips, and the
outcome the engine returns. ``tests/netns/test_engine_local.py`` runs the engine on a real
kernel table.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podroutes.core.diff import Action, RouteState
from podroutes.core.errors import HostCommandError
from podroutes.core.outcome import ChangeOutcome, HostOutcome, HostState
from podroutes.core.plan import plan
from podroutes.core.routecache import RouteCache
from podroutes.inventory import load
from podroutes.remote.engine import _converge, run_hosts
from podroutes.remote.session import Command

from .fakesession import (
    BATCH,
    READ4,
    READ6,
    SUDO,
    Entry,
    FakeHost,
    FakeTransport,
    connected,
    via,
)
from .samples import DUAL, MACHINES

P = 147
LAN = "192.168.10.0/24"
LAN6 = "fd00:10::/64"
UID, HAS_IP, LOCK = ("sh", "uid"), ("sh", "has-ip"), ("sh", "lock")
#: The first round trip: who am I, is ip there, the lock (when writing), both tables.
PREFLIGHT = [UID, HAS_IP, LOCK, READ4, READ6]
PREFLIGHT_READ_ONLY = [UID, HAS_IP, READ4, READ6]
ADD0 = "route add 10.200.0.0/24 via 192.168.10.101 proto 147"
ADD1 = "route add 10.200.1.0/24 via 192.168.10.102 proto 147"
APPLIED, FAILED, WITHHELD = ChangeOutcome.APPLIED, ChangeOutcome.FAILED, ChangeOutcome.WITHHELD


@pytest.fixture(autouse=True)
def _no_failpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODROUTES_FAILPOINT", raising=False)


def lan(*more: Entry) -> list[Entry]:
    return [connected(LAN), *more]


def source(text: str) -> str:
    return "inventory.yaml" if text.startswith("hosts:") else "machines.txt"


def converge(fake: FakeHost, name: str = "node-0", text: str = MACHINES,
             **options: Any) -> HostOutcome:
    """``_converge`` for one host of ``text``, as apply calls it unless ``options`` say."""
    route_plan = plan(load(text, source(text)))
    kw: dict[str, Any] = {"force": False, "dry_run": False, "write": True,
                          "lock_wait": 10.0, "cache": None, **options}
    transport = FakeTransport({name: fake})
    outcome = asyncio.run(_converge(transport, route_plan.inventory.host(name),  # type: ignore[arg-type]
                                    route_plan, P, **kw))
    assert fake.opened == fake.closed == 1
    return outcome


def run(transport: FakeTransport, text: str = MACHINES,
        **options: Any) -> dict[str, HostOutcome]:
    options.setdefault("write", True)
    route_plan = plan(load(text, source(text)))
    outcomes = asyncio.run(run_hosts(transport, route_plan, P, **options))  # type: ignore[arg-type]
    return {o.host.name: o for o in outcomes}


def verdicts(outcome: HostOutcome) -> list[tuple[Action, str, ChangeOutcome, str]]:
    return [(r.change.action, str(r.change.dst), r.outcome, r.message) for r in outcome.results]


# --- (1) no-op, (2) a cold apply ---------------------------------------------------------


def test_a_table_already_right_is_one_round_trip_and_sends_no_batch() -> None:
    fake = FakeHost(lan(via("10.200.1.0/24", "192.168.10.102")))
    outcome = converge(fake)
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT]
    assert fake.trips[0].paused  # _Reader.prepare ran between sending and reading
    assert fake.lock_waits == [10]
    assert fake.batches() == []
    assert outcome.error is None and outcome.converged and not outcome.applied
    assert outcome.before is not None and outcome.before.changes == ()
    assert [s.state for s in outcome.before.statuses] == [RouteState.IN_SYNC]
    assert outcome.results == []


def test_missing_routes_are_added_in_one_batch_and_read_back() -> None:
    fake = FakeHost(lan())
    outcome = converge(fake, "server")
    # Two round trips; the second is the batch and the read-back of IPv4 only (no IPv6
    # change), as root: no sudo check, no sudo prefix.
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT, [BATCH, READ4]]
    assert not fake.trips[1].paused
    (batch,) = fake.batches()
    assert batch.input == f"{ADD0}\n{ADD1}\n"
    assert outcome.error is None and outcome.applied and outcome.converged
    assert verdicts(outcome) == [(Action.ADD, "10.200.0.0/24", APPLIED, ""),
                                 (Action.ADD, "10.200.1.0/24", APPLIED, "")]
    assert outcome.after is not None
    assert [(str(s.dst), s.state, str(s.observed.gateway) if s.observed else None)
            for s in outcome.after.statuses] == [
        ("10.200.0.0/24", RouteState.IN_SYNC, "192.168.10.101"),
        ("10.200.1.0/24", RouteState.IN_SYNC, "192.168.10.102")]
    assert fake.routes() == [("10.200.0.0/24", "192.168.10.101", "147"),
                             ("10.200.1.0/24", "192.168.10.102", "147"),
                             (LAN, None, "kernel")]


def test_a_dual_stack_batch_reads_both_families_back() -> None:
    fake = FakeHost([connected(LAN), connected(LAN6)])
    outcome = converge(fake, "node-0", DUAL)
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT, [BATCH, READ4, READ6]]
    (batch,) = fake.batches()
    assert batch.input == (f"{ADD1}\n"
                           "route add fd00:200:1::/64 via fd00:10::102 proto 147\n")
    assert outcome.converged and [r.outcome for r in outcome.results] == [APPLIED, APPLIED]


def test_the_read_back_covers_only_the_changed_family_and_keeps_the_other() -> None:
    # IPv4 already right: only IPv6 is read back, and the verdict on IPv4 comes from the
    # first read (were it dropped, its route would read as missing and not converged).
    fake = FakeHost([connected(LAN), connected(LAN6), via("10.200.1.0/24", "192.168.10.102")])
    outcome = converge(fake, "node-0", DUAL)
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT, [BATCH, READ6]]
    assert outcome.converged
    assert verdicts(outcome) == [(Action.ADD, "fd00:200:1::/64", APPLIED, "")]
    assert outcome.after is not None
    assert sorted(str(s.dst) for s in outcome.after.statuses
                  if s.state is RouteState.IN_SYNC) == ["10.200.1.0/24", "fd00:200:1::/64"]


def test_every_kind_of_change_goes_out_in_the_one_batch() -> None:
    # A foreign route with our gateway is adopted (replace, re-tagged), an owned route
    # nothing wants any more is removed.
    fake = FakeHost(lan(via("10.200.1.0/24", "192.168.10.102", protocol=3),
                        via("10.200.9.0/24", "192.168.10.102")))
    outcome = converge(fake)
    (batch,) = fake.batches()
    assert batch.input == ("route replace 10.200.1.0/24 via 192.168.10.102 proto 147\n"
                           "route del 10.200.9.0/24 via 192.168.10.102 proto 147\n")
    assert verdicts(outcome) == [(Action.ADOPT, "10.200.1.0/24", APPLIED, ""),
                                 (Action.REMOVE, "10.200.9.0/24", APPLIED, "")]
    assert outcome.converged
    assert fake.routes() == [("10.200.1.0/24", "192.168.10.102", "147"), (LAN, None, "kernel")]


def test_a_second_apply_through_the_same_cache_is_a_no_op() -> None:
    transport = FakeTransport({n: FakeHost(lan()) for n in ("server", "node-0", "node-1")})
    cache = RouteCache()
    first = run(transport, cache=cache)
    assert all(o.converged and o.applied for o in first.values())
    again = run(transport, cache=cache)
    assert all(o.converged and not o.applied and o.results == [] for o in again.values())
    for fake in transport.hosts.values():
        assert [t.argvs()[0] for t in fake.trips] == [UID, BATCH, UID]  # the third: no-op
        assert len(fake.batches()) == 1


# --- (3) gateways off every connected network --------------------------------------------


def test_a_change_whose_gateway_is_not_on_link_is_withheld_and_not_sent() -> None:
    # server reaches 192.168.10.100-101 only: node-1's gateway (.102) is off-link.
    fake = FakeHost([connected("192.168.10.100/31")])
    outcome = converge(fake, "server")
    (batch,) = fake.batches()
    assert batch.input == f"{ADD0}\n"
    assert [r.outcome for r in outcome.results] == [APPLIED, WITHHELD]
    reason = outcome.results[1].message
    assert reason.startswith("gateway 192.168.10.102 is not on any network server is "
                             "directly connected to (192.168.10.100/31 on eth0)")
    assert outcome.failed == [outcome.results[1]]
    assert not outcome.converged  # the withheld route is still missing
    assert fake.routes() == [("10.200.0.0/24", "192.168.10.101", "147"),
                             ("192.168.10.100/31", None, "kernel")]


def test_when_every_change_is_withheld_nothing_is_sent() -> None:
    fake = FakeHost([connected("192.168.20.0/24")])
    outcome = converge(fake, "server")
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT]
    assert not outcome.applied and not outcome.converged
    assert [r.outcome for r in outcome.results] == [WITHHELD, WITHHELD]
    assert all("(192.168.20.0/24 on eth0)" in r.message for r in outcome.results)
    assert fake.routes() == [("192.168.20.0/24", None, "kernel")]


def test_a_family_without_any_connected_network_is_withheld_the_other_sent() -> None:
    fake = FakeHost(lan())  # no IPv6 network on node-0
    outcome = converge(fake, "node-0", DUAL)
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT, [BATCH, READ4]]
    assert fake.batches()[0].input == f"{ADD1}\n"
    assert [r.outcome for r in outcome.results] == [APPLIED, WITHHELD]
    assert "(none of its family)" in outcome.results[1].message


# --- (4) a failing line, (5) a line accepted but not read back ----------------------------


@pytest.mark.parametrize("bad", [0, 1])
def test_a_failing_batch_line_fails_exactly_its_change(bad: int) -> None:
    dsts = ["10.200.0.0/24", "10.200.1.0/24"]
    fake = FakeHost(lan(), reject={dsts[bad]: "Error: Nexthop has invalid gateway."})
    outcome = converge(fake, "server")
    (batch,) = fake.batches()
    assert batch.input == f"{ADD0}\n{ADD1}\n"  # both sent: -force runs the rest
    assert outcome.applied and not outcome.converged
    expected = [(Action.ADD, d, APPLIED, "") for d in dsts]
    expected[bad] = (Action.ADD, dsts[bad], FAILED, "Error: Nexthop has invalid gateway.")
    assert verdicts(outcome) == expected
    assert [r[0] for r in fake.routes()] == [dsts[1 - bad], LAN]


def test_a_batch_failing_without_naming_a_line_fails_every_change() -> None:
    # sudo works, but its secure_path has no ip: nothing ran, no "Command failed -:N".
    fake = FakeHost(lan(), uid=1000, sudo_finds_ip=False)
    outcome = converge(fake, "server")
    assert [r.outcome for r in outcome.results] == [FAILED, FAILED]
    assert {r.message for r in outcome.results} == {"sudo: ip: command not found"}
    assert fake.routes() == [(LAN, None, "kernel")]


@pytest.mark.parametrize(("table", "action", "dst"), [
    pytest.param(lan(), Action.ADD, "10.200.1.0/24", id="added"),
    pytest.param(lan(via("10.200.1.0/24", "192.168.10.99")), Action.CHANGE, "10.200.1.0/24",
                 id="changed"),
    pytest.param(lan(via("10.200.1.0/24", "192.168.10.102"),
                     via("10.200.9.0/24", "192.168.10.102")), Action.REMOVE, "10.200.9.0/24",
                 id="removed"),
])
def test_a_change_ip_accepted_but_not_read_back_failed(table: list[Entry], action: Action,
                                                       dst: str) -> None:
    fake = FakeHost([dict(e) for e in table], reverted={dst})
    outcome = converge(fake)
    (batch,) = fake.batches()
    assert dst in (batch.input or "")
    assert verdicts(outcome) == [(action, dst, FAILED, "not in the table when read back")]
    assert outcome.applied and not outcome.converged


def test_only_the_change_not_read_back_fails() -> None:
    fake = FakeHost(lan(), reverted={"10.200.1.0/24"})
    outcome = converge(fake, "server")
    assert [(r.outcome, r.message) for r in outcome.results] == [
        (APPLIED, ""), (FAILED, "not in the table when read back")]


def test_a_forced_override_not_read_back_failed() -> None:
    fake = FakeHost(lan(via("10.200.1.0/24", "192.168.10.99", protocol=4)),
                    reverted={"10.200.1.0/24"})
    outcome = converge(fake, force=True)
    assert not outcome.converged  # holds today: the foreign route is still there
    assert verdicts(outcome) == [(Action.OVERRIDE, "10.200.1.0/24", FAILED,
                                  "not in the table when read back")]


# --- (6) dry run and status --------------------------------------------------------------


@pytest.mark.parametrize(("write", "dry_run"), [(True, True), (False, False)],
                         ids=["dry-run", "status"])
def test_dry_run_and_status_send_neither_the_lock_nor_a_batch(write: bool,
                                                              dry_run: bool) -> None:
    # Not root and no sudo: a read-only run needs neither, so it must not ask.
    fake = FakeHost(lan(), uid=1000, sudo=False)
    outcome = converge(fake, write=write, dry_run=dry_run)
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT_READ_ONLY]
    assert fake.lock_waits == []
    assert outcome.error is None and not outcome.applied and outcome.results == []
    assert outcome.before is not None
    assert [(c.action, c.batch_line()) for c in outcome.before.changes] == [(Action.ADD, ADD1)]
    assert outcome.after is None and not outcome.converged
    assert fake.routes() == [(LAN, None, "kernel")]


# --- (7) root and sudo -------------------------------------------------------------------


def test_not_root_without_sudo_is_that_hosts_error_only() -> None:
    transport = FakeTransport({"server": FakeHost(lan()),
                               "node-0": FakeHost(lan(), uid=1000, sudo=False),
                               "node-1": FakeHost(lan())})
    outcomes = run(transport)
    bad = outcomes["node-0"]
    assert bad.error == (
        "`sudo -n true` exited 1: connected as uid 1000, which is not root and cannot sudo "
        "without a password (sudo: a password is required): use --ssh-user root or allow "
        "passwordless sudo for ip")
    assert bad.before is None and bad.results == [] and not bad.converged
    node0 = transport.hosts["node-0"]
    assert [t.argvs() for t in node0.trips] == [PREFLIGHT, [(*SUDO, "true")]]
    assert node0.batches() == [] and node0.opened == node0.closed == 1
    for name in ("server", "node-1"):
        assert outcomes[name].error is None and outcomes[name].converged
        assert len(transport.hosts[name].batches()) == 1


def test_converge_raises_the_sudo_failure_as_a_host_command_error() -> None:
    fake = FakeHost(lan(), uid=1000, sudo=False)
    with pytest.raises(HostCommandError) as caught:
        converge(fake)
    assert (caught.value.host, caught.value.command, caught.value.status) == (
        "node-0", "sudo -n true", 1)


def test_not_root_with_sudo_prefixes_the_batch_only() -> None:
    fake = FakeHost(lan(), uid=1000)
    outcome = converge(fake)
    assert [t.argvs() for t in fake.trips] == [
        PREFLIGHT, [(*SUDO, "true")], [(*SUDO, *BATCH), READ4]]
    assert outcome.error is None and outcome.converged
    assert [r.outcome for r in outcome.results] == [APPLIED]
    assert fake.routes() == [("10.200.1.0/24", "192.168.10.102", "147"), (LAN, None, "kernel")]


def test_the_fake_refuses_a_non_root_batch_without_sudo() -> None:
    # The fake's own model, which the test above relies on: without the prefix a non-root
    # batch fails line by line, as ip does.
    fake = FakeHost(lan(), uid=1000)
    result = fake.answer(Command(BATCH, f"{ADD0}\n{ADD1}\n"))
    assert (result.status, result.stderr) == (1, (
        "RTNETLINK answers: Operation not permitted\nCommand failed -:1\n"
        "RTNETLINK answers: Operation not permitted\nCommand failed -:2\n"))


# --- (8) the lock, and ip missing --------------------------------------------------------


@pytest.mark.parametrize(("lock", "message"), [
    ("held", "`flock` exited 1: another podroutes apply holds this host's lock; waited 3s "
             "(--lock-wait)"),
    ("no-netns", "`flock` exited 1: cannot open /proc/self/ns/net to lock this host's "
                 "routing table"),
])
def test_a_lock_not_taken_is_that_hosts_error(lock: str, message: str) -> None:
    transport = FakeTransport({"server": FakeHost(lan(), lock=lock),
                               "node-0": FakeHost(lan()), "node-1": FakeHost(lan())})
    outcomes = run(transport, lock_wait=3.0)
    fake = transport.hosts["server"]
    assert outcomes["server"].error == message
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT]
    assert fake.lock_waits == [3] and fake.batches() == []
    assert fake.routes() == [(LAN, None, "kernel")]
    assert outcomes["node-0"].converged and outcomes["node-1"].converged


def test_a_host_without_ip_is_that_hosts_error() -> None:
    transport = FakeTransport({n: FakeHost(lan(), has_ip=(n != "node-1"))
                               for n in ("server", "node-0", "node-1")})
    outcomes = run(transport)
    assert outcomes["node-1"].error == (
        "`command -v ip` exited 127: `ip` (iproute2) is not in the remote PATH; "
        "install iproute2")
    assert transport.hosts["node-1"].batches() == []
    assert outcomes["server"].converged and outcomes["node-0"].converged


def test_a_host_that_never_answers_times_out_the_others_finish() -> None:
    transport = FakeTransport({n: FakeHost(lan(), hang=(n == "node-0"))
                               for n in ("server", "node-0", "node-1")})
    outcomes = run(transport, timeout=0.2)
    assert outcomes["node-0"].error == ("timed out after 0.2s (--timeout): the host or its "
                                        "sshd hangs")
    assert transport.hosts["node-0"].closed == 1  # the session was left, not abandoned
    assert outcomes["server"].converged and outcomes["node-1"].converged


# --- (9) only ----------------------------------------------------------------------------


def test_only_limits_which_hosts_get_a_session() -> None:
    transport = FakeTransport({n: FakeHost(lan()) for n in ("server", "node-0", "node-1")})
    states: dict[str, HostState] = {}
    done: list[str] = []
    outcomes = run(transport, only=["node-1"], states=states,
                   on_done=lambda o: done.append(o.host.name))
    assert transport.opened == ["node-1"]
    assert list(outcomes) == ["node-1"] and done == ["node-1"]
    assert states == {"node-1": HostState.DONE}
    assert transport.hosts["server"].trips == transport.hosts["node-0"].trips == []
    # The whole inventory still shapes node-1's plan: a route to node-0's pods.
    (batch,) = transport.hosts["node-1"].batches()
    assert batch.input == f"{ADD0}\n"
    assert outcomes["node-1"].converged


# --- (10) a foreign conflicting route ----------------------------------------------------


def test_a_foreign_conflicting_route_is_left_alone_without_force() -> None:
    fake = FakeHost(lan(via("10.200.1.0/24", "192.168.10.99", protocol=4)))
    outcome = converge(fake)
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT]
    assert outcome.before is not None and outcome.before.changes == ()
    assert [(s.state, str(s.observed.gateway) if s.observed else None)
            for s in outcome.before.conflicts] == [(RouteState.CONFLICT, "192.168.10.99")]
    assert not outcome.converged and not outcome.applied
    assert fake.routes() == [("10.200.1.0/24", "192.168.10.99", "static"),
                             (LAN, None, "kernel")]


def test_a_foreign_conflicting_route_is_replaced_with_force() -> None:
    fake = FakeHost(lan(via("10.200.1.0/24", "192.168.10.99", protocol=4)))
    outcome = converge(fake, force=True)
    assert [t.argvs() for t in fake.trips] == [PREFLIGHT, [BATCH, READ4]]
    (batch,) = fake.batches()
    assert batch.input == "route replace 10.200.1.0/24 via 192.168.10.102 proto 147\n"
    assert verdicts(outcome) == [(Action.OVERRIDE, "10.200.1.0/24", APPLIED, "")]
    assert outcome.converged
    assert fake.routes() == [("10.200.1.0/24", "192.168.10.102", "147"), (LAN, None, "kernel")]


def test_a_host_failure_keeps_its_type_up_to_the_cli() -> None:
    """The outcome carries the exception (a HostCommandError, a TransportError for a
    timeout), not only its text: the CLI's JSON names the type."""
    from podroutes.cli.apply_output import outcome_json
    from podroutes.core.errors import HostCommandError

    transport = FakeTransport({"server": FakeHost(lan(), lock="held"),
                               "node-0": FakeHost(lan()), "node-1": FakeHost(lan())})
    outcome = run(transport)["server"]
    assert isinstance(outcome.failure, HostCommandError)
    assert outcome.error is not None and not outcome.error.startswith(outcome.host.name)
    assert outcome_json(outcome)["error_type"] == "HostCommandError"


def test_a_dry_run_ends_as_the_real_run_would() -> None:
    """A dry run sends nothing, but says what the real run would withhold, and the CLI
    exits 1 for it (a withheld change or a conflict kept without --force), 0 otherwise."""
    from podroutes.cli.main import _would_fail

    offlink = FakeHost([connected("192.168.10.100/31")])
    dry = converge(offlink, "server", dry_run=True)
    assert offlink.batches() == [] and not dry.applied
    assert [(str(r.change.dst), r.outcome) for r in dry.results] == [
        ("10.200.1.0/24", WITHHELD)]
    assert _would_fail(dry, dry_run=True, force=False)

    conflict = converge(FakeHost(lan(via("10.200.1.0/24", "192.168.10.99", protocol=4))),
                        dry_run=True)
    assert _would_fail(conflict, dry_run=True, force=False)
    forced = converge(FakeHost(lan(via("10.200.1.0/24", "192.168.10.99", protocol=4))),
                      dry_run=True, force=True)
    assert not _would_fail(forced, dry_run=True, force=True)
    clean = converge(FakeHost(lan()), dry_run=True)
    assert clean.before is not None and clean.before.changes and clean.results == []
    assert not _would_fail(clean, dry_run=True, force=False)
