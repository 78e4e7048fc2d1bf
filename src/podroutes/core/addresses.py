"""Read a host's addresses (``ip -j addr``) and choose the one routes should go via.

Pure: text in, values out. :func:`parse_interfaces` is the one reader of ``ip -j addr``
(doctor's and persist's facts use it); doctor's ``unstable-node-address`` check uses the
address choice. The rule it enforces comes from flannel#2293: a route via an IPv6
*temporary* (privacy, RFC 8981) or *deprecated* address works until the kernel rotates
or drops that address, then every pod route to that node breaks at once. So only a
stable address is ever chosen, and the choice comes with a reason a person can read.

Stable means: global scope, not temporary, not deprecated (preferred lifetime 0), not
tentative / optimistic (duplicate address detection has not finished), not dadfailed.
A ``mngtmpaddr`` address is the stable template privacy addresses are made from, and is
fine. Among stable addresses a permanent one (no ``dynamic`` flag, valid forever) beats
a dynamic one (SLAAC, DHCPv6), then the longer preferred lifetime wins, then the
lower address (not the kernel's order, which lists the newest first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any

from podroutes.core.errors import ParseError
from podroutes.core.jsontext import json_list
from podroutes.core.model import Family, IPAddress, IPNetwork

IPInterface = IPv4Interface | IPv6Interface

#: ``ip -j addr`` prints this lifetime for "forever".
FOREVER = 0xFFFFFFFF

#: Flags that make an address unfit to route via, and why (``ip -j addr`` spells them).
_DISQUALIFYING: tuple[tuple[str, str], ...] = (
    ("dadfailed", "dadfailed: duplicate address detection found another machine on the "
                  "link with this address"),
    ("tentative", "tentative: duplicate address detection has not finished, the kernel "
                  "does not use it yet"),
    ("optimistic", "optimistic: duplicate address detection is still running and may "
                   "still fail"),
    ("temporary", "temporary: a privacy address (RFC 8981) the kernel replaces every few "
                  "hours or days; routes via it break when it goes (flannel#2293)"),
    ("deprecated", "deprecated (preferred lifetime 0): the kernel is retiring it"),
)


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address of one interface, as ``ip -j addr`` reports it."""

    ifname: str
    address: IPAddress
    prefixlen: int
    scope: str  # global | link | host | site
    flags: frozenset[str]
    valid_lifetime: int | None  # seconds; None is forever
    preferred_lifetime: int | None

    @property
    def family(self) -> Family:
        return Family.of(self.address)

    @property
    def network(self) -> IPNetwork:
        return ip_network(f"{self.address}/{self.prefixlen}", strict=False)

    @property
    def permanent(self) -> bool:
        return "dynamic" not in self.flags and self.valid_lifetime is None

    def describe(self) -> str:
        parts = [f"{self.address}/{self.prefixlen}", self.scope, *sorted(self.flags)]
        if self.preferred_lifetime is not None:
            parts.append(f"preferred {self.preferred_lifetime}s")
        return " ".join(parts)


def read_addresses_argv(family: Family | None = None) -> list[str]:
    """The command whose output :func:`parse_addresses` reads."""
    return ["ip", "-j", *([family.flag] if family else []), "addr", "show"]


@dataclass(frozen=True, slots=True)
class Interface:
    """One link of ``ip -j addr``: its flags, MTU, bridge, link layer and addresses."""

    name: str
    index: int
    up: bool  # administratively up (the UP flag)
    mtu: int
    master: str | None = None
    addresses: tuple[IPInterface, ...] = ()
    #: Every address with its scope, flags and lifetimes, in the kernel's order.
    details: tuple[InterfaceAddress, ...] = ()
    mac: str | None = None  # lower case, as ``ip`` prints it
    link_type: str | None = None  # ether, loopback, ...


def parse_interfaces(text: str) -> list[Interface]:
    """Parse ``ip -j [-4|-6] addr show``: the one reader of that output, for doctor's
    facts, persist's facts and the address choice below."""
    out: list[Interface] = []
    for link in json_list(text, "ip -j addr"):
        if not isinstance(link, dict) or not isinstance(link.get("ifname"), str):
            raise ParseError(f"`ip -j addr` entry without an interface name: {link!r}")
        name = link["ifname"]
        details = tuple(_address(name, info) for info in link.get("addr_info", ()))
        try:
            out.append(Interface(
                name=name, index=int(link.get("ifindex", 0)), up="UP" in link.get("flags", ()),
                mtu=int(link.get("mtu", 0)), master=link.get("master"),
                addresses=tuple(ip_interface(f"{a.address}/{a.prefixlen}") for a in details),
                details=details,
                mac=str(link["address"]).lower() if "address" in link else None,
                link_type=str(link["link_type"]).lower() if "link_type" in link else None))
        except (KeyError, ValueError, TypeError) as exc:
            raise ParseError(f"`ip -j addr` entry not understood: {link!r}") from exc
    return out


