"""Capture the kernel's forwarding decisions for tests/unit/test_forwarding.py.

Usage (root): ``python tests/data/forwarding/capture.py [OUTDIR]`` (default: this
directory). For each scenario below it makes two throwaway namespaces, ``prt<hex>-fwcap``
(the node) and ``prt<hex>-fwcapp`` (its peers), runs the scenario's ``ip``
commands in the node, and writes ``<scenario>.json``: the lines, ``ip -j -4|-6 rule show``,
``ip -j -4|-6 route show table all``, and ``ip -j route get`` (stdout, stderr, exit
status) for a fixed list of addresses, originated and forwarded from a pod
(``from 10.200.0.5 iif cni0``). Both namespaces are deleted by name, also on failure.
It also writes ``rules-odd-v4.json``/``-v6.json`` (``ip -j rule show`` after adding one
rule of every kind) and ``rules-odd-v4-numeric.json`` (the same with ``ip -N``).
Nothing is done in the root namespace, and no packet is sent.

The node: ``eth0`` 192.168.10.1/24 + fd00:10::1/64 and ``eth1`` 192.168.20.1/24 +
fd00:20::1/64 (veth pairs into the peer namespace), ``cni0`` a bridge holding
10.200.0.1/24 + fd00:200::1/64 with one veth port (``veth0``, peer ``pod0``) so it has
carrier; forwarding on in both families, as on a Kubernetes node. The planned routes are
``10.200.N.0/24 via 192.168.10.(N+1) proto 147`` and ``fd00:200:N::/64 via
fd00:10::(N+1) proto 147``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

V4_CIDRS = [f"10.200.{n}" for n in range(6)]
V6_CIDRS = [f"fd00:200:{n:x}" for n in range(6)]


def planned(*numbers: int) -> list[str]:
    lines = []
    for n in numbers:
        lines.append(f"route add 10.200.{n}.0/24 via 192.168.10.{n + 1} proto 147")
        lines.append(f"route add fd00:200:{n:x}::/64 via fd00:10::{n + 1:x} proto 147")
    return lines


#: name -> (what it shows, the `ip` commands run in the node (IPv6 rules need ``-6``: they
#: do not follow their addresses), whether eth1's peer is down)
SCENARIOS: dict[str, tuple[str, list[str], bool]] = {
    "noop": ("only the planned routes", planned(1, 2), False),
    "shadow": ("a foreign more specific route inside the planned one", [
        *planned(1),
        "route add 10.200.1.0/25 via 192.168.20.2",
        "route add fd00:200:1::/65 via fd00:20::2",
    ], False),
    "metric": ("a foreign route of the same prefix and a lower (IPv6) or higher (IPv4) "
               "metric", [
        *planned(1),
        "route add 10.200.1.0/24 via 192.168.20.2 metric 100",
        "route add fd00:200:1::/64 via fd00:20::2 metric 100",
    ], False),
    "rule-table": ("rules sending pod traffic to other tables", [
        *planned(1, 2),
        "rule add to 10.200.1.0/24 table 100 pref 100",
        "-6 rule add to fd00:200:1::/64 table 100 pref 100",
        "route add 10.200.1.0/24 via 192.168.20.2 table 100",
        "route add fd00:200:1::/64 via fd00:20::2 table 100",
        "rule add from 10.200.0.0/24 table 101 pref 101",
        "-6 rule add from fd00:200::/64 table 101 pref 101",
        "route add default via 192.168.20.3 table 101",
        "route add default via fd00:20::3 table 101",
    ], False),
    "throw": ("a throw route sends the lookup on to the next rule", [
        *planned(1),
        "rule add table 100 pref 100",
        "-6 rule add table 100 pref 100",
        "route add throw 10.200.1.0/24 table 100",
        "route add throw fd00:200:1::/64 table 100",
        "route add default via 192.168.20.2 table 100",
        "route add default via fd00:20::2 table 100",
    ], False),
    "drops": ("blackhole, unreachable and prohibit routes and rules", [
        *planned(1, 2, 3, 4),
        "route add blackhole 10.200.1.0/26",
        "route add unreachable 10.200.1.64/26",
        "route add prohibit 10.200.1.128/26",
        "route add blackhole fd00:200:1::/66",
        "route add unreachable fd00:200:1:0:4000::/66",
        "route add prohibit fd00:200:1:0:8000::/66",
        "rule add to 10.200.2.0/24 blackhole pref 100",
        "rule add to 10.200.3.0/24 unreachable pref 101",
        "rule add to 10.200.4.0/24 prohibit pref 102",
        "-6 rule add to fd00:200:2::/64 blackhole pref 100",
        "-6 rule add to fd00:200:3::/64 unreachable pref 101",
        "-6 rule add to fd00:200:4::/64 prohibit pref 102",
        "route add local 10.200.5.0/24 dev lo",
        "route add local fd00:200:5::/64 dev lo",
    ], False),
    "suppress": ("suppress_prefixlength: a result that short is rejected, a blackhole not", [
        *planned(1),
        "route add default via 192.168.10.9",
        "route add default via fd00:10::9",
        "route add blackhole 10.200.2.0/24",
        "route add blackhole fd00:200:2::/64",
        "route add default via 192.168.20.2 table 100",
        "route add default via fd00:20::2 table 100",
        "rule add to 10.200.3.0/24 table main suppress_prefixlength 24 pref 98",
        "-6 rule add to fd00:200:3::/64 table main suppress_prefixlength 64 pref 98",
        "rule add to 10.200.2.0/23 table main suppress_prefixlength 24 pref 99",
        "-6 rule add to fd00:200:2::/63 table main suppress_prefixlength 64 pref 99",
        "rule add table main suppress_prefixlength 0 pref 100",
        "-6 rule add table main suppress_prefixlength 0 pref 100",
        "rule add table 100 pref 101",
        "-6 rule add table 100 pref 101",
        "route add 10.200.3.0/24 via 192.168.10.4 proto 147",
        "route add fd00:200:3::/64 via fd00:10::4 proto 147",
    ], False),
    "own-cidr-via": ("the own pod CIDR's connected route replaced by a via route", [
        *planned(1),
        "route replace 10.200.0.0/24 via 192.168.10.2",
        "route replace fd00:200::/64 via fd00:10::2 metric 256",
    ], False),
    "goto": ("goto, nop and an unresolved goto", [
        *planned(1),
        "rule add to 10.200.1.0/24 goto 300 pref 100",
        "-6 rule add to fd00:200:1::/64 goto 300 pref 100",
        "rule add goto 500 pref 150",
        "-6 rule add goto 500 pref 150",
        "rule add to 10.200.1.0/24 table 100 pref 200",
        "-6 rule add to fd00:200:1::/64 table 100 pref 200",
        "rule add nop pref 300",
        "-6 rule add nop pref 300",
        "rule add to 10.200.1.0/25 table 101 pref 301",
        "-6 rule add to fd00:200:1::/65 table 101 pref 301",
        "route add 10.200.1.0/24 via 192.168.20.2 table 100",
        "route add fd00:200:1::/64 via fd00:20::2 table 100",
        "route add 10.200.1.0/25 via 192.168.20.3 table 101",
        "route add fd00:200:1::/65 via fd00:20::3 table 101",
    ], False),
    "selectors": ("from, not from, iif, iif lo and oif selectors", [
        *planned(1, 2, 3, 4),
        "rule add not from 10.0.0.0/8 to 10.200.1.0/24 table 100 pref 100",
        "-6 rule add not from fd00::/8 to fd00:200:1::/64 table 100 pref 100",
        "rule add iif cni0 to 10.200.2.0/24 table 101 pref 101",
        "-6 rule add iif cni0 to fd00:200:2::/64 table 101 pref 101",
        "rule add iif lo to 10.200.3.0/24 table 101 pref 102",
        "-6 rule add iif lo to fd00:200:3::/64 table 101 pref 102",
        "rule add oif eth1 table 101 pref 103",
        "-6 rule add oif eth1 table 101 pref 103",
        "rule add from 0.0.0.0/8 to 10.200.4.0/24 table 101 pref 104",
        "-6 rule add from ::/1 to fd00:200:4::/64 table 101 pref 104",
        "rule add iif nosuch to 10.200.4.0/24 table 100 pref 105",
        "route add 10.200.1.0/24 via 192.168.20.2 table 100",
        "route add fd00:200:1::/64 via fd00:20::2 table 100",
        "route add default via 192.168.20.3 table 101",
        "route add default via fd00:20::3 table 101",
    ], False),
    "linkdown": ("routes through eth1, whose peer is down (no carrier): still used", [
        *planned(1),
        "route add 10.200.1.0/25 via 192.168.20.2",
        "route add fd00:200:1::/65 via fd00:20::2",
    ], True),
    "multipath": ("multipath (ECMP) routes", [
        "route add 10.200.1.0/24 proto 147 nexthop via 192.168.10.2 nexthop via 192.168.20.2",
        "route add fd00:200:1::/64 proto 147 nexthop via fd00:10::2 nexthop via fd00:20::2",
    ], False),
    "marks": ("rules on the packet: fwmark (ip route get uses mark 0), uidrange, ipproto, "
              "dport, tos, and an irrelevant uidrange rule to an empty table", [
        *planned(1, 2, 3, 4),
        "rule add fwmark 0xca6c to 10.200.1.0/24 table 100 pref 100",
        "-6 rule add fwmark 0xca6c to fd00:200:1::/64 table 100 pref 100",
        "rule add uidrange 1000-2000 to 10.200.2.0/24 table 100 pref 101",
        "-6 rule add uidrange 1000-2000 to fd00:200:2::/64 table 100 pref 101",
        "rule add ipproto tcp dport 80 to 10.200.3.0/24 table 100 pref 102",
        "-6 rule add ipproto tcp dport 80 to fd00:200:3::/64 table 100 pref 102",
        "rule add tos 0x10 to 10.200.4.0/24 table 100 pref 103",
        "rule add fwmark 0x10/0xff to 10.200.4.0/24 table 100 pref 104",
        "-6 rule add fwmark 0x10/0xff to fd00:200:4::/64 table 100 pref 104",
        "rule add uidrange 3000-4000 table 102 pref 105",
        "-6 rule add uidrange 3000-4000 table 102 pref 105",
        "route add default via 192.168.20.2 table 100",
        "route add default via fd00:20::2 table 100",
    ], False),
    "wg-quick": ("wg-quick's rules: not fwmark to its table, main without default routes", [
        *planned(1),
        "route add default via 192.168.10.9",
        "route add default via fd00:10::9",
        "route add default via 192.168.20.2 table 51820",
        "route add default via fd00:20::2 table 51820",
        "rule add not fwmark 0xca6c table 51820 pref 32764",
        "-6 rule add not fwmark 0xca6c table 51820 pref 32764",
        "rule add table main suppress_prefixlength 0 pref 32765",
        "-6 rule add table main suppress_prefixlength 0 pref 32765",
    ], False),
    "ties": ("same prefix and metric: IPv4 takes the first, IPv6 the preferred, else "
             "round-robin; two IPv4 default routes of one metric", [
        *planned(1),
        "route add 10.200.2.0/24 via 192.168.20.2 metric 5",
        "route append 10.200.2.0/24 via 192.168.10.3 metric 5",
        "route add 10.200.1.0/24 via 192.168.20.2 metric 5",
        "route add fd00:200:2::/64 via fd00:10::3 pref low",
        "route append fd00:200:2::/64 dev eth1 pref high",
        "route add fd00:200:3::/64 dev eth0",
        "route append fd00:200:3::/64 dev eth1",
        "route add default via 192.168.10.9",
        "route append default via 192.168.10.8",
    ], False),
}

ODD_RULES = [
    "from 10.200.0.0/24 table 100 pref 100",
    "to 10.200.1.0/24 table 100 pref 101",
    "not from 10.0.0.0/8 table 100 pref 102",
    "iif eth0 table 101 pref 103",
    "oif eth1 table 101 pref 104",
    "fwmark 0x10 table 102 pref 105",
    "fwmark 0x10/0xff table 102 pref 106",
    "table main suppress_prefixlength 0 pref 107",
    "to 10.200.2.0/24 blackhole pref 108",
    "to 10.200.3.0/24 unreachable pref 109",
    "to 10.200.4.0/24 prohibit pref 110",
    "to 10.200.5.0/24 goto 200 pref 111",
    "uidrange 1000-2000 table 104 pref 112",
    "ipproto tcp dport 80 table 104 pref 113",
    "sport 1000-2000 table 104 pref 114",
    "tos 0x10 table 104 pref 115",
    "l3mdev pref 116",
    "to 10.200.6.0/24 nop pref 117",
    "from 10.200.7.0/24 to 10.200.8.0/24 iif lo table 105 pref 118",
    "to 10.200.9.0/24 table 100 suppress_ifgroup 5 pref 119",
    "to 10.200.10.0/24 lookup 100 realms 3/5 pref 120",
    "to 10.200.11.0/24 table 1000000 pref 121",
    "to 10.200.12.0/24 table local pref 123",
    "protocol 147 to 10.200.14.0/24 table 100 pref 125",
    "not to 10.200.16.0/24 iif eth0 oif eth1 table 100 pref 126",
    "iif nosuch oif nosuch2 table 100 pref 127",
    "tun_id 5 table 100 pref 128",
    "from 10.200.20.5 table 100 pref 129",
    "fwmark 0x0/0xffff table 100 pref 130",
    "goto 400 pref 131",
    "dport 1000-2000 table 100 pref 132",
    "pref 200 table 103",
]
ODD_RULES6 = [
    "from fd00:200::/64 table 100 pref 100",
    "to fd00:200:1::/64 table 100 pref 101",
    "to fd00:200:2::/64 blackhole pref 102",
    "to fd00:200:3::/64 unreachable pref 103",
    "to fd00:200:4::/64 prohibit pref 104",
    "table main suppress_prefixlength 0 pref 105",
    "to fd00:200:5::/64 goto 200 pref 106",
    "not to fd00:200:6::/64 iif eth0 table 100 pref 107",
    "fwmark 7 table 100 pref 108",
    "tos 0x10 table 100 pref 109",
    "ipproto udp sport 53 table 100 pref 110",
    "from fd00:200::5 table 100 pref 111",
    "pref 200 table 103",
]


def ip(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", "-n", ns, *argv], capture_output=True, text=True,
                          timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip -n {ns} {' '.join(argv)}: {done.stderr}")
    return done


@contextmanager
def node() -> Iterator[str]:
    name = f"prt{secrets.token_hex(3)}-fwcap"
    peer = name + "p"
    try:
        for ns in (name, peer):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw",
                        "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], check=True)
        for link in ("eth0", "eth1"):
            ip(name, "link", "add", link, "type", "veth", "peer", "name", link, "netns", peer)
        ip(name, "link", "add", "cni0", "type", "bridge")
        ip(name, "link", "add", "veth0", "type", "veth", "peer", "name", "pod0")
        ip(name, "link", "set", "veth0", "master", "cni0")
        for n, link in ((1, "eth0"), (2, "eth1")):
            ip(name, "addr", "add", f"192.168.{n}0.1/24", "dev", link)
            ip(name, "addr", "add", f"fd00:{n}0::1/64", "dev", link, "nodad")
            ip(peer, "addr", "add", f"192.168.{n}0.2/24", "dev", link)
        ip(name, "addr", "add", "10.200.0.1/24", "dev", "cni0")
        ip(name, "addr", "add", "fd00:200::1/64", "dev", "cni0", "nodad")
        for link in ("lo", "eth0", "eth1", "cni0", "veth0", "pod0"):
            ip(name, "link", "set", link, "up")
        for link in ("lo", "eth0", "eth1"):
            ip(peer, "link", "set", link, "up")
        yield name
    finally:
        for ns in (name, peer):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def queries() -> list[list[str]]:
    out: list[list[str]] = []
    for base in V4_CIDRS:
        for host in ("0", "1", "64", "128", "192", "254", "255"):
            out.append([f"{base}.{host}"])
            out.append([f"{base}.{host}", "from", "10.200.0.5", "iif", "cni0"])
    for base in V6_CIDRS:
        for suffix in ("::", "::1", ":0:4000::", ":0:8000::", ":0:c000::",
                       ":0:ffff:ffff:ffff:ffff"):
            out.append([base + suffix])
            out.append([base + suffix, "from", "fd00:200::5", "iif", "cni0"])
    for outside in ("10.250.0.1", "fd00:250::1"):
        out.append([outside])
    out.append(["10.200.1.1", "oif", "eth1"])
    out.append(["fd00:200:1::1", "oif", "eth1"])
    out.append(["10.200.1.1", "from", "192.168.10.1"])
    out.append(["10.200.1.1", "from", "10.200.0.5"])
    out.append(["fd00:200:1::1", "from", "fd00:10::1"])
    return out


def capture(name: str, description: str, lines: list[str], carrier_off: bool,
            outdir: Path) -> None:
    with node() as ns:
        if carrier_off:
            ip(ns + "p", "link", "set", "eth1", "down")
        for line in lines:
            ip(ns, *line.split())
        record: dict[str, object] = {"scenario": name, "description": description,
                                     "setup": lines, "carrier_off_eth1": carrier_off}
        for flag in ("-4", "-6"):
            record[f"rules{flag}"] = ip(ns, "-j", flag, "rule", "show").stdout
            record[f"routes{flag}"] = ip(ns, "-j", flag, "route", "show", "table", "all").stdout
        gets = []
        for query in queries():
            done = ip(ns, "-j", "route", "get", *query, check=False)
            gets.append({"args": query, "status": done.returncode, "stdout": done.stdout,
                         "stderr": done.stderr})
        record["gets"] = gets
    (outdir / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")


def odd_rules(outdir: Path) -> None:
    with node() as ns:
        for spec in ODD_RULES:
            ip(ns, "rule", "add", *spec.split())
        for spec in ODD_RULES6:
            ip(ns, "-6", "rule", "add", *spec.split())
        (outdir / "rules-odd-v4.json").write_text(ip(ns, "-j", "-4", "rule", "show").stdout)
        (outdir / "rules-odd-v6.json").write_text(ip(ns, "-j", "-6", "rule", "show").stdout)
        (outdir / "rules-odd-v4-numeric.json").write_text(
            ip(ns, "-N", "-j", "-4", "rule", "show").stdout)
    with node() as ns:
        (outdir / "rules-default-v4.json").write_text(ip(ns, "-j", "-4", "rule", "show").stdout)
        (outdir / "rules-default-v6.json").write_text(ip(ns, "-j", "-6", "rule", "show").stdout)


def main() -> None:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    for name, (description, lines, carrier_off) in SCENARIOS.items():
        capture(name, description, lines, carrier_off, outdir)
        print(name)
    odd_rules(outdir)


if __name__ == "__main__":
    main()
