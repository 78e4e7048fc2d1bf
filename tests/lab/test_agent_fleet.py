"""A fleet of agents on a real lab: one ``podroutes agent`` per node, one API server.

A lab of four nodes (``podroutes lab up``: namespaces, bridges, pods on ``cni0``) and one
real ``python -m podroutes agent`` process per node, each managing its node's table with
``--netns <lab>-node-i --node-name node-i`` (the process runs in the root namespace, so
it reaches the API server on 127.0.0.1; only the table, the links and the rtnetlink
monitor are the node's). The API server is a **test double**: kmock's
``KubernetesEmulator`` (see ``tests/netns/conftest.py``), served on two ports of
127.0.0.1 in front of one store: the agents' port, which the outage test takes away and
brings back on the same port, and an admin port the test itself changes Nodes through,
as a controller would (so it can change the cluster while the agents cannot see it).

At the start of every test the API holds node-0..node-2, their three agents run and
have converged, node-3 is a lab machine with no Node object and no agent (a machine about
to join). Every case asserts on the real kernel table of **every** agent's namespace
(``ip -j route``), and where traffic can say more, on real pings between the lab's pods
(``podroutes lab smoke``). Every node also holds routes podroutes does not own (another
table, another metric, another main-table route, and on node-0 a route to a CIDR no node
has yet, which case 8 turns into a conflict); each case ends by checking that every
route it does not own, in every table of every node, is exactly as before.

Bounds are generous (``wait_until``, 10-20 s), never a timing claim:
``benchmarks/agent_fleet.py`` measures how fast.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import kmock
import pytest
import yaml

from podroutes.lab import netns as labmod
from tests.netns.conftest import AgentProcess, ApiServer, node, wait_until

from .conftest import Lab, foreign_routes, unique_name

pytestmark = [pytest.mark.lab, pytest.mark.root]

OWN = 147
MEMBERS = ("node-0", "node-1", "node-2")  # Node objects (and agents) at the start
JOINER = "node-3"  # a lab machine that is not in the cluster yet
WAIT = 20.0


def address(name: str) -> str:
    return f"192.168.10.{101 + int(name.rsplit('-', 1)[1])}"


def cidr(name: str) -> str:
    return f"10.200.{name.rsplit('-', 1)[1]}.0/24"


def node_object(name: str, internal_ip: str | None = None) -> dict[str, Any]:
    return node(name, internal_ip or address(name), [cidr(name)])


#: Routes podroutes does not own, in every node, through a link of their own (``side0``,
#: a veth pair: 172.31.0.1/24), so a flap of eth0 does not take them away with it:
#: another table, a route to a desired destination at another metric, and an unrelated
#: main-table route.
SIDE_GW = "172.31.0.2"


def foreign_for(name: str) -> list[list[str]]:
    other = MEMBERS[(MEMBERS.index(name) + 1) % len(MEMBERS)] if name in MEMBERS else "node-1"
    return [["10.77.0.0/16", "via", SIDE_GW, "table", "100"],
            [cidr(other), "via", SIDE_GW, "metric", "300", "proto", "static"],
            ["10.66.0.0/16", "via", SIDE_GW, "proto", "static"]]


#: On node-0 only: a hand-made route to the CIDR of a node that does not exist yet, via a
#: gateway that is not that node's. Foreign until case 8 makes the node, then a conflict.
CONFLICT_CIDR = "10.200.9.0/24"
CONFLICT = [CONFLICT_CIDR, "via", SIDE_GW, "proto", "static"]


class QuickStopServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's test server, but stopping in 0.1 s even with watches streaming (by
    default it waits up to 60 s for open requests: a watch never finishes)."""

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None,
                           **kwargs: Any) -> None:
        await super().start_server(loop=loop, **kwargs)
        assert self.runner is not None
        self.runner._shutdown_timeout = 0.1


