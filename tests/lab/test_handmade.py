"""Hand-made routes to planned destinations that podroutes must not silently change or
ignore, on the lab's real kernel tables: a route carrying attributes (mtu, src, initcwnd)
is reported and kept as it is; a route with the planned gateway at another metric is
reported with the one the kernel really uses."""

from __future__ import annotations

import json

import pytest

from .conftest import Lab

pytestmark = pytest.mark.lab


def test_a_hand_made_route_with_attributes_is_kept_and_reported(lab: Lab) -> None:
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.102",
           "mtu", "lock", "1400", "src", "192.168.10.101", "initcwnd", "10")
    before = lab.sh("node-0", "ip", "route", "show", "10.200.1.0/24")
    applied = lab.podroutes("apply")
    assert applied.returncode == 1, applied.stdout  # a conflict kept
    assert ("node-0: 10.200.1.0/24 via 192.168.10.102 (proto boot, not ours) also carries "
            "src 192.168.10.101, mtu 1400, initcwnd 10") in applied.stdout, applied.stdout
    assert "--force takes it over" in applied.stdout
    # untouched, mtu lock included: what `ip -j route` cannot even show
    assert lab.sh("node-0", "ip", "route", "show", "10.200.1.0/24") == before
    assert "mtu lock 1400" in before
    status = lab.podroutes("status", "--json")
    assert status.returncode == 3  # drift: a conflict
    node0 = next(h for h in json.loads(status.stdout)["hosts"] if h["host"] == "node-0")
    row = next(s for s in node0["before"]["routes"] if s["dst"] == "10.200.1.0/24")
    assert row["state"] == "conflicting"
    assert row["observed_extras"] == ["src 192.168.10.101", "mtu 1400", "initcwnd 10"]
    assert lab.smoke().returncode == 0  # and traffic still flows through it


def test_a_hand_made_route_at_another_metric_is_reported_with_the_one_the_kernel_uses(
        lab: Lab) -> None:
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.102",
           "metric", "100", "proto", "static")
    applied = lab.podroutes("apply")
    assert applied.returncode == 0, applied.stdout
    line = ("node-0: 10.200.1.0/24 via 192.168.10.102 metric 100 (proto static) is there "
            "too (same gateway), not ours: left alone; the kernel uses podroutes' (metric 0)")
    assert line in applied.stdout, applied.stdout
    kernel = lab.sh("node-0", "ip", "route", "get", "10.200.1.2")
    assert "proto" not in kernel or "via 192.168.10.102" in kernel
    status = lab.podroutes("status")
    assert status.returncode == 0, status.stdout
    assert line in status.stdout
    # a foreign route that beats podroutes' metric: said so (IPv4 metric 0 cannot be
    # beaten, so delete ours and let the hand-made one be the only one)
    lab.sh("node-0", "ip", "route", "del", "10.200.1.0/24", "metric", "0")
    status = lab.podroutes("status")
    assert status.returncode == 3  # podroutes' own route is missing
    assert ("node-0: 10.200.1.0/24 via 192.168.10.102 metric 100 (proto static) is there too "
            "(same gateway), not ours: left alone; the kernel uses this one (podroutes' is "
            "missing)") in status.stdout, status.stdout
