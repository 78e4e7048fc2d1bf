"""What the agent sends to the Kubernetes API, checked against the real API's shapes.

The API server here is a **test double**: kmock's ``KubernetesEmulator`` (the ``kmock``
pytest fixture, PyPI ``kmock``) on 127.0.0.1, which records every request it receives.
Where the emulator cannot play a real API server's part (it has no resourceVersions and
never sends a ``BOOKMARK`` or an expired watch), the test serves crafted replies: a
``NodeList`` with a resourceVersion, and watch streams of JSON lines exactly as
kube-apiserver writes them (``{"type": ..., "object": ...}``), then asserts on both the
requests the double recorded and what the reflector published.

The real API's contract, as client-go's reflector uses it:

- list ``GET /api/v1/nodes`` (no ``watch``); the ``NodeList``'s
  ``metadata.resourceVersion`` is where the watch starts;
- watch ``GET /api/v1/nodes?watch=true&resourceVersion=RV&allowWatchBookmarks=true``;
- a ``BOOKMARK`` event carries only ``metadata.resourceVersion``: the next watch resumes
  from it; it is not a change (no reconcile);
- ``410 Gone`` (an ``ERROR`` event whose object is a ``Status`` with ``code: 410``, or the
  HTTP status of the watch request) means the resourceVersion is too old: list again;
- ``PATCH /api/v1/nodes/NAME/status`` with ``application/strategic-merge-patch+json``
  (``status.conditions`` merges by ``type``, so other conditions survive).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import kmock
import pytest
from lightkube import AsyncClient
from lightkube.models.core_v1 import NodeCondition
from lightkube.resources.core_v1 import Event

from podroutes.agent.conditions import Condition, condition_patch, event_body
from podroutes.agent.kube import KubeCluster, is_gone, load_config

from .recorder import Recorder

pytestmark = pytest.mark.asyncio

NODES = kmock.resource("v1/nodes")


def node(name: str, number: int, version: str, **extra_status: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": version},
            "spec": {"podCIDRs": [f"10.200.{number}.0/24"]},
            "status": {"addresses": [{"type": "InternalIP",
                                      "address": f"192.168.10.{101 + number}"}],
                       **extra_status}}


def node_list(version: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": version},
            "items": list(items)}


def bookmark(version: str) -> dict[str, Any]:
    """As kube-apiserver sends it: an object of the watched kind with only its version."""
    return {"type": "BOOKMARK", "object": {"kind": "Node", "apiVersion": "v1",
                                           "metadata": {"resourceVersion": version}}}


def expired(version: str) -> dict[str, Any]:
    return {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {version} (1900)", "reason": "Expired",
        "code": 410}}


# A reaction's slice counts the requests that match its criteria: ``[1:2]`` is the second
# watch (or list) request, whichever reaction served the first.


def node_requests(double: kmock.KubernetesEmulator) -> list[tuple[str, dict[str, str]]]:
    """("list" | "watch", query) of every Node collection request, in order."""
    out = []
    for r in double:
        if r.method == "GET" and r.url.path == "/api/v1/nodes":
            params = dict(r.params)
            out.append(("watch" if params.get("watch") == "true" else "list", params))
    return out


async def until(what: Any, timeout: float = 10.0) -> None:
    """Wait for a condition the reflector reaches by itself (a generous bound, not a
    timing claim)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not what():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.01)