class FleetApiServer(ApiServer):
    """Test double for the Kubernetes API server (kmock's KubernetesEmulator) with two
    HTTP ports over one store: ``self.client`` (the test, as a controller) uses the admin
    port; the agents' kubeconfig names a port that :meth:`go_away` closes (open watches
    are cut, new connections refused) and :meth:`come_back` opens again, same port."""

    def __init__(self, directory: Path) -> None:
        self._agents_http: kmock.Server | None = None
        self.agents_port: int | None = None
        super().__init__(directory)
        self.agents_kubeconfig = directory / "agents-kubeconfig"
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{self.agents_port}"
        self.agents_kubeconfig.write_text(yaml.safe_dump(config))

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, \
                kmock.Server(emulator, server_cls=QuickStopServer) as admin:
            emulator.resources["v1/nodes"] = kmock.ResourceInfo(kind="Node", namespaced=False)
            emulator.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True)
            self.emulator = emulator
            await self._open()
            self._ready.set_result(str(admin.url).rstrip("/"))
            try:
                await self._stop.wait()
            finally:
                await self._close()

    async def _open(self) -> None:
        assert self.emulator is not None and self._agents_http is None
        server = kmock.Server(self.emulator, port=self.agents_port, server_cls=QuickStopServer)
        await server.__aenter__()
        self._agents_http = server
        self.agents_port = server.port

    async def _close(self) -> None:
        if self._agents_http is not None:
            await self._agents_http.__aexit__(None, None, None)
            self._agents_http = None

    def go_away(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=10)

    def come_back(self) -> None:
        asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(timeout=10)

    def names(self) -> set[str]:
        from lightkube.resources.core_v1 import Node
        return {n.metadata.name for n in self.client.list(Node) if n.metadata and
                n.metadata.name}