def parse_addresses(text: str) -> list[InterfaceAddress]:
    """Every address of ``ip -j [-4|-6] addr show``, in the kernel's order."""
    return [a for link in parse_interfaces(text) for a in link.details]


def _address(ifname: str, info: Any) -> InterfaceAddress:
    try:
        address = ip_address(info["local"])
        prefixlen = int(info["prefixlen"])
        if not 0 <= prefixlen <= address.max_prefixlen:
            raise ValueError(f"prefix length {prefixlen}")
        valid = _lifetime(info.get("valid_life_time"))
        preferred = _lifetime(info.get("preferred_life_time"))
    except (ValueError, TypeError, KeyError) as exc:
        raise ParseError(f"`ip -j addr` address of {ifname} not understood: {info!r}") from exc
    flags = frozenset(k for k, v in info.items() if v is True)
    return InterfaceAddress(ifname, address, prefixlen, str(info.get("scope", "global")),
                            flags, valid, preferred)


def _lifetime(value: object) -> int | None:
    if value is None:
        return None
    number = int(str(value))
    if number < 0:
        raise ValueError(f"lifetime {number}")
    return None if number == FOREVER else number


@dataclass(frozen=True, slots=True)
class AddressChoice:
    """The address to route via (or none) and why; ``rejected`` says why not the others."""

    address: InterfaceAddress | None
    reason: str
    rejected: tuple[tuple[InterfaceAddress, str], ...] = ()

    @property
    def gateway(self) -> IPAddress | None:
        return None if self.address is None else self.address.address


def unfit_reason(a: InterfaceAddress) -> str | None:
    """Why ``a`` must never be a gateway, or ``None`` if it is stable."""
    for flag, why in _DISQUALIFYING:
        if flag in a.flags:
            return why
    if a.scope == "host" or a.address.is_loopback:
        return "host scope: a loopback address"
    if a.scope == "link" or a.address.is_link_local:
        return ("link-local: a route via it needs the outgoing interface named, and other "
                "hosts reach it only on this one link")
    if a.scope != "global":
        return f"scope {a.scope}, not global"
    if a.address.is_multicast or a.address.is_unspecified:
        return "not a unicast address"
    if isinstance(a.address, IPv6Address) and a.address.ipv4_mapped is not None:
        return "IPv4-mapped: IPv6 packets never carry it"
    return None


def _rank(a: InterfaceAddress) -> tuple[int, int, int, int]:
    preferred = FOREVER if a.preferred_lifetime is None else a.preferred_lifetime
    # IPv4 secondaries are aliases; the primary is the address the kernel sources from.
    # Last, the lowest address: the kernel lists newest first, which a reboot reorders.
    return (0 if a.permanent else 1, 1 if "secondary" in a.flags else 0, -preferred,
            int(a.address))


def choose_gateway_address(
    addresses: Sequence[InterfaceAddress],
    ifname: str,
    family: Family = Family.V6,
    within: IPv4Network | IPv6Network | None = None,
) -> AddressChoice:
    """The stable address of ``family`` on ``ifname`` (inside ``within`` if given)."""
    on_link = [a for a in addresses if a.ifname == ifname]
    if not on_link:
        names = sorted({a.ifname for a in addresses})
        return AddressChoice(None, f"no addresses on {ifname} (interfaces with addresses: "
                             f"{', '.join(names) or 'none'})")
    rejected: list[tuple[InterfaceAddress, str]] = []
    fit: list[InterfaceAddress] = []
    for a in on_link:
        if a.family is not family:
            continue
        why = unfit_reason(a)
        if why is None and within is not None and a.address not in within:
            why = f"outside the node network {within}"
        if why is None:
            fit.append(a)
        else:
            rejected.append((a, why))
    if not fit:
        return AddressChoice(None, f"{ifname} has no stable global IPv{family.value} address"
                             + (f" in {within}" if within is not None else "")
                             + (": " + "; ".join(f"{a.address}: {why}" for a, why in rejected)
                                if rejected else ""), tuple(rejected))
    fit.sort(key=_rank)
    best = fit[0]
    kind = "permanent" if best.permanent else (
        f"dynamic, preferred for {best.preferred_lifetime}s more"
        if best.preferred_lifetime is not None else "dynamic")
    reason = f"{best.address} on {ifname}: a stable global address ({kind})"
    if len(fit) > 1:
        others = ", ".join(str(a.address) for a in fit[1:])
        reason += f"; chosen over {others} ({_why_first(best, fit[1])})"
    if rejected:
        reason += "; not " + "; not ".join(f"{a.address}: {why}" for a, why in rejected)
    rejected += [(a, "another stable address ranks first") for a in fit[1:]]
    return AddressChoice(best, reason, tuple(rejected))


def _why_first(best: InterfaceAddress, second: InterfaceAddress) -> str:
    if best.permanent and not second.permanent:
        return "permanent beats dynamic"
    if "secondary" in second.flags and "secondary" not in best.flags:
        return "primary beats secondary"
    if best.preferred_lifetime != second.preferred_lifetime:
        return "longer preferred lifetime"
    return "the lower of equal addresses, so the choice survives a reboot"
