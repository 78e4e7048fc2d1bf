"""The inventory parsers: KTHW machines.txt and the YAML form, into canonical hosts."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from podroutes.core.errors import InventoryError, Problem
from podroutes.core.model import Family, SshSpec
from podroutes.inventory import load, looks_like_yaml

KTHW = (
    "192.168.10.100 server.kubernetes.local server\n"
    "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n"
    "192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24\n"
)


def problems(text: str, source: str = "machines.txt") -> list[Problem]:
    with pytest.raises(InventoryError) as caught:
        load(text, source)
    return caught.value.problems


# --- machines.txt ------------------------------------------------------------------------


def test_the_kubernetes_the_hard_way_file() -> None:
    inv = load(KTHW, "machines.txt")
    assert inv.source == "machines.txt"
    assert [h.name for h in inv] == ["server", "node-0", "node-1"]
    server, node0, node1 = inv.hosts
    assert server.addresses == (ip_address("192.168.10.100"),)
    assert server.fqdn == "server.kubernetes.local"
    assert server.pod_cidrs == ()
    assert server.is_control_plane
    assert node0.pod_cidrs == (ip_network("10.200.0.0/24"),)
    assert not node0.is_control_plane
    assert node1.address(Family.V4) == ip_address("192.168.10.102")
    assert node1.address(Family.V6) is None
    assert [h.line for h in inv] == [1, 2, 3]
    assert all(h.source == "machines.txt" and h.ssh == SshSpec() for h in inv)
    assert inv.host("node-1") is node1
    with pytest.raises(KeyError):
        inv.host("node-9")


@pytest.mark.parametrize(
    "text",
    [
        KTHW.replace(" ", "\t"),
        KTHW.replace(" ", " \t  "),
        "  " + KTHW.replace("\n", "  \n  "),
        KTHW.replace("\n", "\r\n"),
        KTHW.rstrip("\n"),
    ],
    ids=["tabs", "mixed-runs", "leading-trailing", "crlf", "no-final-newline"],
)
def test_whitespace_variants_parse_to_the_same_hosts(text: str) -> None:
    assert load(text, "m.txt").hosts == load(KTHW, "m.txt").hosts


def test_comments_and_blank_lines_are_skipped_and_lines_still_count() -> None:
    text = (
        "# the cluster\n"
        "\n"
        "192.168.10.100 server.kubernetes.local server   # control plane\n"
        "   \t\n"
        "# node-0 next\n"
        "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24#no space before it\n"
    )
    inv = load(text, "m.txt")
    assert [(h.name, h.line) for h in inv] == [("server", 3), ("node-0", 6)]
    assert inv.host("node-0").pod_cidrs == (ip_network("10.200.0.0/24"),)


def test_dual_stack_comma_form() -> None:
    text = (
        "192.168.10.100,fd00:10::100 server.kubernetes.local server\n"
        "192.168.10.101,fd00:10::101 node-0.kubernetes.local node-0 10.200.0.0/24,fd00:200::/64\n"
        "fd00:10::102,192.168.10.102 node-1.kubernetes.local node-1 fd00:201::/64,10.200.1.0/24\n"
    )
    inv = load(text, "m.txt")
    node0, node1 = inv.host("node-0"), inv.host("node-1")
    assert node0.addresses == (ip_address("192.168.10.101"), ip_address("fd00:10::101"))
    assert node0.pod_cidr(Family.V6) == ip_network("fd00:200::/64")
    assert node0.pod_cidr(Family.V4) == ip_network("10.200.0.0/24")
    # Order as written; lookups are per family.
    assert node1.address(Family.V4) == ip_address("192.168.10.102")
    assert node1.pod_cidr(Family.V6) == ip_network("fd00:201::/64")


def test_ipv6_only_host() -> None:
    inv = load("fd00:10::101 node-0.kubernetes.local node-0 fd00:200::/64\n", "m.txt")
    assert inv.hosts[0].addresses == (ip_address("fd00:10::101"),)
    assert inv.hosts[0].where("address6") == ("IPV4", 1)


def test_addresses_and_cidrs_are_canonicalised() -> None:
    inv = load("fd00:10:0:0::101 n.local n FD00:0200:0000::/64\n", "m.txt")
    assert str(inv.hosts[0].addresses[0]) == "fd00:10::101"
    assert str(inv.hosts[0].pod_cidrs[0]) == "fd00:200::/64"


def test_two_addresses_of_one_family_are_rejected() -> None:
    [p] = problems("192.168.10.101,192.168.10.102 n.local n\n")
    assert (p.line, p.field) == (1, "IPV4")
    assert "more than one IPv4 value" in p.message


def test_an_empty_comma_part_is_rejected() -> None:
    [p] = problems("192.168.10.101, n.local n\n")
    assert (p.line, p.field, p.message) == (1, "IPV4", "'' is not an IPv4 or IPv6 address")


def test_an_overlong_line_is_rejected_without_echoing_it() -> None:
    [p] = problems(KTHW + "#" * 5000 + "\n")
    assert (p.line, p.field) == (4, "line")
    assert "5000 characters long" in p.message


def test_uppercase_in_fqdn_is_rejected_and_quoted() -> None:
    [p] = problems("192.168.10.101 Node-0.local node-0\n")
    assert (p.field, p.message[:14]) == ("FQDN", "'Node-0.local'")


def test_looks_like_yaml() -> None:
    assert looks_like_yaml("anything", "x.yml")
    assert looks_like_yaml("# c\n\nhosts:\n", "<stdin>")
    assert looks_like_yaml("---\n", "<stdin>")
    assert not looks_like_yaml(KTHW, "<stdin>")
    assert not looks_like_yaml("# hosts:\n" + KTHW, "machines")


# --- YAML --------------------------------------------------------------------------------

YAML = """\
hosts:
  - name: server
    fqdn: server.kubernetes.local
    ipv4: 192.168.10.100
  - name: node-0
    ipv4: 192.168.10.101
    ipv6: fd00:10::101
    pod_cidrs: [10.200.0.0/24, fd00:200::/64]
    ssh: {target: jump-node-0.example.org, user: admin, port: 2222}
  - name: node-1
    ipv4: 192.168.10.102
    pod_cidr: 10.200.1.0/24
    ssh:
      target: fe80::1%eth0