class Fleet:
    """The lab, the API server test double, and one agent per member node."""

    def __init__(self, lab: Lab, api: FleetApiServer, logs: Path) -> None:
        self.lab = lab
        self.api = api
        self.logs = logs
        self.agents: dict[str, AgentProcess] = {}
        self.baseline: dict[str, set[str]] = {}
        self._started = 0

    # --- agents ------------------------------------------------------------------------

    def start(self, name: str, *extra: str) -> AgentProcess:
        self._started += 1
        agent = AgentProcess(["--netns", self.lab.ns(name), "--node-name", name,
                              "--kubeconfig", str(self.api.agents_kubeconfig),
                              "--resync", "3600", "--unavailable-after", "0", *extra],
                             self.logs / f"{name}-{self._started}.log")
        self.agents[name] = agent
        return agent

    def stop(self, name: str) -> int:
        return self.agents.pop(name).stop()

    def stop_all(self) -> None:
        for name in list(self.agents):
            self.stop(name)

    def metric(self, name: str, metric: str, labels: str = "") -> float:
        value = self.agents[name].metric(metric, labels)
        return 0.0 if value is None else value

    # --- tables ------------------------------------------------------------------------

    def owned(self, name: str) -> dict[str, str]:
        return {str(r.dst): str(r.gateway) for r in self.lab.routes(name) if r.protocol == OWN}

    def expected(self, name: str, cluster: dict[str, str]) -> dict[str, str]:
        """What ``name``'s table should hold for ``cluster`` (node → InternalIP)."""
        return {cidr(n): ip for n, ip in cluster.items() if n != name}

    def tables_match(self, cluster: dict[str, str], on: tuple[str, ...] | None = None,
                     ) -> bool:
        return all(self.owned(n) == self.expected(n, cluster) for n in (on or tuple(cluster)))

    def converge(self, cluster: dict[str, str], on: tuple[str, ...] | None = None) -> None:
        wait_until(lambda: self.tables_match(cluster, on), WAIT,
                   message=f"every table converged to {cluster}: "
                   + json.dumps({n: self.owned(n) for n in on or cluster}))

    def ping_failures(self, among: tuple[str, ...]) -> list[tuple[str, str]]:
        """Pod pairs of the nodes ``among`` that did not answer (the smoke matrix pings
        every pod from every pod; pairs with other nodes' pods are left out)."""
        def node_of(pod: str) -> str:
            return pod.split("-pod-")[0]
        return [(a, b) for a, b in self.lab.smoke_failures()
                if node_of(a) in among and node_of(b) in among]

    # --- foreign routes ----------------------------------------------------------------

    def install_foreign(self) -> None:
        for name in (*MEMBERS, JOINER):
            self.lab.sh(name, "ip", "link", "add", "side0", "type", "veth", "peer", "name",
                        "side0p")
            self.lab.sh(name, "ip", "addr", "add", "172.31.0.1/24", "dev", "side0")
            for link in ("side0", "side0p"):
                self.lab.sh(name, "ip", "link", "set", link, "up")
            for route in foreign_for(name):
                self.lab.sh(name, "ip", "route", "add", *route)
        self.lab.sh("node-0", "ip", "route", "add", *CONFLICT)

    def snapshot(self) -> dict[str, set[str]]:
        return {n: foreign_routes(self.lab, n) for n in (*MEMBERS, JOINER)}

    def foreign_untouched(self) -> None:
        """Every route podroutes does not own, every table, every node: as at the start
        (waited for: after a link flap the kernel's own routes come back by themselves)."""
        def same() -> bool:
            return self.snapshot() == self.baseline
        wait_until(same, WAIT, message="foreign routes as before: " + json.dumps(
            {n: sorted(self.baseline[n] ^ now) for n, now in self.snapshot().items()}))
        for name in (*MEMBERS, JOINER):
            table100 = self.lab.sh(name, "ip", "route", "show", "table", "100")
            assert table100.startswith(f"10.77.0.0/16 via {SIDE_GW}"), (name, table100)
        conflict = self.lab.route("node-0", CONFLICT_CIDR)
        assert conflict is not None and str(conflict.gateway) == SIDE_GW
        assert conflict.protocol == 4  # static

    # --- back to the start -------------------------------------------------------------

    def reset(self) -> None:
        """API: node-0..2 at their addresses; their agents running; node-3 out, with no
        agent and no owned route; every table converged."""
        if self.api.agents_port is not None and self.api._agents_http is None:
            self.api.come_back()
        names = self.api.names()
        for extra in names - set(MEMBERS):
            self.api.delete(extra)
        for name in MEMBERS:
            if name not in names:
                self.api.add(node_object(name))
            else:
                self.api.patch(name, {"status": {"addresses": [
                    {"type": "InternalIP", "address": address(name)}]}})
        if JOINER in self.agents:
            self.stop(JOINER)
        self.lab.sh(JOINER, "ip", "route", "flush", "proto", str(OWN))
        for name in MEMBERS:
            self.lab.sh(name, "ip", "link", "set", "eth0", "up")
            agent = self.agents.get(name)
            if agent is None or agent.proc.poll() is not None:
                if agent is not None:
                    self.stop(name)
                self.start(name)
        self.converge({n: address(n) for n in MEMBERS})
        assert self.owned(JOINER) == {}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    spec = labmod.up(labmod.LabSpec(name=unique_name(), nodes=4, pods_per_node=1))
    print(f"fleet lab {spec.name}")
    api: FleetApiServer | None = None
    fleet: Fleet | None = None
    try:
        directory = tmp_path_factory.mktemp("fleet")
        api = FleetApiServer(directory)
        fleet = Fleet(Lab(spec), api, directory)
        fleet.install_foreign()
        fleet.baseline = fleet.snapshot()
        for name in MEMBERS:
            api.add(node_object(name))
        for name in MEMBERS:
            fleet.start(name)
        yield fleet
    finally:
        if fleet is not None:
            fleet.stop_all()
        if api is not None:
            api.close()
        labmod.down(spec)


