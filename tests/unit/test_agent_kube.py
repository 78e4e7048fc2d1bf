"""The agent's Kubernetes side against an API server test double: kmock's
KubernetesEmulator (the ``kmock`` pytest fixture from PyPI ``kmock``) on 127.0.0.1.

No root: Nodes go in and out through the emulator's HTTP API; the reflector lists and
watches them with lightkube exactly as it would a real API server; condition patches and
Events are checked in the emulator's stored objects and request log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kmock
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from podroutes.agent.conditions import Condition, condition_patch, event_body
from podroutes.agent.kube import KubeCluster, load_config
from podroutes.core.errors import TransportError, UsageError

from .recorder import Recorder

pytestmark = pytest.mark.asyncio


def node(name: str, address: str, cidr: str | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": "uid-" + name},
            "spec": {"podCIDRs": [cidr]} if cidr else {},
            "status": {"addresses": [{"type": "InternalIP", "address": address}]}}


async def test_the_reflector_publishes_changes_that_matter_only(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    admin = AsyncClient(load_config(str(kubeconfig)))
    await admin.create(Node.from_dict(node("node-0", "192.168.10.101", "10.200.0.0/24")))
    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0")
    sink = Recorder()
    task = asyncio.create_task(cluster.run(sink))
    try:
        await sink.next()
        assert sink.views[-1][1] == "listed 1 nodes" and sink.hosts() == ["node-0"]

        await admin.create(Node.from_dict(node("node-1", "192.168.10.102", "10.200.1.0/24")))
        await sink.next()
        assert sink.views[-1][1] == "node node-1 added"
        assert sink.hosts() == ["node-0", "node-1"]

        # A heartbeat-like status change: no new desired state.
        await admin.patch(Node, "node-1", {"status": {"conditions": [
            {"type": "Ready", "status": "True"}]}})
        await admin.delete(Node, "node-1")
        await sink.next()
        assert [r for _, r in sink.views[1:]] == ["node node-1 added", "node node-1 deleted"]
        assert sink.hosts() == ["node-0"]
        assert cluster.node_uid() == "uid-node-0"
    finally:
        task.cancel()
        await admin.close()
        await cluster.close()


async def test_an_expired_watch_lists_again(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    kmock[kmock.action.WATCH, kmock.resource("v1/nodes")][:1] << 410
    admin = AsyncClient(load_config(str(kubeconfig)))
    await admin.create(Node.from_dict(node("node-0", "192.168.10.101", "10.200.0.0/24")))

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0", sleep=no_wait)
    sink = Recorder()
    task = asyncio.create_task(cluster.run(sink))
    try:
        for _ in range(3):
            await sink.next()
            if len(sink.views) >= 2:
                break
        assert [r for _, r in sink.views[:2]] == ["listed 1 nodes", "listed 1 nodes"]
        assert sink.errors and "410" in sink.errors[0][1]
        lists = [r for r in kmock if r.method == "GET" and "watch" not in str(r.url)]
        assert len(lists) >= 2
    finally:
        task.cancel()
        await admin.close()
        await cluster.close()


async def test_condition_patch_and_event_reach_the_api_server(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    admin = AsyncClient(load_config(str(kubeconfig)))
    await admin.create(Node.from_dict(node("node-0", "192.168.10.101", "10.200.0.0/24")))
    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0")
    try:
        wanted = Condition("False", "RouteCreated", "routes installed")
        patch = condition_patch(wanted, None, 0)
        assert patch is not None
        await cluster.patch_condition(patch, wanted)
        [stored] = kmock.objects["v1/nodes", None, "node-0"]["status"]["conditions"]
        assert {k: stored[k] for k in ("type", "status", "reason", "message")} == {
            "type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated",
            "message": "routes installed"}
        [patched] = [r for r in kmock if r.method == "PATCH"]
        assert patched.url.path == "/api/v1/nodes/node-0/status"
        assert patched.headers["Content-Type"] == "application/strategic-merge-patch+json"
        assert cluster.current_condition() == wanted  # before the watch shows it

        await cluster.create_event(event_body("node-0", "uid-node-0", "RoutesConflict",
                                              "10.200.1.0/24 held", 1.0))
        [posted] = [r for r in kmock if r.method == "POST" and "events" in str(r.url)]
        assert posted.url.path == "/api/v1/namespaces/default/events"
        assert posted.data["involvedObject"]["name"] == "node-0"
    finally:
        await admin.close()
        await cluster.close()


async def test_api_failures_become_transport_errors(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "no-such-node")
    try:
        wanted = Condition("False", "RouteCreated", "m")
        with pytest.raises(TransportError, match="nodes/no-such-node/status"):
            await cluster.patch_condition({"status": {}}, wanted)
    finally:
        await cluster.close()


async def test_a_missing_kubeconfig_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot load the Kubernetes configuration"):
        load_config(str(tmp_path / "nope"))


async def test_a_silent_watch_is_presumed_dead_and_lists_again(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    admin = AsyncClient(load_config(str(kubeconfig)))
    await admin.create(Node.from_dict(node("node-0", "192.168.10.101", "10.200.0.0/24")))

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0", sleep=no_wait,
                          silence=0.3)
    sink = Recorder()
    task = asyncio.create_task(cluster.run(sink))
    try:
        while len(sink.views) < 2:
            await sink.next()
        assert [r for _, r in sink.views[:2]] == ["listed 1 nodes", "listed 1 nodes"]
        assert sink.errors[0] == ("kubernetes", "no Node event for 0.3s; listing again")
    finally:
        task.cancel()
        await admin.close()
        await cluster.close()


async def test_nodes_without_pod_cidrs_are_said_plainly_at_start_up(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Upstream Kubernetes the Hard Way: no --allocate-node-cidrs, so no Node has a pod
    CIDR. The agent's first list says so and points to its inventory-file mode."""
    admin = AsyncClient(load_config(str(kubeconfig)))
    for number in (0, 1):
        await admin.create(Node.from_dict(node(f"node-{number}", f"192.168.10.10{number + 1}",
                                               None)))
    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0")
    sink = Recorder()
    caplog.set_level("WARNING", logger="podroutes.agent.kube")
    task = asyncio.create_task(cluster.run(sink))
    try:
        await sink.next()
        [record] = [r for r in caplog.records if r.name == "podroutes.agent.kube"]
        assert "no Node has a pod CIDR" in record.getMessage()
        assert "--allocate-node-cidrs" in record.getMessage()
        assert record.getMessage().endswith("podroutes agent --inventory machines.txt")
        await admin.create(Node.from_dict(node("node-2", "192.168.10.103", "10.200.2.0/24")))
        await sink.next()
        assert len([r for r in caplog.records if r.name == "podroutes.agent.kube"]) == 1
    finally:
        task.cancel()
        await admin.close()
        await cluster.close()
