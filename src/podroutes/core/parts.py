"""A destination network split where the kernel's decision may change, as a pure model:
:class:`Part`, :func:`parts_of`, :func:`sample_addresses`.

:meth:`podroutes.core.forwarding.Fib.decide_network` finds the boundaries inside a
network (more specific routes and rule selectors) and splits it here, deciding each part
by its first address; no address is enumerated, so a /64 costs what its boundaries cost.
:func:`sample_addresses` picks the addresses of a network worth asking the kernel about
(``ip route get``) to confirm the model; the kernel-namespace tests use it.

Pure: values in, values out; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from podroutes.core.decision import Decision, DecisionKind
from podroutes.core.model import IPAddress, IPNetwork

#: At most this many parts per destination network; past it, the rest is UNCERTAIN.
MAX_PARTS = 4096


@dataclass(frozen=True, slots=True)
class Part:
    """A sub-network of a destination over which the kernel decides the same way."""

    network: IPNetwork
    decision: Decision


def parts_of(dst: IPNetwork, bounds: Iterable[tuple[int, int]],
             decide: Callable[[IPAddress], Decision]) -> list[Part]:
    """``dst`` split by ``bounds`` (network and prefix length of each more specific prefix
    inside it) into the fewest prefixes none of which contains a boundary, in address
    order, each decided by ``decide`` of its first address. Past :data:`MAX_PARTS` parts,
    the prefixes left whole are UNCERTAIN parts."""
    pieces, crowded = _split(int(dst.network_address), dst.prefixlen, dst.max_prefixlen,
                             sorted(bounds))
    make = type(dst)
    out = []
    for network, length in pieces:
        piece = make((network, length))
        if (network, length) in crowded:
            decision = Decision(DecisionKind.UNCERTAIN, reason=f"{dst} splits into more "
                                f"than {MAX_PARTS} parts; {piece} was not split further")
        else:
            decision = decide(piece.network_address)
        out.append(Part(piece, decision))
    return out


def sample_addresses(dst: IPNetwork, parts: Sequence[Part] = (),
                     limit: int = 64) -> list[IPAddress]:
    """The addresses of ``dst`` to ask the kernel about (``ip route get``) to confirm the
    model: the first host address (network + 1), the last (IPv4: broadcast - 1), the
    first address of one part per distinct outcome, then of the other parts; in that
    order, without repeats, at most ``limit``. A /31, /32, /127 or /128 gives its own
    addresses."""
    first = int(dst.network_address)
    size = dst.num_addresses
    if size <= 2:
        wanted = list(range(first, first + size))
    else:
        wanted = [first + 1, first + size - (2 if dst.version == 4 else 1)]
    shown: list[Decision] = []
    rest: list[int] = []
    for p in parts:
        start = int(p.network.network_address)
        if any(p.decision.same_outcome(d) for d in shown):
            rest.append(start)
        else:
            shown.append(p.decision)
            wanted.append(start)
    make = IPv4Address if dst.version == 4 else IPv6Address
    unique = dict.fromkeys(n for n in wanted + rest if first <= n < first + size)
    return [make(n) for n in list(unique)[:limit]]


def _split(first: int, length: int, width: int, bounds: list[tuple[int, int]],
           ) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """The fewest prefixes that cover (first, length), none strictly containing a prefix
    of ``bounds`` (all inside it), in address order; and those left whole because of
    :data:`MAX_PARTS`."""
    out: list[tuple[int, int]] = []
    crowded: set[tuple[int, int]] = set()
    stack = [(first, length, [b for b in bounds if b[1] > length])]
    while stack:
        network, plen, inner = stack.pop()
        if not inner:
            out.append((network, plen))
        elif len(out) + len(stack) + 2 > MAX_PARTS:
            out.append((network, plen))
            crowded.add((network, plen))
        else:
            upper = network + (1 << (width - plen - 1))
            stack.append((upper, plen + 1,
                          [b for b in inner if b[0] >= upper and b[1] > plen + 1]))
            stack.append((network, plen + 1,
                          [b for b in inner if b[0] < upper and b[1] > plen + 1]))
    return out, crowded
