"""The engine's local path on a real kernel table: what it parses ahead is what ``ip``
prints, in both families, and a cached read gives what a fresh parse gives.

Root: a throwaway namespace (``node_ns``, see conftest); nothing else is touched.
"""

from __future__ import annotations

import asyncio

import pytest

from podroutes.diff import Action
from podroutes.engine import read_state, run_hosts
from podroutes.inventory import load
from podroutes.iproute import RouteCache
from podroutes.plan import plan
from podroutes.transport import LocalTransport
from tests.netns.conftest import OWN, NodeNamespace

pytestmark = pytest.mark.root

#: node-0 is the namespace (192.168.10.101, fd00:10::101); 20 other nodes, dual-stack.
MACHINES = "".join(
    f"192.168.10.{101 + i},fd00:10::{101 + i:x} n{i}.k node-{i} "
    f"10.200.{i}.0/24,fd00:200:{i:x}::/64\n" for i in range(21))


def test_the_routes_a_batch_makes_are_parsed_ahead_exactly_as_ip_prints_them(
        node_ns: NodeNamespace) -> None:
    route_plan = plan(load(MACHINES, "machines.txt"))
    cache = RouteCache()
    (outcome,) = asyncio.run(run_hosts(LocalTransport(node_ns.name), route_plan, OWN,
                                       write=True, only=["node-0"], cache=cache))
    assert outcome.error is None and outcome.converged
    assert outcome.before is not None and outcome.before.count(Action.ADD) == 40  # 20 x 2
    # Every route the batch made was read back as an object parsed ahead: the cache holds
    # one entry per route of the final table. A wrong guess would leave its own entry
    # behind and the route read back would add another (40 more).
    table = node_ns.routes()
    owned = [r for r in table if r.protocol == OWN]
    assert len(owned) == 40
    assert len(cache) == len(table)
    assert outcome.after is not None
    read_back = {s.observed for s in outcome.after.statuses if s.observed is not None}
    predicted = {r for r in read_back if r.protocol == OWN}
    assert predicted == set(owned)  # equal values, both families, dev and metric included
    before = len(cache)
    host = route_plan.inventory.host("node-0")

    async def read(with_cache: RouteCache | None) -> list[object]:
        async with LocalTransport(node_ns.name).session(host) as session:
            return list(await read_state(session, route_plan.routes_for(host), with_cache))

    fresh = asyncio.run(read(None))
    assert asyncio.run(read(cache)) == fresh == node_ns.routes()
    assert len(cache) == before  # nothing new: every route was known
