"""End-to-end: status and doctor judge the path the kernel really takes, on a real lab.

Each test starts from ``podroutes apply`` on a fresh lab (every pod reaches every other
pod), then makes a fault for real in one machine's namespace that leaves every route
podroutes owns looking right: a foreign more specific route, a lower metric, a policy rule
into another table, the host's own pod CIDR taken off its bridge. ``status`` must call it
drift (exit 3) with the path state, ``doctor`` must name exactly that fault on exactly that
host, the smoke matrix must agree, and the fix (by hand, or ``doctor --fix`` where it is
automatic) must bring the lab back. Routes and rules that do not touch pod traffic must not
be called faults.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Lab, snapshot

pytestmark = pytest.mark.lab

NODE0_PODS = ("node-0-pod-0", "node-1-pod-0")
CROSS = [NODE0_PODS, NODE0_PODS[::-1]]
#: The fix doctor gives node-0's own pod CIDR: the kernel's bridge route put back.
BRIDGE_ROUTE = "ip -4 route replace 10.200.0.0/24 dev cni0 proto kernel scope link src 10.200.0.1"


# --- helpers ---------------------------------------------------------------------------------


def applied(lab: Lab) -> None:
    """``podroutes apply`` on the fresh lab: converged, every pod reaches every pod, and
    status and doctor agree it is healthy."""
    done = lab.podroutes("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(f == [] for f in lab.smoke_failures_by_family().values())
    assert status(lab)[0] == 0
    code, report = doctor(lab)
    assert (code, report["findings"]) == (0, [])


def status(lab: Lab) -> tuple[int, dict[str, dict[str, Any]]]:
    """(exit status, per host its ``status --json`` record)."""
    done = lab.podroutes("status", "--json")
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return done.returncode, {h["host"]: h for h in json.loads(done.stdout)["hosts"]}


def paths(hosts: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, str, str, bool]]]:
    """Per host, its path issues as (dst, part, state, own)."""
    return {name: [(p["dst"], p["part"], p["state"], p["own"]) for p in h["paths"]]
            for name, h in hosts.items()}


def doctor(lab: Lab, *flags: str) -> tuple[int, dict[str, Any]]:
    done = lab.podroutes("doctor", "--json", *flags)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def found(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["kind"], f["host"]) for f in findings]


def run_fix(lab: Lab, host: str, finding: dict[str, Any]) -> None:
    """Run the commands doctor printed, on the host, as a person would paste them."""
    for command in finding["fix"]:
        lab.sh(host, "sh", "-c", command)


def healthy_again(lab: Lab) -> None:
    """Smoke clean in every family, doctor exit 0 with no findings, status exit 0."""
    assert all(f == [] for f in lab.smoke_failures_by_family().values()), \
        lab.smoke_failures_by_family()
    code, report = doctor(lab)
    assert (code, report["findings"]) == (0, [])
    code, hosts = status(lab)
    assert code == 0, paths(hosts)
    assert all(h["converged"] and h["paths"] == [] for h in hosts.values()), paths(hosts)


def doctor_matches_smoke(lab: Lab) -> None:
    """doctor's verdict (healthy or not) is the smoke matrix's (every pod reaches every
    pod or not)."""
    code, report = doctor(lab)
    failures = lab.smoke_failures()
    assert (code == 0 and report["healthy"]) == (failures == []), (report["findings"], failures)


def rules(lab: Lab) -> dict[str, str]:
    return {m.name: lab.sh(m.name, "ip", "rule", "show") + lab.sh(m.name, "ip", "-6", "rule",
                                                                   "show")
            for m in lab.spec.machines()}


def own_routes(lab: Lab) -> dict[str, list[str]]:
    return {m.name: sorted(f"{r.dst} {r.gateway} {r.protocol}" for r in lab.routes(m.name))
            for m in lab.spec.machines()}


# --- 1. a foreign more specific route ---------------------------------------------------------


def test_shadowed_ipv4_route_is_drift_and_doctor_names_it(lab: Lab) -> None:
    applied(lab)
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/25", "via", "192.168.10.10")

    code, hosts = status(lab)
    assert code == 3
    assert hosts["node-0"]["converged"] is False
    # node-0's own entry for 10.200.1.0/24 is still in sync: only the path says otherwise
    assert [r["state"] for r in hosts["node-0"]["before"]["routes"]] == ["in sync"]
    assert paths(hosts) == {
        "server": [], "node-1": [],
        "node-0": [("10.200.1.0/24", "10.200.1.0/25", "shadowed", False)]}
    [path] = hosts["node-0"]["paths"]
    assert path["route"]["dst"] == "10.200.1.0/25"
    assert path["route"]["gateway"] == "192.168.10.10"

    code, report = doctor(lab)
    assert code == 3
    assert found(report["findings"]) == [("route-shadowed", "node-0")]
    [finding] = report["findings"]
    assert "10.200.1.0/25" in finding["what"] and finding["fix"]
    assert not finding["automatic"]  # the route is not podroutes': never removed by --fix

    assert sorted(lab.smoke_failures()) == sorted(CROSS)

    run_fix(lab, "node-0", finding)
    assert lab.route("node-0", "10.200.1.0/25") is None
    healthy_again(lab)


# --- 2. a lower metric (IPv6) and a policy rule into another table (IPv4) -------------------------


def test_overridden_ipv6_route_and_policy_table_are_drift(dual_lab: Lab) -> None:
    lab = dual_lab
    applied(lab)

    # A foreign route for node-1's IPv6 pods with a lower metric than the planned 1024:
    # status used to call it "foreign, other metric" and exit 0.
    lab.sh("node-0", "ip", "-6", "route", "add", "fd00:200:1::/64", "via", "fd00:10::10",
           "metric", "100")
    code, hosts = status(lab)
    assert code == 3
    assert hosts["node-0"]["converged"] is False
    assert paths(hosts) == {
        "server": [], "node-1": [],
        "node-0": [("fd00:200:1::/64", "fd00:200:1::/64", "overridden by a lower metric",
                    False)]}
    [path] = hosts["node-0"]["paths"]
    assert (path["route"]["gateway"], path["route"]["metric"]) == ("fd00:10::10", 100)

    code, report = doctor(lab)
    assert code == 3
    assert found(report["findings"]) == [("route-overridden", "node-0")]
    [finding] = report["findings"]
    assert not finding["automatic"]

    by_family = lab.smoke_failures_by_family()
    assert by_family[4] == []
    assert sorted(by_family[6]) == sorted(CROSS)

    run_fix(lab, "node-0", finding)
    healthy_again(lab)

    # A policy rule sends node-1's IPv4 pods to table 100, which routes them to the server.
    lab.sh("node-0", "ip", "rule", "add", "to", "10.200.1.0/24", "lookup", "100", "pref", "100")
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.100",
           "table", "100")
    code, hosts = status(lab)
    assert code == 3
    assert hosts["node-0"]["converged"] is False
    table = [p for p in paths(hosts)["node-0"] if p[2] == "sent to another table"]
    assert table == [("10.200.1.0/24", "10.200.1.0/24", "sent to another table", False)]
    assert paths(hosts)["server"] == [] and paths(hosts)["node-1"] == []
    [path] = [p for p in hosts["node-0"]["paths"] if p["state"] == "sent to another table"]
    assert (path["route"]["table"], path["route"]["gateway"]) == (100, "192.168.10.100")

    code, report = doctor(lab)
    assert code == 3
    policy = [f for f in report["findings"] if f["kind"] == "route-policy-table"]
    assert found(report["findings"]) == [("route-policy-table", "node-0")]
    [finding] = policy
    assert not finding["automatic"]

    by_family = lab.smoke_failures_by_family()
    assert sorted(by_family[4]) == sorted(CROSS)
    assert by_family[6] == []

    run_fix(lab, "node-0", finding)
    assert "lookup 100" not in lab.sh("node-0", "ip", "rule", "show")
    healthy_again(lab)


# --- 3. the host's own pod CIDR taken off its bridge ---------------------------------------------


def test_own_cidr_replaced_or_blackholed_is_found_and_fixed(lab: Lab) -> None:
    applied(lab)

    for fault, kind in ((("via", "192.168.10.102"), "own-cidr-clash"),
                        (("blackhole",), "own-cidr-off-bridge")):
        argv = ("ip", "route", "replace", *fault, "10.200.0.0/24") if fault == ("blackhole",) \
            else ("ip", "route", "replace", "10.200.0.0/24", *fault)
        lab.sh("node-0", *argv)
        connected = lab.route("node-0", "10.200.0.0/24")
        assert connected is not None and connected.dev != "cni0"  # the bridge route is gone

        code, hosts = status(lab)
        assert code == 3, fault
        assert hosts["node-0"]["converged"] is False
        assert paths(hosts)["server"] == [] and paths(hosts)["node-1"] == []
        own = [p for p in paths(hosts)["node-0"] if p[3]]
        assert own and {(p[0], p[2]) for p in own} == {
            ("10.200.0.0/24", "own pod CIDR not on its bridge")}, paths(hosts)

        code, report = doctor(lab)
        assert code == 3
        assert found(report["findings"]) == [(kind, "node-0")], report["findings"]
        [finding] = report["findings"]
        assert finding["fix"] == [BRIDGE_ROUTE]
        assert finding["automatic"] is True and finding["fix_class"] == "safe"
        assert sorted(lab.smoke_failures()) == sorted(CROSS)
        doctor_matches_smoke(lab)

        code, fixed = doctor(lab, "--fix")
        assert code == 0, fixed
        assert [(f["host"], f["command"], f["status"]) for f in fixed["fixes"]] == [
            ("node-0", BRIDGE_ROUTE, 0)]
        assert fixed["worse"] == []
        assert fixed["remaining"] == []
        assert (kind, "node-0") in found(fixed["fixed"])
        route = lab.route("node-0", "10.200.0.0/24")
        assert route is not None and (route.dev, route.gateway, route.type) == (
            "cni0", None, "unicast")

        healthy_again(lab)
        doctor_matches_smoke(lab)


# --- 4. what other tools own, which does not touch pod traffic ------------------------------------


def test_harmless_foreign_routes_are_not_drift(lab: Lab) -> None:
    applied(lab)
    # Table 100 holds a route for node-1's pods, but no rule looks table 100 up.
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.100",
           "table", "100")
    lab.sh("node-0", "ip", "route", "add", "10.99.0.0/16", "via", "192.168.10.100")
    lab.sh("node-1", "ip", "route", "add", "10.98.0.0/16", "via", "192.168.10.100",
           "metric", "50")
    lab.sh("node-1", "ip", "route", "add", "blackhole", "10.250.0.0/16")
    lab.sh("server", "ip", "route", "add", "10.200.0.0/16", "via", "192.168.10.101",
           "metric", "500")  # a less specific summary: the /24s win

    assert lab.smoke_failures() == []
    code, hosts = status(lab)
    assert code == 0, paths(hosts)
    assert all(h["converged"] and h["paths"] == [] for h in hosts.values())
    code, report = doctor(lab)
    assert (code, report["findings"]) == (0, [])
    assert report["healthy"] is True

    before = (snapshot(lab), rules(lab), own_routes(lab))
    code, fixed = doctor(lab, "--fix")
    assert (code, fixed["fixes"], fixed["findings"]) == (0, [], [])
    assert (snapshot(lab), rules(lab), own_routes(lab)) == before


def test_an_unrelated_policy_rule_is_not_drift(lab: Lab) -> None:
    applied(lab)
    lab.sh("node-1", "ip", "rule", "add", "to", "10.77.0.0/16", "lookup", "200", "pref", "200")
    lab.sh("node-1", "ip", "route", "add", "10.77.0.0/16", "via", "192.168.10.100",
           "table", "200")
    assert lab.smoke_failures() == []

    code, report = doctor(lab)
    assert (code, found(report["findings"])) == (0, [])
    code, hosts = status(lab)
    assert code == 0, paths(hosts)
    before = (snapshot(lab), rules(lab), own_routes(lab))
    code, fixed = doctor(lab, "--fix")
    assert (code, fixed["fixes"]) == (0, [])
    assert (snapshot(lab), rules(lab), own_routes(lab)) == before


def test_doctor_probe_pings_between_bridges_and_agrees_with_the_smoke_matrix(
        lab: Lab) -> None:
    applied(lab)
    code, report = doctor(lab, "--probe")
    assert code == 0
    pings = report["probes"]["pings"]
    assert {(p["host"], p["target_host"], p["answered"]) for p in pings} == {
        ("node-0", "node-1", True), ("node-1", "node-0", True)}
    assert "does not prove forwarding" in report["probes"]["proves"]

    lab.sh("node-1", "ip", "route", "del", "10.200.0.0/24")  # the way back is gone
    code, report = doctor(lab, "--probe")
    assert code == 3
    assert {("probe-unanswered", "node-0"), ("probe-unanswered", "node-1"),
            ("route-missing", "node-1")} == set(found(report["findings"]))
    assert lab.smoke_failures() != []

    code, fixed = doctor(lab, "--probe", "--fix")
    assert code == 0, fixed["findings"]
    assert fixed["worse"] == [] and fixed["remaining"] == []
    assert all(p["answered"] for p in fixed["probes"]["pings"])
    assert lab.smoke_failures() == []
