"""End-to-end: podroutes run from the lab's jumpbox over real SSH into real namespaces.

What a user sees: pods cannot reach each other across nodes before apply and can after;
a second apply changes nothing; routes made by hand are adopted without a gap, foreign
ones survive, a node that left is pruned, a dead host fails alone, bad input changes
nothing anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from podroutes.lab import netns as labmod

from .conftest import Lab, cross_node, restart_sshd

pytestmark = pytest.mark.lab

PROTO = 147


def test_smoke_fails_before_apply_and_passes_after(lab: Lab) -> None:
    before = lab.smoke_failures()
    assert cross_node(before) == before != []  # exactly the cross-node pairs fail
    assert len(before) == 2  # node-0-pod-0 <-> node-1-pod-0, both directions

    applied = lab.podroutes("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "3/3 hosts converged" in applied.stdout

    status = lab.podroutes("status")
    assert status.returncode == 0, status.stdout
    assert "in sync" in status.stdout
    assert lab.smoke_failures() == []
    route = lab.route("node-0", "10.200.1.0/24")
    assert route is not None
    assert (str(route.gateway), route.protocol) == ("192.168.10.102", PROTO)
    server = {str(r.dst): str(r.gateway) for r in lab.routes("server") if r.protocol == PROTO}
    assert server == {"10.200.0.0/24": "192.168.10.101", "10.200.1.0/24": "192.168.10.102"}
    assert lab.route("node-0", "10.200.0.0/24").protocol == 2  # type: ignore[union-attr]


def test_second_apply_reports_zero_changes(lab: Lab) -> None:
    assert lab.podroutes("apply").returncode == 0
    again = lab.podroutes("apply", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    for host in report["hosts"]:
        assert host["before"]["changes"] == [], host
        assert host["applied"] is False
    human = lab.podroutes("apply")
    assert "no changes" in human.stdout


def test_dry_run_prints_commands_and_touches_nothing(lab: Lab) -> None:
    before = {m: lab.routes(m) for m in ("server", "node-0", "node-1")}
    dry = lab.podroutes("apply", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "route add 10.200.1.0/24 via 192.168.10.102 proto 147" in dry.stdout
    assert "route add 10.200.0.0/24 via 192.168.10.101 proto 147" in dry.stdout
    assert "nothing was changed" in dry.stdout
    assert {m: lab.routes(m) for m in before} == before


def test_hand_added_route_is_adopted_without_a_ping_gap(lab: Lab) -> None:
    # The seed's way: ip route add on every machine, proto boot.
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.102")
    lab.sh("node-1", "ip", "route", "add", "10.200.0.0/24", "via", "192.168.10.101")
    assert lab.route("node-0", "10.200.1.0/24").protocol == 3  # type: ignore[union-attr]
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("node-0-pod-0"), "ping", "-n", "-q", "-i", "0.01",
         "-w", "4", "10.200.1.2"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        applied = lab.podroutes("apply", "--json")
    finally:
        out, _ = pinger.communicate(timeout=30)
    assert applied.returncode == 0, applied.stderr
    hosts = {h["host"]: h for h in json.loads(applied.stdout)["hosts"]}
    assert hosts["node-0"]["before"]["counts"]["adopt"] == 1
    assert hosts["node-1"]["before"]["counts"]["adopt"] == 1
    assert hosts["server"]["before"]["counts"]["add"] == 2
    assert lab.route("node-0", "10.200.1.0/24").protocol == PROTO  # type: ignore[union-attr]
    assert " 0% packet loss" in out, out
    assert pinger.returncode == 0


def test_foreign_route_with_other_gateway_is_reported_and_left_alone(lab: Lab) -> None:
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.100",
           "proto", "static")
    applied = lab.podroutes("apply")
    assert applied.returncode == 1, applied.stdout
    assert "node-0: 10.200.1.0/24 should go via 192.168.10.102 (node-1)" in applied.stdout
    assert "not ours" in applied.stdout
    foreign = lab.route("node-0", "10.200.1.0/24")
    assert foreign is not None
    assert (str(foreign.gateway), foreign.protocol) == ("192.168.10.100", 4)
    # everyone else converged
    assert lab.route("node-1", "10.200.0.0/24").protocol == PROTO  # type: ignore[union-attr]
    status = lab.podroutes("status")
    assert status.returncode == 3
    assert "conflicting" in status.stdout

    forced = lab.podroutes("apply", "--force")
    assert forced.returncode == 0, forced.stdout
    taken = lab.route("node-0", "10.200.1.0/24")
    assert taken is not None
    assert (str(taken.gateway), taken.protocol) == ("192.168.10.102", PROTO)


def test_removed_node_is_pruned_and_foreign_routes_survive(lab: Lab) -> None:
    assert lab.podroutes("apply").returncode == 0
    lab.sh("server", "ip", "route", "add", "10.99.0.0/16", "via", "192.168.10.101")
    smaller = lab.dir / "two-hosts.txt"
    smaller.write_text("\n".join(
        line for line in lab.machines_txt.read_text().splitlines() if "node-1" not in line))
    applied = lab.podroutes("apply", "--json", inventory=smaller)
    assert applied.returncode == 0, applied.stderr
    hosts = {h["host"]: h for h in json.loads(applied.stdout)["hosts"]}
    assert hosts["server"]["before"]["counts"]["remove"] == 1
    assert hosts["node-0"]["before"]["counts"]["remove"] == 1
    assert lab.route("server", "10.200.1.0/24") is None
    assert lab.route("node-0", "10.200.1.0/24") is None
    assert lab.route("server", "10.200.0.0/24").protocol == PROTO  # type: ignore[union-attr]
    hand = lab.route("server", "10.99.0.0/16")
    assert hand is not None and hand.protocol == 3


def test_host_with_sshd_stopped_fails_alone(lab: Lab) -> None:
    assert labmod.stop_sshd(lab.spec, "node-1")
    applied = lab.podroutes("apply")
    assert applied.returncode == 1
    assert "node-1" in applied.stdout and "refused" in applied.stdout.lower()
    assert "2/3 hosts converged" in applied.stdout
    assert lab.route("server", "10.200.1.0/24").protocol == PROTO  # type: ignore[union-attr]
    assert lab.route("node-0", "10.200.1.0/24").protocol == PROTO  # type: ignore[union-attr]
    assert lab.route("node-1", "10.200.0.0/24") is None


def test_invalid_inventory_exits_2_before_any_ssh_connection(lab: Lab) -> None:
    bad = lab.dir / "bad.txt"
    good = lab.machines_txt.read_text()
    bad.write_text(good + "192.168.10.103 node-2.kubernetes.local node-2 10.200.1.0/24\n")
    log_before = {m: lab.sshd_log(m) for m in ("server", "node-0", "node-1")}
    applied = lab.podroutes("apply", inventory=bad)
    assert applied.returncode == 2
    assert f"{bad}:5: POD_SUBNET:" in applied.stderr
    assert "overlaps 10.200.1.0/24 of node-1" in applied.stderr
    for machine, log in log_before.items():
        assert lab.sshd_log(machine) == log, f"{machine} saw a connection"
        assert lab.route(machine, "10.200.0.0/24" if machine != "node-0" else
                         "10.200.1.0/24") is None
    # a valid run does show up in the same logs, so the check above can fail
    assert lab.podroutes("status").returncode == 3
    assert "Connection from 192.168.10.10" in lab.sshd_log("server")


def test_user_ssh_config_aliases_and_proxyjump_are_honoured(lab: Lab) -> None:
    """The user's ssh config decides how hosts are reached: here the nodes only through
    ProxyJump via the server, under alias names the inventory does not know, with the
    User, Port, IdentityFile and known_hosts the config names (node-1's sshd listens on
    port 2222 only, which only the config knows)."""
    d = lab.dir
    conf = d / "sshd" / "node-1.conf"
    conf.write_text(conf.read_text().replace("\nPort 22\n", "\nPort 2222\n"))
    restart_sshd(lab, "node-1", [])
    known = (d / "known_hosts").read_text()
    node1_key = next(ln for ln in known.splitlines() if ln.startswith("node-1,")).split(" ", 1)[1]
    (d / "my_known_hosts").write_text(known + f"[192.168.10.102]:2222 {node1_key}\n")
    config = d / "my_ssh_config"
    config.write_text(
        "Host k8s-*\n  User root\n"
        "Host k8s-server\n  HostName 192.168.10.100\n"
        "Host k8s-node-0\n  HostName 192.168.10.101\n  ProxyJump k8s-server\n"
        "Host k8s-node-1\n  HostName 192.168.10.102\n  Port 2222\n  ProxyJump k8s-server\n"
        f"Host *\n  IdentityFile {d}/id_ed25519\n  UserKnownHostsFile {d}/my_known_hosts\n"
        "  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n")
    inventory = d / "inventory.yaml"
    inventory.write_text(
        "hosts:\n"
        "  - {name: server, ipv4: 192.168.10.100, ssh: {target: k8s-server}}\n"
        "  - {name: node-0, ipv4: 192.168.10.101, pod_cidrs: [10.200.0.0/24],"
        " ssh: {target: k8s-node-0}}\n"
        "  - {name: node-1, ipv4: 192.168.10.102, pod_cidrs: [10.200.1.0/24],"
        " ssh: {target: k8s-node-1}}\n")
    applied = lab.podroutes("apply", inventory=inventory, ssh_config=config)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert lab.smoke_failures() == []
    # node-0 saw the connection come from the server (the jump host), not the jumpbox
    assert "Connection from 192.168.10.100" in lab.sshd_log("node-0")
    assert "Connection from 192.168.10.10 " not in lab.sshd_log("node-0")
    assert "port 2222" in lab.sshd_log("node-1")


def test_host_key_checking_stays_on(lab: Lab) -> None:
    """A host whose key is not the pinned one is refused, not silently trusted."""
    known = lab.dir / "known_hosts"
    lines = known.read_text().splitlines()
    other = next(line for line in lines if line.startswith("node-0,")).split(" ", 1)[1]
    known.write_text("\n".join(
        line.split(" ", 1)[0] + " " + other if line.startswith("node-1,") else line
        for line in lines) + "\n")
    applied = lab.podroutes("apply")
    assert applied.returncode == 1
    assert "node-1" in applied.stdout
    assert "host key" in applied.stdout.lower()
    assert lab.route("node-1", "10.200.0.0/24") is None


def test_local_apply_on_the_host_itself(lab: Lab) -> None:
    """--local --host NAME: the same engine through this machine's own shell, no SSH."""
    argv = ["ip", "netns", "exec", lab.ns("node-0"), sys.executable, "-m", "podroutes",
            "apply", "--local", "--host", "node-0", "-i", str(lab.machines_txt)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 host converged, 1 change sent" in done.stdout
    route = lab.route("node-0", "10.200.1.0/24")
    assert route is not None and route.protocol == PROTO
    assert lab.route("server", "10.200.0.0/24") is None  # no other host was touched
    wrong = subprocess.run([*argv[:-5], "--local", "-i", str(lab.machines_txt)],
                           capture_output=True, text=True, check=False)
    assert wrong.returncode == 2
    assert "needs --host NAME" in wrong.stderr


def test_progress_shows_on_a_terminal_and_never_in_pipes_or_json(lab: Lab) -> None:
    """On a terminal (a pty from `script`) apply draws a progress bar over the hosts;
    piped, or with --json, the output is only the result."""
    command = (f"ip netns exec {lab.ns('jumpbox')} {sys.executable} -m podroutes apply "
               f"-i {lab.machines_txt} --ssh-config {lab.dir / 'ssh_config'} "
               "--ssh-target hostname")
    tty = subprocess.run(["script", "-qfec", command, "/dev/null"], capture_output=True,
                         text=True, check=False, timeout=60)
    assert tty.returncode == 0, tty.stdout
    assert "applying" in tty.stdout and "3/3 hosts converged" in tty.stdout
    piped = lab.podroutes("apply")
    assert "applying" not in piped.stdout + piped.stderr
    as_json = subprocess.run(["script", "-qfec", command + " --json", "/dev/null"],
                             capture_output=True, text=True, check=False, timeout=60)
    assert "applying" not in as_json.stdout
