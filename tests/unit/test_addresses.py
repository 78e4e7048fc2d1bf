"""The ``ip -j addr`` parser and the gateway address choice, on real captured output.

tests/data/ip-j-addr.json was made by tests/data/capture-ipv6.sh (iproute2 6.1.0, kernel
DAD and privacy addresses for real): eth0 holds a permanent ULA, a mngtmpaddr template
and the temporary address the kernel made from it, a deprecated, a dynamic and a
dadfailed address, a link-local one, and two IPv4 addresses (one secondary); eth1 has
no carrier, so its address stays tentative. ``optimistic`` only lasts while DAD runs,
so the one test of it uses a hand-written entry.
"""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from podroutes.core.addresses import (
    InterfaceAddress,
    choose_gateway_address,
    parse_addresses,
    read_addresses_argv,
    unfit_reason,
)
from podroutes.core.errors import ParseError
from podroutes.core.model import Family

DATA = Path(__file__).parent.parent / "data"


def captured() -> list[InterfaceAddress]:
    return parse_addresses((DATA / "ip-j-addr.json").read_text())


def on(ifname: str, family: Family = Family.V6) -> dict[str, InterfaceAddress]:
    return {str(a.address): a for a in captured() if a.ifname == ifname and a.family is family}


def temporary() -> InterfaceAddress:
    return next(a for a in captured() if "temporary" in a.flags)


# --- parsing ------------------------------------------------------------------------------


def test_every_address_of_every_interface_is_read() -> None:
    raw = json.loads((DATA / "ip-j-addr.json").read_text())
    addresses = captured()
    assert len(addresses) == sum(len(link["addr_info"]) for link in raw) == 14
    assert {a.ifname for a in addresses} == {"lo", "eth0", "eth1", "eth3", "eth4"}


def test_flags_and_lifetimes_are_read() -> None:
    eth0 = on("eth0")
    assert eth0["2001:db8:10::5"].flags == {"deprecated"}
    assert eth0["2001:db8:10::5"].preferred_lifetime == 0
    assert eth0["2001:db8:10::5"].valid_lifetime is None  # 4294967295: forever
    assert eth0["fd00:10::99"].flags == {"dadfailed", "tentative"}
    assert eth0["2001:db8:10::1234"].flags == {"mngtmpaddr", "noprefixroute"}
    assert eth0["fd00:10::100"].flags == {"nodad"}
    assert eth0["fd00:10::100"].permanent
    dynamic = eth0["2001:db8:10::77"]
    assert dynamic.flags == {"dynamic"}
    assert not dynamic.permanent
    assert dynamic.valid_lifetime is not None and 3500 < dynamic.valid_lifetime <= 3600
    assert dynamic.preferred_lifetime is not None and 1700 < dynamic.preferred_lifetime <= 1800
    assert on("eth1")["fd00:20::1"].flags == {"tentative"}


def test_the_kernel_made_a_real_temporary_address_from_the_template() -> None:
    temp = temporary()
    assert temp.flags == {"temporary", "dynamic"}
    assert temp.address in ip_network("2001:db8:10::/64")  # the mngtmpaddr's prefix
    assert temp.prefixlen == 64


def test_scopes_and_networks() -> None:
    lo = {str(a.address): a for a in captured() if a.ifname == "lo"}
    assert (lo["127.0.0.1"].scope, lo["::1"].scope) == ("host", "host")
    link_local = [a for a in captured() if a.scope == "link"]
    assert {a.ifname for a in link_local} == {"eth0", "eth3", "eth4"}
    assert all(a.address.is_link_local for a in link_local)
    assert on("eth0", Family.V4)["192.168.10.100"].network == ip_network("192.168.10.0/24")
    assert on("eth0", Family.V4)["192.168.10.200"].flags == {"secondary"}


@pytest.mark.parametrize(("text", "phrase"), [
    ("Device \"eth9\" does not exist.", "not JSON"),
    ('{"ifname": "eth0"}', "not a list"),
    ('[{"addr_info": []}]', "without an interface name"),
    ('[{"ifname": "eth0", "addr_info": [{"local": "fd00::1"}]}]', "not understood"),
    ('[{"ifname": "eth0", "addr_info": [{"local": "fd00::x", "prefixlen": 64}]}]',
     "not understood"),
    ('[{"ifname": "eth0", "addr_info": [{"local": "10.0.0.1", "prefixlen": 33}]}]',
     "not understood"),
    ('[{"ifname": "eth0", "addr_info": [{"local": "10.0.0.1", "prefixlen": 8, '
     '"valid_life_time": -1}]}]', "not understood"),
])
def test_malformed_output_is_a_parse_error(text: str, phrase: str) -> None:
    with pytest.raises(ParseError, match=phrase):
        parse_addresses(text)


def test_empty_output_and_argv() -> None:
    assert parse_addresses(" \n") == []
    assert read_addresses_argv(Family.V6) == ["ip", "-j", "-6", "addr", "show"]
    assert read_addresses_argv() == ["ip", "-j", "addr", "show"]


# --- which addresses are fit to route via -------------------------------------------------


