"""The forwarding model (:mod:`podroutes.core.forwarding`, with
:mod:`~podroutes.core.rules`, :mod:`~podroutes.core.parts` and
:mod:`~podroutes.core.routeget`) against a real kernel, by Hypothesis: random routes
inside and around a pod CIDR (more specific prefixes, metrics,
unicast/blackhole/unreachable/prohibit/throw/local types, multipath, a second table 100)
and random rules (``from``/``to``/``iif``/``not``/``fwmark`` selectors, lookup, goto,
nop and drop actions, ``suppress_prefixlength``), installed with ``ip -batch``; then for
the pod CIDR's sample addresses the model's decision, from ``ip -j rule show`` and
``ip -j route show table all`` read back through the parsers, must agree with
``ip -j route get``, for the host's own packets and for a pod's forwarded ones.

Root: one namespace per test (``prt<hex>-fwk``, with its peers in ``prt<hex>-fwkp``),
made once and flushed between examples (the rules and routes an example added are
deleted); both are deleted by name, also when the test fails. Nothing touches the root
namespace and no packet is sent (``ip route get`` only asks).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from podroutes.core.forwarding import Fib, tables_of
from podroutes.core.iproute import parse_routes
from podroutes.core.model import Family, IPAddress, IPNetwork
from podroutes.core.parts import sample_addresses
from podroutes.core.routeget import agrees, parse_route_get, parse_route_get_error
from podroutes.core.rules import parse_rules
from tests.netns.conftest import unique_name

pytestmark = pytest.mark.root

V4, V6 = Family.V4, Family.V6
WIDTH = {V4: 32, V6: 128}
POD = {V4: ip_network("10.200.1.0/24"), V6: ip_network("fd00:200:1::/64")}
AROUND = {V4: ip_network("10.200.0.0/22"), V6: ip_network("fd00:200::/62")}
LENGTHS = {V4: [0, 20, 22, 23, 24, 24, 25, 25, 26, 27, 28, 30, 32],
           V6: [0, 60, 62, 63, 64, 64, 65, 65, 66, 67, 68, 72, 128]}
GATEWAYS = {V4: ["192.168.10.2", "192.168.10.3", "192.168.20.2"],
            V6: ["fd00:10::2", "fd00:10::3", "fd00:20::2"]}
POD_SOURCE = {V4: "10.200.0.5", V6: "fd00:200::5"}
SOURCES = {V4: ["10.200.0.0/24", "10.0.0.0/8", "0.0.0.0/8", "192.168.10.0/24"],
           V6: ["fd00:200::/64", "fd00::/8", "::/1", "fd00:10::/64"]}
METRICS = [None, 5, 100, 2000]
DEFAULT_METRIC = {V4: 0, V6: 1024}
#: The kernel's route to the bridge's own CIDR, in the same slot notation.
CONNECTED = {V4: (254, ip_network("10.200.0.0/24"), 0), V6: (254, ip_network("fd00:200::/64"), 256)}
OWN, TEST = 147, 150  # route protocols: the planned route, the generated ones


class Node:
    """The namespace the routes and rules go into, its peers' namespace beside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def ip(self, *argv: str, stdin: str | None = None, check: bool = True,
           ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["ip", "-n", self.name, *argv], input=stdin,
                              capture_output=True, text=True, timeout=30, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"ip {' '.join(argv)} failed: {done.stderr}\n{stdin or ''}")
        return done


@pytest.fixture
def node() -> Iterator[Node]:
    name = f"{unique_name()}-fwk"
    peer = name + "p"
    try:
        for ns in (name, peer):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv6.conf.all.forwarding=1"], check=True)
        n, p = Node(name), Node(peer)
        for link in ("eth0", "eth1"):
            n.ip("link", "add", link, "type", "veth", "peer", "name", link, "netns", peer)
        n.ip("link", "add", "cni0", "type", "bridge")
        n.ip("link", "add", "veth0", "type", "veth", "peer", "name", "pod0")
        n.ip("link", "set", "veth0", "master", "cni0")
        for i, link in ((1, "eth0"), (2, "eth1")):
            n.ip("addr", "add", f"192.168.{i}0.1/24", "dev", link)
            n.ip("addr", "add", f"fd00:{i}0::1/64", "dev", link, "nodad")
            p.ip("link", "set", link, "up")
        n.ip("addr", "add", "10.200.0.1/24", "dev", "cni0")
        n.ip("addr", "add", "fd00:200::1/64", "dev", "cni0", "nodad")
        for link in ("lo", "eth0", "eth1", "cni0", "veth0", "pod0"):
            n.ip("link", "set", link, "up")
        yield n
    finally:
        for ns in (name, peer):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


