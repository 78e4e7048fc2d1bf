"""Validation of what node addresses and pod CIDRs may be, in both families.

The malformed corpus (test_bad_inventories.py) holds one file per rejection; these tests
pin the boundaries: what is still accepted next to each rule, messages for cases the
corpus does not hold, and that the checks stay fast on a large dual-stack inventory.
"""

from __future__ import annotations

import time

import pytest

from podroutes.core.errors import InventoryError, Problem
from podroutes.inventory import load


def problems(text: str, source: str = "machines.txt") -> list[Problem]:
    with pytest.raises(InventoryError) as caught:
        load(text, source)
    return caught.value.problems


def node(n: int, cidr4: str | None = None, cidr6: str | None = None,
         address6: str | None = None) -> str:
    addresses = f"192.168.10.{100 + n}" + (f",{address6}" if address6 else "")
    cidrs = ",".join(c for c in (cidr4, cidr6) if c)
    return f"{addresses} node-{n}.k8s.local node-{n} {cidrs}".rstrip() + "\n"


@pytest.mark.parametrize("cidrs", [
    ("10.200.0.0/30", "fd00:200::/126"),  # the smallest that still hold a bridge and a pod
    ("240.0.0.0/24", "fd00:200::/48"),  # class E is routable on Linux; a short v6 prefix
    ("10.200.0.0/16", "2001:db8:200::/64"),  # global unicast IPv6
    ("100.64.0.0/24", "fd00:200::/80"),  # CGNAT space; longer than /64 is fine
])
def test_accepted_pod_cidrs(cidrs: tuple[str, str]) -> None:
    inv = load(node(0, *cidrs, address6="fd00:10::100"), "m.txt")
    assert [str(c) for c in inv.hosts[0].pod_cidrs] == list(cidrs)


def test_a_dual_stack_kthw_inventory_is_accepted() -> None:
    text = ("192.168.10.100,fd00:10::100 server.kubernetes.local server\n"
            + node(1, "10.200.0.0/24", "fd00:200::/64", "fd00:10::101")
            + node(2, "10.200.1.0/24", "fd00:200:1::/64", "fd00:10::102"))
    assert len(load(text, "m.txt")) == 3


def test_a_link_local_address_is_rejected_even_where_it_is_no_gateway() -> None:
    [p] = problems(node(0, "10.200.0.0/24", address6="fe80::1"))
    assert (p.line, p.field) == (1, "IPV4")
    assert "reachable from every host without naming an interface" in p.message
    assert "give node-0 a global or unique local (fd00::/8) IPv6 address" in p.message


@pytest.mark.parametrize(("address", "phrase"), [
    ("0.0.0.5", "is in the 'this network' range 0.0.0.0/8"),
    ("169.254.10.1", "is in the link-local range 169.254.0.0/16"),
    ("224.0.0.1", "is in the multicast range 224.0.0.0/4"),
    ("255.255.255.255", "is the limited broadcast address 255.255.255.255"),
])
def test_special_ipv4_node_addresses(address: str, phrase: str) -> None:
    [p] = problems(f"{address} a.local a\n")
    assert phrase in p.message and p.message.endswith("it cannot be a node address")


@pytest.mark.parametrize(("address", "phrase"), [
    ("::1", "::1 is the loopback address ::1"),
    ("ff02::1", "ff02::1 is in the multicast range ff00::/8"),
])
def test_special_ipv6_node_addresses(address: str, phrase: str) -> None:
    [p] = problems(f"hosts:\n  - name: a\n    ipv6: '{address}'\n", "inv.yaml")
    assert (p.line, p.field) == (3, "ipv6")
    assert phrase in p.message


@pytest.mark.parametrize(("cidr", "phrase"), [
    ("127.0.0.0/16", "is inside the loopback range 127.0.0.0/8"),
    ("64.0.0.0/2", "overlaps the loopback range 127.0.0.0/8"),
    ("224.0.0.0/24", "is inside the multicast range"),
])
def test_pod_cidrs_touching_special_ipv4_ranges(cidr: str, phrase: str) -> None:
    found = problems(node(0, cidr))
    assert any(phrase in p.message and p.field == "POD_SUBNET" for p in found), found


