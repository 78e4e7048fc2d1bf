"""The agent in Kubernetes mode, against a real kernel table in a network namespace.

The API server is a test double (kmock's KubernetesEmulator, see conftest); the agent is a
real ``podroutes agent`` process managing the namespace's table with ``--netns``. Every
assertion reads the real table (``ip -j route``) or the real API objects. Bounds are
generous (10 s): how fast the agent repairs is measured by benchmarks/agent_repair.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.netns.conftest import AgentProcess, ApiServer, NodeNamespace, node, wait_until

pytestmark = pytest.mark.root

CLUSTER = [
    node("node-0", "192.168.10.101", ["10.200.0.0/24"]),
    node("node-1", "192.168.10.102", ["10.200.1.0/24"]),
    node("node-2", "192.168.10.103", ["10.200.2.0/24"]),
]
CONVERGED = {"10.200.1.0/24": "192.168.10.102", "10.200.2.0/24": "192.168.10.103"}


def start(ns: NodeNamespace, api: ApiServer, tmp_path: Path, agents: list[AgentProcess],
          *extra: str) -> AgentProcess:
    agent = AgentProcess(["--netns", ns.name, "--kubeconfig", str(api.kubeconfig),
                          "--node-name", "node-0", "--resync", "2",
                          "--unavailable-after", "0", *extra],
                         tmp_path / f"agent{len(agents)}.log")
    agents.append(agent)
    return agent


def with_cluster(api: ApiServer, nodes: list[dict[str, object]] = CLUSTER) -> None:
    for obj in nodes:
        api.add(obj)


def test_start_converges_prunes_adopts_and_reports(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    # Left from a node that went away while no agent ran; a hand-made route to node-2.
    node_ns.ip("route", "add", "10.200.9.0/24", "via", "192.168.10.109", "proto", "147")
    node_ns.ip("route", "add", "10.200.2.0/24", "via", "192.168.10.103")
    node_ns.ip("route", "add", "10.77.0.0/16", "via", "192.168.10.1", "table", "100")
    with_cluster(apiserver)
    agent = start(node_ns, apiserver, tmp_path, agents)

    wait_until(lambda: node_ns.owned() == CONVERGED, message=f"{node_ns.owned()}")
    assert node_ns.route("10.200.9.0/24") is None  # pruned on start
    assert node_ns.ip("route", "show", "table", "100").startswith("10.77.0.0/16 via")
    condition = wait_until(lambda: apiserver.condition("node-0"))
    assert (condition["status"], condition["reason"]) == ("False", "RouteCreated")
    assert agent.get("/readyz") == (200, "ok\n")
    assert agent.get("/healthz")[0] == 200
    assert agent.metric("podroutes_routes_desired") == 2
    assert agent.metric("podroutes_routes_installed") == 2
    assert agent.metric("podroutes_routes_removed_total") == 1
    assert agent.metric("podroutes_last_successful_sync_timestamp_seconds") > 0
    assert agent.metric("podroutes_syncs_total", 'trigger="start"') == 1


def test_owned_route_deleted_by_hand_is_put_back(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    with_cluster(apiserver)
    agent = start(node_ns, apiserver, tmp_path, agents, "--resync", "3600")
    wait_until(lambda: node_ns.owned() == CONVERGED)

    node_ns.ip("route", "del", "10.200.1.0/24")
    wait_until(lambda: node_ns.owned() == CONVERGED, message="route put back")
    # counted when the reconcile ends, a moment after the route is back
    wait_until(lambda: agent.metric("podroutes_routes_repaired_total") == 1)
    # With a one-hour resync, only the netlink event can have brought it back.
    assert agent.metric("podroutes_syncs_total", 'trigger="resync"') == 0
    assert agent.metric("podroutes_syncs_total", 'trigger="netlink"') >= 1
    repaired = wait_until(lambda: [e for e in apiserver.events()
                                   if e["reason"] == "RoutesRepaired"])
    assert repaired[0]["type"] == "Normal"
    assert repaired[0]["involvedObject"]["name"] == "node-0"


def test_link_flap_puts_routes_back(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    with_cluster(apiserver)
    agent = start(node_ns, apiserver, tmp_path, agents, "--resync", "3600")
    wait_until(lambda: node_ns.owned() == CONVERGED)

    node_ns.ip("link", "set", "eth0", "down")
    wait_until(lambda: not node_ns.owned(), message="the kernel drops routes on link down")
    node_ns.ip("link", "set", "eth0", "up")
    wait_until(lambda: node_ns.owned() == CONVERGED, message="routes back after the flap")
    wait_until(lambda: agent.metric("podroutes_routes_repaired_total") == 2)
    assert agent.metric("podroutes_syncs_total", 'trigger="resync"') == 0


def test_nodes_added_changed_and_deleted_are_followed(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    with_cluster(apiserver)
    start(node_ns, apiserver, tmp_path, agents, "--resync", "3600")
    wait_until(lambda: node_ns.owned() == CONVERGED)

    apiserver.add(node("node-3", "192.168.10.104", ["10.200.3.0/24"]))
    wait_until(lambda: node_ns.owned().get("10.200.3.0/24") == "192.168.10.104")

    apiserver.patch("node-1", {"status": {"addresses": [
        {"type": "InternalIP", "address": "192.168.10.112"}]}})
    wait_until(lambda: node_ns.owned().get("10.200.1.0/24") == "192.168.10.112",
               message="new gateway")

    apiserver.delete("node-2")
    wait_until(lambda: "10.200.2.0/24" not in node_ns.owned(), message="pruned")
    assert node_ns.owned() == {"10.200.1.0/24": "192.168.10.112",
                               "10.200.3.0/24": "192.168.10.104"}


def test_nodes_without_pod_cidrs_or_address_are_skipped_not_fatal(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    with_cluster(apiserver, [*CLUSTER,
                             node("node-4", "192.168.10.105", None),
                             node("node-5", None, ["10.200.5.0/24"])])
    agent = start(node_ns, apiserver, tmp_path, agents)
    wait_until(lambda: node_ns.owned() == CONVERGED)
    assert agent.proc.poll() is None
    assert agent.metric("podroutes_nodes", 'state="skipped"') == 1  # node-5: no address
    assert agent.metric("podroutes_nodes", 'state="routable"') == 4
    notices = {r.get("node"): r.get("notice") for r in agent.records() if "notice" in r}
    assert notices == {"node-4": "no pod CIDR", "node-5": "no InternalIP"}


def test_conflicting_foreign_route_is_left_alone_and_reported(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    node_ns.ip("route", "add", "10.200.1.0/24", "via", "192.168.10.250", "proto", "static")
    with_cluster(apiserver)
    agent = start(node_ns, apiserver, tmp_path, agents)

    condition = wait_until(lambda: (c := apiserver.condition("node-0")) and
                           c["status"] == "True" and c)
    assert condition["reason"] == "RoutesConflict"
    assert "10.200.1.0/24" in condition["message"]
    route = node_ns.route("10.200.1.0/24")
    assert route is not None and str(route.gateway) == "192.168.10.250" and route.protocol == 4
    assert node_ns.owned() == {"10.200.2.0/24": "192.168.10.103"}
    warnings = wait_until(lambda: [e for e in apiserver.events() if e["type"] == "Warning"])
    assert warnings[0]["reason"] == "RoutesConflict"
    assert agent.get("/readyz")[0] == 503
    assert agent.metric("podroutes_routes_conflicting") == 1

    # The owner removes its route: the agent takes the slot and the node becomes available.
    node_ns.ip("route", "del", "10.200.1.0/24", "via", "192.168.10.250")
    wait_until(lambda: node_ns.owned() == CONVERGED)
    wait_until(lambda: apiserver.condition("node-0")["status"] == "False")


def test_restart_after_downtime_prunes_routes_of_nodes_that_left(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    with_cluster(apiserver)
    first = start(node_ns, apiserver, tmp_path, agents)
    wait_until(lambda: node_ns.owned() == CONVERGED)
    assert first.stop() == 0
    assert node_ns.owned() == CONVERGED  # graceful shutdown leaves the routes in place

    apiserver.delete("node-2")  # while no agent runs
    start(node_ns, apiserver, tmp_path, agents)
    wait_until(lambda: node_ns.owned() == {"10.200.1.0/24": "192.168.10.102"},
               message="stale route pruned on start")


def test_cleanup_on_exit_removes_only_owned_routes(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    node_ns.ip("route", "add", "10.99.0.0/16", "via", "192.168.10.1", "proto", "static")
    with_cluster(apiserver)
    agent = start(node_ns, apiserver, tmp_path, agents, "--cleanup-on-exit")
    wait_until(lambda: node_ns.owned() == CONVERGED)
    assert agent.stop() == 0
    assert node_ns.owned() == {}
    assert node_ns.route("10.99.0.0/16") is not None
    condition = apiserver.condition("node-0")
    assert condition is not None and condition["reason"] == "RoutesRemoved"


def test_dual_stack_routes_per_family_and_ipv6_repair(
        node_ns: NodeNamespace, apiserver: ApiServer, tmp_path: Path,
        agents: list[AgentProcess]) -> None:
    with_cluster(apiserver, [
        node("node-0", "192.168.10.101", ["10.200.0.0/24", "fd00:200::/64"], "fd00:10::101"),
        node("node-1", "192.168.10.102", ["10.200.1.0/24", "fd00:200:1::/64"],
             "fd00:10::102"),
        node("node-2", "192.168.10.103", ["10.200.2.0/24"]),  # single-stack
    ])
    want = {**CONVERGED, "fd00:200:1::/64": "fd00:10::102"}
    start(node_ns, apiserver, tmp_path, agents, "--resync", "3600")
    wait_until(lambda: node_ns.owned() == want, message=f"{node_ns.owned()}")

    node_ns.ip("-6", "route", "del", "fd00:200:1::/64")
    wait_until(lambda: node_ns.owned() == want, message="IPv6 route put back")
