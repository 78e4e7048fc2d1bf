"""doctor --probe: which pings each node sends (from its bridge address to every other
node's, per family), the script that sends them, and how its output is read."""

from __future__ import annotations

import subprocess

from podroutes.diag.probe import PROBE_SCRIPT, parse_probes, probe_commands, unanswered
from podroutes.inventory import load

from .samples import DUAL, MACHINES


def test_each_node_pings_the_others_bridge_addresses_and_the_server_nothing() -> None:
    inv = load(MACHINES, "machines.txt")
    assert probe_commands(inv.host("server"), inv) == []  # no pod CIDR: no bridge
    (argv,) = probe_commands(inv.host("node-0"), inv)
    assert argv[:3] == ("sh", "-c", PROBE_SCRIPT)
    assert argv[4:] == ("10.200.0.1", "10.200.1.1")  # the source, then each target


def test_dual_stack_pings_both_families() -> None:
    inv = load(DUAL, "machines.txt")
    commands = probe_commands(inv.host("node-1"), inv)
    assert [c[4:] for c in commands] == [("10.200.1.1", "10.200.0.1"),
                                         ("fd00:200:1::1", "fd00:200::1")]


def test_output_is_read_per_target_and_a_missing_line_is_no_reply() -> None:
    inv = load(MACHINES, "machines.txt")
    node0 = inv.host("node-0")
    probes = parse_probes(node0, inv, ["ok 10.200.1.1\n"])
    assert [(str(p.target), p.target_host, p.answered) for p in probes] == [
        ("10.200.1.1", "node-1", True)]
    assert parse_probes(node0, inv, ["garbage\n"])[0].answered is False
    assert unanswered({"node-0": parse_probes(node0, inv, [""])}) == {
        "node-0": parse_probes(node0, inv, [""])}


def test_the_script_prints_one_verdict_per_target() -> None:
    """Run for real with a ping that is a stand-in on PATH (no packet is sent): every
    target gets exactly one line, in parallel, whatever ping answers."""
    done = subprocess.run(
        ["sh", "-c", "ping() { [ \"$9\" = 10.200.1.1 ]; }; " + PROBE_SCRIPT, "sh",
         "10.200.0.1", "10.200.1.1", "10.200.2.1"], capture_output=True, text=True,
        check=True)
    assert sorted(done.stdout.splitlines()) == ["fail 10.200.2.1", "ok 10.200.1.1"]
