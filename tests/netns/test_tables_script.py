"""status's tables script (``core.paths.TABLES_SCRIPT``) in a real namespace: the tables
it reads are exactly those the rules look up, as ``ip rule show | sed | sort -u`` found
them before the script took them from the JSON it already read (saving three processes a
family). Root: one namespace, ``prt<hex>-tbl``, deleted by name also on failure."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from podroutes.core.paths import TABLES_SCRIPT
from tests.netns.conftest import unique_name

pytestmark = pytest.mark.root

RULES = [
    ("-4", "from 10.0.0.0/8 lookup 100"),
    ("-4", "to 10.9.0.0/16 table 200 pref 50"),
    ("-4", "fwmark 0x1 lookup 300 pref 60"),
    ("-4", "from 10.2.0.0/16 lookup main suppress_prefixlength 0 pref 70"),
    ("-4", "from 10.3.0.0/16 goto 32766 pref 80"),
    ("-4", "from 10.4.0.0/16 nop pref 90"),
    ("-4", "not from 10.5.0.0/16 lookup 100 pref 95"),
    ("-6", "from fd00::/8 lookup 600"),
    ("-6", "to fd00:9::/32 lookup 100 pref 40"),
]


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"{unique_name()}-tbl"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for family, rule in RULES:
            subprocess.run(["ip", "-n", name, family, "rule", "add", *rule.split()],
                           check=True)
        subprocess.run(["ip", "-n", name, "route", "add", "blackhole", "10.1.0.0/16",
                        "table", "100"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_the_tables_read_are_the_tables_the_rules_look_up(ns: str) -> None:
    out = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", TABLES_SCRIPT],
                         capture_output=True, text=True, check=True).stdout
    # split("\n"), not splitlines(): that also splits at the record separator \x1e
    read = {tuple(line[1:].split()[1:]) for line in out.split("\n")
            if line.startswith("\x1eT ")}
    expected = set()
    for v in ("4", "6"):
        old = subprocess.run(
            ["ip", "netns", "exec", ns, "sh", "-c",
             f"ip -{v} rule show | sed -n 's/.* lookup \\([^ ]*\\).*/\\1/p' | sort -u"],
            capture_output=True, text=True, check=True).stdout.split()
        expected |= {(v, t) for t in old if t not in ("main", "254")}
    assert read == expected
    assert {("4", "100"), ("4", "200"), ("4", "300"), ("6", "600"), ("6", "100"),
            ("4", "local"), ("4", "default")} <= read
    assert '"dst":"10.1.0.0/16"' in out and '"type":"blackhole"' in out  # table 100 read
