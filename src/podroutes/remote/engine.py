"""apply and status across hosts: read each table, diff, send one batch, verify.

I/O orchestration over a :class:`~podroutes.remote.transport.Transport`. Per host, one session
(one SSH connection):

1. one round trip: who am I (``id -u``), is ``ip`` there, take the host's apply lock
   (``flock`` on a file named after the network namespace, so two applies to one host
   never interleave), read both families' main tables;
2. diff purely; withhold changes whose gateway is not on a connected network (they would
   fail: host-gw routing needs one L2 segment) and report them;
3. one round trip: ``ip -force -batch -`` (``-force``: a failing line does not drop the
   rest), each failing line mapped back to its route, and the tables of the families it
   changed read back (nothing is sent when every change is withheld);
4. diff again: every change ends ``applied``, ``failed`` or ``withheld``.

Opening the session costs no round trip of its own (see :class:`ShellSession`), so a
no-op apply is one round trip per host and a cold one two.

Hosts run in parallel under a bound; a failing host never stops the others. Returns
values; never prints.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Sequence

from podroutes.core.diff import diff
from podroutes.core.errors import HostCommandError, PodroutesError, TransportError
from podroutes.core.iproute import NOTHING_KNOWN, Known, read_routes_argv
from podroutes.core.model import (
    MAIN_TABLE,
    PROTOCOL_NAMES,
    Family,
    Host,
    IPAddress,
    PlannedRoute,
    Route,
)
from podroutes.core.outcome import (
    ChangeOutcome,
    ChangeResult,
    HostOutcome,
    HostState,
    OnLink,
    connected_networks,
    failed_lines,
    path_issues,
    results,
)
from podroutes.core.paths import PathFacts, destinations, parse_path_facts, path_commands, samples
from podroutes.core.plan import RoutePlan
from podroutes.core.routecache import RouteCache
from podroutes.remote import failpoints
from podroutes.remote.session import Command, CommandResult, ShellSession
from podroutes.remote.transport import Transport, timeout_message

#: Takes the per-host lock in the session's own shell (fd 9 stays open until it exits):
#: ``flock`` on the network namespace itself (``/proc/self/ns/net``: one inode per
#: namespace, whatever the mount namespace), because the table is what the lock protects.
#: No lock file: lab machines sharing a filesystem, and the agent in a hostNetwork pod
#: with its own filesystem, lock exactly the table they change. ``command exec`` so that
#: a failed redirection returns an error instead of ending the shell.
_LOCK_SCRIPT = """\
if { command exec 9</proc/self/ns/net; } 2>/dev/null; then
  flock -w __WAIT__ 9
else
  echo "cannot open /proc/self/ns/net to lock this host's routing table" >&2; false
fi"""


#: The session's user id without starting a process (the shell reads its own status);
#: ``id -u`` only where /proc is missing. Runs in the session's shell, like the lock.
_UID_SCRIPT = """\
__pr_u=
if [ -r /proc/self/status ]; then
  while read -r __pr_k __pr_v __pr_r; do
    if [ "$__pr_k" = Uid: ]; then __pr_u=$__pr_v; break; fi
  done </proc/self/status
fi
[ -n "$__pr_u" ] || __pr_u=$(id -u)
printf '%s\\n' "$__pr_u"
"""


def _reads(families: Sequence[Family] = tuple(Family)) -> list[Command]:
    return [Command(tuple(read_routes_argv(f))) for f in families]


class _Reader:
    """Turns one host's table reads into routes, through a :class:`RouteCache` (the
    caller's, kept from run to run, or one for this run) and :class:`Known`: the plan's
    own address objects and the text ``ip`` prints for its routes, built while the host
    answers, unless the cache already holds most of the table."""

    def __init__(self, desired: Sequence[PlannedRoute], cache: RouteCache | None) -> None:
        self._desired = desired
        self._known = NOTHING_KNOWN
        self.cache = cache if cache is not None else RouteCache()

    async def prepare(self) -> None:
        """Build what parsing the plan's routes needs (a ``run_many`` pause: the host has
        the commands and works on them meanwhile)."""
        if self._known is NOTHING_KNOWN and len(self.cache) < len(self._desired):
            self._known = Known.of(self._desired)

    def routes(self, results: Sequence[CommandResult], host: str,
               families: Sequence[Family] = tuple(Family)) -> list[Route]:
        routes: list[Route] = []
        for family, result in zip(families, results, strict=True):
            if result.status != 0:
                if family is Family.V6 and "not supported" in result.stderr.lower():
                    continue  # IPv6 disabled on this host: nothing of that family to manage
                raise HostCommandError(host, result.command, result.status, result.stderr)
            routes += self.cache.parse_text(result.stdout, family, MAIN_TABLE, PROTOCOL_NAMES,
                                            self._known)
        return routes


async def read_state(session: ShellSession, desired: Sequence[PlannedRoute] = (),
                     cache: RouteCache | None = None) -> list[Route]:
    """Both families' main tables in one round trip, parsed as apply parses them."""
    reader = _Reader(desired, cache)
    return reader.routes(await session.run_many(_reads(), reader.prepare), session.host)


