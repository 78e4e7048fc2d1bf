"""Kubernetes Node objects → the agent's desired state, and why any node is left out.

Pure: JSON-shaped mappings in (as the API server sends them), model values out. Called by
:mod:`podroutes.agent.kube` for every Node it lists or watches, and by the runner to build
the inventory the engine plans from. The mapping itself (which fields, which nodes are
left out and why) is :mod:`podroutes.inventory.kubernetes`, shared with every other
command's ``-i kubernetes``; this module adds what only the agent needs of a Node (its
uid and the ``NetworkUnavailable`` condition) and the :class:`ClusterView` it publishes.
A cluster is never rejected as a whole (a bad Node must not stop every other node's
routes): each Node that cannot be routed to is left out with a :class:`Notice`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from podroutes.agent.conditions import CONDITION_TYPE, Condition
from podroutes.core.model import Inventory
from podroutes.inventory.kubernetes import (
    SOURCE,
    Notice,
    NoticeKind,
    node_fields,
    nodes_inventory,
)

__all__ = ["SOURCE", "ClusterView", "NodeView", "Notice", "NoticeKind", "Sink",
           "cluster_view", "parse_node"]


@dataclass(frozen=True, slots=True)
class NodeView:
    """The parts of one Node object the agent uses. ``routing`` is all that planning
    depends on; the rest identifies the node and carries its condition."""

    name: str
    internal_ips: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    uid: str = ""
    created: str = ""
    condition: Condition | None = None
    fqdn: str | None = None

    @property
    def routing(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        return (self.name, self.internal_ips, self.pod_cidrs)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The desired state: an inventory the engine plans from, and the notices about nodes."""

    inventory: Inventory
    notices: tuple[Notice, ...] = ()
    #: Made from Node objects (``False``: from an inventory file, where hosts are lines).
    from_nodes: bool = True

    @property
    def skipped(self) -> tuple[Notice, ...]:
        return tuple(n for n in self.notices if not n.routable)


class Sink(Protocol):
    """What a desired-state source (Nodes, an inventory file) publishes to: the runner."""

    def publish(self, view: ClusterView, reason: str) -> None: ...

    def error(self, stage: str, message: str) -> None: ...


def parse_node(obj: Mapping[str, Any]) -> NodeView | None:
    """The :class:`NodeView` of a Node object, or ``None`` if it has no name (not a Node)."""
    fields = node_fields(obj)
    if fields is None:
        return None
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    status = status if isinstance(status, Mapping) else {}
    condition = None
    conditions = status.get("conditions")
    for item in conditions if isinstance(conditions, list) else ():
        if isinstance(item, Mapping) and item.get("type") == CONDITION_TYPE:
            condition = Condition.from_api(item)
    return NodeView(name=fields.name, internal_ips=fields.internal_ips,
                    pod_cidrs=fields.pod_cidrs, uid=str(meta.get("uid") or ""),
                    created=fields.created, condition=condition, fqdn=fields.fqdn)


def cluster_view(nodes: Iterable[NodeView]) -> ClusterView:
    """The inventory of every routable node, oldest first, and a notice for the rest."""
    inventory, notices = nodes_inventory(nodes)
    return ClusterView(inventory, notices)
