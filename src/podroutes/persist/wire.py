"""persist and ``status --check-persist`` over the wire: read, write atomically, verify.

I/O orchestration over a :class:`~podroutes.remote.transport.Transport` (the same SSH or local
shells as ``apply``). Per host, one session:

1. one round trip (``run_many``): identity, addresses, both tables, every manager file
   under the filesystem root and which managers and tools are there
   (:func:`podroutes.persist.facts.fact_commands`);
2. the plan, purely (:func:`podroutes.persist.plan.plan_host`);
3. NetworkManager only: ``nmcli connection modify`` and ``nmcli device reapply``;
4. one round trip: every file written (a temp file beside it, fed through a quoted
   heredoc, then ``mv``; the file it replaces kept as ``.NAME.podroutes-bak``) or removed
   (moved to that backup), then the files read again; the host is done only if they
   read back exactly as planned.

The write and remove scripts are constants; paths and modes reach them as arguments
(quoted by the session), and file contents as heredoc input whose terminator the
session checks cannot occur in them. Hosts run in parallel under a bound, each under a
timeout; a failing host never stops the others. Returns values; never prints.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from podroutes.core.errors import PersistError, UsageError
from podroutes.core.model import Host, Manager
from podroutes.core.netfiles import FILES_SCRIPT, parse_files
from podroutes.core.plan import RoutePlan
from podroutes.persist.facts import PersistFacts, fact_commands, parse_persist_facts
from podroutes.persist.plan import (
    FileAction,
    FileChange,
    HostPersistence,
    HostPersistPlan,
    compare,
    own_files,
    persist_state,
    plan_host,
)
from podroutes.persist.render import FileSpec
from podroutes.remote.session import Command, CommandResult, ShellSession
from podroutes.remote.transport import Transport, each_host

ROOT_RE = re.compile(r"\A/[A-Za-z0-9_.@:+/-]*\Z")

#: ``$1`` the file, ``$2`` its mode (octal); the content arrives on stdin. The temp file
#: and the backup are dotfiles beside it, which no manager reads (networkd reads
#: ``*.conf``, netplan ``*.yaml``, ifupdown's ``source dir/*`` skips dotfiles).
WRITE_SCRIPT = r"""
f=$1; d=${f%/*}; b=${f##*/}; t="$d/.$b.podroutes-tmp"; k="$d/.$b.podroutes-bak"
mkdir -p -- "$d" || exit 1
if ! (umask 077 && cat > "$t" && chmod "$2" "$t"); then rm -f -- "$t"; exit 1; fi
if [ -e "$f" ] && ! cp -p -- "$f" "$k"; then rm -f -- "$t"; exit 1; fi
mv -f -- "$t" "$f" || { rm -f -- "$t"; exit 1; }
"""

#: ``$1`` the file: moved to its backup (so removing is undoable too).
REMOVE_SCRIPT = r"""
f=$1; d=${f%/*}; b=${f##*/}
[ -e "$f" ] || exit 0
mv -f -- "$f" "$d/.$b.podroutes-bak"
"""


def check_root(root: str) -> str:
    if not ROOT_RE.match(root):
        raise UsageError(f"--root {root!r}: must be an absolute path of plain characters")
    return root.rstrip("/")


@dataclass(slots=True)
class PersistOutcome:
    """What happened on one host: the plan, whether anything was written, and failures
    (a file that could not be written, an nmcli command that failed, a file that did not
    read back as written)."""

    host: Host
    plan: HostPersistPlan | None = None
    error: str | None = None
    written: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures


async def read_persist_facts(session: ShellSession, root: str = "") -> PersistFacts:
    """Everything persist needs from one host, in one round trip."""
    results = await session.run_many([Command(argv) for argv in fact_commands(root)])
    return parse_persist_facts([(r.status, r.stdout, r.stderr) for r in results])


def _sudo(facts: PersistFacts, argv: Sequence[str], root: str = "") -> tuple[str, ...]:
    """As root, or under ``sudo -n`` when the session is not root and the files are the
    host's own (under an injected ``--root`` the connected user writes)."""
    return tuple(argv) if facts.is_root or root else ("sudo", "-n", *argv)


