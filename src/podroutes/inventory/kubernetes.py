"""Kubernetes Node objects → an inventory, and where a cluster and an inventory file disagree.

Pure: JSON-shaped mappings in (as the API server sends them), model values out. The one
Node → host mapping of podroutes: :mod:`podroutes.agent.nodes` builds the agent's desired
state with it, and the CLI (``-i kubernetes``, :mod:`podroutes.cli.kubernetes`) builds
every other command's inventory with it. A cluster is never rejected as a whole here: each
Node that cannot be routed to is left out with a :class:`Notice` that says why; the CLI
decides which notices stop a command (:func:`strict_inventory`).

- Names: ``metadata.name``, which must be an RFC 1123 name (the API server enforces it;
  a Node that is not is left out, as it could not be an SSH target).
- Pod CIDRs come from ``spec.podCIDRs`` (``spec.podCIDR`` on old clusters), at most one
  per family; gateways from ``status.addresses`` of type ``InternalIP``, the first of each
  family (host-gw routing needs the node network, never an ExternalIP). The FQDN (for
  ``--ssh-target fqdn``) is the first ``Hostname`` address that is a dotted name.
- A node without pod CIDRs still gets routes to the others (like the KTHW server) but no
  route leads to it; a node without an InternalIP is left out; a pod CIDR of a family the
  node has no InternalIP of is dropped.
- The inventory checks (:func:`podroutes.inventory.validate.validate`) run over the result;
  a node they reject is left out. Nodes are ordered oldest first, so when two claim
  overlapping pod CIDRs the newer one is left out until the older one lets go.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any, Protocol

from podroutes.core.errors import InventoryError, Problem
from podroutes.core.model import Family, Host, Inventory, IPAddress, IPNetwork
from podroutes.inventory.fields import FQDN_RE
from podroutes.inventory.validate import validate

#: The inventory's ``source`` for hosts read from Node objects; also what ``-i`` takes.
SOURCE = "kubernetes"

#: What to say when no Node carries a pod CIDR (upstream Kubernetes the Hard Way).
NO_POD_CIDRS = (
    "no Node has a pod CIDR (spec.podCIDRs is empty on every node): the controller manager "
    "does not allocate them (Kubernetes the Hard Way runs kube-controller-manager without "
    "--allocate-node-cidrs), so the cluster cannot say where pods live; give each node's pod "
    "CIDR in an inventory file instead")


class NoticeKind(enum.StrEnum):
    NO_POD_CIDR = "no pod CIDR"
    NO_INTERNAL_IP = "no InternalIP"
    BAD_NAME = "bad name"
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


class NodeLike(Protocol):
    """What the mapping reads of one Node (the agent's ``NodeView`` has more)."""

    @property
    def name(self) -> str: ...

    @property
    def internal_ips(self) -> tuple[str, ...]: ...

    @property
    def pod_cidrs(self) -> tuple[str, ...]: ...

    @property
    def created(self) -> str: ...

    @property
    def fqdn(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class NodeFields:
    """The fields of one Node object that the mapping uses."""

    name: str
    internal_ips: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    created: str = ""
    fqdn: str | None = None


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if isinstance(v, str))
    return ()


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def node_fields(obj: Mapping[str, Any]) -> NodeFields | None:
    """The :class:`NodeFields` of a Node object, or ``None`` if it has no name (not a Node)."""
    meta = _mapping(obj.get("metadata"))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    cidrs = _strings(spec.get("podCIDRs"))
    if not cidrs and isinstance(spec.get("podCIDR"), str) and spec["podCIDR"]:
        cidrs = (spec["podCIDR"],)
    addresses = status.get("addresses")
    typed = [(a.get("type"), a["address"]) for a in (addresses if isinstance(addresses, list)
                                                      else ())
             if isinstance(a, Mapping) and isinstance(a.get("address"), str)]
    internal = tuple(address for kind, address in typed if kind == "InternalIP")
    fqdn = next((address for kind, address in typed if kind == "Hostname" and "." in address
                 and FQDN_RE.match(address)), None)
    return NodeFields(name=name, internal_ips=internal, pod_cidrs=cidrs,
                      created=str(meta.get("creationTimestamp") or ""), fqdn=fqdn)


def _address(text: str) -> IPAddress | None:
    if "%" in text:
        return None
    try:
        return ip_address(text)
    except ValueError:
        return None


def _host(node: NodeLike, line: int, notices: list[Notice]) -> Host | None:
    """One node as a host of the inventory, or ``None`` when it cannot be one."""
    if not FQDN_RE.match(node.name):
        notices.append(Notice(node.name, NoticeKind.BAD_NAME,
                              f"name {node.name!r} is not an RFC 1123 name; left out", False))
        return None
    addresses: dict[Family, IPAddress] = {}
    for text in node.internal_ips:
        address = _address(text)
        if address is None:
            notices.append(Notice(node.name, NoticeKind.BAD_ADDRESS,
                                  f"InternalIP {text!r} is not an IP address; ignored", True))
        else:
            addresses.setdefault(Family.of(address), address)
    if not addresses:
        notices.append(Notice(node.name, NoticeKind.NO_INTERNAL_IP,
                              "has no InternalIP in status.addresses: no other node can "
                              "route to it, and it is left out", False))
        return None
    cidrs: dict[Family, IPNetwork] = {}
    for text in node.pod_cidrs:
        try:
            cidr = ip_network(text, strict=True)
        except ValueError:
            notices.append(Notice(node.name, NoticeKind.BAD_POD_CIDR,
                                  f"pod CIDR {text!r} is not a network address; ignored", True))
            continue
        family = Family.of(cidr)
        if family not in addresses:
            notices.append(Notice(
                node.name, NoticeKind.NO_ADDRESS_OF_FAMILY,
                f"IPv{family.value} pod CIDR {cidr} but no IPv{family.value} InternalIP "
                "to route it via; ignored", True))
        elif family in cidrs:
            notices.append(Notice(node.name, NoticeKind.BAD_POD_CIDR,
                                  f"a second IPv{family.value} pod CIDR {cidr}; ignored", True))
        else:
            cidrs[family] = cidr
    if not cidrs:
        notices.append(Notice(node.name, NoticeKind.NO_POD_CIDR,
                              "has no spec.podCIDRs yet: it gets routes to the other nodes, "
                              "but no route leads to its pods", True))
    return Host(name=node.name, addresses=tuple(addresses[f] for f in sorted(addresses)),
                pod_cidrs=tuple(cidrs[f] for f in sorted(cidrs)), fqdn=node.fqdn,
                source=SOURCE, line=line)


def nodes_inventory(nodes: Iterable[NodeLike]) -> tuple[Inventory, tuple[Notice, ...]]:
    """The inventory of every routable node, oldest first, and a notice for the rest."""
    notices: list[Notice] = []
    ordered = sorted(nodes, key=lambda n: (n.created, n.name))
    hosts = [h for line, node in enumerate(ordered, start=1)
             if (h := _host(node, line, notices)) is not None]
    # Leaving a host out never creates a problem for another, so each round removes at
    # least one host and the loop ends (usually after one round).
    while problems := validate(hosts, later_loses=True):
        rejected: dict[int, str] = {}
        for problem in problems:
            rejected.setdefault(problem.line, problem.message)
        kept = [h for h in hosts if h.line not in rejected]
        if len(kept) == len(hosts):  # a problem no host owns: cannot happen; never loop
            break
        notices += [Notice(h.name, NoticeKind.REJECTED, f"left out: {rejected[h.line]}", False)
                    for h in hosts if h.line in rejected]
        hosts = kept
    return Inventory(SOURCE, tuple(hosts)), tuple(notices)


def lacks_pod_cidrs(inventory: Inventory) -> bool:
    """Nodes, and not one with a pod CIDR: the cluster does not allocate them."""
    return len(inventory) > 0 and all(h.is_control_plane for h in inventory)


def strict_inventory(objects: Iterable[Mapping[str, Any]],
                     ) -> tuple[Inventory, tuple[Notice, ...]]:
    """The inventory of a ``podroutes -i kubernetes`` run, held to the rules of an
    inventory file: any Node that would be left out or lose a value is a problem (the
    command exits 2 before any host is contacted), as is a cluster with no Node or no pod
    CIDR at all. What remains to be said (nodes without a pod CIDR, which get routes like
    the KTHW server) comes back as notices."""
    fields = [f for obj in objects if (f := node_fields(obj)) is not None]
    inventory, notices = nodes_inventory(fields)
    if not fields:
        raise InventoryError([Problem(SOURCE, 0, "nodes", "the cluster has no Node objects")])
    problems = [Problem(SOURCE, 0, f"nodes/{n.node}", n.message) for n in notices
                if n.kind is not NoticeKind.NO_POD_CIDR]
    if problems:
        raise InventoryError(problems)
    if lacks_pod_cidrs(inventory):
        raise InventoryError([Problem(SOURCE, 0, "spec.podCIDRs",
                                      f"{NO_POD_CIDRS}: -i machines.txt")])
    return inventory, notices


# --- an inventory file against the cluster ---------------------------------------------


class DisagreementKind(enum.StrEnum):
    NOT_IN_CLUSTER = "not-in-cluster"
    NOT_IN_INVENTORY = "not-in-inventory"
    POD_CIDR = "pod-cidr-differs"
    ADDRESS = "address-differs"


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One way an inventory file and the cluster's Nodes differ about one node.
    ``inventory`` and ``cluster`` are the two values as text (``None``: none there)."""

    kind: DisagreementKind
    node: str
    message: str
    family: Family | None = None
    inventory: str | None = None
    cluster: str | None = None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def disagreements(inventory: Inventory, cluster: Inventory, *,
                  compare_pod_cidrs: bool = True) -> tuple[Disagreement, ...]:
    """Where ``inventory`` (a file) and ``cluster`` (from Nodes) differ, node by node in
    the file's order, then the nodes only the cluster has. A host of the file without a
    pod CIDR (the KTHW ``server``, which runs no kubelet) may have no Node. Pod CIDRs are
    compared only if ``compare_pod_cidrs`` (not when the cluster has none at all:
    :data:`NO_POD_CIDRS`)."""
    theirs = {h.name: h for h in cluster}
    ours = {h.name for h in inventory}
    found: list[Disagreement] = []
    for host in inventory:
        node = theirs.get(host.name)
        if node is None:
            if host.is_control_plane:  # the KTHW server runs no kubelet: no Node, rightly
                continue
            found.append(Disagreement(
                DisagreementKind.NOT_IN_CLUSTER, host.name,
                f"{host.name} is in {inventory.source} but no routable Node has that name"))
            continue
        for family in Family:
            mine, other = host.address(family), node.address(family)
            if mine != other:
                found.append(Disagreement(
                    DisagreementKind.ADDRESS, host.name,
                    f"{host.name}'s IPv{family.value} address is {mine or 'none'} in "
                    f"{inventory.source} but its Node's InternalIP is {other or 'none'}",
                    family, _text(mine), _text(other)))
            if not compare_pod_cidrs:
                continue
            mine_cidr, other_cidr = host.pod_cidr(family), node.pod_cidr(family)
            if mine_cidr != other_cidr:
                found.append(Disagreement(
                    DisagreementKind.POD_CIDR, host.name,
                    f"{host.name}'s IPv{family.value} pod CIDR is {mine_cidr or 'none'} in "
                    f"{inventory.source} but {other_cidr or 'none'} in its Node's "
                    "spec.podCIDRs", family, _text(mine_cidr), _text(other_cidr)))
    found += [Disagreement(DisagreementKind.NOT_IN_INVENTORY, node.name,
                           f"Node {node.name} is in the cluster but not in {inventory.source}")
              for node in cluster if node.name not in ours]
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Comparison:
    """An inventory file against the cluster, for ``doctor --compare-kubernetes``: every
    disagreement, the notices about Nodes the mapping left out or cut down, and whether
    pod CIDRs could be compared at all (not when no Node has one)."""

    disagreements: tuple[Disagreement, ...]
    notices: tuple[Notice, ...]
    pod_cidrs_compared: bool


def compare(inventory: Inventory, objects: Iterable[Mapping[str, Any]]) -> Comparison:
    """Compare ``inventory`` with the Node objects of a cluster (as listed)."""
    cluster, notices = nodes_inventory(f for obj in objects if (f := node_fields(obj)))
    compared = not lacks_pod_cidrs(cluster)
    if not compared:  # said once (NO_POD_CIDRS), not once per node
        notices = tuple(n for n in notices if n.kind is not NoticeKind.NO_POD_CIDR)
    return Comparison(disagreements(inventory, cluster, compare_pod_cidrs=compared),
                      notices, compared)
