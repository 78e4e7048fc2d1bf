"""The Kubernetes side: Node objects in, this node's condition and Events out.

I/O over the Kubernetes API with lightkube's ``AsyncClient`` (see docs/agent.md for why
lightkube). Used by :mod:`podroutes.agent.runner`. :class:`KubeCluster` is both the
desired-state source and the reporter of Kubernetes mode:

- a reflector, as client-go's: list every Node, then watch from the list's
  resourceVersion with ``allowWatchBookmarks=true``; every ADDED/MODIFIED/DELETED event
  goes through :func:`~podroutes.agent.triggers.node_change_reason`, and only one that
  changes routing publishes a new :class:`~podroutes.agent.nodes.ClusterView`. A
  ``BOOKMARK`` only moves the resourceVersion the watch resumes from (and proves the
  connection alive); it never reconciles. When the watch expires (``410 Gone``, as an
  ``ERROR`` event or as the HTTP status) it lists again at once; when it fails or goes
  silent for too long (a dead connection) it lists again after a backoff (0.5 s doubling
  to 30 s, with jitter, so a fleet that lost its API server does not come back in step).
  The list *replaces* the cache, so a Node deleted while the watch was down is still
  pruned. While the API server is away nothing is published: the agent keeps
  reconciling the last desired state it had, and never drops a route for it;
- ``nodes/status`` strategic-merge patches for the ``NetworkUnavailable`` condition;
- core/v1 Events about this node.

API failures never end the agent: they are logged, counted and retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import httpx2
import yaml
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig, NotReadyError
from lightkube.resources.core_v1 import Event, Node
from lightkube.types import PatchType

from podroutes.agent.conditions import COMPONENT, Condition
from podroutes.agent.nodes import ClusterView, NodeView, Sink, cluster_view, parse_node
from podroutes.agent.triggers import node_change_reason
from podroutes.core.errors import TransportError, UsageError
from podroutes.inventory.kubernetes import NO_POD_CIDRS, lacks_pod_cidrs

log = logging.getLogger("podroutes.agent.kube")

#: What a failed call to the API server raises: its own errors (``ApiError``), lightkube's
#: transport's (``httpx2``, which lightkube is built on), sockets', and a reply that does
#: not decode. ``KeyError`` too: lightkube 1.0.1 reads an error reply's ``Content-Type``
#: header without a default, so a bare ``503`` (a proxy in front of the API server, one
#: that is starting) raises ``KeyError('Content-Type')``; without it here that escaped
#: the reflector's backoff and, from a status patch, ended the agent's loop.
API_ERRORS = (ApiError, httpx2.HTTPError, httpx2.StreamError, OSError, ValueError, KeyError)


def load_config(kubeconfig: str | None) -> KubeConfig:
    """A kubeconfig file, or the in-cluster service account (then ``KUBECONFIG``)."""
    try:
        return KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except (ConfigError, KeyError, OSError, yaml.YAMLError, AttributeError, TypeError,
            ValueError) as exc:  # a file that is not a kubeconfig fails in any of these
        where = kubeconfig or "in-cluster service account, $KUBECONFIG or ~/.kube/config"
        detail = (f"it has no {exc.args[0]!r}" if isinstance(exc, KeyError)
                  else str(exc) if isinstance(exc, ConfigError | OSError | yaml.YAMLError)
                  else f"not a kubeconfig ({exc})")
        raise UsageError(f"cannot load the Kubernetes configuration ({where}): "
                         f"{detail}") from exc


#: Extra watch parameters lightkube's ``AsyncClient.watch`` has no argument for.
WATCH_PARAMS = {"allowWatchBookmarks": "true"}


def is_gone(exc: BaseException) -> bool:
    """``410 Gone``: the resourceVersion the watch asked for is too old (compacted); only a
    new list can go on. Sent as an ``ERROR`` watch event (lightkube raises ``ApiError``
    with the Status) or as the HTTP status of the watch request."""
    if isinstance(exc, ApiError):
        status = getattr(exc, "status", None)
        if getattr(status, "code", None) == 410:
            return True
    if isinstance(exc, httpx2.HTTPStatusError):
        response = getattr(exc, "response", None)
        return getattr(response, "status_code", None) == 410
    return False


def describe_error(exc: BaseException) -> str:
    """An API failure for a log line: the Status's code and reason when the server sent
    one (``ApiError``'s own text is only the message), else the exception's repr."""
    status = getattr(exc, "status", None) if isinstance(exc, ApiError) else None
    if status is not None and getattr(status, "code", None):
        return f"{status.code} {status.reason or ''}: {status.message or ''}".replace(" :", ":")
    return repr(exc)


def _dict(obj: Any) -> dict[str, Any]:
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return data if isinstance(data, dict) else {}


class KubeCluster:
    """Watches Nodes for the runner, and reports this node's state back."""

    def __init__(self, client: AsyncClient, node: str, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 backoff: tuple[float, float] = (0.5, 30.0), jitter: float = 0.2,
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
        #: The resourceVersion the watch resumes from: the list's, then each event's and
        #: each bookmark's.
        self.resource_version: str | None = None
        #: True from a successful list until the watch fails: what the
        #: ``podroutes_kubernetes_watch_up`` gauge reports.
        self.watching = False
        self.lists = 0
        self.bookmarks = 0
        #: Events (bookmarks included) since the last list.
        self.events = 0
        self._sleep = sleep
        self._backoff = backoff
        self._jitter = jitter
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
        self.lists += 1
        try:
            return listing.resourceVersion
        except NotReadyError:  # the reply carried no resourceVersion
            return None

    def _watch(self, version: str | None) -> AsyncIterator[tuple[str, Any]]:
        """``GET /api/v1/nodes?watch=true&resourceVersion=V&allowWatchBookmarks=true``.

        lightkube's own ``AsyncClient.watch`` builds the same request without a way to
        ask for bookmarks; this builds it with the client's request builder and streams it
        with the client's watch loop (which resumes, from the last resourceVersion it saw,
        bookmarks included, when the server ends a watch after ``timeoutSeconds``)."""
        inner = self.client._client
        request = inner.prepare_request("list", res=Node, watch=True, params={
            "timeoutSeconds": self.server_timeout, "resourceVersion": version,
            **WATCH_PARAMS})
        events: AsyncIterator[tuple[str, Any]] = inner.watch(request)
        return events

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

    def _seen(self, obj: Any) -> None:
        meta = getattr(obj, "metadata", None)
        version = getattr(meta, "resourceVersion", None)
        if isinstance(version, str) and version:
            self.resource_version = version

    def view(self) -> ClusterView:
        return cluster_view(self.nodes.values())

    async def _list_and_watch(self, sink: Sink) -> None:
        """One list, then the watch until it ends."""
        self.events = 0
        self.resource_version = await self._list()
        self.watching = True
        view = self.view()
        if lacks_pod_cidrs(view.inventory):  # upstream KTHW: said plainly, at every list
            log.warning(f"{NO_POD_CIDRS}: podroutes agent --inventory machines.txt",
                        extra={"fields": {"nodes": len(self.nodes)}})
        sink.publish(view, f"listed {len(self.nodes)} nodes")
        async with asyncio.timeout(self.silence) as quiet:
            async for kind, obj in self._watch(self.resource_version):
                quiet.reschedule(asyncio.get_running_loop().time() + self.silence)
                self.events += 1
                self._seen(obj)
                if kind == "BOOKMARK":  # a newer resourceVersion to resume from, no change
                    self.bookmarks += 1
                    continue
                reason = self._apply(kind, obj)
                if reason is not None:
                    sink.publish(self.view(), reason)

    async def run(self, sink: Sink) -> None:
        """List, publish, watch, publish what matters; list again whenever the watch ends.

        Never raises for an API failure: the last published desired state stays in force
        (the runner keeps reconciling it) until a list succeeds again."""
        delay = self._backoff[0]
        while True:
            listed_before = self.lists
            gone = False
            failure: str | None = None
            try:
                await self._list_and_watch(sink)
            except TimeoutError:
                failure = f"no Node event for {self.silence:g}s"
            except API_ERRORS as exc:
                # 410 is expected: the watch fell behind the server's history (usually as
                # it resumed after the server ended it). It lists again at once; a watch
                # that gets 410 before a single event after a fresh list backs off like
                # any other failure, so a confused server is not hammered.
                gone = is_gone(exc) and self.lists > listed_before and self.events > 0
                failure = None if gone else f"watching Nodes failed: {describe_error(exc)}"
            finally:
                self.watching = False
            if self.lists > listed_before:  # the list worked: the API server answers
                delay = self._backoff[0]
                wait = 0.0 if gone else delay
            else:
                wait = delay
                delay = min(self._backoff[1], delay * 2)
            if gone:
                log.info("the Node watch expired (410 Gone); listing again",
                         extra={"fields": {"resource_version": self.resource_version}})
            elif failure is not None:
                sink.error("kubernetes", f"{failure}; listing again" + (
                    f" in {wait:g}s" if failure.startswith("watching") else ""))
            await self._sleep(wait * (1 + self._jitter * random.random()) if wait else 0.0)

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


def list_nodes(kubeconfig: str | None, timeout: float = 30.0) -> tuple[list[dict[str, Any]], str]:
    """Every Node object once (``GET /api/v1/nodes``, paged by lightkube) and the API
    server's URL, for a CLI command's ``-i kubernetes``; no watch. Needs ``get`` and
    ``list`` on ``nodes``. A configuration that does not load, an API server that cannot
    be reached or that refuses the list raises :class:`UsageError` (exit 2: the inventory
    could not be read; nothing is sent to any host)."""
    from lightkube import Client

    config = load_config(kubeconfig)
    try:
        single = config.get()
    except (ConfigError, KeyError) as exc:
        raise UsageError(f"the Kubernetes configuration has no usable context: {exc}") from exc
    server = str(getattr(single.cluster, "server", "") if single else "") or "(no server)"
    try:
        client = Client(single, field_manager=COMPONENT, timeout=httpx2.Timeout(timeout))
        try:
            return [_dict(obj) for obj in client.list(Node)], server
        finally:
            client.close()
    except (ApiError, httpx2.HTTPStatusError) as exc:
        if isinstance(exc, ApiError):
            code, why = getattr(getattr(exc, "status", None), "code", None), describe_error(exc)
        else:
            code, why = exc.response.status_code, (f"{exc.response.status_code} "
                                                   f"{exc.response.reason_phrase}")
        hint = ("; podroutes needs get and list on nodes (a ClusterRole bound to this user)"
                if code in (401, 403) else "")
        raise UsageError(f"the Kubernetes API at {server} refused to list Nodes: "
                         f"{why}{hint}") from exc
    except (ConfigError, *API_ERRORS) as exc:
        raise UsageError(f"cannot list Nodes from the Kubernetes API at {server}: "
                         f"{describe_error(exc)}") from exc
