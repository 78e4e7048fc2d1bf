"""Kubernetes Node objects → the hosts podroutes routes between, and why any node is left out.

Pure: JSON-shaped mappings in (as the API server sends them), model values out. Called by
:mod:`podroutes.agent.kube` for every Node it lists or watches, and by the runner to build
the inventory the engine plans from. A cluster is never rejected as a whole (a bad Node
must not stop every other node's routes): each Node that cannot be routed to is left out
with a :class:`Notice` that says why, and the rest goes on.

- Pod CIDRs come from ``spec.podCIDRs`` (``spec.podCIDR`` on old clusters), at most one
  per family; gateways from ``status.addresses`` of type ``InternalIP``, the first of each
  family (host-gw routing needs the node network, never an ExternalIP).
- A node without pod CIDRs still gets routes to the others (like the KTHW server) but no
  route leads to it; a node without an InternalIP is left out; a pod CIDR of a family the
  node has no InternalIP of is dropped.
- The inventory checks (:func:`podroutes.inventory.validate.validate`) run over the result; a node
  they reject is left out. Nodes are ordered oldest first, so when two claim overlapping
  pod CIDRs the newer one is left out until the older one lets go.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any, Protocol

from podroutes.agent.conditions import CONDITION_TYPE, Condition
from podroutes.core.model import Family, Host, Inventory, IPAddress, IPNetwork
from podroutes.inventory.validate import validate

SOURCE = "kubernetes"


class NoticeKind(enum.StrEnum):
    NO_POD_CIDR = "no pod CIDR"
    NO_INTERNAL_IP = "no InternalIP"
    BAD_POD_CIDR = "bad pod CIDR"
    BAD_ADDRESS = "bad InternalIP"
    NO_ADDRESS_OF_FAMILY = "pod CIDR without an InternalIP of its family"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something about one node that the user should hear. ``routable`` is False when the
    node was left out entirely (no route leads to it and it gets none)."""

    node: str
    kind: NoticeKind
    message: str
    routable: bool

    def __str__(self) -> str:
        return f"node {self.node}: {self.message}"


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

    @property
    def routing(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        return (self.name, self.internal_ips, self.pod_cidrs)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The desired state: an inventory the engine plans from, and the notices about nodes."""

    inventory: Inventory
    notices: tuple[Notice, ...] = ()

    @property
    def skipped(self) -> tuple[Notice, ...]:
        return tuple(n for n in self.notices if not n.routable)


class Sink(Protocol):
    """What a desired-state source (Nodes, an inventory file) publishes to: the runner."""

    def publish(self, view: ClusterView, reason: str) -> None: ...

    def error(self, stage: str, message: str) -> None: ...


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if isinstance(v, str))
    return ()


def parse_node(obj: Mapping[str, Any]) -> NodeView | None:
    """The :class:`NodeView` of a Node object, or ``None`` if it has no name (not a Node)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        return None
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    spec = spec if isinstance(spec, Mapping) else {}
    status = status if isinstance(status, Mapping) else {}
    cidrs = _strings(spec.get("podCIDRs"))
    if not cidrs and isinstance(spec.get("podCIDR"), str) and spec["podCIDR"]:
        cidrs = (spec["podCIDR"],)
    addresses = status.get("addresses")
    internal = tuple(
        str(a["address"]) for a in (addresses if isinstance(addresses, list) else ())
        if isinstance(a, Mapping) and a.get("type") == "InternalIP"
        and isinstance(a.get("address"), str))
    condition = None
    conditions = status.get("conditions")
    for item in conditions if isinstance(conditions, list) else ():
        if isinstance(item, Mapping) and item.get("type") == CONDITION_TYPE:
            condition = Condition.from_api(item)
    return NodeView(name=name, internal_ips=internal, pod_cidrs=cidrs,
                    uid=str(meta.get("uid") or ""),
                    created=str(meta.get("creationTimestamp") or ""), condition=condition)


def _address(text: str) -> IPAddress | None:
    if "%" in text:
        return None
    try:
        return ip_address(text)
    except ValueError:
        return None


def _host(view: NodeView, line: int, notices: list[Notice]) -> Host | None:
    """One node as a host of the inventory, or ``None`` when it cannot be one."""
    addresses: dict[Family, IPAddress] = {}
    for text in view.internal_ips:
        address = _address(text)
        if address is None:
            notices.append(Notice(view.name, NoticeKind.BAD_ADDRESS,
                                  f"InternalIP {text!r} is not an IP address; ignored", True))
        else:
            addresses.setdefault(Family.of(address), address)
    if not addresses:
        notices.append(Notice(view.name, NoticeKind.NO_INTERNAL_IP,
                              "has no InternalIP in status.addresses: no other node can "
                              "route to it, and it is left out", False))
        return None
    cidrs: dict[Family, IPNetwork] = {}
    for text in view.pod_cidrs:
        try:
            cidr = ip_network(text, strict=True)
        except ValueError:
            notices.append(Notice(view.name, NoticeKind.BAD_POD_CIDR,
                                  f"pod CIDR {text!r} is not a network address; ignored", True))
            continue
        family = Family.of(cidr)
        if family not in addresses:
            notices.append(Notice(
                view.name, NoticeKind.NO_ADDRESS_OF_FAMILY,
                f"IPv{family.value} pod CIDR {cidr} but no IPv{family.value} InternalIP "
                "to route it via; ignored", True))
        elif family in cidrs:
            notices.append(Notice(view.name, NoticeKind.BAD_POD_CIDR,
                                  f"a second IPv{family.value} pod CIDR {cidr}; ignored", True))
        else:
            cidrs[family] = cidr
    if not cidrs:
        notices.append(Notice(view.name, NoticeKind.NO_POD_CIDR,
                              "has no spec.podCIDRs yet: it gets routes to the other nodes, "
                              "but no route leads to its pods", True))
    return Host(name=view.name, addresses=tuple(addresses[f] for f in sorted(addresses)),
                pod_cidrs=tuple(cidrs[f] for f in sorted(cidrs)), source=SOURCE, line=line)


def cluster_view(nodes: Iterable[NodeView]) -> ClusterView:
    """The inventory of every routable node, oldest first, and a notice for the rest."""
    notices: list[Notice] = []
    ordered = sorted(nodes, key=lambda v: (v.created, v.name))
    hosts = [h for line, view in enumerate(ordered, start=1)
             if (h := _host(view, line, notices)) is not None]
    # Leaving a host out never creates a problem for another, so each round removes at
    # least one host and the loop ends (usually after one round).
    while problems := validate(hosts):
        rejected: dict[int, str] = {}
        for problem in problems:
            rejected.setdefault(problem.line, problem.message)
        kept = [h for h in hosts if h.line not in rejected]
        if len(kept) == len(hosts):  # a problem no host owns: cannot happen; never loop
            break
        notices += [Notice(h.name, NoticeKind.REJECTED, f"left out: {rejected[h.line]}", False)
                    for h in hosts if h.line in rejected]
        hosts = kept
    return ClusterView(Inventory(SOURCE, tuple(hosts)), tuple(notices))
