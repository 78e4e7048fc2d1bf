"""The inventory's IPv4 fast paths accept exactly what ``ipaddress`` accepts, with the
same value, and leave everything else (and its wording) to ``ipaddress``."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podroutes.inventory import load
from podroutes.inventory.fields import Collector, _ipv4_int, _ipv4_network

TRICKY = [
    "0.0.0.0", "255.255.255.255", "1.2.3.4", "01.2.3.4", "1.2.3.04", "1.2.3.00", "256.1.1.1",
    "1.2.3", "1.2.3.4.5", "1..3.4", "", ".", "1.2.3.4.", " 1.2.3.4", "1.2.3.4 ", "+1.2.3.4",
    "-1.2.3.4", "1.2.3.-0", "١.2.3.4", "1.2.3.٤", "0x1.2.3.4", "1_0.2.3.4", "1e1.2.3.4",
    "10.0.0.0/24", "10.0.0.1/24", "10.0.0.0/024", "10.0.0.0/8", "10.0.0.0/08", "10.0.0.0/33",
    "10.0.0.0/-1", "10.0.0.0/", "/24", "10.0.0.0/24/1", "10.0.0.0/255.255.255.0",
    "10.0.0.0/0.0.0.255", "0.0.0.0/0", "10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0/٨",
    "fd00::/64", "fd00::1", "::ffff:1.2.3.4", "1.2.3.4%eth0", "10.0.0.0/32", "10.0.0.1/32",
]


def _reference(parse: object, text: str) -> object:
    try:
        return parse(text)  # type: ignore[operator]
    except ValueError:
        return None


@pytest.mark.parametrize("text", TRICKY)
def test_addresses_and_networks_as_ipaddress_reads_them(text: str) -> None:
    fast_address, fast_network = _ipv4_int(text), _ipv4_network(text)
    if fast_address is not None:
        assert ip_address(fast_address) == ip_address(text)
    if fast_network is not None:
        assert fast_network == ip_network(text, strict=True)
        assert fast_network.prefixlen == ip_network(text, strict=True).prefixlen
    c = Collector("m")
    assert c.address(text, 1, "IPV4") == _reference(ip_address, text)
    assert c.network(text, 1, "POD_SUBNET") == _reference(
        lambda t: ip_network(t, strict=True), text)


def test_mistakes_are_still_worded_by_the_slow_path() -> None:
    c = Collector("m")
    assert c.network("10.0.0.1/24", 3, "POD_SUBNET") is None
    assert c.address("01.2.3.4", 4, "IPV4") is None
    assert [(p.line, p.field, p.message) for p in c.problems] == [
        (3, "POD_SUBNET", "10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?"),
        (4, "IPV4", "'01.2.3.4' is not an IPv4 or IPv6 address"),
    ]


octet = st.one_of(st.integers(0, 300).map(str), st.text("0123456789", min_size=1, max_size=4))


@settings(max_examples=400, deadline=None)
@given(st.lists(octet, min_size=3, max_size=5), st.one_of(st.none(), octet))
def test_generated_quads_agree_with_ipaddress(parts: list[str], prefix: str | None) -> None:
    text = ".".join(parts) + ("" if prefix is None else "/" + prefix)
    c = Collector("m")
    assert c.address(text, 1, "IPV4") == _reference(ip_address, text)
    assert c.network(text, 1, "POD_SUBNET") == _reference(
        lambda t: ip_network(t, strict=True), text)


def test_every_field_of_a_machines_host_is_located_on_its_line() -> None:
    inventory = load("# c\n\n192.168.0.1 a.k a 10.0.0.0/24\n192.168.0.2,fd00::2 b.k b "
                     "10.0.1.0/24,fd00:200::/64\n", "machines.txt")
    a, b = inventory.hosts
    assert a.where("name") == ("HOSTNAME", 3) and a.where("pod_cidr4") == ("POD_SUBNET", 3)
    assert b.where("address6") == ("IPV4", 4) and b.where("fqdn") == ("FQDN", 4)
    assert dict(b.fields) == {"address4": ("IPV4", 4), "address6": ("IPV4", 4),
                              "fqdn": ("FQDN", 4), "name": ("HOSTNAME", 4),
                              "pod_cidr4": ("POD_SUBNET", 4), "pod_cidr6": ("POD_SUBNET", 4)}
    assert a.where("nonsense") == ("nonsense", 3)
