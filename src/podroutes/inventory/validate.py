"""Validation of a parsed inventory: what addresses may be, and the rules across hosts.

Pure. Called by :mod:`podroutes.inventory` after every line parsed cleanly. Per host:
families (a pod CIDR needs a node address of its family), addresses that can never be a
node address or a pod range (loopback, link-local, multicast, unspecified, IPv4-mapped;
docs/inventory.md lists them with the reasons), pod CIDR sizes. Across hosts:
duplicates, overlapping pod CIDRs, a pod CIDR containing a node address, an IPv6 pod
CIDR inside a node's /64, and overlaps across families (an IPv4-mapped IPv6 range that
is some host's IPv4 pod CIDR or address). Nothing here is quadratic: duplicates use
dictionaries, overlaps and containment are sorted sweeps with a binary search, so a
5,000-node inventory validates in well under a second.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_network

from podroutes.core.errors import Problem
from podroutes.core.model import Family, Host, IPAddress, IPNetwork

#: Ranges that are never a node address and never part of a pod CIDR, and why. IPv4-mapped
#: IPv6 (``::ffff:0:0/96``) is checked on its own, against the IPv4 side of the inventory.
SPECIAL_RANGES: dict[Family, tuple[tuple[IPNetwork, str, str], ...]] = {
    Family.V4: (
        (ip_network("0.0.0.0/8"), "the 'this network' range", "RFC 1122: never a destination"),
        (ip_network("127.0.0.0/8"), "the loopback range", "it never leaves a host"),
        (ip_network("169.254.0.0/16"), "the link-local range",
         "RFC 3927: routers do not forward it"),
        (ip_network("224.0.0.0/4"), "the multicast range", "a group, not a machine"),
        (ip_network("255.255.255.255/32"), "the limited broadcast address",
         "every machine on the link"),
    ),
    Family.V6: (
        (ip_network("::/128"), "the unspecified address", "it means 'no address'"),
        (ip_network("::1/128"), "the loopback address", "it never leaves a host"),
        (ip_network("fe80::/10"), "the link-local range", "it means something only together "
                                  "with an interface, and routers do not forward it"),
        (ip_network("ff00::/8"), "the multicast range", "a group, not a machine"),
    ),
}
IPV4_MAPPED = IPv6Network("::ffff:0:0/96")
LINK_LOCAL_V6 = IPv6Network("fe80::/10")
#: The longest pod CIDR prefix that still holds the bridge's gateway address and a pod.
LONGEST_POD_PREFIX = {Family.V4: 30, Family.V6: 126}
#: IPv6 node networks are /64s: SLAAC and neighbour discovery assume it (RFC 4291).
NODE_PREFIX_V6 = 64


def validate(hosts: Sequence[Host], *, later_loses: bool = False) -> list[Problem]:
    """Every problem of ``hosts``. Two overlapping pod CIDRs are one problem, reported on
    the host whose CIDR comes second in address order, or with ``later_loses`` on the host
    of the higher line (the Node mapping's newer Node: the older one keeps its CIDR)."""
    problems: list[Problem] = []
    for host in hosts:
        problems += _check_families(host)
        problems += _check_addresses(host)
        problems += _check_cidrs(host)
    problems += _check_duplicates(hosts)
    owned: dict[Family, list[tuple[IPNetwork, Host]]] = {}
    for family in Family:
        owned[family] = sorted(
            ((c, h) for h in hosts if (c := h.pod_cidr(family)) is not None),
            key=lambda pair: (int(pair[0].network_address), pair[0].prefixlen),
        )
        problems += _check_overlaps(owned[family], family, later_loses)
        problems += _check_contains_node(owned[family], hosts, family)
    problems += _check_node_networks_v6(owned[Family.V6], hosts)
    problems += _check_across_families(owned[Family.V4], hosts)
    return problems


def _problem(host: Host, role: str, message: str) -> Problem:
    label, line = host.where(role)
    return Problem(host.source, line, label, message)


def _check_families(host: Host) -> list[Problem]:
    problems = []
    if not host.addresses:
        problems.append(_problem(host, "address4", f"host {host.name} has no address"))
    for cidr in host.pod_cidrs:
        if host.address(cidr.version) is None:  # type: ignore[arg-type]  # 4 == Family.V4
            family = Family.of(cidr)
            other = "IPv4" if family is Family.V6 else "IPv6"
            problems.append(_problem(
                host, f"pod_cidr{family.value}",
                f"IPv{family.value} pod CIDR {cidr} but host {host.name} has only an {other} "
                f"address: other hosts could not route to it (give the host an "
                f"IPv{family.value} address too)",
            ))
    return problems


def _check_duplicates(hosts: Sequence[Host]) -> list[Problem]:
    problems: list[Problem] = []
    seen_names: dict[str, Host] = {}
    seen_fqdns: dict[str, Host] = {}
    seen_addresses: dict[IPAddress, Host] = {}
    for host in hosts:
        first = seen_names.setdefault(host.name, host)
        if first is not host:
            problems.append(_problem(
                host, "name", f"duplicate host name {host.name} (first on line {first.line})"))
        if host.fqdn is not None:
            key = host.fqdn.lower().rstrip(".")
            first = seen_fqdns.setdefault(key, host)
            if first is not host:
                problems.append(_problem(
                    host, "fqdn", f"duplicate FQDN {host.fqdn} (first on line {first.line}, "
                    f"host {first.name})"))
        for address in host.addresses:
            first = seen_addresses.setdefault(address, host)
            if first is not host:
                problems.append(_problem(
                    host, f"address{address.version}",
                    f"duplicate address {address} (also host {first.name}, line {first.line})"))
    return problems


def _check_overlaps(owned: list[tuple[IPNetwork, Host]], family: Family,
                    later_loses: bool = False) -> list[Problem]:
    """Sorted sweep: each CIDR is compared with the widest-reaching one before it."""
    problems: list[Problem] = []
    reach: tuple[int, IPNetwork, Host] | None = None
    role = f"pod_cidr{family.value}"
    for cidr, host in owned:
        start, end = _interval(cidr)
        if reach is not None and start <= reach[0]:
            (mine, me), (theirs, them) = (cidr, host), (reach[1], reach[2])
            if later_loses and them.line > me.line:
                (mine, me), (theirs, them) = (theirs, them), (mine, me)
            problems.append(_problem(
                me, role, f"pod CIDR {mine} of {me.name} overlaps {theirs} of {them.name} "
                f"(line {them.where(role)[1]})"))
        if reach is None or end > reach[0]:
            reach = (end, cidr, host)
    return problems


def _check_contains_node(
    owned: list[tuple[IPNetwork, Host]], hosts: Sequence[Host], family: Family
) -> list[Problem]:
    """Binary search each node address among the sorted CIDRs."""
    problems: list[Problem] = []
    starts = [int(c.network_address) for c, _ in owned]
    for host in hosts:
        address = host.address(family)
        if address is None or not starts:
            continue
        index = bisect_right(starts, int(address)) - 1
        if index < 0:
            continue
        cidr, owner = owned[index]
        if address in cidr:
            problems.append(_problem(
                owner, f"pod_cidr{family.value}",
                f"pod CIDR {cidr} of {owner.name} contains the node address {address} of "
                f"{host.name} (line {host.line}): pod and node networks must not overlap"))
    return problems


def _special(value: IPAddress | IPNetwork) -> tuple[str, str] | None:
    """How ``value`` touches the first special range it touches ("is", "is in", "is
    inside", "overlaps") and that range described with why; ``None`` if it touches none.

    Compared as integer intervals (this runs for every address and CIDR of the
    inventory); the message is only built for a hit."""
    if isinstance(value, IPv4Address | IPv6Address):
        low = high = int(value)
    else:
        low, high = _interval(value)
    for start, end, (network, label, why) in _SPECIAL_INTERVALS[value.version]:
        if low > end or high < start:
            continue
        single = start == end
        what = f"{label} {network.network_address if single else network} ({why})"
        if isinstance(value, IPv4Address | IPv6Address):
            return ("is" if single else "is in"), what
        inside = start <= low and high <= end
        return ("is" if value == network else "is inside" if inside else "overlaps"), what
    return None


def _interval(network: IPNetwork) -> tuple[int, int]:
    """A network's first and last address as integers (without ``ipaddress`` building
    its broadcast address and host mask objects)."""
    low = int(network.network_address)
    return low, low | ((1 << (network.max_prefixlen - network.prefixlen)) - 1)


_SPECIAL_INTERVALS: dict[int, list[tuple[int, int, tuple[IPNetwork, str, str]]]] = {
    family: [(int(n.network_address), int(n.broadcast_address), (n, label, why))
             for n, label, why in ranges]
    for family, ranges in SPECIAL_RANGES.items()
}


def _check_addresses(host: Host) -> list[Problem]:
    problems = []
    for address in host.addresses:
        role = "address6" if address.version == 6 else "address4"
        if isinstance(address, IPv6Address) and address in LINK_LOCAL_V6:
            cidr = host.pod_cidr(Family.V6)
            use = (f"other hosts would route {host.name}'s pod CIDR {cidr} via it, and a "
                   f"route via a link-local gateway needs its outgoing interface "
                   f"(`via {address} dev IFACE`), which differs from host to host and which "
                   "the inventory cannot express") if cidr is not None else (
                   "a node address must be reachable from every host without naming an "
                   "interface")
            problems.append(_problem(host, role, (
                f"{address} is a link-local address (fe80::/10): {use}; give {host.name} a "
                "global or unique local (fd00::/8) IPv6 address on the node network")))
        elif (special := _special(address)) is not None:
            relation, what = special
            problems.append(_problem(host, role, (
                f"{address} {relation} {what}: it cannot be a node address")))
    return problems


def _check_cidrs(host: Host) -> list[Problem]:
    problems = []
    for cidr in host.pod_cidrs:
        family = Family.V6 if cidr.version == 6 else Family.V4
        role = "pod_cidr6" if family is Family.V6 else "pod_cidr4"
        if cidr.prefixlen == 0:
            problems.append(_problem(host, role, (
                f"pod CIDR {cidr} is the whole IPv{family.value} address space: routing it "
                "via a node would take over every host's default route")))
        elif (special := _special(cidr)) is not None:
            relation, what = special
            problems.append(_problem(host, role, (
                f"pod CIDR {cidr} {relation} {what}: pods cannot have these addresses")))
        elif cidr.prefixlen > LONGEST_POD_PREFIX[family]:
            problems.append(_problem(host, role, (
                f"pod CIDR {cidr} is too small: it leaves no address for a pod beside the "
                f"bridge's gateway address (use /{LONGEST_POD_PREFIX[family]} or shorter; "
                f"Kubernetes gives nodes a /24 and a /64)")))
    return problems


def _check_node_networks_v6(
    owned: list[tuple[IPNetwork, Host]], hosts: Sequence[Host]
) -> list[Problem]:
    """An IPv6 pod CIDR strictly inside a node's /64 (containing the address is reported
    by :func:`_check_contains_node`). Each distinct /64 walks only the CIDRs inside it."""
    problems: list[Problem] = []
    starts = [int(c.network_address) for c, _ in owned]
    seen: dict[IPNetwork, tuple[Host, IPAddress]] = {}
    for host in hosts:
        address = host.address(Family.V6)
        if address is not None:
            seen.setdefault(ip_network(f"{address}/{NODE_PREFIX_V6}", strict=False),
                            (host, address))
    for net64, (host, address) in seen.items():
        first = bisect_left(starts, int(net64.network_address))
        last = bisect_right(starts, int(net64.broadcast_address))
        for cidr, owner in owned[first:last]:
            if cidr.prefixlen <= NODE_PREFIX_V6:
                continue  # it contains the /64 and so the address: reported already
            problems.append(_problem(owner, "pod_cidr6", (
                f"pod CIDR {cidr} of {owner.name} lies inside {net64}, the /64 of the node "
                f"address {address} of {host.name}: IPv6 node networks are /64s (SLAAC and "
                "neighbour discovery assume it), so machines on that link look for these "
                "pods by neighbour discovery instead of routing to their node; give pods a "
                "range outside every node's /64 (e.g. fd00:200:N::/64)")))
    return problems


def _as_ipv4(network: IPv6Network) -> IPNetwork:
    """The IPv4 range an IPv4-mapped IPv6 range (inside ::ffff:0:0/96) stands for."""
    return ip_network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))


