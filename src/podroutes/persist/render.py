"""The files (and nmcli commands) that make a host's routes survive a reboot, per manager.

Pure: a :class:`~podroutes.persist.detect.Detection`, the host's planned routes and the
protocol number in; ``{path: FileSpec}`` and argv lists out. Paths are absolute and
without the filesystem root (the writer in :mod:`podroutes.persist.wire` puts them under
it). Called by :mod:`podroutes.persist.plan`. Every line is built from ``ipaddress``
values, integers and names that passed a strict pattern (interface names, the matched
``.network`` file's name, netplan device ids, connection UUIDs), never from raw text.

- systemd-networkd: ``/etc/systemd/network/<matched file>.d/60-podroutes.conf``, one
  ``[Route]`` with ``Protocol=N`` per route (a separate ``.network`` file would be
  ignored: networkd applies only the first file that matches an interface).
- netplan: ``/etc/netplan/60-podroutes.yaml`` (mode 0600) for the same device id, which
  netplan merges with the user's definition; explicit metrics keep the routes in the
  kernel's default slot whichever renderer netplan uses.
- ifupdown: ``/etc/network/interfaces.d/podroutes``, ``iface IF inet manual`` (and
  ``inet6``) with ``up ip route replace ... dev IF onlink proto N`` lines: ``onlink``
  because the sourced stanza usually runs before the one that adds the address.
- NetworkManager: ``nmcli connection modify UUID +ipv4.routes ... -ipv4.routes ...`` and
  ``nmcli device reapply IF``; ``/etc/podroutes/nm-routes`` records which routes of the
  connection are podroutes' (NetworkManager routes carry no protocol number).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import PurePosixPath

from podroutes.core.ini import ini_sections
from podroutes.core.iproute import IFNAME_RE
from podroutes.core.model import Family, IPAddress, IPNetwork, Manager, PlannedRoute
from podroutes.persist.detect import (
    NETPLAN_ID_RE,
    NETPLAN_TYPES,
    NETWORK_NAME_RE,
    UUID_RE,
    Detection,
)

NETWORKD_DIR = "/etc/systemd/network"
DROPIN_NAME = "60-podroutes.conf"
NETPLAN_FILE = "/etc/netplan/60-podroutes.yaml"
IFUPDOWN_FILE = "/etc/network/interfaces.d/podroutes"
NM_RECORD = "/etc/podroutes/nm-routes"
NETWORKD_CONF_FIX = "/etc/systemd/networkd.conf.d/60-podroutes.conf"

Pair = tuple[IPNetwork, IPAddress]


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file podroutes wants on a host: its whole text and its permission bits."""

    content: str
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class Rendered:
    files: dict[str, FileSpec]
    commands: tuple[tuple[str, ...], ...] = ()


def header(host: str, protocol: int, comment: str = "#") -> str:
    return (f"{comment} Pod network routes of {host}, written by podroutes persist (route "
            f"protocol {protocol}).\n{comment} Do not edit: 'podroutes persist' rewrites or "
            "removes this file.\n")


def _ordered(routes: Iterable[PlannedRoute]) -> list[PlannedRoute]:
    """IPv4 first, then IPv6, each by destination: stable files, stable diffs."""
    return sorted(routes, key=lambda r: (r.family.value, r.dst))


def dropin_path(network_file: str) -> str:
    name = PurePosixPath(network_file).name
    if not NETWORK_NAME_RE.match(name):
        raise ValueError(f"not a .network file name: {name!r}")
    return f"{NETWORKD_DIR}/{name}.d/{DROPIN_NAME}"


def render_networkd(det: Detection, routes: Sequence[PlannedRoute], protocol: int,
                    host: str) -> dict[str, FileSpec]:
    if not routes:
        return {}
    assert det.network_file is not None
    body = [header(host, protocol), f"# Drop-in for {PurePosixPath(det.network_file).name}: "
            f"networkd applies it to {_ifname(det.interface)} with that file.\n"]
    for r in _ordered(routes):
        body.append(f"\n[Route]\nDestination={r.dst}\nGateway={r.gateway}\n"
                    f"Protocol={int(protocol)}\n")
    return {dropin_path(det.network_file): FileSpec("".join(body))}


def render_netplan(det: Detection, routes: Sequence[PlannedRoute], protocol: int,
                   host: str) -> dict[str, FileSpec]:
    if not routes:
        return {}
    dev_id, kind = det.netplan_id or det.interface, det.netplan_type
    if not NETPLAN_ID_RE.match(dev_id) or kind not in NETPLAN_TYPES:
        raise ValueError(f"not a netplan device: {kind}.{dev_id}")
    lines = [header(host, protocol).rstrip("\n"),
             "# netplan merges this with your own definition of the same device id; netplan",
             "# cannot set a route protocol, so these come back as 'proto static'.",
             "network:", "  version: 2", f"  {kind}:", f"    {_yaml_key(dev_id)}:", "      routes:"]
    for r in _ordered(routes):
        lines += [f'        - to: "{r.dst}"', f'          via: "{r.gateway}"',
                  f"          metric: {r.family.default_metric}"]
    return {NETPLAN_FILE: FileSpec("\n".join(lines) + "\n", 0o600)}


def _yaml_key(dev_id: str) -> str:
    """A device id as a YAML key; quoted unless plainly a name (ids pass NETPLAN_ID_RE,
    which admits no quote or backslash)."""
    return dev_id if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", dev_id) else f'"{dev_id}"'



