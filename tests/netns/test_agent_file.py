"""The agent in inventory-file mode (no Kubernetes), against a real kernel table.

Here the agent runs *inside* the namespace (``ip netns exec NS python -m podroutes agent``,
no ``--netns``), as the systemd unit runs it on a host; its HTTP endpoints are asked from
inside the same namespace. The ordering test records the kernel's own route notifications
(``ip -ts monitor route``) while the agent works.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.netns.conftest import AgentProcess, NodeNamespace, wait_until

pytestmark = pytest.mark.root

MACHINES = """\
192.168.10.100 server.kubernetes.local server
192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24
192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24
192.168.10.103 node-2.kubernetes.local node-2 10.200.2.0/24
"""


def start(ns: NodeNamespace, inventory: Path, tmp_path: Path, agents: list[AgentProcess],
          *extra: str) -> AgentProcess:
    agent = AgentProcess(["--inventory", str(inventory), "--node-name", "node-0",
                          "--poll", "0.1", *extra], tmp_path / f"agent{len(agents)}.log",
                         inside=ns.name)
    agents.append(agent)
    return agent


def rewrite(path: Path, text: str) -> None:
    """Replace the file the way editors and ConfigMap volumes do: a new inode, renamed."""
    new = path.with_suffix(".new")
    new.write_text(text)
    new.replace(path)


def test_file_mode_follows_the_inventory_and_survives_a_bad_edit(
        node_ns: NodeNamespace, tmp_path: Path, agents: list[AgentProcess]) -> None:
    inventory = tmp_path / "machines.txt"
    inventory.write_text(MACHINES)
    agent = start(node_ns, inventory, tmp_path, agents)
    wait_until(lambda: node_ns.owned() == {"10.200.1.0/24": "192.168.10.102",
                                           "10.200.2.0/24": "192.168.10.103"})
    assert agent.get("/readyz") == (200, "ok\n")

    rewrite(inventory, MACHINES.replace(
        "192.168.10.103 node-2.kubernetes.local node-2 10.200.2.0/24\n", ""))
    wait_until(lambda: node_ns.owned() == {"10.200.1.0/24": "192.168.10.102"},
               message="node-2's route pruned")

    rewrite(inventory, MACHINES.replace("10.200.1.0/24", "10.200.1.0/33"))
    wait_until(lambda: agent.metric("podroutes_sync_errors_total", 'stage="inventory"'))
    assert node_ns.owned() == {"10.200.1.0/24": "192.168.10.102"}  # kept: never prune on a typo
    assert any("10.200.1.0/33" in r.get("msg", "") for r in agent.records())


def _monitor(ns: NodeNamespace, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", ns.name, "ip", "-ts", "monitor", "route"],
                            stdout=out.open("wb"), stderr=subprocess.STDOUT)


def _lines(out: Path, *needles: str) -> list[str]:
    return [ln for ln in out.read_text().splitlines() if any(n in ln for n in needles)]


def test_deletes_go_before_adds_when_cidrs_move(
        node_ns: NodeNamespace, tmp_path: Path, agents: list[AgentProcess]) -> None:
    inventory = tmp_path / "machines.txt"
    inventory.write_text(MACHINES)
    agent = start(node_ns, inventory, tmp_path, agents, "--resync", "3600")
    wait_until(lambda: len(node_ns.owned()) == 2)

    # One edit: node-2 leaves, and node-3 takes 10.200.2.0/23, which covers node-2's /24.
    monitor_log = tmp_path / "monitor.txt"
    monitor = _monitor(node_ns, monitor_log)
    try:
        wait_until(lambda: monitor_log.exists())
        rewrite(inventory, MACHINES.replace(
            "192.168.10.103 node-2.kubernetes.local node-2 10.200.2.0/24",
            "192.168.10.104 node-3.kubernetes.local node-3 10.200.2.0/23"))
        wait_until(lambda: node_ns.owned() == {"10.200.1.0/24": "192.168.10.102",
                                               "10.200.2.0/23": "192.168.10.104"})
        wait_until(lambda: _lines(monitor_log, "10.200.2.0/23"))
    finally:
        monitor.terminate()
        monitor.wait()
    events = _lines(monitor_log, "10.200.2.0/24", "10.200.2.0/23")
    assert "Deleted" in events[0] and "10.200.2.0/24" in events[0], events
    assert "10.200.2.0/23 via 192.168.10.104" in events[-1], events
    # One reconcile, two batches: the removal went first, the addition second. (The log
    # record is written when the reconcile ends, after the table changed: wait for it.)
    wait_until(lambda: [r["batches"] for r in agent.records() if r.get("removed") == 1],
               message="the reconcile's log record")
    assert [r["batches"] for r in agent.records() if r.get("removed") == 1] == [2]


def test_a_cidr_that_moves_to_another_node_is_rewritten_in_place(
        node_ns: NodeNamespace, tmp_path: Path, agents: list[AgentProcess]) -> None:
    inventory = tmp_path / "machines.txt"
    inventory.write_text(MACHINES)
    start(node_ns, inventory, tmp_path, agents, "--resync", "3600")
    wait_until(lambda: len(node_ns.owned()) == 2)

    monitor_log = tmp_path / "monitor.txt"
    monitor = _monitor(node_ns, monitor_log)
    try:
        wait_until(lambda: monitor_log.exists())
        rewrite(inventory, MACHINES.replace(
            "192.168.10.103 node-2.kubernetes.local node-2 10.200.2.0/24",
            "192.168.10.104 node-3.kubernetes.local node-3 10.200.2.0/24"))
        wait_until(lambda: node_ns.owned().get("10.200.2.0/24") == "192.168.10.104")
        wait_until(lambda: _lines(monitor_log, "10.200.2.0/24"))
    finally:
        monitor.terminate()
        monitor.wait()
    events = _lines(monitor_log, "10.200.2.0/24")
    assert not [e for e in events if "Deleted" in e], events  # replaced: never a gap


def test_readiness_follows_the_kernels_path_and_owned_routes_changed_by_others(
        node_ns: NodeNamespace, tmp_path: Path, agents: list[AgentProcess]) -> None:
    """A foreign more specific route shadows a planned destination: the routes are all in
    place, but /readyz says why pods are cut off, within a second, without a resync. An
    owned route replaced with another gateway (under the agent's own protocol) is put back
    at once, not at the next resync."""
    inventory = tmp_path / "machines.txt"
    inventory.write_text(MACHINES)
    agent = start(node_ns, inventory, tmp_path, agents, "--resync", "3600",
                  "--log-level", "debug")
    wait_until(lambda: agent.get("/readyz")[0] == 200)

    node_ns.ip("route", "add", "10.200.1.0/25", "via", "192.168.10.10")
    wait_until(lambda: agent.get("/readyz")[0] == 503,
               message="/readyz follows a shadowing route without a resync")
    status, body = agent.get("/readyz")
    assert status == 503 and "shadowed" in body and "10.200.1.0/25" in body, body
    node_ns.ip("route", "del", "10.200.1.0/25", "via", "192.168.10.10")
    wait_until(lambda: agent.get("/readyz")[0] == 200)

    node_ns.ip("route", "replace", "10.200.1.0/24", "via", "192.168.10.100", "proto", "147")
    wait_until(lambda: node_ns.owned().get("10.200.1.0/24") == "192.168.10.102",
               message="the owned route replaced by hand is put back without a resync")
    time.sleep(1.0)  # the repair's own kernel events arrive and are recognised as its own
    seen = len(agent.records())
    time.sleep(3.0)  # nothing changes here: none of the agent's own writes starts one
    started = [reason for r in agent.records()[seen:] for reason in r.get("reasons", ())]
    # (the kernel may still finish IPv6 duplicate address detection on the new namespace's
    # links: an address event is a real change, not the agent's)
    assert not [r for r in started if not r.startswith(("address ", "link "))], started