def _check_across_families(
    owned_v4: list[tuple[IPNetwork, Host]], hosts: Sequence[Host]
) -> list[Problem]:
    """IPv4-mapped IPv6 node addresses and pod CIDRs: invalid on the wire, and worth
    naming when they are also some host's IPv4 pod CIDR or node address."""
    problems: list[Problem] = []
    starts = [int(c.network_address) for c, _ in owned_v4]
    nodes_v4 = {a: h for h in hosts if (a := h.address(Family.V4)) is not None}
    sorted_v4 = sorted(int(a) for a in nodes_v4)

    def clash(v4: IPNetwork) -> str:
        index = bisect_right(starts, int(v4.broadcast_address)) - 1
        if index >= 0 and owned_v4[index][0].overlaps(v4):
            cidr, owner = owned_v4[index]
            return (f"; it overlaps the IPv4 pod CIDR {cidr} of {owner.name} (line "
                    f"{owner.where('pod_cidr4')[1]}): the same addresses in two families")
        at = bisect_left(sorted_v4, int(v4.network_address))
        if at < len(sorted_v4) and sorted_v4[at] <= int(v4.broadcast_address):
            node = IPv4Address(sorted_v4[at])
            return (f"; it holds the IPv4 node address {node} of {nodes_v4[node].name} "
                    f"(line {nodes_v4[node].where('address4')[1]})")
        return ""

    for host in hosts:
        address = host.address(Family.V6)
        if isinstance(address, IPv6Address) and address in IPV4_MAPPED:
            v4 = _as_ipv4(IPv6Network(address))
            problems.append(_problem(host, "address6", (
                f"::ffff:{v4.network_address} is an IPv4-mapped address (::ffff:0:0/96) "
                f"standing for {v4.network_address}: IPv6 packets never carry it{clash(v4)}; give "
                f"{host.name} a real IPv6 address, or its IPv4 address as ipv4")))
        cidr = host.pod_cidr(Family.V6)
        if isinstance(cidr, IPv6Network) and cidr.subnet_of(IPV4_MAPPED):
            v4 = _as_ipv4(cidr)
            problems.append(_problem(host, "pod_cidr6", (
                f"pod CIDR ::ffff:{v4.network_address}/{cidr.prefixlen} ({cidr}) is "
                f"IPv4-mapped (::ffff:0:0/96): it is {v4} written as "
                f"IPv6, which IPv6 packets never carry{clash(v4)}; give pods an IPv6 range "
                "(e.g. a /64 in fd00::/8)")))
    return problems
