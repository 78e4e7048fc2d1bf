"""A host's persistence plan: desired files against the files found, and what is persisted.

Pure. :func:`plan_host` detects the manager (:mod:`podroutes.persist.detect`), renders
its files (:mod:`podroutes.persist.render`) and compares them with podroutes' own files
found on the host: each becomes a :class:`FileChange` (create, update, remove, or
unchanged), so a second run changes nothing and a file of an earlier run that no longer
matches the plan (a node left, the manager changed) is rewritten or removed. It also
warns when systemd-networkd would delete applied routes it does not configure.
:func:`persist_state` says, per planned route, whether it is applied, persisted, both or
neither (``status --check-persist``). Called by :mod:`podroutes.persist.wire`; the CLI
prints :meth:`FileChange.diff` for ``--dry-run``.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import PurePosixPath
from typing import Any

import yaml

from podroutes.core.errors import PersistError
from podroutes.core.ini import ini_sections
from podroutes.core.model import MAIN_TABLE, Host, Manager, PlannedRoute, Route
from podroutes.persist.detect import (
    Detection,
    by_name,
    detect,
    dropins,
    ifupdown_stanzas,
    matched_network_file,
    netplan_documents,
    node_interface,
)
from podroutes.persist.facts import PersistFacts
from podroutes.persist.render import (
    DROPIN_NAME,
    IFUPDOWN_FILE,
    NETPLAN_FILE,
    NETWORKD_CONF_FIX,
    NETWORKD_DIR,
    NM_RECORD,
    FileSpec,
    Pair,
    keyfile_routes,
    networkd_conf_fix,
    parse_record,
    render,
)


class FileAction(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REMOVE = "remove"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    action: FileAction
    old: str | None
    new: str | None
    mode: int | None = None

    def diff(self) -> str:
        """A unified diff of the file (``/dev/null`` for a side that does not exist)."""
        before = (self.old or "").splitlines(keepends=True)
        after = (self.new or "").splitlines(keepends=True)
        text = "".join(difflib.unified_diff(
            before, after, self.path if self.old is not None else "/dev/null",
            self.path if self.new is not None else "/dev/null"))
        if self.action is FileAction.UPDATE and not text:  # only the mode differs
            text = f"mode of {self.path} becomes {self.mode:o}\n" if self.mode else ""
        return text


@dataclass(frozen=True, slots=True)
class HostPersistPlan:
    host: str
    detection: Detection
    changes: tuple[FileChange, ...]
    commands: tuple[tuple[str, ...], ...] = ()
    warnings: tuple[str, ...] = ()
    routes: int = 0

    @property
    def pending(self) -> tuple[FileChange, ...]:
        return tuple(c for c in self.changes if c.action is not FileAction.UNCHANGED)

    @property
    def in_sync(self) -> bool:
        return not self.pending and not self.commands


def own_files(facts: PersistFacts) -> list[str]:
    """podroutes' files found on the host (any manager's; the fix file is left out: it
    is written only on request and never removed)."""
    found = [p for p in facts.files if str(PurePosixPath(p).parent).startswith(NETWORKD_DIR + "/")
             and p.endswith(".network.d/" + DROPIN_NAME)
             and str(PurePosixPath(p).parent.parent) == NETWORKD_DIR]
    found += [p for p in (NETPLAN_FILE, IFUPDOWN_FILE, NM_RECORD) if p in facts.files]
    return sorted(found)


def compare(desired: dict[str, FileSpec], facts: PersistFacts,
            owned: Sequence[str]) -> list[FileChange]:
    """Desired files against the host's: every desired file and every owned one."""
    out = []
    for path in sorted(set(desired) | set(owned)):
        want, have = desired.get(path), facts.files.get(path)
        if want is None:
            if have is not None:
                out.append(FileChange(path, FileAction.REMOVE, have.content, None))
        elif have is None:
            out.append(FileChange(path, FileAction.CREATE, None, want.content, want.mode))
        elif have.content != want.content or have.mode != want.mode:
            out.append(FileChange(path, FileAction.UPDATE, have.content, want.content,
                                  want.mode))
        else:
            out.append(FileChange(path, FileAction.UNCHANGED, have.content, want.content,
                                  want.mode))
    return out