def _ifname(name: str) -> str:
    if not IFNAME_RE.match(name):
        raise ValueError(f"not an interface name: {name!r}")
    return name


def render_ifupdown(det: Detection, routes: Sequence[PlannedRoute], protocol: int,
                    host: str) -> dict[str, FileSpec]:
    if not routes:
        return {}
    dev = _ifname(det.interface)
    parts = [header(host, protocol),
             "# Read through 'source' in /etc/network/interfaces. The routes name the device\n"
             "# and 'onlink': this stanza usually runs before the one that adds the address.\n"
             "# A failing route never stops the interface from coming up ('|| true').\n"]
    for family, method in ((Family.V4, "inet"), (Family.V6, "inet6")):
        mine = [r for r in _ordered(routes) if r.family is family]
        if not mine:
            continue
        flag = "" if family is Family.V4 else " -6"
        parts.append(f"\niface {dev} {method} manual\n")
        for r in mine:
            spec = f"{r.dst} via {r.gateway} dev {dev}"
            parts.append(f"    up ip{flag} route replace {spec} onlink proto {int(protocol)}"
                         " || true\n")
            parts.append(f"    down ip{flag} route del {spec} proto {int(protocol)} || true\n")
    return {IFUPDOWN_FILE: FileSpec("".join(parts))}


# --- NetworkManager --------------------------------------------------------------------


def nm_route_value(dst: IPNetwork, gateway: IPAddress) -> str:
    """An ``ipv4.routes``/``ipv6.routes`` value with the metric of the kernel's default
    slot (NetworkManager would otherwise use the connection's metric, 100 or more)."""
    return f"{dst} {gateway} {Family.of(dst).default_metric}"


def keyfile_routes(text: str) -> set[Pair]:
    """(destination, gateway) of every ``routeN=DST,GW[,METRIC]`` of a keyfile."""
    out: set[Pair] = set()
    for section, kvs in ini_sections(text):
        if section not in ("ipv4", "ipv6"):
            continue
        for key, value in kvs:
            if not (key.startswith("route") and key[5:].isdigit()):
                continue
            fields = [f.strip() for f in value.replace(";", ",").split(",")]
            try:
                if len(fields) >= 2 and fields[1]:
                    out.add((ip_network(fields[0], strict=False), ip_address(fields[1])))
            except ValueError:
                continue
    return out


def parse_record(text: str, uuid: str) -> set[Pair]:
    """The routes podroutes added to connection ``uuid`` (``UUID DST GW`` lines)."""
    out: set[Pair] = set()
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == uuid:
            try:
                out.add((ip_network(words[1]), ip_address(words[2])))
            except ValueError:
                continue
    return out


def render_nm(det: Detection, routes: Sequence[PlannedRoute], protocol: int, host: str,
              current: set[Pair], recorded: set[Pair]) -> Rendered:
    """Add the planned routes the connection lacks, remove those podroutes recorded as its
    own that the plan no longer has, and record what is podroutes' now."""
    uuid = det.nm_connection or ""
    if not UUID_RE.match(uuid):
        raise ValueError(f"not a connection UUID: {uuid!r}")
    planned = {(r.dst, r.gateway) for r in routes}
    add = sorted((p for p in planned if p not in current), key=_pair_key)
    drop = sorted((p for p in recorded & current if p not in planned), key=_pair_key)
    args: list[str] = []
    for sign, pairs in (("-", drop), ("+", add)):
        for dst, gw in pairs:
            args += [f"{sign}ipv{dst.version}.routes", nm_route_value(dst, gw)]
    commands: tuple[tuple[str, ...], ...] = ()
    if args:
        commands = (("nmcli", "connection", "modify", uuid, *args),
                    ("nmcli", "device", "reapply", _ifname(det.interface)))
    files = {}
    if planned:
        lines = [header(host, protocol).rstrip("\n"),
                 "# NetworkManager routes podroutes added: CONNECTION-UUID DESTINATION GATEWAY"]
        lines += [f"{uuid} {dst} {gw}" for dst, gw in sorted(planned, key=_pair_key)]
        files[NM_RECORD] = FileSpec("\n".join(lines) + "\n")
    return Rendered(files, commands)


def _pair_key(pair: Pair) -> tuple[int, IPNetwork, str]:
    return pair[0].version, pair[0], str(pair[1])


def render(det: Detection, routes: Sequence[PlannedRoute], protocol: int, host: str,
           nm_current: set[Pair] | None = None, nm_recorded: set[Pair] | None = None,
           ) -> Rendered:
    """What the detected manager needs for ``routes`` (no routes: no files)."""
    if det.manager is Manager.NETWORKD:
        return Rendered(render_networkd(det, routes, protocol, host))
    if det.manager is Manager.NETPLAN:
        return Rendered(render_netplan(det, routes, protocol, host))
    if det.manager is Manager.IFUPDOWN:
        return Rendered(render_ifupdown(det, routes, protocol, host))
    return render_nm(det, routes, protocol, host, nm_current or set(), nm_recorded or set())


def networkd_conf_fix(host: str, protocol: int) -> FileSpec:
    """``--fix-foreign-routes``: networkd stops deleting routes it did not configure."""
    return FileSpec(header(host, protocol) + "# Keep routes other tools (podroutes apply) add "
                    "on interfaces networkd manages.\n\n[Network]\nManageForeignRoutes=no\n")