@pytest.fixture
def cluster(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet, back at the start; on failure, the agents' logs are shown."""
    fleet.reset()
    try:
        yield fleet
    finally:
        for agent in fleet.agents.values():
            if agent.proc.poll() is not None:
                print(f"agent {agent.argv} exited {agent.proc.returncode}:\n"
                      f"{agent.log.read_text()[-4000:]}")


START = {n: address(n) for n in MEMBERS}


def test_a_node_that_joins_is_routed_by_every_agent_and_its_pods_answer(
        cluster: Fleet) -> None:
    assert cluster.ping_failures(("node-0", "node-3")) != []  # node-3 unreachable so far
    cluster.api.add(node_object(JOINER))
    cluster.start(JOINER)  # the DaemonSet's pod on the new node
    joined = {**START, JOINER: address(JOINER)}
    cluster.converge(joined)
    for name in joined:
        route = cluster.lab.route(name, cidr("node-0") if name != "node-0" else cidr(JOINER))
        assert route is not None and route.protocol == OWN
    assert cluster.ping_failures(tuple(joined)) == []
    condition = wait_until(lambda: cluster.api.condition(JOINER))
    assert (condition["status"], condition["reason"]) == ("False", "RouteCreated")
    cluster.foreign_untouched()


def test_a_node_that_leaves_is_pruned_everywhere(cluster: Fleet) -> None:
    cluster.api.delete("node-2")
    left = {n: address(n) for n in ("node-0", "node-1")}
    cluster.converge(left)
    # The agent of the node that left is not in the plan any more: it touches nothing
    # (its Node may come back; its routes keep its pods reachable meanwhile).
    assert cluster.owned("node-2") == cluster.expected("node-2", START)
    assert cluster.ping_failures(("node-0", "node-1")) == []
    cluster.foreign_untouched()


def test_a_new_internal_ip_becomes_the_gateway_on_every_agent(cluster: Fleet) -> None:
    moved = "192.168.10.112"
    cluster.lab.sh("node-1", "ip", "addr", "add", f"{moved}/24", "dev", "eth0")
    try:
        cluster.api.patch("node-1", {"status": {"addresses": [
            {"type": "InternalIP", "address": moved}]}})
        cluster.converge({**START, "node-1": moved})
        assert cluster.ping_failures(MEMBERS) == []
        # The packets really went via the new gateway: node-0 and node-2 resolved it.
        for name in ("node-0", "node-2"):
            neigh = json.loads(cluster.lab.sh(name, "ip", "-j", "neigh", "show", moved))
            assert neigh and "lladdr" in neigh[0], (name, neigh)
    finally:
        cluster.api.patch("node-1", {"status": {"addresses": [
            {"type": "InternalIP", "address": address("node-1")}]}})
        cluster.converge(START)
        cluster.lab.sh("node-1", "ip", "addr", "del", f"{moved}/24", "dev", "eth0")
    cluster.foreign_untouched()


def test_owned_routes_deleted_by_hand_on_every_node_are_put_back(cluster: Fleet) -> None:
    before = {n: cluster.metric(n, "podroutes_routes_repaired_total") for n in MEMBERS}
    for name in MEMBERS:
        victim = next(iter(cluster.expected(name, START)))
        cluster.lab.sh(name, "ip", "route", "del", victim)
    cluster.converge(START)
    for name in MEMBERS:
        wait_until(lambda n=name: cluster.metric(n, "podroutes_routes_repaired_total")
                   == before[n] + 1)
        # A one-hour resync: only the kernel's notification can have brought it back.
        assert cluster.metric(name, "podroutes_syncs_total", 'trigger="resync"') == 0
    assert cluster.ping_failures(MEMBERS) == []
    cluster.foreign_untouched()


def test_a_link_bounce_loses_the_routes_and_the_agents_restore_them(cluster: Fleet) -> None:
    for name in MEMBERS:
        cluster.lab.sh(name, "ip", "link", "set", "eth0", "down")
    # The kernel itself drops the routes through a link that goes down.
    wait_until(lambda: all(cluster.owned(n) == {} for n in MEMBERS), WAIT,
               message="the kernel drops routes with the link")
    for name in MEMBERS:
        cluster.lab.sh(name, "ip", "link", "set", "eth0", "up")
    cluster.converge(START)
    assert cluster.ping_failures(MEMBERS) == []
    cluster.foreign_untouched()


def test_an_agent_restarted_after_downtime_prunes_stale_owned_routes(cluster: Fleet) -> None:
    assert cluster.stop("node-2") == 0
    assert cluster.owned("node-2") == cluster.expected("node-2", START)  # left in place
    # While node-2's agent is down: node-1 leaves the cluster, and an owned route of a node
    # that no longer exists is in node-2's table (as after a crash mid-change).
    cluster.api.delete("node-1")
    cluster.lab.sh("node-2", "ip", "route", "add", "10.200.8.0/24", "via", "192.168.10.108",
                   "proto", str(OWN))
    remaining = {n: address(n) for n in ("node-0", "node-2")}
    cluster.converge(remaining, on=("node-0",))  # the running agent followed at once
    assert "10.200.8.0/24" in cluster.owned("node-2")

    agent = cluster.start("node-2")
    cluster.converge(remaining)
    # The table is right before the reconcile that made it so has been counted: wait for
    # the count rather than read it the moment the routes are gone.
    wait_until(lambda: agent.metric("podroutes_routes_removed_total") == 2, WAIT,
               message="both stale routes counted as removed, at start-up")
    assert agent.metric("podroutes_syncs_total", 'trigger="start"') == 1
    cluster.foreign_untouched()


def test_the_api_server_going_away_keeps_every_route_and_the_agents_recover(
        cluster: Fleet) -> None:
    errors = {n: cluster.metric(n, "podroutes_sync_errors_total", 'stage="kubernetes"')
              for n in MEMBERS}
    assert all(cluster.metric(n, "podroutes_kubernetes_watch_up") == 1 for n in MEMBERS)
    cluster.api.go_away()
    for name in MEMBERS:  # each agent noticed: its watch broke and a list was refused
        wait_until(lambda n=name: cluster.metric(n, "podroutes_kubernetes_watch_up") == 0
                   and cluster.metric(n, "podroutes_sync_errors_total",
                                      'stage="kubernetes"') >= errors[n] + 2, WAIT)
    # Meanwhile the cluster changes where the agents cannot see it.
    cluster.api.delete("node-2")
    # The agents keep working from what they have: every route stays, a route deleted by
    # hand is put back, and they still say they are ready (their routes are right).
    assert cluster.tables_match(START)
    cluster.lab.sh("node-0", "ip", "route", "del", cidr("node-1"))
    cluster.converge(START)
    for name in MEMBERS:
        assert cluster.agents[name].get("/readyz") == (200, "ok\n")
        assert cluster.agents[name].proc.poll() is None
    assert cluster.ping_failures(MEMBERS) == []

    cluster.api.come_back()  # same port
    for name in MEMBERS:
        wait_until(lambda n=name: cluster.metric(n, "podroutes_kubernetes_watch_up") == 1,
                   WAIT, message=f"{name} listed again")
    after = {n: address(n) for n in ("node-0", "node-1")}
    cluster.converge(after, on=("node-0", "node-1"))  # node-2's routes pruned by the relist
    # A node that joins after the API came back is routed.
    cluster.api.add(node_object(JOINER))
    cluster.start(JOINER)
    cluster.converge({**after, JOINER: address(JOINER)})
    assert cluster.ping_failures(("node-0", "node-1", JOINER)) == []
    cluster.foreign_untouched()


def test_a_conflicting_foreign_route_is_left_alone_and_reported(cluster: Fleet) -> None:
    # A Node (no lab machine: its routes only need an on-link gateway) whose pod CIDR
    # node-0 already sends elsewhere by hand.
    cluster.api.add(node("node-9", "192.168.10.109", [CONFLICT_CIDR]))
    with_nine = {**START, "node-9": "192.168.10.109"}
    cluster.converge(with_nine, on=("node-1", "node-2"))
    wait_until(lambda: (c := cluster.api.condition("node-0")) and c["status"] == "True"
               and c["reason"] == "RoutesConflict", WAIT)
    assert cluster.owned("node-0") == cluster.expected("node-0", START)  # did not take it
    assert cluster.agents["node-0"].get("/readyz")[0] == 503
    assert cluster.metric("node-0", "podroutes_routes_conflicting") == 1
    assert cluster.ping_failures(MEMBERS) == []  # the rest of node-0's routes still work
    cluster.foreign_untouched()  # the conflicting route included, gateway and protocol

    cluster.api.delete("node-9")
    cluster.converge(START)
    wait_until(lambda: cluster.api.condition("node-0")["status"] == "False", WAIT)
    cluster.foreign_untouched()