def plan_host(host: Host, routes: Sequence[PlannedRoute], facts: PersistFacts, protocol: int,
              forced: Manager | None = None, interface: str | None = None,
              fix_foreign_routes: bool = False) -> HostPersistPlan:
    """Everything ``persist`` would do on one host. Raises :class:`PersistError` when the
    host's routes cannot be persisted (no manager found, netplan too old, ...)."""
    ifname = node_interface(facts, host, interface)
    det = detect(facts, ifname, forced)
    current: set[Pair] = set()
    recorded: set[Pair] = set()
    if det.manager is Manager.NM:
        current = keyfile_routes(facts.text(det.nm_keyfile or "") or "")
        recorded = parse_record(facts.text(NM_RECORD) or "", det.nm_connection or "")
    rendered = render(det, routes, protocol, host.name, current, recorded)
    desired = dict(rendered.files)
    warnings = list(det.warnings)
    lost = networkd_would_delete(det, routes, facts, protocol)
    if lost and fix_foreign_routes:
        desired[NETWORKD_CONF_FIX] = networkd_conf_fix(host.name, protocol)
    elif lost:
        listed = ", ".join(f"{r.dst} via {r.gateway}" for r in lost[:4])
        more = f" and {len(lost) - 4} more" if len(lost) > 4 else ""
        warnings.append(
            f"systemd-networkd manages {ifname} (ManageForeignRoutes=yes, its default): the "
            "next `networkctl reload` of a changed file, `networkctl reconfigure`, `netplan "
            f"apply` or reboot loses {len(lost)} applied route{'s' if len(lost) != 1 else ''} "
            f"it does not configure ({listed}{more}); --format networkd persists them where "
            "it keeps them; --fix-foreign-routes writes ManageForeignRoutes=no to "
            f"{NETWORKD_CONF_FIX}, which stops networkd deleting them itself but not the "
            "kernel dropping them when networkd re-adds the address (measured, networkd 252)")
    changes = compare(desired, facts, own_files(facts))
    return HostPersistPlan(host.name, det, tuple(changes), rendered.commands, tuple(warnings),
                           len(routes))


# --- what networkd configures, and what it would delete -------------------------------


def networkd_routes(facts: PersistFacts, network_file: str) -> set[Pair]:
    """(destination, gateway) of the ``[Route]`` sections of a .network file and its
    drop-ins, as networkd reads them."""
    out: set[Pair] = set()
    for path in [network_file, *dropins(facts, network_file)]:
        for section, kvs in ini_sections(facts.text(path) or ""):
            values = dict(kvs)
            if section == "Route" and "Destination" in values and "Gateway" in values:
                try:
                    out.add((ip_network(values["Destination"], strict=False),
                             ip_address(values["Gateway"])))
                except ValueError:
                    continue
    return out


def manage_foreign_routes(facts: PersistFacts) -> bool:
    """networkd's ManageForeignRoutes (default yes): the last file that sets it wins."""
    value = True
    dirs = ("/etc/systemd/networkd.conf.d", "/run/systemd/networkd.conf.d",
            "/usr/lib/systemd/networkd.conf.d")
    confs = ["/etc/systemd/networkd.conf", *by_name(facts, dirs, ".conf")]
    for path in confs:
        for section, kvs in ini_sections(facts.text(path) or ""):
            for key, v in kvs:
                if section == "Network" and key == "ManageForeignRoutes":
                    value = v.lower() in ("yes", "true", "on", "1")
    return value


def networkd_would_delete(det: Detection, routes: Sequence[PlannedRoute],
                          facts: PersistFacts, protocol: int) -> list[Route]:
    """Applied routes (ours, in the main table) that a networkd managing the interface
    with ManageForeignRoutes on would delete at its next reconfiguration."""
    if not facts.networkd_in_use or not manage_foreign_routes(facts):
        return []
    network_file = det.network_file or matched_network_file(facts, det.interface)[0]
    if network_file is None:
        return []
    kept = networkd_routes(facts, network_file)
    if det.manager is Manager.NETWORKD or (det.manager is Manager.NETPLAN
                                           and det.netplan_renderer == "networkd"):
        kept |= {(r.dst, r.gateway) for r in routes}
    return [r for r in facts.routes if r.protocol == protocol and r.table == MAIN_TABLE
            and r.dev in (det.interface, None) and (r.dst, r.gateway) not in kept]


# --- what is persisted (status --check-persist) ---------------------------------------


def netplan_routes(facts: PersistFacts, det: Detection) -> set[Pair]:
    """Routes of the device in every netplan file, podroutes' own included."""
    out: set[Pair] = set()
    docs = netplan_documents(facts)
    own = facts.text(NETPLAN_FILE)
    if own is not None:
        data = yaml.safe_load(own) or {}
        if isinstance(data, dict) and isinstance(data.get("network"), dict):
            docs.append((NETPLAN_FILE, data["network"]))
    for _, network in docs:
        devices = network.get(det.netplan_type)
        spec: Any = devices.get(det.netplan_id) if isinstance(devices, dict) else None
        listed = spec.get("routes") if isinstance(spec, dict) else None
        for route in listed if isinstance(listed, list) else ():
            try:
                out.add((ip_network(str(route["to"]), strict=False), ip_address(route["via"])))
            except (KeyError, TypeError, ValueError):
                continue
    return out