class Sleeps:
    """The reflector's sleep, recorded (and not slept: the test does not wait)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


async def run_reflector(kubeconfig: Path, sleeps: Sleeps | None = None
                        ) -> tuple[KubeCluster, Recorder, asyncio.Task[None]]:
    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0",
                          sleep=sleeps or Sleeps())
    sink = Recorder()
    return cluster, sink, asyncio.create_task(cluster.run(sink))


async def stop(cluster: KubeCluster, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await cluster.close()


async def test_list_then_watch_from_its_version_with_bookmarks_that_only_move_the_version(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    kmock[kmock.action.LIST, NODES][:1] << node_list(
        "1000", node("node-0", 0, "990"), node("node-1", 1, "991"))
    # The server ends each watch (timeoutSeconds); the client resumes from the last
    # resourceVersion it saw, which after a BOOKMARK is the bookmark's.
    kmock[kmock.action.WATCH, NODES][:1] << (
        {"type": "ADDED", "object": node("node-2", 2, "1001")}, bookmark("1500"))
    kmock[kmock.action.WATCH, NODES][1:2] << (
        # A kubelet heartbeat: a change, but not one routing reads.
        {"type": "MODIFIED", "object": node("node-2", 2, "1501", conditions=[
            {"type": "Ready", "status": "True"}])}, bookmark("1600"))
    cluster, sink, task = await run_reflector(kubeconfig)
    try:
        await until(lambda: len(node_requests(kmock)) >= 4)
        await until(lambda: cluster.bookmarks == 2)
        requests = node_requests(kmock)
        assert [kind for kind, _ in requests[:4]] == ["list", "watch", "watch", "watch"]
        listing = requests[0][1]
        assert "resourceVersion" not in listing  # a consistent list, as client-go's first
        first, resumed, again = (q for _, q in requests[1:4])
        assert first["resourceVersion"] == "1000"  # the list's version
        assert first["allowWatchBookmarks"] == "true"
        assert first["timeoutSeconds"] == "290"
        assert resumed["resourceVersion"] == "1500"  # the bookmark's, not node-2's 1001
        assert again["resourceVersion"] == "1600"
        assert all(q["allowWatchBookmarks"] == "true" for q in (resumed, again))
        # Published: the list and the one change that matters; no bookmark, no heartbeat.
        assert sink.reasons() == ["listed 2 nodes", "node node-2 added"]
        assert sink.hosts() == ["node-0", "node-1", "node-2"]
        assert cluster.resource_version == "1600"
        assert sink.errors == [] and cluster.lists == 1
    finally:
        await stop(cluster, task)


async def test_a_410_error_event_lists_again_at_once_and_the_new_list_replaces_the_cache(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    kmock[kmock.action.LIST, NODES][:1] << node_list(
        "1000", node("node-0", 0, "990"), node("node-1", 1, "991"))
    kmock[kmock.action.WATCH, NODES][:1] << (
        {"type": "ADDED", "object": node("node-2", 2, "1001")}, expired("1001"))
    # Meanwhile node-1 left: only the new list can say so (no DELETED was seen).
    kmock[kmock.action.LIST, NODES][1:2] << node_list(
        "2000", node("node-0", 0, "990"), node("node-2", 2, "1001"))
    sleeps = Sleeps()
    cluster, sink, task = await run_reflector(kubeconfig, sleeps)
    try:
        await until(lambda: len(sink.views) >= 3)
        await until(lambda: len(node_requests(kmock)) >= 4)
        requests = node_requests(kmock)
        assert [kind for kind, _ in requests[:4]] == ["list", "watch", "list", "watch"]
        assert requests[1][1]["resourceVersion"] == "1000"
        assert requests[3][1]["resourceVersion"] == "2000"  # the new list's version
        assert sink.reasons()[:3] == ["listed 2 nodes", "node node-2 added", "listed 2 nodes"]
        assert sink.hosts() == ["node-0", "node-2"]  # node-1 pruned by the relist
        assert sleeps.calls[0] == 0.0  # expected, not a failure: no backoff
        assert sink.errors == []  # and not counted as an API error
    finally:
        await stop(cluster, task)


async def test_an_http_410_on_a_resumed_watch_lists_again(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    kmock[kmock.action.LIST, NODES][:1] << node_list("1000", node("node-0", 0, "990"))
    kmock[kmock.action.WATCH, NODES][:1] << (
        {"type": "ADDED", "object": node("node-1", 1, "1001")},)
    kmock[kmock.action.WATCH, NODES][1:2] << 410  # the resume is refused: too old
    kmock[kmock.action.LIST, NODES][1:2] << node_list(
        "3000", node("node-0", 0, "990"), node("node-1", 1, "1001"))
    sleeps = Sleeps()
    cluster, sink, task = await run_reflector(kubeconfig, sleeps)
    try:
        await until(lambda: len(node_requests(kmock)) >= 5)
        requests = node_requests(kmock)
        assert [kind for kind, _ in requests[:5]] == ["list", "watch", "watch", "list",
                                                      "watch"]
        assert requests[2][1]["resourceVersion"] == "1001"  # resumed from the last event
        assert requests[4][1]["resourceVersion"] == "3000"
        assert sleeps.calls[0] == 0.0 and sink.errors == []
        await until(lambda: len(sink.views) >= 3)
        assert sink.reasons()[:3] == ["listed 1 nodes", "node node-1 added", "listed 2 nodes"]
    finally:
        await stop(cluster, task)


async def test_a_410_before_any_event_backs_off_and_is_counted(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    """A server that refuses a watch from the version its own list just returned is
    confused: the reflector must not hammer it in a tight loop."""
    kmock[kmock.action.LIST, NODES][:2] << node_list("1000", node("node-0", 0, "990"))
    kmock[kmock.action.WATCH, NODES][:1] << (expired("1000"),)
    sleeps = Sleeps()
    cluster, sink, task = await run_reflector(kubeconfig, sleeps)
    try:
        await until(lambda: len(node_requests(kmock)) >= 3)
        assert 0.5 <= sleeps.calls[0] <= 0.6  # the first step of the backoff, with jitter
        assert sink.errors and "410" in sink.errors[0][1]
    finally:
        await stop(cluster, task)


async def test_api_server_away_backs_off_with_jitter_and_publishes_nothing(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    # A bare 503, no Content-Type (a proxy in front of a restarting API server): lightkube
    # 1.0.1 raises KeyError('Content-Type') for it, which must count as an API failure.
    kmock[kmock.action.LIST, NODES][:4] << 503
    sleeps = Sleeps()
    cluster, sink, task = await run_reflector(kubeconfig, sleeps)
    try:
        await until(lambda: len(sink.views) >= 1)  # the fifth list is served
        assert sink.reasons() == ["listed 0 nodes"]  # nothing published while away
        assert len(sink.errors) == 4
        base = [0.5, 1.0, 2.0, 4.0]
        assert all(b <= s <= b * 1.2 for b, s in zip(base, sleeps.calls[:4], strict=True))
        assert cluster.watching
    finally:
        await stop(cluster, task)


async def test_is_gone_reads_both_forms() -> None:
    from lightkube import ApiError
    from lightkube.models.meta_v1 import Status

    assert is_gone(ApiError(status=Status(code=410, reason="Expired")))
    assert not is_gone(ApiError(status=Status(code=500)))
    assert not is_gone(OSError("connection refused"))


RFC3339 = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


async def test_status_patch_is_a_strategic_merge_of_one_valid_condition(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0")
    kmock.objects["v1/nodes", None, "node-0"] = node("node-0", 0, "1")
    try:
        wanted = Condition("True", "RoutesConflict", "10.200.1.0/24 held by proto static")
        patch = condition_patch(wanted, None, 1_800_000_000)
        assert patch is not None
        await cluster.patch_condition(patch, wanted)
        [request] = [r for r in kmock if r.method == "PATCH"]
        assert request.url.path == "/api/v1/nodes/node-0/status"
        assert request.headers["Content-Type"] == "application/strategic-merge-patch+json"
        assert dict(request.params) == {"fieldManager": "podroutes-agent"}
        body = request.data
        assert list(body) == ["status"] and list(body["status"]) == ["conditions"]
        [entry] = body["status"]["conditions"]
        # Every field a NodeCondition has, and nothing it does not (the API server would
        # reject an unknown field under strict field validation).
        assert set(entry) == {"type", "status", "reason", "message", "lastTransitionTime",
                              "lastHeartbeatTime"}
        model = NodeCondition.from_dict(entry)
        assert (model.type, model.status, model.reason) == ("NetworkUnavailable", "True",
                                                            "RoutesConflict")
        assert RFC3339.match(entry["lastTransitionTime"])
        assert RFC3339.match(entry["lastHeartbeatTime"])
        assert re.fullmatch(r"[A-Z][A-Za-z]*", entry["reason"])  # CamelCase, as the API wants
    finally:
        await cluster.close()


async def test_event_is_a_valid_core_v1_event_about_the_node(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path) -> None:
    cluster = KubeCluster(AsyncClient(load_config(str(kubeconfig))), "node-0")
    try:
        await cluster.create_event(event_body("node-0", "uid-node-0", "RoutesConflict",
                                              "x" * 5000, 1_800_000_000.5))
        [request] = [r for r in kmock if r.method == "POST"]
        assert request.url.path == "/api/v1/namespaces/default/events"
        assert request.headers["Content-Type"].startswith("application/json")
        event = Event.from_dict(request.data)
        assert event.metadata is not None and event.metadata.namespace == "default"
        assert event.metadata.name and event.metadata.name.startswith("node-0.")
        assert event.involvedObject.kind == "Node" and event.involvedObject.uid == "uid-node-0"
        assert event.type == "Warning" and event.count == 1
        assert event.message is not None and len(event.message) == 1024  # bounded
        assert event.reportingComponent == "podroutes-agent"
        assert RFC3339.match(request.data["firstTimestamp"])
    finally:
        await cluster.close()
