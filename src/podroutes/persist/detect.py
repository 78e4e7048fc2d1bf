"""Which network manager configures a host's node interface, found in captured facts.

Pure. :func:`detect` reads a :class:`~podroutes.persist.facts.PersistFacts` value and
returns a :class:`Detection`: the manager (systemd-networkd, netplan, ifupdown or
NetworkManager), the interface, the evidence, and what the renderer needs (the
``.network`` file that really matched the interface, the netplan device id and type, the
NetworkManager connection). Called by :mod:`podroutes.persist.plan`. The rules follow
each manager's own: networkd applies only the first matching ``.network`` file in
lexical order (a same-named file in ``/etc`` hides one in ``/run`` or ``/usr/lib``);
netplan merges every YAML file by device id; ifupdown reads only files the main
``interfaces`` file sources.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from podroutes.core.errors import PersistError
from podroutes.core.ini import ini_sections
from podroutes.core.iproute import IFNAME_RE
from podroutes.core.model import Host, Manager
from podroutes.persist.facts import PersistFacts
from podroutes.persist.match import match_network

#: networkd's search path, highest precedence first (systemd.network(5)).
NETWORK_DIRS = ("/etc/systemd/network", "/run/systemd/network",
                "/usr/local/lib/systemd/network", "/usr/lib/systemd/network",
                "/lib/systemd/network")
#: netplan's, highest precedence first: a same-named file in /run hides /etc's and /lib's.
NETPLAN_DIRS = ("/run/netplan", "/etc/netplan", "/usr/lib/netplan", "/lib/netplan")
NETPLAN_TYPES = ("ethernets", "bonds", "bridges", "vlans", "wifis", "tunnels", "vrfs",
                 "modems", "dummy-devices", "virtual-ethernets", "nm-devices")
#: netplan before this drops routes given for one interface in a second file (LP #2003061).
NETPLAN_MIN = (0, 106)
INTERFACES = "/etc/network/interfaces"
NETWORK_NAME_RE = re.compile(r"\A[A-Za-z0-9_.@:+-]{1,200}\.network\Z")
NETPLAN_ID_RE = re.compile(r"\A[A-Za-z0-9_.@:-]{1,64}\Z")
UUID_RE = re.compile(r"\A[0-9a-fA-F-]{36}\Z")
#: podroutes' own files; never taken as the user's configuration.
OWN_NAMES = ("60-podroutes.conf", "60-podroutes.yaml", "podroutes", "nm-routes")


@dataclass(frozen=True, slots=True)
class Detection:
    """What manages one host's node interface, and how to write routes for it."""

    manager: Manager
    interface: str
    why: str
    network_file: str | None = None  # networkd: the .network file that matched
    netplan_id: str | None = None  # netplan: the device id, e.g. eth0 or id0
    netplan_type: str = "ethernets"
    netplan_renderer: str = "networkd"
    netplan_version: str | None = None
    nm_connection: str | None = None  # NetworkManager: the connection UUID
    nm_keyfile: str | None = None
    warnings: tuple[str, ...] = ()


def node_interface(facts: PersistFacts, host: Host, override: str | None = None) -> str:
    """The interface holding the host's node address (``--interface`` overrides)."""
    if override is not None:
        if not IFNAME_RE.match(override):
            raise PersistError(f"--interface {override!r}: not an interface name")
        return override
    for iface in facts.interfaces:
        if any(a.ip in host.addresses for a in iface.addresses) and IFNAME_RE.match(iface.name):
            return iface.name
    listed = ", ".join(str(a) for a in host.addresses)
    raise PersistError(f"none of {host.name}'s addresses ({listed}) is on an interface of "
                       "the host: pass --interface NAME")


# --- systemd-networkd ------------------------------------------------------------------


def by_name(facts: PersistFacts, dirs: Iterable[str], suffix: str) -> list[str]:
    """Files in ``dirs`` (highest precedence first) by basename: the first one of each
    name wins; returned in lexical order of the basename, as the manager reads them."""
    chosen: dict[str, str] = {}
    for d in dirs:
        for path in facts.under(d, suffix):
            chosen.setdefault(PurePosixPath(path).name, path)
    return [chosen[name] for name in sorted(chosen)]


