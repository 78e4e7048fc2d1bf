"""What ``podroutes doctor`` reads from a host: the commands, and pure parsers for them.

Pure. :data:`FACT_COMMANDS` are the argv lists that :mod:`podroutes.diag.wire` sends to a
host in one round trip; :func:`parse_facts` turns their captured output into one
:class:`HostFacts` value that :mod:`podroutes.diag.checks` and :mod:`podroutes.diag.trace` read.
A fact whose command is missing on the host (no ``nft``, no ``iptables``) is recorded as
unreadable, never guessed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_network

from podroutes.core.addresses import Interface, InterfaceAddress, parse_interfaces
from podroutes.core.errors import ParseError
from podroutes.core.ini import ini_values
from podroutes.core.iproute import parse_routes
from podroutes.core.jsontext import json_list
from podroutes.core.model import Family, IPAddress, IPNetwork, Route
from podroutes.core.netfiles import FILES_SCRIPT, networkd_in_use, parse_files
from podroutes.core.paths import PathFacts
from podroutes.diag.cni import CNI_DIR, CNI_SCRIPT, CniConfig, parse_listing, read_config
from podroutes.diag.firewall import Ruleset, parse_iptables_save, parse_nft_json
from podroutes.diag.probe import Probe

IPInterface = IPv4Interface | IPv6Interface

#: The sysctl that makes a host forward packets of each family.
FORWARDING_SYSCTL = {Family.V4: "net.ipv4.ip_forward", Family.V6: "net.ipv6.conf.all.forwarding"}

#: The sysctls doctor reads (interface names vary), read from ``/proc/sys`` by one
#: ``grep`` (``sysctl -a -r PATTERN`` costs ~75 ms of CPU per host walking every setting;
#: the shell's own ``read`` cannot be used: some kernels end a /proc/sys file after its
#: first byte for it). Lines are ``net/ipv4/ip_forward:1``, which :func:`parse_sysctls`
#: reads as ``net.ipv4.ip_forward = 1``; exit 1 without ``/proc/sys/net``.
SYSCTL_SCRIPT = r"""
cd /proc/sys 2>/dev/null && [ -d net ] || exit 1
grep -s -H '' net/ipv4/ip_forward net/ipv4/conf/*/rp_filter net/ipv6/conf/all/forwarding \
  net/ipv6/conf/*/accept_ra net/bridge/bridge-nf-call-iptables \
  net/bridge/bridge-nf-call-ip6tables
exit 0
"""

class FactKind(enum.StrEnum):
    SYSCTL = "sysctl"
    ADDR = "addr"
    NEIGH = "neigh"
    ROUTE4 = "route4"
    ROUTE6 = "route6"
    IPTABLES4 = "iptables"
    IPTABLES6 = "ip6tables"
    IPTABLES4_NAT = "iptables-nat"
    IPTABLES6_NAT = "ip6tables-nat"
    NFT = "nft"
    NETWORKD = "networkd"
    CNI = "cni"


FACT_COMMANDS: Mapping[FactKind, tuple[str, ...]] = {
    FactKind.SYSCTL: ("sh", "-c", SYSCTL_SCRIPT),
    FactKind.ADDR: ("ip", "-j", "addr", "show"),
    FactKind.NEIGH: ("ip", "-j", "neigh", "show"),
    FactKind.ROUTE4: ("ip", "-j", "-4", "route", "show", "table", "main"),
    FactKind.ROUTE6: ("ip", "-j", "-6", "route", "show", "table", "main"),
    FactKind.IPTABLES4: ("iptables-save", "-t", "filter"),
    FactKind.IPTABLES6: ("ip6tables-save", "-t", "filter"),
    FactKind.IPTABLES4_NAT: ("iptables-save", "-t", "nat"),
    FactKind.IPTABLES6_NAT: ("ip6tables-save", "-t", "nat"),
    FactKind.NFT: ("nft", "-j", "list", "ruleset"),
    FactKind.NETWORKD: ("sh", "-c", FILES_SCRIPT, "sh", "/"),
    FactKind.CNI: ("sh", "-c", CNI_SCRIPT, "sh", CNI_DIR),
}

@dataclass(frozen=True, slots=True)
class Output:
    """A command's captured result, as the transport returned it."""

    status: int
    stdout: str
    stderr: str = ""


