"""The engine's local path on a real kernel table: the routes it reads by their text
(:mod:`podroutes.core.routecache`) are what parsing ``ip``'s output gives, in both families.

Root: a throwaway namespace (``node_ns``, see conftest); nothing else is touched.
"""

from __future__ import annotations

import asyncio

import pytest

from podroutes.core.diff import Action
from podroutes.core.plan import plan
from podroutes.core.routecache import RouteCache
from podroutes.inventory import load
from podroutes.remote.engine import read_state, run_hosts
from podroutes.remote.transport import LocalTransport
from tests.netns.conftest import OWN, NodeNamespace

pytestmark = pytest.mark.root

#: node-0 is the namespace (192.168.10.101, fd00:10::101); 20 other nodes, dual-stack.
MACHINES = "".join(
    f"192.168.10.{101 + i},fd00:10::{101 + i:x} n{i}.k node-{i} "
    f"10.200.{i}.0/24,fd00:200:{i:x}::/64\n" for i in range(21))


def test_the_routes_a_batch_makes_are_read_back_from_the_plan_as_ip_prints_them(
        node_ns: NodeNamespace) -> None:
    route_plan = plan(load(MACHINES, "machines.txt"))
    host = route_plan.inventory.host("node-0")
    desired = route_plan.routes_for(host)
    cache = RouteCache()
    (outcome,) = asyncio.run(run_hosts(LocalTransport(node_ns.name), route_plan, OWN,
                                       write=True, only=["node-0"], cache=cache))
    assert outcome.error is None and outcome.converged
    assert outcome.before is not None and outcome.before.count(Action.ADD) == 40  # 20 x 2
    table = node_ns.routes()  # ip -j route, parsed the plain way
    owned = [r for r in table if r.protocol == OWN]
    assert len(owned) == 40
    assert outcome.after is not None
    read_back = [s.observed for s in outcome.after.statuses if s.observed is not None]
    # Equal values, both families, dev and metric included; and made from the plan's own
    # address objects (its heads): no address of a planned route was parsed again.
    assert sorted(map(repr, read_back)) == sorted(map(repr, owned))
    planned = {id(r.dst) for r in desired} | {id(r.gateway) for r in desired}
    assert all(id(r.dst) in planned and id(r.gateway) in planned for r in read_back)
    # Every route read is remembered by its text: the cache holds the final table once.
    assert len(cache) == len(table)

    async def read(with_cache: RouteCache | None) -> list[object]:
        async with LocalTransport(node_ns.name).session(host) as session:
            return list(await read_state(session, desired, with_cache))

    fresh = asyncio.run(read(None))
    assert asyncio.run(read(cache)) == fresh == node_ns.routes()
    assert len(cache) == len(table)  # nothing new: every route was known