def network_files(facts: PersistFacts) -> list[str]:
    return [p for p in by_name(facts, NETWORK_DIRS, ".network")
            if NETWORK_NAME_RE.match(PurePosixPath(p).name)]


def dropins(facts: PersistFacts, network_file: str) -> list[str]:
    """A ``.network`` file's drop-ins (``NAME.network.d/*.conf`` in every search dir)."""
    name = PurePosixPath(network_file).name
    return by_name(facts, (f"{d}/{name}.d" for d in NETWORK_DIRS), ".conf")


def matched_network_file(facts: PersistFacts, ifname: str) -> tuple[str | None, str]:
    """The ``.network`` file networkd applies to the interface, and how that is known."""
    iface = facts.interface(ifname)
    if iface is not None:
        state = facts.text(f"/run/systemd/netif/links/{iface.index}")
        for key, value in (kv for _, kvs in ini_sections(state or "") for kv in kvs):
            if key == "NETWORK_FILE" and value and NETWORK_NAME_RE.match(
                    PurePosixPath(value).name):
                return value, f"networkd's own state says {value} configures {ifname}"
    for path in network_files(facts):
        matched = match_network(facts.text(path) or "", ifname, facts.links.get(ifname),
                                facts.values)
        if matched is None:
            raise PersistError(
                f"{path} has a [Match] condition podroutes cannot evaluate offline (every "
                f"other key matches {ifname}) and networkd is not running to say whether it "
                "matches; start systemd-networkd, or name the manager (persist --format, "
                "status --persist-format)")
        if matched:
            return path, (f"{path} is the first .network file (in lexical order) that "
                          f"matches {ifname}")
    return None, f"no .network file matches {ifname}"


# --- netplan ---------------------------------------------------------------------------


def netplan_documents(facts: PersistFacts) -> list[tuple[str, dict[str, Any]]]:
    """Every netplan file but podroutes' own, parsed, in the order netplan merges them."""
    out = []
    for path in by_name(facts, NETPLAN_DIRS, ".yaml"):
        if PurePosixPath(path).name in OWN_NAMES:
            continue
        try:
            data = yaml.safe_load(facts.text(path) or "") or {}
        except yaml.YAMLError as exc:
            raise PersistError(f"{path} is not valid YAML ({exc}); netplan would reject it "
                               "too: fix it first") from exc
        network = data.get("network") if isinstance(data, dict) else None
        if isinstance(network, dict):
            out.append((path, network))
    return out


def netplan_definition(facts: PersistFacts, ifname: str) -> tuple[str, str, str, str] | None:
    """(device id, device type, renderer, file) of the netplan definition of ``ifname``.

    The renderer is the device's own, else its type's, else the global one (the last
    file that sets it wins), else networkd.
    """
    found: tuple[str, str, str | None, str] | None = None
    renderer = "networkd"
    for path, network in netplan_documents(facts):
        renderer = str(network.get("renderer", renderer))
        for kind in NETPLAN_TYPES:
            devices = network.get(kind)
            if not isinstance(devices, dict):
                continue
            for dev_id, spec in devices.items():
                if not isinstance(spec, dict) or dev_id == "renderer":
                    continue
                match: dict[str, Any] = spec["match"] if isinstance(spec.get("match"),
                                                                      dict) else {}
                pattern = match.get("name")
                hit = (dev_id == ifname and not match) or spec.get("set-name") == ifname or (
                    isinstance(pattern, str) and fnmatch.fnmatchcase(ifname, pattern))
                if hit and NETPLAN_ID_RE.match(str(dev_id)):
                    own = spec.get("renderer", devices.get("renderer"))
                    found = (str(dev_id), kind, str(own) if own else None, path)
    if found is None:
        return None
    dev_id, kind, own, path = found
    return dev_id, kind, own or renderer, path