async def _preflight(
    session: ShellSession, write: bool, lock_wait: float, reader: _Reader,
    probe: Sequence[IPAddress] | None = None,
) -> tuple[list[Route], bool, PathFacts | None]:
    """Identity, ``ip``, the lock (when writing) and both tables, in one round trip; with
    ``probe``, also the policy rules, the other tables and ``ip route get`` for those
    addresses (:mod:`podroutes.core.paths`). Returns the routes, whether the session is
    root (else ``sudo -n`` works), and the path facts when asked."""
    commands = [Command(script=_UID_SCRIPT), Command(script="command -v ip >/dev/null")]
    if write:
        wait = str(max(0, int(lock_wait)))
        commands.append(Command(script=_LOCK_SCRIPT.replace("__WAIT__", wait)))
    commands += _reads()
    if probe is not None:
        commands += [Command(argv, stdin) for argv, stdin in path_commands(probe)]
    results = await session.run_many(commands, reader.prepare)
    # After the host answered (lock held, state read), before anything is decided: a test
    # can change the host here and know podroutes' view of it is already taken.
    await failpoints.reach("read", session.host)
    uid, has_ip = results[0], results[1]
    if has_ip.status != 0:
        raise HostCommandError(session.host, "command -v ip", has_ip.status,
                               "`ip` (iproute2) is not in the remote PATH; install iproute2")
    if write:
        if uid.stdout.strip() != "0":
            sudo = await session.run(["sudo", "-n", "true"])
            if sudo.status != 0:
                raise HostCommandError(
                    session.host, "sudo -n true", sudo.status,
                    f"connected as uid {uid.stdout.strip()}, which is not root and cannot "
                    f"sudo without a password ({sudo.stderr.strip() or 'no sudo'}): use "
                    "--ssh-user root or allow passwordless sudo for ip")
        lock = results[2]
        if lock.status != 0:
            why = lock.stderr.strip()
            raise HostCommandError(
                session.host, "flock", lock.status,
                why if why.startswith("cannot") else
                f"another podroutes apply holds this host's lock; waited {lock_wait:g}s "
                f"(--lock-wait) {why}".strip())
    facts = None
    if probe is not None:
        count = len(path_commands(probe))
        facts = parse_path_facts(probe, [(r.status, r.stdout, r.stderr)
                                         for r in results[-count:]])
        results = results[:-count]
    reads = results[-2:]
    return reader.routes(reads, session.host), uid.stdout.strip() == "0", facts


