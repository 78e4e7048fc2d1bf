"""Canonical values of the podroutes domain: hosts, pod CIDRs, routes.

Pure: no I/O. Everything downstream (plan, diff, renderers) compares these values and
nothing else, so normalisation happens once, in the parsers that build them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

MAIN_TABLE = 254

#: Route protocol numbers taken by well-known daemons and by the kernel itself; podroutes
#: refuses to own routes under any of them (docs/architecture.md, "Rules the routes follow").
RESERVED_PROTOCOLS: frozenset[int] = frozenset(
    {0, 1, 2, 3, 4, *range(8, 19), 42, 80, 84, 99, *range(186, 193), 255}
)

#: podroutes' own route protocol number unless the user picks another.
DEFAULT_PROTOCOL = 147

#: iproute2's names for protocol numbers (``/etc/iproute2/rt_protos``); ``ip -j route``
#: prints these names instead of numbers.
PROTOCOL_NAMES: Mapping[str, int] = {
    "unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4, "gated": 8, "ra": 9,
    "mrt": 10, "zebra": 11, "bird": 12, "dnrouted": 13, "xorp": 14, "ntk": 15, "dhcp": 16,
    "keepalived": 18, "babel": 42, "openr": 99, "bgp": 186, "isis": 187, "ospf": 188,
    "rip": 189, "eigrp": 192,
}  # fmt: skip
#: A POSIX login name as ssh takes it (never one that starts with '-': ssh would read an
#: option). The inventory's ``ssh.user`` and the ``--ssh-user`` flag are both held to it.
USER_RE = re.compile(r"\A[a-z_][a-z0-9_.-]{0,31}\Z")

_PROTOCOL_BY_NUMBER = {number: name for name, number in PROTOCOL_NAMES.items()}


def protocol_name(number: int) -> str:
    """A route protocol as ``ip`` prints it: ``static`` for 4, ``147`` for a number
    iproute2 has no name for. The one way podroutes names a protocol."""
    return _PROTOCOL_BY_NUMBER.get(number, str(number))


class Family(enum.IntEnum):
    """An address family, numbered as people say it."""

    V4 = 4
    V6 = 6

    @classmethod
    def of(cls, value: IPAddress | IPNetwork) -> Family:
        return cls(value.version)

    @property
    def flag(self) -> str:
        """The iproute2 family flag: ``-4`` or ``-6``."""
        return f"-{self.value}"

    @property
    def default_metric(self) -> int:
        """The metric the kernel gives a route added without one."""
        return 0 if self is Family.V4 else 1024


class SshTargetKind(enum.StrEnum):
    """Which inventory field names the machine to connect to."""

    ADDRESS = "address"
    HOSTNAME = "hostname"
    FQDN = "fqdn"


@dataclass(frozen=True, slots=True)
class SshSpec:
    """Per-host SSH overrides from the inventory; ``None`` means "use the default"."""

    target: str | None = None
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Host:
    """One machine of the inventory: its node addresses and the pod CIDRs it owns.

    At most one address and at most one pod CIDR per family. ``line`` and ``fields`` say
    where in ``source`` the host was written, for located error messages.
    """

    name: str
    addresses: tuple[IPAddress, ...]
    pod_cidrs: tuple[IPNetwork, ...] = ()
    fqdn: str | None = None
    ssh: SshSpec = SshSpec()
    source: str = "<inventory>"
    line: int = 0
    fields: Mapping[str, tuple[str, int]] = field(default_factory=dict, compare=False, hash=False)

    def address(self, family: Family) -> IPAddress | None:
        for address in self.addresses:  # a loop, not next(generator): called per host a lot
            if address.version == family:
                return address
        return None

    def pod_cidr(self, family: Family) -> IPNetwork | None:
        for cidr in self.pod_cidrs:
            if cidr.version == family:
                return cidr
        return None

    def where(self, role: str) -> tuple[str, int]:
        """The field label as the user wrote it and its line, for a role such as
        ``name``, ``fqdn``, ``address4``, ``address6``, ``pod_cidr4``, ``pod_cidr6``."""
        return self.fields.get(role, (role, self.line))

    @property
    def is_control_plane(self) -> bool:
        """A host without a pod CIDR (the KTHW ``server``) routes to every pod CIDR."""
        return not self.pod_cidrs


@dataclass(frozen=True, slots=True)
class Inventory:
    """A validated list of hosts, in the order the user wrote them."""

    source: str
    hosts: tuple[Host, ...]

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __repr__(self) -> str:
        # Short on purpose: asyncio repr()s what its tasks hold (asyncio.run does, for the
        # SIGINT handler it installs), and 10,000 hosts took half a second each time.
        return f"Inventory(source={self.source!r}, hosts=<{len(self.hosts)} hosts>)"

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Route:
    """One route in canonical form, as read from a host or as podroutes wants it.

    Two routes are "the same slot" in the kernel when table, destination and metric
    match (``ip route replace`` matches on those, plus TOS, which podroutes never sets).
    """

    dst: IPNetwork
    gateway: IPAddress | None = None
    dev: str | None = None
    protocol: int = 0
    table: int = MAIN_TABLE
    metric: int | None = None
    type: str = "unicast"
    scope: str = "global"
    onlink: bool = False
    #: Gateways of a multipath (ECMP) route; ``gateway`` is then ``None``.
    nexthops: tuple[IPAddress, ...] = ()
    #: IPv6 router preference (``low``/``medium``/``high``, RFC 4191); ``None`` for IPv4.
    #: Informational: it does not make two routes different slots.
    pref: str | None = field(default=None, compare=False)
    #: Seconds until the kernel deletes the route (RA-learned or ``expires N``); ``None``
    #: when permanent. Not compared: it counts down between two reads of the same route.
    #: ``ip route replace`` without ``expires`` makes the route permanent (measured).
    expires: int | None = field(default=None, compare=False)
    #: What else the route carries, in ``ip route`` words (``src 192.168.10.101``,
    #: ``mtu 1400``, ``realm 5``, ``encap``): things ``ip route replace`` with podroutes'
    #: words would drop, so a route with any is never adopted. Not compared.
    extras: tuple[str, ...] = field(default=(), compare=False)

    @property
    def family(self) -> Family:
        return Family.of(self.dst)

    @property
    def effective_metric(self) -> int:
        return self.family.default_metric if self.metric is None else self.metric


class _RouteDraft:
    """A :class:`Route`'s slots, same names in the same order, without its frozenness:
    :func:`make_route` fills one in with plain attribute stores and then makes it the
    Route it describes (``__class__`` may change between classes of the same layout)."""

    __slots__ = Route.__slots__


def make_route(dst: IPNetwork, gateway: IPAddress | None, dev: str | None, protocol: int,
               table: int, metric: int | None, type: str, scope: str, onlink: bool,
               nexthops: tuple[IPAddress, ...], pref: str | None,
               expires: int | None, extras: tuple[str, ...] = ()) -> Route:
    """``Route(...)`` with every field given, for the ``ip -j route`` parser's loop: the
    same frozen value, built in a fifth of the time of the dataclass ``__init__`` (which
    goes through ``object.__setattr__`` once per field: ~1.9 µs against ~0.4 µs).
    Reading 10,000 routes builds 10,000 of them."""
    draft: Any = _RouteDraft()
    draft.dst = dst
    draft.gateway = gateway
    draft.dev = dev
    draft.protocol = protocol
    draft.table = table
    draft.metric = metric
    draft.type = type
    draft.scope = scope
    draft.onlink = onlink
    draft.nexthops = nexthops
    draft.pref = pref
    draft.expires = expires
    draft.extras = extras
    draft.__class__ = Route
    route: Route = draft
    return route


@dataclass(frozen=True, slots=True)
class PlannedRoute:
    """A route podroutes wants on a host: another host's pod CIDR via that host."""

    dst: IPNetwork
    gateway: IPAddress
    via_host: str

    @property
    def family(self) -> Family:
        return Family.of(self.dst)


class Manager(enum.StrEnum):
    """The network managers ``podroutes persist`` writes for (detected in
    :mod:`podroutes.persist.detect`)."""

    NETWORKD = "networkd"
    NETPLAN = "netplan"
    IFUPDOWN = "ifupdown"
    NM = "nm"

    @property
    def label(self) -> str:
        return {"networkd": "systemd-networkd", "netplan": "netplan", "ifupdown": "ifupdown",
                "nm": "NetworkManager"}[self.value]