def netplan_version(text: str | None) -> tuple[int, int] | None:
    match = re.match(r"(?:\d+:)?(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


# --- ifupdown --------------------------------------------------------------------------


def _logical_lines(text: str) -> list[list[str]]:
    out, pending = [], ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        words = line.split("#", 1)[0].split() if not line.lstrip().startswith("#") else []
        if words:
            out.append(words)
    return out


def ifupdown_sources(text: str) -> list[tuple[str, str]]:
    """The ``source`` patterns and ``source-directory`` directories of an interfaces file,
    made absolute (relative ones are relative to /etc/network)."""
    out = []
    for words in _logical_lines(text):
        if words[0] in ("source", "source-directory") and len(words) >= 2:
            target = words[1] if words[1].startswith("/") else f"/etc/network/{words[1]}"
            out.append((words[0], target))
    return out


def sources_file(text: str, path: str) -> bool:
    """Whether the main interfaces file reads ``path`` (``source-directory`` only reads
    names made of letters, digits, ``_`` and ``-``)."""
    name = PurePosixPath(path).name
    for kind, target in ifupdown_sources(text):
        if kind == "source" and fnmatch.fnmatchcase(path, target) and not name.startswith("."):
            return True
        if kind == "source-directory" and target.rstrip("/") == str(PurePosixPath(path).parent) \
                and re.fullmatch(r"[A-Za-z0-9_-]+", name):
            return True
    return False


def ifupdown_stanzas(facts: PersistFacts, ifname: str) -> list[str]:
    """Files (the main one and what it sources, podroutes' own excepted) with an
    ``iface IFNAME`` stanza."""
    main = facts.text(INTERFACES)
    if main is None:
        return []
    files = [INTERFACES] + [p for p in facts.under("/etc/network/interfaces.d")
                            if sources_file(main, p) and PurePosixPath(p).name not in OWN_NAMES]
    return [p for p in files
            if any(w[0] == "iface" and len(w) > 1 and w[1] == ifname
                   for w in _logical_lines(facts.text(p) or ""))]


# --- NetworkManager --------------------------------------------------------------------


def keyfile_connection(text: str) -> dict[str, str]:
    return {k: v for section, kvs in ini_sections(text) if section == "connection"
            for k, v in kvs}


def nm_keyfiles(facts: PersistFacts) -> list[str]:
    return [p for d in ("/etc/NetworkManager/system-connections",
                        "/run/NetworkManager/system-connections")
            for p in facts.under(d, ".nmconnection")]


def nm_connection(facts: PersistFacts, ifname: str) -> tuple[str | None, str | None]:
    """(UUID, keyfile) of the connection for ``ifname``: the active one, else the one
    keyfile bound to the interface."""
    active = facts.nm_active.get(ifname)
    for path in nm_keyfiles(facts):
        conn = keyfile_connection(facts.text(path) or "")
        if active is not None and conn.get("uuid") == active:
            return active, path
    if active is not None:
        return active, None
    bound = [(keyfile_connection(facts.text(p) or "").get("uuid"), p) for p in nm_keyfiles(facts)
             if keyfile_connection(facts.text(p) or "").get("interface-name") == ifname]
    if len(bound) == 1 and bound[0][0]:
        return bound[0]
    return None, None


# --- the decision ----------------------------------------------------------------------


def detect(facts: PersistFacts, ifname: str, forced: Manager | None = None) -> Detection:
    """The manager of ``ifname``: ``forced`` if given (``--format``), else the first that
    configures it of NetworkManager (active connection), netplan, networkd, ifupdown."""
    warnings: list[str] = []
    netplan = netplan_definition(facts, ifname)
    uuid, keyfile = nm_connection(facts, ifname)
    if forced is None:
        if uuid and facts.flag("nm-running") and not (keyfile or "").startswith("/run/"):
            forced = Manager.NM
        elif netplan is not None:
            forced = Manager.NETPLAN
        elif facts.networkd_in_use and matched_network_file(facts, ifname)[0]:
            forced = Manager.NETWORKD
        elif ifupdown_stanzas(facts, ifname):
            forced = Manager.IFUPDOWN
        else:
            raise PersistError(
                f"cannot tell what configures {ifname}: no active NetworkManager connection, "
                "no netplan definition, no .network file of a running or enabled networkd, no "
                "ifupdown stanza; name the manager: networkd, netplan, ifupdown or nm "
                "(persist --format, status --persist-format)")
    if forced is Manager.NETWORKD:
        path, why = matched_network_file(facts, ifname)
        if path is None:
            others = [name for name, found in (
                ("netplan", netplan is not None), ("nm", uuid is not None),
                ("ifupdown", bool(ifupdown_stanzas(facts, ifname)))) if found]
            hint = (f"; {' and '.join(others)} configure{'s' if len(others) == 1 else ''} "
                    f"it: use --format {others[0]}" if others else
                    f"; add a .network file for {ifname} first, or use the format of what "
                    "does configure it")
            raise PersistError(f"systemd-networkd does not manage {ifname}: {why}, so a "
                               f"drop-in would never be read{hint}")
        if not facts.networkd_in_use:
            warnings.append("systemd-networkd neither runs in this host's network namespace "
                            "nor is enabled: the drop-in takes effect when it runs")
        return Detection(Manager.NETWORKD, ifname, why, network_file=path,
                         warnings=tuple(warnings))
    if forced is Manager.NETPLAN:
        version = facts.values.get("netplan-version")
        parsed = netplan_version(version)
        if parsed is not None and parsed < NETPLAN_MIN:
            raise PersistError(
                f"netplan {version} is older than 0.106 and drops routes given for one "
                "interface in a second file (LP #2003061), so 60-podroutes.yaml would be "
                "ignored: upgrade netplan, or copy the routes (podroutes persist --dry-run "
                "--format netplan prints them) into your own file, or use --format networkd")
        if parsed is None:
            warnings.append(f"could not tell netplan's version ({version or 'unknown'}); "
                            "before 0.106 it ignores routes from a second file (LP #2003061)")
        if netplan is None:
            dev_id, kind, renderer, where = ifname, "ethernets", "networkd", "no file"
            warnings.append(f"no netplan file defines {ifname}; 60-podroutes.yaml defines "
                            "it with routes only")
        else:
            dev_id, kind, renderer, where = netplan
        return Detection(Manager.NETPLAN, ifname, f"netplan defines {ifname} as {kind}.{dev_id}"
                         f" ({where}; renderer {renderer})", netplan_id=dev_id,
                         netplan_type=kind, netplan_renderer=renderer,
                         netplan_version=version, warnings=tuple(warnings))
    if forced is Manager.IFUPDOWN:
        main = facts.text(INTERFACES)
        target = "/etc/network/interfaces.d/podroutes"
        if main is None or not sources_file(main, target):
            raise PersistError(
                f"{INTERFACES} does not source {target} (ifupdown would ignore it): add "
                "'source /etc/network/interfaces.d/*' to it (podroutes does not edit it)")
        stanzas = ifupdown_stanzas(facts, ifname)
        if not stanzas:
            warnings.append(f"no ifupdown stanza configures {ifname}: the routes come up only "
                            f"when something runs 'ifup {ifname}'")
        return Detection(Manager.IFUPDOWN, ifname,
                         f"ifupdown configures {ifname} ({', '.join(stanzas) or 'no stanza'})",
                         warnings=tuple(warnings))
    if uuid is None or not UUID_RE.match(uuid):
        raise PersistError(f"no NetworkManager connection for {ifname} (none active, no "
                           "keyfile with interface-name=" + ifname + ")")
    if not facts.flag("nm-running"):
        warnings.append("NetworkManager does not run in this host's network namespace: "
                        "nmcli cannot change the connection")
    return Detection(Manager.NM, ifname, f"NetworkManager connection {uuid} is "
                     f"{'active on' if facts.nm_active.get(ifname) else 'bound to'} {ifname}",
                     nm_connection=uuid, nm_keyfile=keyfile, warnings=tuple(warnings))