def file_commands(changes: Sequence[FileChange], facts: PersistFacts,
                  root: str) -> list[Command]:
    out = []
    for c in changes:
        target = root + c.path
        if c.action is FileAction.REMOVE:
            out.append(Command(_sudo(facts, ("sh", "-c", REMOVE_SCRIPT, "sh", target), root)))
        elif c.action in (FileAction.CREATE, FileAction.UPDATE):
            assert c.new is not None and c.mode is not None
            out.append(Command(_sudo(facts, ("sh", "-c", WRITE_SCRIPT, "sh", target,
                                             f"{c.mode:o}"), root), input=c.new))
    return out


def _failure(result: CommandResult, what: str) -> str | None:
    if result.status == 0:
        return None
    return f"{what}: exit {result.status}: {result.stderr.strip() or 'failed'}"


async def persist_host(session: ShellSession, host: Host, route_plan: RoutePlan,
                       protocol: int, *, forced: Manager | None, interface: str | None,
                       root: str, dry_run: bool, fix_foreign_routes: bool) -> PersistOutcome:
    outcome = PersistOutcome(host)
    facts = await read_persist_facts(session, root)
    try:
        plan = plan_host(host, route_plan.routes_for(host), facts, protocol, forced,
                         interface, fix_foreign_routes)
    except PersistError as exc:
        outcome.error = str(exc)
        return outcome
    outcome.plan = plan
    if dry_run or plan.in_sync:
        return outcome
    if plan.commands and not facts.flag("nm-running"):
        outcome.error = ("NetworkManager does not run in this host's network namespace, so "
                         f"nmcli cannot change connection {plan.detection.nm_connection}; "
                         "start it, or pass another --format")
        return outcome
    if plan.commands:
        results = await session.run_many([Command(_sudo(facts, a)) for a in plan.commands])
        outcome.written = True
        for argv, result in zip(plan.commands, results, strict=True):
            if (why := _failure(result, " ".join(argv[:3]))) is not None:
                outcome.failures.append(why)
                return outcome  # the record must not claim routes nmcli did not take
    writes = file_commands(plan.pending, facts, root)
    results = await session.run_many(
        [*writes, Command(("sh", "-c", FILES_SCRIPT, "sh", root))])
    outcome.written = True
    for change, result in zip(plan.pending, results, strict=False):
        if (why := _failure(result, f"{change.action} {change.path}")) is not None:
            outcome.failures.append(why)
    files, values = parse_files(results[-1].stdout)
    after = PersistFacts(files=files, values=values)
    desired = {c.path: FileSpec(c.new, c.mode or 0o644) for c in plan.changes
               if c.new is not None}
    for change in compare(desired, after, own_files(after)):
        if change.action is not FileAction.UNCHANGED:
            outcome.failures.append(f"{change.path} does not read back as written "
                                    f"({change.action} still needed)")
    return outcome


def _hosts(route_plan: RoutePlan, only: Sequence[str] | None) -> list[Host]:
    return [h for h in route_plan.inventory if only is None or h.name in only]


async def persist_hosts(transport: Transport, route_plan: RoutePlan, protocol: int, *,
                        forced: Manager | None = None, interface: str | None = None,
                        root: str = "", dry_run: bool = False,
                        fix_foreign_routes: bool = False, parallel: int = 32,
                        timeout: float = 30.0, only: Sequence[str] | None = None,
                        ) -> list[PersistOutcome]:
    """Persist every host's planned routes; one outcome per host, in inventory order."""
    hosts = _hosts(route_plan, only)
    done, errors = await each_host(
        transport, hosts,
        lambda s, h: persist_host(s, h, route_plan, protocol, forced=forced,
                                  interface=interface, root=root, dry_run=dry_run,
                                  fix_foreign_routes=fix_foreign_routes),
        parallel, timeout)
    return [done.get(h.name) or PersistOutcome(h, error=errors.get(h.name, "not run"))
            for h in hosts]


async def read_persistence(transport: Transport, route_plan: RoutePlan, *,
                           forced: Manager | None = None, parallel: int = 32,
                           timeout: float = 30.0, only: Sequence[str] | None = None,
                           ) -> dict[str, HostPersistence]:
    """Per host: which planned routes are applied, persisted, both or neither."""
    hosts = _hosts(route_plan, only)

    async def one(session: ShellSession, host: Host) -> HostPersistence:
        facts = await read_persist_facts(session)
        return persist_state(host, route_plan.routes_for(host), facts, forced)

    done, errors = await each_host(transport, hosts, one, parallel, timeout)
    return {h.name: done.get(h.name) or HostPersistence(h.name, error=errors.get(h.name))
            for h in hosts}
