"""Every malformed inventory in tests/data/inventories/bad is rejected with a located problem.

Each file is checked twice: through :func:`podroutes.inventory.load` (the problem's
source, line, field and message) and through ``podroutes plan -i FILE`` (exit status 2,
and the message names the file, the line and the field). The expectations live in one
table so a new bad file is one new row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from podroutes.cli.main import main
from podroutes.core.errors import InventoryError
from podroutes.inventory import load

BAD = Path(__file__).parent.parent / "data" / "inventories" / "bad"

#: file name -> (line, field, phrase of the message)
EXPECTED: dict[str, tuple[int, str, str]] = {
    # machines.txt: one field wrong
    "ip-octet.txt": (3, "IPV4", "'192.168.10.300' is not an IPv4 or IPv6 address"),
    "cidr-prefix.txt": (3, "POD_SUBNET", "'10.200.0.0/33' is not a CIDR"),
    "cidr-host-bits.txt": (3, "POD_SUBNET", "has host bits set; did you mean 10.200.1.0/24?"),
    "two-v4-cidrs.txt": (2, "POD_SUBNET", "more than one IPv4 value"),
    "fields-2.txt": (2, "line", "expected 3 or 4 fields"),
    "fields-5.txt": (2, "line", "found 5"),
    "empty.txt": (1, "hosts", "lists no hosts"),
    "comments-only.txt": (1, "hosts", "lists no hosts"),
    "nul-byte.txt": (3, "line", "contains a NUL byte"),
    "hostname-underscore.txt": (2, "HOSTNAME", "'node_0' is not an RFC 1123 host name"),
    "hostname-semicolon.txt": (2, "HOSTNAME", "'node-0;reboot' is not an RFC 1123 host name"),
    "hostname-subst.txt": (2, "HOSTNAME", "'$(id)' is not an RFC 1123 host name"),
    "hostname-cyrillic.txt": (2, "HOSTNAME", r"'n\u043ede-0' is not an RFC 1123 host name"),
    "scoped-address.txt": (2, "IPV4", "has a zone index"),
    # machines.txt: rules across hosts
    "dup-hostname.txt": (3, "HOSTNAME", "duplicate host name node-0 (first on line 2)"),
    "dup-address.txt": (3, "IPV4", "duplicate address 192.168.10.101 (also host node-0"),
    "dup-fqdn.txt": (3, "FQDN", "duplicate FQDN node-0.kubernetes.local (first on line 2"),
    "overlap-identical.txt": (
        3, "POD_SUBNET", "10.200.0.0/24 of node-1 overlaps 10.200.0.0/24 of node-0 (line 2)"),
    "overlap-nested.txt": (
        2, "POD_SUBNET", "10.200.0.128/25 of node-0 overlaps 10.200.0.0/24 of node-1 (line 3)"),
    "overlap-hidden.txt": (
        2, "POD_SUBNET", "10.200.5.0/24 of node-2 overlaps 10.200.0.0/16 of node-0 (line 3)"),
    "cidr-contains-node.txt": (
        2, "POD_SUBNET", "10.200.0.0/24 of node-0 contains the node address 10.200.0.7 of node-1"),
    "v6-cidr-v4-only.txt": (
        2, "POD_SUBNET", "IPv6 pod CIDR fd00:200::/64 but host node-0 has only an IPv4 address"),
    # YAML
    "hosts-empty.yaml": (1, "hosts", "lists no hosts"),
    "unknown-key.yaml": (5, "hosts[]", "unknown key 'pod_cird'"),
    "duplicate-key.yaml": (5, "hosts[].ipv4", "is given twice"),
    "syntax-error.yaml": (5, "yaml", "expected <block end>"),
    "deep-nesting.yaml": (1, "yaml", "nested too deeply"),
    "nul-byte.yaml": (3, "file", "contains a NUL byte"),
    "ssh-port.yaml": (6, "ssh.port", "'70000' is not a port (1-65535)"),
    "ssh-port-superscript.yaml": (5, "ssh.port", r"'\xb2' is not a port"),
    "ssh-target-zone.yaml": (5, "ssh.target", "the zone index is not an interface name"),
    "v4-cidr-v6-only.yaml": (
        4, "pod_cidr", "IPv4 pod CIDR 10.200.0.0/24 but host node-0 has only an IPv6 address"),
    "v6-cidr-v4-only.yaml": (
        6, "pod_cidrs", "IPv6 pod CIDR fd00:200::/64 but host node-0 has only an IPv4 address"),
    "ipv4-given-v6.yaml": (3, "ipv4", "fd00:10::101 is an IPv6 address"),
    "host-bits.yaml": (4, "pod_cidrs", "did you mean 10.200.1.0/24?"),
    "dup-name.yaml": (5, "name", "duplicate host name node-0 (first on line 2)"),
    "missing-address.yaml": (2, "ipv4", "missing: a host needs an ipv4 or an ipv6 address"),
    "hostname-unicode.yaml": (2, "name", r"'n\u043ede-0' is not an RFC 1123 host name"),
    "scoped-newline.yaml": (4, "ipv6", "has a zone index"),
    # addresses that cannot be node addresses or pod ranges (IPv6 and dual-stack)
    "v6-link-local-gateway.txt": (
        3, "IPV4", "fe80::101 is a link-local address (fe80::/10): other hosts would route "
        "node-0's pod CIDR fd00:200::/64 via it, and a route via a link-local gateway needs "
        "its outgoing interface"),
    "v6-link-local-gateway.yaml": (4, "ipv6", "which the inventory cannot express"),
    "v6-link-local-server.txt": (
        1, "IPV4", "fe80::100 is a link-local address (fe80::/10): a node address must be "
        "reachable from every host without naming an interface"),
    "loopback-address.txt": (2, "IPV4", "127.0.0.1 is in the loopback range 127.0.0.0/8"),
    "unspecified-address.yaml": (4, "ipv6", ":: is the unspecified address ::"),
    "multicast-cidr.yaml": (
        5, "pod_cidrs", "pod CIDR ff05::/64 is inside the multicast range ff00::/8"),
    "link-local-cidr.txt": (
        2, "POD_SUBNET", "pod CIDR 169.254.0.0/24 is inside the link-local range 169.254.0.0/16"),
    "v6-link-local-cidr.yaml": (
        4, "pod_cidr", "pod CIDR fe80::/64 is inside the link-local range fe80::/10"),
    "default-route-cidr.txt": (
        2, "POD_SUBNET", "pod CIDR 0.0.0.0/0 is the whole IPv4 address space"),
    "cidr-too-small.txt": (2, "POD_SUBNET", "pod CIDR 10.200.0.0/31 is too small"),
    "v6-cidr-too-small.yaml": (
        4, "pod_cidrs", "pod CIDR fd00:200::/127 is too small: it leaves no address for a pod"),
    "v6-cidr-in-node-64.yaml": (
        7, "pod_cidrs", "pod CIDR fd00:10::1:0/112 of node-1 lies inside fd00:10::/64, the /64 "
        "of the node address fd00:10::101 of node-0"),
    # overlaps across families: IPv4-mapped IPv6
    "mapped-cidr-overlap.txt": (
        3, "POD_SUBNET", "pod CIDR ::ffff:10.200.0.0/120 (::ffff:ac8:0/120) is IPv4-mapped "
        "(::ffff:0:0/96): it is 10.200.0.0/24 written as IPv6, which IPv6 packets never "
        "carry; it overlaps the IPv4 pod CIDR 10.200.0.0/24 of node-0 (line 2)"),
    "mapped-address.yaml": (
        6, "ipv6", "::ffff:192.168.10.101 is an IPv4-mapped address (::ffff:0:0/96) standing "
        "for 192.168.10.101: IPv6 packets never carry it; it holds the IPv4 node address "
        "192.168.10.101 of node-0 (line 3)"),
}

SEED = (
    "192.168.10.100 server.kubernetes.local server\n"
    "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n"
    "192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24\n"
)


def flat(text: str) -> str:
    """Undo Rich's line wrapping so phrases can be searched for."""
    return " ".join(text.split())


