"""The planner: which routes each host needs, as a value that can be printed first.

Pure. Every host gets a route to every other host's pod CIDR of the same family, via that
host's address of that family; no host ever gets a route to its own pod CIDR (that would
clash with the kernel's ``dev cni0`` route). Routes are generated per host on demand, so
a summary of a large inventory never materialises every route of every host.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from podroutes.core.model import Family, Host, Inventory, PlannedRoute


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The desired routes of every host of an inventory."""

    inventory: Inventory

    def routes_for(self, host: Host) -> tuple[PlannedRoute, ...]:
        return tuple(self._iter_routes(host))

    def _iter_routes(self, host: Host) -> Iterator[PlannedRoute]:
        # A host without an address of a family cannot reach that family's gateways.
        reachable = {a.version for a in host.addresses}
        for other in self.inventory.hosts:
            if other.name == host.name:
                continue
            for cidr in other.pod_cidrs:
                version = cidr.version
                if version not in reachable:
                    continue
                for gateway in other.addresses:  # the other host's address of that family
                    if gateway.version == version:
                        yield PlannedRoute(cidr, gateway, other.name)
                        break

    def __iter__(self) -> Iterator[tuple[Host, tuple[PlannedRoute, ...]]]:
        for host in self.inventory.hosts:
            yield host, self.routes_for(host)

    def counts_per_host(self) -> dict[str, int]:
        """How many routes each host gets, counted without building them."""
        per_family = {
            f: sum(1 for h in self.inventory.hosts if h.pod_cidr(f) and h.address(f))
            for f in Family
        }
        counts = {}
        for host in self.inventory.hosts:
            total = 0
            for family in Family:
                if host.address(family) is None:
                    continue
                owns = host.pod_cidr(family) is not None
                total += per_family[family] - (1 if owns else 0)
            counts[host.name] = total
        return counts

    def route_count(self) -> int:
        """How many routes the plan holds in all, counted without building them."""
        return sum(self.counts_per_host().values())


def plan(inventory: Inventory) -> RoutePlan:
    return RoutePlan(inventory)