@dataclass(frozen=True)
class Setup:
    """One example: the ``ip -batch`` lines, the rule priorities to delete afterwards,
    and a few more addresses of the pod CIDR to ask about (offsets)."""

    family: Family
    lines: tuple[str, ...]
    priorities: tuple[int, ...]
    offsets: tuple[int, ...]


def prefix(draw: st.DrawFn, family: Family, lengths: list[int]) -> IPNetwork:
    """A prefix inside the pod CIDR (mostly) or around it."""
    within = POD[family] if draw(st.integers(0, 9)) < 8 else AROUND[family]
    address = int(within.network_address) + draw(st.integers(0, within.num_addresses - 1))
    length = draw(st.sampled_from(lengths))
    shift = WIDTH[family] - length
    return type(within)((address >> shift << shift, length))


@st.composite
def setups(draw: st.DrawFn, family: Family) -> Setup:
    gateways = GATEWAYS[family]
    lines = [f"route add {POD[family]} via {gateways[0]} proto {OWN}"]
    slots = {(254, POD[family], DEFAULT_METRIC[family]), CONNECTED[family]}
    for _ in range(draw(st.integers(0, 12))):
        dst = prefix(draw, family, LENGTHS[family])
        table = draw(st.sampled_from([254, 100]))
        metric = draw(st.sampled_from(METRICS))
        slot = (table, dst, DEFAULT_METRIC[family] if metric is None else metric)
        kind = draw(st.sampled_from(["via", "via", "via", "dev", "blackhole", "unreachable",
                                     "prohibit", "throw", "multipath", "local"]))
        if slot in slots or (kind == "local" and not dst.prefixlen):
            # Not a local default route: the gateways of its table would become local and
            # their routes leave by lo, which a multipath route's parsed form cannot show.
            continue
        slots.add(slot)
        tail = f"proto {TEST}" + (f" metric {metric}" if metric else "") + f" table {table}"
        if kind == "via":
            lines.append(f"route add {dst} via {draw(st.sampled_from(gateways))} {tail}")
        elif kind == "dev":
            lines.append(f"route add {dst} dev {draw(st.sampled_from(['eth0', 'eth1']))} "
                         f"{tail}")
        elif kind == "local":
            lines.append(f"route add local {dst} dev lo {tail}")
        elif kind == "multipath":
            lines.append(f"route add {dst} {tail} nexthop via {gateways[1]} "
                         f"nexthop via {gateways[2]}")
        else:
            lines.append(f"route add {kind} {dst} {tail}")
    priorities = sorted(draw(st.lists(st.integers(100, 200), max_size=5, unique=True)))
    for p in priorities:
        words = [f"rule add pref {p}"]
        if draw(st.integers(0, 5)) == 0:
            words.append("not")
        source = draw(st.sampled_from([None, None, *SOURCES[family]]))
        if source:
            words.append(f"from {source}")
        if draw(st.integers(0, 2)):
            words.append(f"to {prefix(draw, family, [n for n in LENGTHS[family] if n])}")
        iif = draw(st.sampled_from([None, None, "cni0", "lo"]))
        if iif:
            words.append(f"iif {iif}")
        if draw(st.integers(0, 5)) == 0:
            words.append("fwmark 0x1")
        action = draw(st.sampled_from(["lookup 100", "lookup 100", "lookup 100", "lookup main",
                                       "blackhole", "unreachable", "prohibit", "goto", "nop"]))
        if action == "goto":
            action = f"goto {draw(st.sampled_from([q for q in priorities if q > p] + [250]))}"
        words.append(action)
        if action.startswith("lookup") and draw(st.booleans()):
            length = POD[family].prefixlen
            words.append(f"suppress_prefixlength "
                         f"{draw(st.sampled_from([0, length - 1, length]))}")
        lines.append(" ".join(words))
    offsets = draw(st.lists(st.integers(0, POD[family].num_addresses - 1), min_size=2,
                            max_size=2))
    return Setup(family, tuple(lines), tuple(priorities), tuple(offsets))


def read_back(node: Node, family: Family) -> Fib:
    rules = parse_rules(node.ip("-j", family.flag, "rule", "show").stdout, family)
    routes = parse_routes(node.ip("-j", family.flag, "route", "show", "table", "all").stdout,
                          family)
    return Fib(rules, tables_of(routes))


