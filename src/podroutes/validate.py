"""Cross-host validation of an inventory: the rules no single line can check alone.

Pure. Called by :mod:`podroutes.inventory` after every line parsed cleanly. Nothing here
is quadratic: duplicates use dictionaries, overlaps and containment are sorted sweeps
with a binary search, so a 5,000-node inventory validates in well under a second.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from podroutes.errors import Problem
from podroutes.model import Family, Host, IPAddress, IPNetwork


def validate(hosts: Sequence[Host]) -> list[Problem]:
    problems: list[Problem] = []
    for host in hosts:
        problems += _check_families(host)
    problems += _check_duplicates(hosts)
    for family in Family:
        owned = sorted(
            ((c, h) for h in hosts if (c := h.pod_cidr(family)) is not None),
            key=lambda pair: (int(pair[0].network_address), pair[0].prefixlen),
        )
        problems += _check_overlaps(owned, family)
        problems += _check_contains_node(owned, hosts, family)
    return problems


def _problem(host: Host, role: str, message: str) -> Problem:
    label, line = host.where(role)
    return Problem(host.source, line, label, message)


def _check_families(host: Host) -> list[Problem]:
    problems = []
    if not host.addresses:
        problems.append(_problem(host, "address4", f"host {host.name} has no address"))
    for cidr in host.pod_cidrs:
        family = Family.of(cidr)
        if host.address(family) is None:
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


def _check_overlaps(owned: list[tuple[IPNetwork, Host]], family: Family) -> list[Problem]:
    """Sorted sweep: each CIDR is compared with the widest-reaching one before it."""
    problems: list[Problem] = []
    reach: tuple[int, IPNetwork, Host] | None = None
    for cidr, host in owned:
        start, end = int(cidr.network_address), int(cidr.broadcast_address)
        if reach is not None and start <= reach[0]:
            problems.append(_problem(
                host, f"pod_cidr{family.value}",
                f"pod CIDR {cidr} of {host.name} overlaps {reach[1]} of {reach[2].name} "
                f"(line {reach[2].where(f'pod_cidr{family.value}')[1]})"))
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