async def _converge(
    transport: Transport, host: Host, route_plan: RoutePlan, protocol: int, *,
    force: bool, dry_run: bool, write: bool, lock_wait: float, cache: RouteCache | None,
    judge: bool = False, confirm: bool = True,
) -> HostOutcome:
    outcome = HostOutcome(host)
    desired = route_plan.routes_for(host)
    writing = write and not dry_run
    probe: list[IPAddress] | None = None
    if judge:
        probe = samples(destinations(host, desired)) if confirm else []
    await failpoints.reach("connect", host.name)
    async with transport.session(host) as session:
        reader = _Reader(desired, cache)
        observed, is_root, path_facts = await _preflight(session, writing, lock_wait, reader,
                                                         probe)
        before = diff(desired, observed, protocol, force)
        outcome.before = before
        if path_facts is not None:
            outcome.paths = tuple(path_issues(host, desired, observed, path_facts, before))
            outcome.path_notes = path_facts.unreadable
        if not write or not before.changes:
            return outcome
        on_link = OnLink(connected_networks(observed))
        withheld = {i: why for i, c in enumerate(before.changes)
                    if (why := on_link.reason(c, host.name)) is not None}
        if dry_run:  # what the real run would withhold, so a dry run ends as it would
            outcome.results = [ChangeResult(before.changes[i], ChangeOutcome.WITHHELD, why)
                               for i, why in withheld.items()]
            return outcome
        sent = [c for i, c in enumerate(before.changes) if i not in withheld]
        failed: dict[int, str] = {}
        after = observed
        if sent:
            # The batch and the read-back of the families it changed, in one round trip.
            versions = {c.dst.version for c in sent}
            changed = [f for f in Family if f.value in versions]
            prefix: tuple[str, ...] = () if is_root else ("sudo", "-n")
            batch = "".join(c.batch_line() + "\n" for c in sent)
            fault = failpoints.pause_for("batch", host.name)

            # With a path verdict, the rules, other tables and kernel answers are read
            # again in the same round trip: they are judged against the table read back.
            rejudge = [] if probe is None else [Command(a, i) for a, i in path_commands(probe)]
            result, *reread = await session.run_many(
                [Command((*prefix, "ip", "-force", "-batch", "-"), batch), *_reads(changed),
                 *rejudge], pause=fault)
            if rejudge:
                path_facts = parse_path_facts(probe or [], [
                    (r.status, r.stdout, r.stderr) for r in reread[-len(rejudge):]])
                reread = reread[:-len(rejudge)]
            outcome.applied = True
            failed = failed_lines(sent, result.stderr)
            if result.status != 0 and not failed:
                failed = dict.fromkeys(range(len(sent)), result.stderr.strip() or "failed")
            after = [r for r in observed if r.family not in changed]
            after += reader.routes(reread, host.name, changed)
        await failpoints.reach("verify", host.name)
        outcome.after = diff(desired, after, protocol, force=False)
        if sent and path_facts is not None:
            outcome.paths = tuple(path_issues(host, desired, after, path_facts,
                                              outcome.after))
            outcome.path_notes = path_facts.unreadable
    outcome.results = results(before.changes, withheld, sent, failed, outcome.after)
    return outcome


async def run_hosts(
    transport: Transport, route_plan: RoutePlan, protocol: int, *,
    write: bool, force: bool = False, dry_run: bool = False,
    parallel: int = 32, timeout: float = 30.0, lock_wait: float = 10.0,
    states: dict[str, HostState] | None = None,
    only: Sequence[str] | None = None,
    on_done: Callable[[HostOutcome], None] | None = None,
    cache: RouteCache | None = None,
    judge: bool = False,
    confirm: bool = True,
) -> list[HostOutcome]:
    """Converge (``write``) or inspect every host in parallel; one outcome per host.

    ``states`` (if given) is kept up to date, so a caller interrupted by Ctrl-C can say
    which hosts finished, which were interrupted and which never started. ``only``
    limits the run to those host names (the rest of the inventory still shapes the plan).
    ``on_done`` is called with each host's outcome as it finishes (progress display).
    ``cache`` keeps parsed routes from run to run (the agent's resyncs read the same
    table again and again). ``judge`` also decides, in the same round trip, the path the
    kernel gives every destination (:mod:`podroutes.core.paths`): status's verdict;
    when writing, against the table read back. ``confirm`` asks the kernel (``ip route
    get``) about sample addresses too; without it the verdict is the model's alone.
    """
    gate = asyncio.Semaphore(max(1, parallel))
    hosts = [h for h in route_plan.inventory if only is None or h.name in only]
    track = states if states is not None else {}
    track.update({h.name: HostState.PENDING for h in hosts})

    async def one(host: Host) -> HostOutcome:
        async with gate:
            track[host.name] = HostState.RUNNING
            try:
                async with asyncio.timeout(timeout):
                    outcome = await _converge(
                        transport, host, route_plan, protocol, force=force, dry_run=dry_run,
                        write=write, lock_wait=lock_wait, cache=cache, judge=judge,
                        confirm=confirm)
            except TimeoutError:
                outcome = HostOutcome(host, failure=TransportError(
                    host.name, timeout_message(transport, timeout)))
            except PodroutesError as exc:
                outcome = HostOutcome(host, failure=exc)
            track[host.name] = HostState.DONE
            if on_done is not None:
                on_done(outcome)
            return outcome

    # No cyclic garbage collection during the run (reference counting frees what it
    # makes; it makes no cycles worth a pass): reading and diffing 10,000 routes allocates
    # enough to trigger several full passes over everything alive, inventory included.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return list(await asyncio.gather(*(one(h) for h in hosts)))
    finally:
        if collecting:
            gc.enable()