def flush(node: Node, setup: Setup) -> None:
    """Delete what the example added (whatever of it the kernel took): its rules by
    priority, table 100, and the generated and planned routes of main by protocol."""
    f = setup.family.flag
    lines = [f"rule del pref {p}" for p in setup.priorities]
    lines += ["route flush table 100", f"route flush table main proto {TEST}",
              f"route flush table main proto {OWN}"]
    node.ip(f, "-force", "-batch", "-", stdin="\n".join(lines) + "\n", check=False)


def mismatches(node: Node, setup: Setup, record: bool) -> list[str]:
    """What the model and the kernel disagree on. The model decides with ``mark=0``, as
    ``ip route get`` asks, and without a mark, when it may be UNCERTAIN: then the
    kernel's answer must be one of its candidates. ``record``: Hypothesis events."""
    family = setup.family
    fib = read_back(node, family)
    pod = POD[family]
    probes: list[IPAddress] = sample_addresses(pod, fib.decide_network(pod), limit=14)
    probes += [pod.network_address + o for o in setup.offsets]
    out = []
    for address in probes:
        for how in ([], ["from", POD_SOURCE[family], "iif", "cni0"]):
            kwargs: dict[str, Any] = {}
            if how:
                kwargs = {"src": ip_address(POD_SOURCE[family]), "iif": "cni0"}
            decision = fib.decide(address, mark=0, **kwargs)
            unmarked = fib.decide(address, **kwargs)
            if record:
                event(f"decision: {decision.kind.value}")
                generated = decision.priority in setup.priorities
                event("decided by a generated rule" if generated else "by a default rule")
                event(f"without a mark: {unmarked.kind.value}")
            done = node.ip("-j", "route", "get", str(address), *how, check=False)
            answer = (parse_route_get(done.stdout, family) if done.returncode == 0
                      else parse_route_get_error(done.stderr))
            for d in (decision, unmarked):
                if not agrees(d, answer):
                    out.append(f"{address} {' '.join(how)}: model {d}; kernel {answer}")
    return out


def check(node: Node, setup: Setup, record: bool = True) -> None:
    try:
        # -force: a line the kernel refuses (e.g. IPv6 checks a gateway in the route's own
        # table first, so `local ::/0 dev lo table 100` makes later gateways there invalid)
        # is skipped; the model decides from what was installed, read back.
        added = node.ip(setup.family.flag, "-force", "-batch", "-",
                        stdin="\n".join(setup.lines) + "\n", check=False)
        if record:
            refused = added.stderr.count("Command failed")
            event("every line installed" if not refused else "some lines refused")
        wrong = mismatches(node, setup, record)
    finally:
        flush(node, setup)
    assert not wrong, "\n".join(["the model and the kernel disagree:", *wrong,
                                 "after:", *setup.lines])


#: 60 examples a family, the same ones every run; PODROUTES_FORWARDING_EXAMPLES=N runs N
#: random ones instead (a soak: ``sudo ... pytest tests/netns/test_forwarding_kernel.py``).
_SOAK = int(os.environ.get("PODROUTES_FORWARDING_EXAMPLES", "0"))
EXAMPLES = settings(max_examples=_SOAK or 60, deadline=None, derandomize=not _SOAK,
                    database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@EXAMPLES
@given(setups(V4))
def test_the_model_decides_ipv4_as_the_kernel_does(node: Node, setup: Setup) -> None:
    check(node, setup)


@EXAMPLES
@given(setups(V6))
def test_the_model_decides_ipv6_as_the_kernel_does(node: Node, setup: Setup) -> None:
    check(node, setup)


def test_flushing_leaves_the_namespace_as_it_was(node: Node) -> None:
    before = [node.ip("-j", f.flag, what, "show", *extra).stdout for f in Family
              for what, extra in (("rule", ()), ("route", ("table", "all")))]
    for family in Family:
        setup = Setup(family, (f"route add {POD[family]} via {GATEWAYS[family][0]} proto {OWN}",
                               f"route add blackhole {POD[family]} proto {TEST} table 100",
                               f"rule add pref 150 to {POD[family]} lookup 100"), (150,), ())
        check(node, setup, record=False)
    after = [node.ip("-j", f.flag, what, "show", *extra).stdout for f in Family
             for what, extra in (("rule", ()), ("route", ("table", "all")))]
    assert after == before