def test_every_bad_file_has_an_expectation_and_the_corpus_is_large() -> None:
    on_disk = {p.name for p in BAD.iterdir()}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 24
    assert {p.suffix for p in BAD.iterdir()} == {".txt", ".yaml"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_locates_the_problem(name: str) -> None:
    line, field, phrase = EXPECTED[name]
    text = (BAD / name).read_bytes().decode("utf-8")
    with pytest.raises(InventoryError) as caught:
        load(text, name)
    located = [(p.source, p.line, p.field) for p in caught.value.problems]
    assert (name, line, field) in located, located
    matching = [p for p in caught.value.problems if (p.line, p.field) == (line, field)]
    assert any(phrase in p.message for p in matching), [p.message for p in matching]
    assert f"{name}:{line}: {field}: " in str(caught.value)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plan_command_exits_2_naming_file_line_and_field(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    line, field, phrase = EXPECTED[name]
    monkeypatch.chdir(BAD)
    result = CliRunner().invoke(main, ["plan", "-i", name])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "nothing was changed" in result.stderr
    assert f"{name}:{line}: {field}:" in flat(result.stderr)
    assert phrase in flat(result.stderr)
    assert result.stdout == ""


def test_a_missing_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-machines.txt"
    result = CliRunner().invoke(main, ["plan", "-i", str(missing)])
    assert result.exit_code == 2
    assert f"{missing}:0: file: No such file or directory" in flat(result.stderr)


def test_a_file_that_is_not_utf8_exits_2_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(SEED.encode() + b"192.168.10.103 n\xf6de.kubernetes.local node-3\n")
    result = CliRunner().invoke(main, ["plan", "-i", str(path)])
    assert result.exit_code == 2
    assert f"{path}:4: file: is not UTF-8 text" in flat(result.stderr)


def test_dash_reads_the_inventory_from_stdin() -> None:
    result = CliRunner().invoke(main, ["plan", "-i", "-", "--format", "batch"], input=SEED)
    assert result.exit_code == 0, result.output
    assert "# node-0: ip -batch -  (1 route)\nroute add 10.200.1.0/24 via 192.168.10.102" in (
        result.stdout)


def test_bad_stdin_is_named_stdin() -> None:
    broken = SEED.replace("192.168.10.101", "192.168.10.1o1")
    result = CliRunner().invoke(main, ["plan", "-i", "-"], input=broken)
    assert result.exit_code == 2
    assert "<stdin>:2: IPV4: '192.168.10.1o1' is not an IPv4 or IPv6 address" in flat(
        result.stderr)


def test_every_problem_of_a_file_is_reported_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "many.txt"
    path.write_text("192.168.10.300 a.local a\n192.168.10.101 b.local b_ 10.0.0.1/8\nx y\n")
    result = CliRunner().invoke(main, ["plan", "-i", str(path)])
    assert result.exit_code == 2
    out = flat(result.stderr)
    assert "(4 problems)" in out
    for located in (":1: IPV4:", ":2: HOSTNAME:", ":2: POD_SUBNET:", ":3: line:"):
        assert f"{path}{located}" in out


def test_thousands_of_bad_lines_are_capped_on_the_terminal_and_whole_in_json(
        tmp_path: Path) -> None:
    """50,000 bad lines: 20 problems and "... and 49,980 more" on stderr, not 50,003
    lines; --json prints every problem, each with file, line and field; exit 2 both."""
    bad = tmp_path / "machines.txt"
    bad.write_text("bad line\n" * 50_000)
    human = CliRunner().invoke(main, ["plan", "-i", str(bad)])
    assert human.exit_code == 2
    lines = human.output.splitlines()
    assert len(lines) == 22 and lines[-1] == "  ... and 49,980 more (--json lists them all)"
    machine = CliRunner().invoke(main, ["plan", "-i", str(bad), "--json"])
    assert machine.exit_code == 2
    problems = json.loads(machine.stdout)["problems"]
    assert len(problems) == 50_000
    assert problems[-1] == {"source": str(bad), "line": 50_000, "field": "line",
                            "message": problems[-1]["message"]}