@pytest.mark.parametrize(("cidr", "phrase"), [
    ("::1/128", "pod CIDR ::1/128 is the loopback address ::1"),
    ("::/0", "pod CIDR ::/0 is the whole IPv6 address space"),
    ("8000::/1", "overlaps the link-local range fe80::/10"),
])
def test_pod_cidrs_touching_special_ipv6_ranges(cidr: str, phrase: str) -> None:
    found = problems(node(0, cidr6=cidr, address6="fd00:10::100"))
    assert any(phrase in p.message for p in found), found


def test_an_ipv4_mapped_pod_cidr_overlapping_nothing_is_still_rejected() -> None:
    [p] = problems(node(0, "10.200.0.0/24", "::ffff:10.99.0.0/120", "fd00:10::100"))
    assert "is IPv4-mapped (::ffff:0:0/96): it is 10.99.0.0/24 written as IPv6" in p.message
    assert "overlaps" not in p.message and "node address" not in p.message


def test_an_ipv4_mapped_pod_cidr_holding_a_node_address() -> None:
    found = problems(node(0, "10.200.0.0/24")
                     + node(1, "10.200.1.0/24", "::ffff:192.168.10.0/120", "fd00:10::101"))
    [p] = [p for p in found if "IPv4-mapped" in p.message]
    assert p.line == 2
    assert "it holds the IPv4 node address 192.168.10.100 of node-0 (line 1)" in p.message


def test_a_pod_cidr_inside_a_node_64_is_reported_once_per_cidr() -> None:
    text = ("hosts:\n"
            "  - {name: a, ipv6: 'fd00:10::1', pod_cidr: 'fd00:10::1:0/112'}\n"
            "  - {name: b, ipv6: 'fd00:10::2', pod_cidr: 'fd00:10::2:0/112'}\n"
            "  - {name: c, ipv6: 'fd00:10::3', pod_cidr: 'fd00:200::/64'}\n")
    found = problems(text, "inv.yaml")
    assert [(p.line, p.field) for p in found] == [(2, "pod_cidr"), (3, "pod_cidr")]
    assert all("lies inside fd00:10::/64" in p.message for p in found)


def test_a_pod_cidr_containing_a_node_64_is_reported_as_containing_the_node() -> None:
    text = ("hosts:\n  - {name: a, ipv6: 'fd00:10::1'}\n"
            "  - {name: b, ipv6: 'fd00:20::1', pod_cidr: 'fd00::/16'}\n")
    messages = [p.message for p in problems(text, "inv.yaml")]
    assert any("contains the node address fd00:10::1 of a" in m for m in messages)
    assert any("contains the node address fd00:20::1 of b" in m for m in messages)
    assert not any("lies inside" in m for m in messages)  # no second report per /64


def test_pod_cidrs_in_another_64_of_the_node_prefix_are_fine() -> None:
    text = ("hosts:\n  - {name: a, ipv6: 'fd00:10::1', pod_cidr: 'fd00:10:0:1::/64'}\n"
            "  - {name: b, ipv6: 'fd00:10::2', pod_cidr: 'fd00:10:0:2::/64'}\n")
    assert len(load(text, "inv.yaml")) == 2


def test_dual_stack_validation_stays_fast_at_5000_hosts() -> None:
    lines = [f"10.{i >> 8}.{i & 255}.10,fd00:10::{i:x} n{i}.k8s.local n{i} "
             f"172.{16 + (i >> 12)}.{(i >> 4) & 255}.{(i & 15) << 4}/28,fd00:200:{i:x}::/64"
             for i in range(1, 5001)]
    start = time.perf_counter()
    inv = load("\n".join(lines) + "\n", "big.txt")
    assert len(inv) == 5000
    assert time.perf_counter() - start < 5
