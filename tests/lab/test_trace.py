"""End-to-end: ``podroutes trace`` from the jumpbox, offline, on the hosts' real tables
(``--observed``) and against each hop's kernel (``--live``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from podroutes.lab import netns as labmod

from .conftest import Lab, install_planned_routes

pytestmark = pytest.mark.lab


def trace(lab: Lab, *args: str, ssh: bool = True) -> tuple[int, dict[str, Any]]:
    done = lab.podroutes("trace", *args, "--json", ssh=ssh)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def test_live_trace_agrees_with_the_kernel_until_forwarding_is_off(lab: Lab) -> None:
    install_planned_routes(lab)
    status, t = trace(lab, "10.200.0.2", "10.200.1.2", "--live")
    assert (status, t["outcome"], t["disagreements"]) == (0, "delivered", [])
    assert [(h["host"], h["kernel"]) for h in t["hops"]] == [
        ("node-0", "via 192.168.10.102 dev eth0"), ("node-1", "dev cni0")]

    lab.sh("node-0", "sysctl", "-qw", "net.ipv4.ip_forward=0")
    status, t = trace(lab, "10.200.0.2", "10.200.1.2", "--live")
    assert status == 3
    # node-0 reads as not forwarding: the pod's packet is dropped there, never "delivered",
    # and the kernel's answer for that hop (an error) agrees
    assert t["outcome"] == "dropped: forwarding off"
    assert "dropped at node-0: forwarding off (net.ipv4.ip_forward = 0)" in t["reason"]
    assert t["disagreements"] == []
    assert [(h["host"], h["kernel"]) for h in t["hops"]] == [
        ("node-0", "error: No route to host")]
    status, seen = trace(lab, "10.200.0.2", "10.200.1.2", "--observed")
    assert (status, seen["outcome"]) == (3, "dropped: forwarding off")
    human = lab.podroutes("trace", "10.200.0.2", "10.200.1.2", "--live")
    assert human.returncode == 3
    assert "dropped at node-0: forwarding off" in human.stdout
    assert "delivered" not in human.stdout
    assert "┌─ node-0  192.168.10.101 ─" in human.stdout


def test_trace_goes_around_a_host_it_cannot_read(lab: Lab) -> None:
    """The server is not on the path between two nodes' pods: with its sshd stopped, the
    trace is still judged (and names the server as unread); through it, it is unknown."""
    install_planned_routes(lab)
    assert labmod.stop_sshd(lab.spec, "server")
    status, t = trace(lab, "10.200.0.2", "10.200.1.2", "--live")
    assert (status, t["outcome"], t["disagreements"]) == (0, "delivered", [])
    assert "server" in t["errors"]
    done = lab.podroutes("trace", "server", "10.200.1.2", "--observed", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    through = json.loads(done.stdout)
    assert through["outcome"] == "unknown: a host on the path was not read"
    assert "server" in through["reason"]


def test_observed_trace_names_the_loop_the_plan_does_not_have(lab: Lab) -> None:
    install_planned_routes(lab)
    # two wrong gateways: node-0 sends node-1's pods to the server, the server to node-0
    lab.sh("node-0", "ip", "route", "replace", "10.200.1.0/24", "via", "192.168.10.100",
           "proto", "147")
    lab.sh("server", "ip", "route", "replace", "10.200.1.0/24", "via", "192.168.10.101",
           "proto", "147")
    lab.sh("server", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    status, planned = trace(lab, "10.200.0.2", "10.200.1.2", ssh=False)  # offline
    assert (status, planned["outcome"], planned["source"]) == (0, "delivered", "plan")
    status, seen = trace(lab, "10.200.0.2", "10.200.1.2", "--observed")
    assert (status, seen["outcome"], seen["source"]) == (3, "looped", "observed")
    assert seen["loop"] == ["node-0", "server", "node-0"]
    assert [h["route"] for h in seen["hops"]] == [
        "10.200.1.0/24 via 192.168.10.100 dev eth0 proto 147",
        "10.200.1.0/24 via 192.168.10.101 dev eth0 proto 147"]
    assert ("node-0-pod-0", "node-1-pod-0") in lab.smoke_failures()


def test_bad_input_exits_2_naming_what_is_wrong(lab: Lab) -> None:
    for args, message in ((("10.9.9.9", "node-1"), "10.9.9.9 is in no pod CIDR"),
                          (("node-0", "node-9"), "'node-9' is neither an IP address")):
        done = lab.podroutes("trace", *args, "--live")
        assert done.returncode == 2, done.stdout
        assert message in done.stderr
    assert "Connection from" not in lab.sshd_log("node-0")  # refused before connecting
