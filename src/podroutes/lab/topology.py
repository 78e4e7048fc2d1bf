"""The lab's addressing plan as values, and the inventories that describe it.

Pure: numbers in, :class:`Machine` values and inventory text out. Called by
:mod:`podroutes.lab.netns` (which builds what these values say) and by tests that check the
plan without root. The seed's addresses: jumpbox 192.168.10.10, server .100, node-I
.101+I with pod CIDR 10.200.I.0/24 (cni0 .1, pods .2 and up). Dual-stack adds, with the
same host numbers written as hex digits, fd00:10::10, fd00:10::100, fd00:10::101+I, and
pod CIDRs fd00:200:I::/64 (I in hex; cni0 ::1, pods ::2 and up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

NODE_NETWORK = IPv4Network("192.168.10.0/24")
NODE_NETWORK6 = IPv6Network("fd00:10::/64")
DOMAIN = "kubernetes.local"


@dataclass(frozen=True, slots=True)
class Machine:
    """A lab machine: the jumpbox, the server, a node, or a pod (on a node's cni0)."""

    name: str
    role: str  # jumpbox | server | node | pod
    address: str
    pod_cidr: str | None = None
    node: str | None = None  # a pod's node
    address6: str | None = None  # with --dual-stack
    pod_cidr6: str | None = None

    def address_of(self, family: int) -> str | None:
        return self.address if family == 4 else self.address6

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"


def _v6(number: int, dual_stack: bool) -> str | None:
    """192.168.10.101 -> fd00:10::101: the same digits, so the two are easy to pair."""
    return str(NODE_NETWORK6.network_address + int(str(number), 16)) if dual_stack else None


def machines(nodes: int, dual_stack: bool = False) -> list[Machine]:
    """The jumpbox, the server and node-0..nodes-1."""
    hosts = NODE_NETWORK.network_address
    out = [Machine("jumpbox", "jumpbox", str(hosts + 10), address6=_v6(10, dual_stack)),
           Machine("server", "server", str(hosts + 100), address6=_v6(100, dual_stack))]
    for i in range(nodes):
        out.append(Machine(
            f"node-{i}", "node", str(hosts + 101 + i), pod_cidr=f"10.200.{i}.0/24",
            address6=_v6(101 + i, dual_stack),
            pod_cidr6=str(IPv6Network(f"fd00:200:{i:x}::/64")) if dual_stack else None))
    return out


def pods(nodes: Sequence[Machine], per_node: int,
         subnets: Mapping[str, str] | None = None) -> list[Machine]:
    """``per_node`` pods on every machine with a pod CIDR, from the CIDR's .2 / ::2 up;
    ``subnets`` gives a node's pods another IPv4 subnet (what its CNI config hands out
    when it differs from the inventory, ``lab up --cni-subnet``)."""
    out = []
    for node in nodes:
        if node.pod_cidr is None:
            continue
        base = IPv4Network((subnets or {}).get(node.name, node.pod_cidr)).network_address
        base6 = IPv6Network(node.pod_cidr6).network_address if node.pod_cidr6 else None
        for p in range(per_node):
            out.append(Machine(f"{node.name}-pod-{p}", "pod", str(base + 2 + p), node=node.name,
                               address6=str(base6 + 2 + p) if base6 else None))
    return out


def machines_txt(lab: str, hosts: Sequence[Machine], dual_stack: bool = False) -> str:
    """The lab's KTHW ``machines.txt`` (the jumpbox is no cluster machine). Dual-stack
    hosts use the documented comma form: ``IPV4,IPV6 FQDN HOST CIDR4,CIDR6``."""
    form = "IPV4,IPV6 FQDN HOSTNAME [POD_SUBNET,POD_SUBNET6]" if dual_stack else (
        "IPV4 FQDN HOSTNAME [POD_SUBNET]")
    lines = [f"# machines.txt for podroutes lab {lab!r} ({form})"]
    for m in hosts:
        if m.role in ("server", "node"):
            addresses = ",".join(a for a in (m.address, m.address6) if a)
            cidrs = ",".join(c for c in (m.pod_cidr, m.pod_cidr6) if c)
            lines.append(" ".join(x for x in (addresses, m.fqdn, m.name, cidrs) if x))
    return "\n".join(lines) + "\n"


def inventory_yaml(lab: str, hosts: Sequence[Machine]) -> str:
    """The same hosts as :func:`machines_txt`, in the YAML inventory form."""
    lines = [f"# inventory for podroutes lab {lab!r}: the hosts of machines.txt, as YAML",
             "hosts:"]
    for m in hosts:
        if m.role not in ("server", "node"):
            continue
        lines += [f"  - name: {m.name}", f"    fqdn: {m.fqdn}", f"    ipv4: {m.address}"]
        if m.address6:
            lines.append(f"    ipv6: {m.address6}")
        if cidrs := [c for c in (m.pod_cidr, m.pod_cidr6) if c]:
            lines.append(f"    pod_cidrs: [{', '.join(cidrs)}]")
    return "\n".join(lines) + "\n"