@dataclass(frozen=True, slots=True)
class Neighbour:
    address: IPAddress
    dev: str
    states: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Networkd:
    """systemd-networkd as this host's network namespace sees it."""

    active: bool = False
    managed: Mapping[int, str] = field(default_factory=dict)  # ifindex -> .network file
    manage_foreign_routes: bool = True  # networkd's default
    #: (destination, gateway) of every [Route] section of each .network file, by path.
    persisted: Mapping[str, tuple[tuple[IPNetwork, IPAddress | None], ...]] = field(
        default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostFacts:
    sysctls: Mapping[str, int] = field(default_factory=dict)
    interfaces: tuple[Interface, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    routes: tuple[Route, ...] = ()
    iptables: Mapping[Family, Ruleset] = field(default_factory=dict)
    nft: Ruleset | None = None
    networkd: Networkd = Networkd()
    #: Every address with its flags and lifetimes (temporary, deprecated, ...), from the
    #: same ``ip -j addr`` output as ``interfaces``.
    addresses: tuple[InterfaceAddress, ...] = ()
    #: Facts that could not be read, with the host's own words ("nft: not found").
    unreadable: Mapping[FactKind, str] = field(default_factory=dict)
    #: Policy rules, the other tables and the kernel's answers for the planned
    #: destinations (:mod:`podroutes.core.paths`); ``None`` when not read.
    paths: PathFacts | None = None
    #: ``doctor --probe``: pings from this node's bridge address to the others'.
    probes: tuple[Probe, ...] | None = None
    #: The CNI configuration the container runtime uses; ``None`` when not read.
    cni: CniConfig | None = None

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def interface_with(self, address: IPAddress) -> Interface | None:
        return next((i for i in self.interfaces
                     if any(a.ip == address for a in i.addresses)), None)

    def local_addresses(self) -> dict[IPAddress, str]:
        return {a.ip: i.name for i in self.interfaces for a in i.addresses}

    def sysctl(self, name: str, default: int = 0) -> int:
        return self.sysctls.get(name, default)

    def forwarding(self) -> dict[Family, bool]:
        """Whether the host forwards each family, for the families whose sysctl was read."""
        return {f: self.sysctls[s] == 1 for f, s in FORWARDING_SYSCTL.items()
                if s in self.sysctls}

    @property
    def br_netfilter(self) -> bool:
        """``br_netfilter`` is loaded: its ``net.bridge`` sysctls exist."""
        return any(k.startswith("net.bridge.") for k in self.sysctls)

    def rp_filter(self, interface: str) -> int:
        """The effective reverse-path filter of an interface: max(all, interface)."""
        return max(self.sysctl("net.ipv4.conf.all.rp_filter"),
                   self.sysctl(f"net.ipv4.conf.{interface}.rp_filter"))


def parse_facts(outputs: Mapping[FactKind, Output]) -> HostFacts:
    """One host's facts from the outputs of (some of) :data:`FACT_COMMANDS`."""
    unreadable: dict[FactKind, str] = {}

    def text(kind: FactKind) -> str | None:
        out = outputs.get(kind)
        if out is None:
            return None
        if out.status != 0:
            unreadable[kind] = (out.stderr.strip().splitlines() or [f"exit {out.status}"])[-1]
            return None
        return out.stdout

    sysctl = text(FactKind.SYSCTL)
    addr = text(FactKind.ADDR)
    neigh = text(FactKind.NEIGH)
    routes: list[Route] = []
    for kind, family in ((FactKind.ROUTE4, Family.V4), (FactKind.ROUTE6, Family.V6)):
        table = text(kind)
        if table is not None:
            routes += parse_routes(table, family)
    iptables = {}
    for kind, nat, family in ((FactKind.IPTABLES4, FactKind.IPTABLES4_NAT, Family.V4),
                              (FactKind.IPTABLES6, FactKind.IPTABLES6_NAT, Family.V6)):
        saved, nat_saved = text(kind), text(nat)
        if saved is not None or nat_saved is not None:
            iptables[family] = parse_iptables_save(
                (saved or "") + "\n" + (nat_saved or ""), family)
    nft = text(FactKind.NFT)
    networkd = text(FactKind.NETWORKD)
    cni = text(FactKind.CNI)
    interfaces = tuple(parse_interfaces(addr)) if addr is not None else ()
    return HostFacts(
        sysctls=parse_sysctls(sysctl) if sysctl is not None else {},
        interfaces=interfaces,
        addresses=tuple(a for i in interfaces for a in i.details),
        neighbours=tuple(parse_neigh(neigh)) if neigh is not None else (),
        routes=tuple(routes),
        iptables=iptables,
        nft=parse_nft_json(nft) if nft is not None else None,
        networkd=parse_networkd(networkd) if networkd is not None else Networkd(),
        unreadable=unreadable,
        cni=read_config(parse_listing(cni)) if cni is not None else None,
    )


def parse_sysctls(text: str) -> dict[str, int]:
    """``sysctl`` output (``name = value`` lines) or ``grep -H`` of /proc/sys files
    (``net/ipv4/ip_forward:1``: interface names hold no ``:``); interface names keep
    their dots."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            name, sep, value = line.partition(":")
        if sep and value.strip().lstrip("-").isdigit():
            out[name.strip().replace("/", ".")] = int(value.strip())
    return out




def parse_neigh(text: str) -> list[Neighbour]:
    """``ip -j neigh show``: neighbour cache entries with their NUD states."""
    out = []
    for entry in json_list(text, "ip -j neigh"):
        try:
            out.append(Neighbour(ip_address(entry["dst"]), str(entry.get("dev", "")),
                                 tuple(str(s) for s in entry.get("state", ()))))
        except (KeyError, ValueError) as exc:
            raise ParseError(f"`ip -j neigh` entry not understood: {entry!r}") from exc
    return out


_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def parse_networkd(text: str) -> Networkd:
    """What :data:`~podroutes.core.netfiles.FILES_SCRIPT` says of systemd-networkd."""
    found, states = parse_files(text)
    files = {path: f.content for path, f in found.items()}
    managed: dict[int, str] = {}
    manage_foreign = True
    confs = [p for p in files if p.endswith(".conf") and "networkd.conf" in p]
    main = [p for p in confs if p.endswith("/networkd.conf")]
    dropins = sorted((p for p in confs if p not in main), key=lambda p: p.rsplit("/", 1)[-1])
    for path in main + dropins:
        for section, values in ini_values(files[path]):
            value = values.get("ManageForeignRoutes", "").lower()
            if section == "Network" and value in _TRUE | _FALSE:
                manage_foreign = value in _TRUE
    for path, body in files.items():
        if "/netif/links/" in path and path.rsplit("/", 1)[-1].isdigit():
            state_of = ini_values(body)[0][1]
            if state_of.get("ADMIN_STATE") in ("configured", "configuring") and \
                    state_of.get("NETWORK_FILE"):
                managed[int(path.rsplit("/", 1)[-1])] = state_of["NETWORK_FILE"]
    persisted = {path: tuple(_network_routes(body)) for path, body in files.items()
                 if path.endswith(".network") or ".network.d/" in path}
    return Networkd(networkd_in_use(states), managed, manage_foreign, persisted)


def _network_routes(body: str) -> list[tuple[IPNetwork, IPAddress | None]]:
    routes: list[tuple[IPNetwork, IPAddress | None]] = []
    for section, values in ini_values(body):
        if section != "Route" or "Destination" not in values:
            continue
        try:
            gateway = values.get("Gateway")
            routes.append((ip_network(values["Destination"], strict=False),
                           ip_address(gateway) if gateway else None))
        except ValueError:
            continue  # a route networkd itself would reject
    return routes
