"""The Kubernetes side: Node objects in, this node's condition and Events out.

I/O over the Kubernetes API with lightkube's ``AsyncClient`` (see docs/agent.md for why
lightkube). Used by :mod:`podroutes.agent.runner`. :class:`KubeCluster` is both the
desired-state source and the reporter of Kubernetes mode:

- a reflector: list every Node, then watch from the list's resourceVersion; every watch
  event goes through :func:`~podroutes.agent.triggers.node_change_reason`, and only one
  that changes routing publishes a new :class:`~podroutes.agent.nodes.ClusterView`. When
  the watch fails, expires (``410 Gone``) or goes silent for too long (a dead
  connection), it lists again, after a backoff, and the list *replaces* the cache, so a
  Node deleted while the watch was down is still pruned;
- ``nodes/status`` strategic-merge patches for the ``NetworkUnavailable`` condition;
- core/v1 Events about this node.

API failures never end the agent: they are logged, counted and retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig, NotReadyError
from lightkube.resources.core_v1 import Event, Node
from lightkube.types import PatchType

from podroutes.agent.conditions import COMPONENT, Condition
from podroutes.agent.nodes import ClusterView, NodeView, Sink, cluster_view, parse_node
from podroutes.agent.triggers import node_change_reason
from podroutes.errors import TransportError, UsageError

log = logging.getLogger("podroutes.agent.kube")

#: What a failed call to the API server raises: its own errors (``ApiError``), lightkube's
#: transport's (``httpx2``, which lightkube is built on), sockets', and a reply that does
#: not decode.
API_ERRORS = (ApiError, httpx2.HTTPError, httpx2.StreamError, OSError, ValueError)


def load_config(kubeconfig: str | None) -> KubeConfig:
    """A kubeconfig file, or the in-cluster service account (then ``KUBECONFIG``)."""
    try:
        return KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except (ConfigError, KeyError, OSError) as exc:
        where = kubeconfig or "in-cluster service account, $KUBECONFIG or ~/.kube/config"
        raise UsageError(f"cannot load the Kubernetes configuration ({where}): {exc}") from exc


def _dict(obj: Any) -> dict[str, Any]:
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return data if isinstance(data, dict) else {}


class KubeCluster:
    """Watches Nodes for the runner, and reports this node's state back."""

    def __init__(self, client: AsyncClient, node: str, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 backoff: tuple[float, float] = (0.5, 30.0),
                 server_timeout: int = 290, silence: float = 600.0) -> None:
        self.client = client
        self.node = node
        #: The API server ends each watch after this many seconds; lightkube resumes it
        #: from the last resourceVersion (cheap, no relist).
        self.server_timeout = server_timeout
        #: No event at all for this long: the connection is presumed dead (a TCP peer
        #: that vanished sends nothing, not even an error) and the reflector lists again.
        #: Every kubelet reports its Node at least every 5 minutes, so a live cluster is
        #: never this quiet.
        self.silence = silence
        self.nodes: dict[str, NodeView] = {}
        self._sleep = sleep
        self._backoff = backoff
        self._patched: Condition | None = None

    # --- source ------------------------------------------------------------------------

    async def _list(self) -> str | None:
        listing = self.client.list(Node)
        fresh: dict[str, NodeView] = {}
        async for obj in listing:
            view = parse_node(_dict(obj))
            if view is not None:
                fresh[view.name] = view
        self.nodes = fresh
        try:
            return listing.resourceVersion
        except NotReadyError:  # the reply carried no resourceVersion
            return None

    def _apply(self, kind: str, obj: Any) -> str | None:
        view = parse_node(_dict(obj))
        if view is None:
            return None
        old = self.nodes.get(view.name)
        if kind == "DELETED":
            self.nodes.pop(view.name, None)
            return node_change_reason(old, None)
        self.nodes[view.name] = view
        return node_change_reason(old, view)

    def view(self) -> ClusterView:
        return cluster_view(self.nodes.values())

    async def run(self, sink: Sink) -> None:
        """List, publish, watch, publish what matters; list again whenever the watch ends."""
        delay = self._backoff[0]
        while True:
            try:
                version = await self._list()
                sink.publish(self.view(), f"listed {len(self.nodes)} nodes")
                delay = self._backoff[0]
                async with asyncio.timeout(self.silence) as quiet:
                    async for kind, obj in self.client.watch(
                            Node, resource_version=version, server_timeout=self.server_timeout):
                        quiet.reschedule(asyncio.get_running_loop().time() + self.silence)
                        reason = self._apply(kind, obj)
                        if reason is not None:
                            sink.publish(self.view(), reason)
            except TimeoutError:
                sink.error("kubernetes", f"no Node event for {self.silence:g}s; listing again")
            except API_ERRORS as exc:
                sink.error("kubernetes", f"watching Nodes failed: {exc!r}; listing again in "
                           f"{delay:g}s")
            await self._sleep(delay)
            delay = min(self._backoff[1], delay * 2)

    # --- reporter ----------------------------------------------------------------------

    def current_condition(self) -> Condition | None:
        """This node's NetworkUnavailable condition as last seen, or as last patched if
        the watch has not shown the patch yet."""
        seen = self.nodes.get(self.node)
        condition = seen.condition if seen is not None else None
        if self._patched is not None and not self._patched.same_state(condition):
            return self._patched
        return condition

    def node_uid(self) -> str:
        seen = self.nodes.get(self.node)
        return seen.uid if seen is not None else ""

    async def patch_condition(self, patch: dict[str, Any], wanted: Condition) -> None:
        try:
            await self.client.patch(Node.Status, self.node, patch,
                                    patch_type=PatchType.STRATEGIC, field_manager=COMPONENT)
        except API_ERRORS as exc:
            raise TransportError("kubernetes", f"patching nodes/{self.node}/status: "
                                 f"{exc!r}") from exc
        self._patched = wanted

    async def create_event(self, body: dict[str, Any]) -> None:
        try:
            await self.client.create(cast(Event, Event.from_dict(body)))
        except API_ERRORS as exc:
            raise TransportError("kubernetes", f"creating an Event: {exc!r}") from exc

    async def close(self) -> None:
        await self.client.close()


def make_client(kubeconfig: str | None) -> AsyncClient:
    return AsyncClient(load_config(kubeconfig), field_manager=COMPONENT)