@pytest.mark.parametrize(("address", "phrase"), [
    ("fd00:10::99", "dadfailed"),
    ("2001:db8:10::5", "deprecated"),
    ("fe80::", "link-local"),
])
def test_unfit_addresses_say_why(address: str, phrase: str) -> None:
    a = next(x for x in captured() if x.ifname == "eth0" and str(x.address).startswith(address))
    reason = unfit_reason(a)
    assert reason is not None and reason.startswith(phrase)


def test_temporary_address_is_never_fit_and_the_reason_cites_flannel() -> None:
    reason = unfit_reason(temporary())
    assert reason is not None
    assert reason.startswith("temporary") and "flannel#2293" in reason


def test_tentative_and_loopback_are_unfit() -> None:
    assert (unfit_reason(on("eth1")["fd00:20::1"]) or "").startswith("tentative")
    lo = [a for a in captured() if a.ifname == "lo"]
    assert all((unfit_reason(a) or "").startswith("host scope") for a in lo)


@pytest.mark.parametrize("address", ["fd00:10::100", "2001:db8:10::1234", "2001:db8:10::77"])
def test_stable_addresses_are_fit(address: str) -> None:
    assert unfit_reason(on("eth0")[address]) is None  # the mngtmpaddr template too


def test_optimistic_address_is_unfit() -> None:
    text = json.dumps([{"ifname": "eth0", "addr_info": [
        {"family": "inet6", "local": "fd00:10::7", "prefixlen": 64, "scope": "global",
         "optimistic": True, "valid_life_time": 4294967295,
         "preferred_life_time": 4294967295}]}])
    [a] = parse_addresses(text)
    assert (unfit_reason(a) or "").startswith("optimistic")
    choice = choose_gateway_address([a], "eth0")
    assert choice.address is None
    assert "optimistic" in choice.reason


# --- the choice ---------------------------------------------------------------------------


def test_choice_on_eth0_is_a_permanent_global_address_with_reasons() -> None:
    choice = choose_gateway_address(captured(), "eth0")
    assert choice.gateway == ip_address("2001:db8:10::1234")  # lowest permanent address
    assert "stable global address (permanent)" in choice.reason
    assert "chosen over fd00:10::100, 2001:db8:10::77" in choice.reason
    temp = str(temporary().address)
    assert f"not {temp}: temporary" in choice.reason
    assert "not 2001:db8:10::5: deprecated" in choice.reason
    assert "not fd00:10::99: dadfailed" in choice.reason
    rejected = {str(a.address): why for a, why in choice.rejected}
    assert set(rejected) == {temp, "2001:db8:10::5", "fd00:10::99", "fd00:10::100",
                             "2001:db8:10::77"} | {
        str(a.address) for a in captured() if a.ifname == "eth0" and a.scope == "link"}


def test_choice_within_the_node_network() -> None:
    choice = choose_gateway_address(captured(), "eth0", within=ip_network("fd00:10::/64"))
    assert choice.gateway == ip_address("fd00:10::100")
    assert "not fd00:10::99: dadfailed" in choice.reason
    assert "not 2001:db8:10::1234: outside the node network fd00:10::/64" in choice.reason


def test_permanent_beats_dynamic_in_the_same_network() -> None:
    choice = choose_gateway_address(captured(), "eth0", within=ip_network("2001:db8:10::/64"))
    assert choice.gateway == ip_address("2001:db8:10::1234")
    assert "chosen over 2001:db8:10::77 (permanent beats dynamic)" in choice.reason


def test_a_dynamic_address_is_chosen_when_it_is_the_only_stable_one() -> None:
    eth0 = [a for a in captured() if a.ifname == "eth0"
            and (a.address == ip_address("2001:db8:10::77") or "temporary" in a.flags)]
    choice = choose_gateway_address(eth0, "eth0")
    assert choice.gateway == ip_address("2001:db8:10::77")
    assert "(dynamic, preferred for" in choice.reason


def test_never_the_temporary_even_when_it_is_the_only_global_one() -> None:
    only = [temporary(), *(a for a in captured() if a.ifname == "eth0" and a.scope == "link")]
    choice = choose_gateway_address(only, "eth0")
    assert choice.address is None
    assert choice.reason.startswith("eth0 has no stable global IPv6 address")
    assert "flannel#2293" in choice.reason


def test_tentative_only_interface_has_no_choice() -> None:
    choice = choose_gateway_address(captured(), "eth1")
    assert choice.gateway is None
    assert choice.reason == ("eth1 has no stable global IPv6 address: fd00:20::1: tentative: "
                             "duplicate address detection has not finished, the kernel does "
                             "not use it yet")


def test_ipv4_primary_beats_secondary() -> None:
    choice = choose_gateway_address(captured(), "eth0", Family.V4)
    assert choice.gateway == ip_address("192.168.10.100")
    assert "chosen over 192.168.10.200 (primary beats secondary)" in choice.reason


def test_unknown_interface() -> None:
    choice = choose_gateway_address(captured(), "eth9")
    assert choice.address is None
    assert choice.reason == ("no addresses on eth9 (interfaces with addresses: eth0, eth1, "
                             "eth3, eth4, lo)")


def test_link_local_only_interface() -> None:
    choice = choose_gateway_address(captured(), "eth3")
    assert choice.address is None
    assert "link-local" in choice.reason
