"""``doctor --probe``: an active check that needs no pods, and what it can and cannot prove.

Pure. From each node, one ping per other node, sourced from the node's own bridge
address (the first address of its pod CIDR) to the other node's bridge address, both
families, all at once, in the same round trip as doctor's facts. The request leaves by
the route for the other node's pod CIDR and is received on the other node's node
interface (its reverse-path filter and input firewall see it); the reply comes back by
the route for this node's pod CIDR. So a reply proves both directions of the pod CIDR
routes between the two nodes. It does not prove forwarding: both bridge addresses are
local to their nodes, so neither packet is forwarded (``ip_forward`` and the FORWARD
chain are judged from the facts), and no pod's own veth or address is involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from podroutes.core.iproute import text_of
from podroutes.core.model import Family, Host, Inventory, IPAddress

#: What one probe proves and what it cannot, for the output.
PROVES = ("a reply proves the routes between the two nodes' pod CIDRs both ways (and "
          "the receiving node's reverse-path filter); it does not prove forwarding: both "
          "ends are the nodes' own bridge addresses, so nothing is forwarded")

#: A constant script; its arguments are the source address then the targets, as text made
#: from address values. One ping per target, in parallel; one ``ok|fail ADDR`` line each.
PROBE_SCRIPT = r"""
src=$1; shift
for t in "$@"; do
  ( if ping -n -q -c 1 -W 1 -I "$src" "$t" >/dev/null 2>&1; then echo "ok $t";
    else echo "fail $t"; fi ) &
done
wait
"""


@dataclass(frozen=True, slots=True)
class Probe:
    """One ping from a node's bridge address to another node's."""

    source: IPAddress
    target: IPAddress
    target_host: str
    answered: bool


def bridge_address(host: Host, family: Family) -> IPAddress | None:
    """The first address of the host's pod CIDR of ``family`` (its bridge's)."""
    cidr = host.pod_cidr(family)
    return None if cidr is None else cidr.network_address + 1


def targets(host: Host, inventory: Inventory) -> dict[Family, list[tuple[IPAddress, str]]]:
    """Per family, the other nodes' bridge addresses this host pings."""
    out: dict[Family, list[tuple[IPAddress, str]]] = {}
    for family in Family:
        if bridge_address(host, family) is None:
            continue
        out[family] = [(a, h.name) for h in inventory if h.name != host.name
                       and (a := bridge_address(h, family)) is not None]
    return out


def probe_commands(host: Host, inventory: Inventory) -> list[tuple[str, ...]]:
    """One argv per family with something to ping (none for a host without pods)."""
    commands = []
    for family, wanted in targets(host, inventory).items():
        source = bridge_address(host, family)
        if wanted and source is not None:
            commands.append(("sh", "-c", PROBE_SCRIPT, "sh", text_of(source),
                             *(text_of(a) for a, _ in wanted)))
    return commands


def parse_probes(host: Host, inventory: Inventory, outputs: Sequence[str]) -> list[Probe]:
    """The outputs of :func:`probe_commands` (in its order) as probes; a target with no
    line (the script was cut short) counts as unanswered."""
    answered: dict[IPAddress, bool] = {}
    for text in outputs:
        for line in text.splitlines():
            verdict, _, address = line.partition(" ")
            try:
                answered[ip_address(address.strip())] = verdict == "ok"
            except ValueError:
                continue
    out = []
    for family, wanted in targets(host, inventory).items():
        source = bridge_address(host, family)
        assert source is not None
        out += [Probe(source, a, name, answered.get(a, False)) for a, name in wanted]
    return out


def unanswered(probes: Mapping[str, Sequence[Probe]]) -> dict[str, list[Probe]]:
    """Per host, its probes that got no reply."""
    return {h: [p for p in ps if not p.answered] for h, ps in probes.items()
            if any(not p.answered for p in ps)}