"""


def test_yaml_inventory() -> None:
    inv = load(YAML, "cluster.yaml")
    server, node0, node1 = inv.hosts
    assert (server.fqdn, server.pod_cidrs, server.line) == ("server.kubernetes.local", (), 2)
    assert node0.addresses == (ip_address("192.168.10.101"), ip_address("fd00:10::101"))
    assert node0.pod_cidrs == (ip_network("10.200.0.0/24"), ip_network("fd00:200::/64"))
    assert node0.ssh == SshSpec(target="jump-node-0.example.org", user="admin", port=2222)
    assert node0.fqdn is None
    assert node1.pod_cidrs == (ip_network("10.200.1.0/24"),)
    assert node1.ssh == SshSpec(target="fe80::1%eth0")
    assert node0.where("pod_cidr6") == ("pod_cidrs", 8)
    assert node1.where("pod_cidr4") == ("pod_cidr", 12)
    assert node1.where("address4") == ("ipv4", 11)


def test_yaml_is_recognised_on_stdin_by_content() -> None:
    inv = load("# from kubectl\n" + YAML, "<stdin>")
    assert inv.source == "<stdin>"
    assert inv.hosts[0].source == "<stdin>"
    assert len(inv) == 3


def test_yaml_problems_on_stdin_name_stdin() -> None:
    [p] = problems(YAML.replace("192.168.10.102", "192.168.10.999"), "<stdin>")
    assert str(p).startswith("<stdin>:11: ipv4: '192.168.10.999'")


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "phrase"),
    [
        ("fqdn: server.kubernetes.local", "fqdn: server..local", 3, "fqdn", "domain name"),
        ("ipv4: 192.168.10.100", "ipv4: 192.168.10", 4, "ipv4", "not an IPv4 or IPv6"),
        ("name: node-0", "name: Node-0", 5, "name", "'Node-0' must be lowercase"),
        ("ipv6: fd00:10::101", "ipv6: 192.168.10.9", 7, "ipv6", "is an IPv4 address"),
        ("fd00:200::/64]", "fd00:200::1/64]", 8, "pod_cidrs", "did you mean fd00:200::/64"),
        ("user: admin", "user: 'root;id'", 9, "ssh.user", "not a valid user name"),
        ("port: 2222", "port: 0", 9, "ssh.port", "not a port"),
        ("port: 2222", "port: -1", 9, "ssh.port", "not a port"),
        ("jump-node-0.example.org", "jump_node", 9, "ssh.target", "domain name"),
        ("pod_cidr: 10.200.1.0/24", "pod_cidr: [10.200.1.0/24, 10.201.0.0/24]", 12,
         "pod_cidr", "more than one IPv4 pod CIDR"),
        ("pod_cidr: 10.200.1.0/24", "pod_cidr: {a: b}", 12, "pod_cidr", "a single value"),
        ("    ssh:\n      target", "    ssh:\n      host", 14, "ssh", "unknown key 'host'"),
        ("    ssh:\n      target: fe80::1%eth0\n", "    ssh: root@node-1\n", 13, "ssh",
         "expected a mapping"),
        ("ipv4: 192.168.10.102", "ipv4: ''", 11, "ipv4", "expected a single value"),
    ],
)
def test_yaml_field_problems_point_at_the_offending_line(
    old: str, new: str, line: int, field: str, phrase: str
) -> None:
    assert old in YAML
    found = problems(YAML.replace(old, new, 1), "c.yaml")
    assert [(p.line, p.field) for p in found] == [(line, field)], found
    assert phrase in found[0].message


def test_yaml_pod_cidr_items_on_their_own_lines() -> None:
    text = (
        "hosts:\n"
        "  - name: node-0\n"
        "    ipv4: 192.168.10.101\n"
        "    pod_cidrs:\n"
        "      - 10.200.0.0/24\n"
        "      - 10.200.0.1/24\n"
    )
    [p] = problems(text, "c.yaml")
    assert (p.line, p.field) == (6, "pod_cidrs")


def test_yaml_pod_cidr_and_pod_cidrs_together() -> None:
    text = ("hosts:\n  - name: n\n    ipv4: 192.168.10.1\n    pod_cidrs: [10.0.0.0/24]\n"
            "    pod_cidr: 10.0.1.0/24\n")
    [p] = problems(text, "c.yaml")
    assert (p.line, p.field) == (5, "pod_cidr")
    assert "not both" in p.message


@pytest.mark.parametrize(
    ("text", "line", "field", "phrase"),
    [
        ("", 1, "hosts", "lists no hosts"),
        ("hosts:\n", 1, "hosts", "expected a list"),
        ("- name: a\n", 1, "inventory", "expected a mapping"),
        ("nodes: []\n", 1, "inventory", "unknown key 'nodes'"),
        ("# only a comment\n", 1, "hosts", "lists no hosts"),
        ("hosts:\n  - node-0\n", 2, "hosts[]", "expected a mapping"),
        ("hosts:\n  - ipv4: 192.168.10.1\n", 2, "name", "missing"),
        ("---\nhosts: []\n---\nhosts: []\n", 3, "yaml", "another document"),
        ("hosts: [\n", 2, "yaml", "expected the node content"),
    ],
)
def test_yaml_structure_problems(text: str, line: int, field: str, phrase: str) -> None:
    found = problems(text, "c.yaml")
    assert any((p.line, p.field) == (line, field) and phrase in p.message for p in found), found


def test_yaml_aliases_do_not_hide_a_duplicate() -> None:
    text = ("hosts:\n  - &n0 {name: node-0, ipv4: 192.168.10.1}\n  - *n0\n")
    found = problems(text, "c.yaml")
    assert {p.field for p in found} == {"name", "ipv4"}


def test_every_problem_is_collected_in_file_order() -> None:
    text = (
        "192.168.10.1 a.local a 10.0.0.0/24\n"
        "192.168.10.2 b.local a 10.0.0.0/24\n"
        "192.168.10.1 c.local c\n"
    )
    found = problems(text)
    assert [(p.line, p.field) for p in found] == [(2, "HOSTNAME"), (2, "POD_SUBNET"), (3, "IPV4")]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("fe80::1%eth0 n.local n\n", "IPV4"),
        ("fd00:10::1 n.local n fd00:200::%eth0/64\n", "POD_SUBNET"),
    ],
)
def test_zone_indexes_are_rejected_in_node_addresses_and_pod_cidrs(text: str, field: str) -> None:
    # ipaddress accepts any zone text (spaces, newlines, '$(...)'), which would reach the
    # `ip -batch` lines and the hand-run script verbatim.
    [p] = problems(text)
    assert (p.line, p.field) == (1, field)
    assert "has a zone index" in p.message


@pytest.mark.parametrize(("name", "says"), [
    ("Node-0", "'Node-0' must be lowercase (Kubernetes node names are)"),
    ("a" * 64, "has a label longer than 63 characters"),
    ("-node", "has a label that starts or ends with '-'"),
    ("node-0.example", "is a host name: one label, no '.'"),
    ("node_0", "is not an RFC 1123 host name (lowercase letters, digits, '-')"),
])
def test_a_bad_host_name_says_what_is_wrong(name: str, says: str) -> None:
    [p] = problems(f"192.168.10.101 n0.local {name}\n")
    assert p.field == "HOSTNAME" and says in p.message


def test_a_machines_txt_with_a_byte_order_mark_is_read() -> None:
    """Notepad and some editors start UTF-8 files with U+FEFF; YAML already ignored it."""
    inv = load("\ufeff192.168.10.100 server.k server\n192.168.10.101 n0.k node-0 "
               "10.200.0.0/24\n", "machines.txt")
    assert [h.name for h in inv] == ["server", "node-0"]