_IP_ROUTE = re.compile(r"\bip(?:\s+-[46])?\s+route\s+(?:add|replace|append)\s+(\S+)\s+via\s+"
                       r"(\S+)")


def up_routes(text: str, ifname: str) -> set[Pair]:
    """Routes that ``up``/``post-up`` lines of ``iface IFNAME`` stanzas add."""
    out: set[Pair] = set()
    current = None
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words and words[0] == "iface":
            current = words[1] if len(words) > 1 else None
        elif words and words[0] in ("up", "post-up") and current == ifname:
            match = _IP_ROUTE.search(" ".join(words[1:]))
            try:
                if match:
                    out.add((ip_network(match.group(1), strict=False),
                             ip_address(match.group(2))))
            except ValueError:
                continue
    return out


def ifupdown_routes(facts: PersistFacts, ifname: str) -> set[Pair]:
    """Routes of the interface's stanzas in the main file, what it sources, and ours."""
    files = ifupdown_stanzas(facts, ifname)
    if IFUPDOWN_FILE in facts.files:
        files.append(IFUPDOWN_FILE)
    return {pair for path in files for pair in up_routes(facts.text(path) or "", ifname)}


def persisted_routes(facts: PersistFacts, det: Detection) -> set[Pair]:
    """(destination, gateway) of every route the manager configures on the interface."""
    if det.manager is Manager.NETWORKD:
        assert det.network_file is not None
        return networkd_routes(facts, det.network_file)
    if det.manager is Manager.NETPLAN:
        return netplan_routes(facts, det)
    if det.manager is Manager.IFUPDOWN:
        return ifupdown_routes(facts, det.interface)
    return keyfile_routes(facts.text(det.nm_keyfile or "") or "")


class PersistState(enum.StrEnum):
    BOTH = "persisted"
    APPLIED_ONLY = "applied, not persisted"
    PERSISTED_ONLY = "persisted, not applied"
    NEITHER = "neither applied nor persisted"
    STALE = "persisted, not planned"

    @property
    def is_drift(self) -> bool:
        return self is not PersistState.BOTH


@dataclass(frozen=True, slots=True)
class RoutePersistence:
    state: PersistState
    dst: str
    gateway: str


@dataclass(frozen=True, slots=True)
class HostPersistence:
    host: str
    manager: Manager | None = None
    routes: tuple[RoutePersistence, ...] = ()
    error: str | None = None
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        return self.error is None and not any(r.state.is_drift for r in self.routes)


def persist_state(host: Host, routes: Sequence[PlannedRoute], facts: PersistFacts,
                  forced: Manager | None = None) -> HostPersistence:
    """Per planned route: applied (in the kernel's main table via its gateway, whoever
    owns it), persisted (in the manager's configuration), both or neither; and routes in
    podroutes' own persisted files that the plan no longer has."""
    try:
        det = detect(facts, node_interface(facts, host), forced)
    except PersistError as exc:
        return HostPersistence(host.name, error=str(exc))
    saved = persisted_routes(facts, det)
    applied = {(r.dst, r.gateway) for r in facts.routes
               if r.table == MAIN_TABLE and r.type == "unicast" and r.gateway is not None}
    out = []
    planned = set()
    for r in sorted(routes, key=lambda r: (r.family.value, r.dst)):
        pair = (r.dst, r.gateway)
        planned.add(pair)
        state = {(True, True): PersistState.BOTH, (True, False): PersistState.APPLIED_ONLY,
                 (False, True): PersistState.PERSISTED_ONLY,
                 (False, False): PersistState.NEITHER}[(pair in applied, pair in saved)]
        out.append(RoutePersistence(state, str(r.dst), str(r.gateway)))
    own = _own_persisted(facts, det)
    for dst, gw in sorted(own - planned, key=lambda p: (p[0].version, p[0], str(p[1]))):
        out.append(RoutePersistence(PersistState.STALE, str(dst), str(gw)))
    return HostPersistence(host.name, det.manager, tuple(out),
                           detail={"interface": det.interface, "why": det.why})


def _own_persisted(facts: PersistFacts, det: Detection) -> set[Pair]:
    """Routes in podroutes' own files (or recorded as its own, for NetworkManager)."""
    if det.manager is Manager.NM:
        return parse_record(facts.text(NM_RECORD) or "", det.nm_connection or "") & \
            keyfile_routes(facts.text(det.nm_keyfile or "") or "")
    if det.manager is Manager.NETWORKD and det.network_file is not None:
        own = {p: f for p, f in facts.files.items() if p in own_files(facts)}
        return networkd_routes(PersistFacts(files=own), det.network_file)
    if det.manager is Manager.NETPLAN:
        return netplan_routes(PersistFacts(files={p: f for p, f in facts.files.items()
                                                  if p == NETPLAN_FILE}), det)
    return up_routes(facts.text(IFUPDOWN_FILE) or "", det.interface)
