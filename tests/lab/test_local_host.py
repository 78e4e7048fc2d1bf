"""End-to-end: ``--local --host NAME`` on the machine itself selects that host for doctor.

podroutes runs inside node-0 (its network and mount namespaces, as its sshd's sessions
see it) through its own shell, no SSH. Only node-0 is read, judged and changed: before
the fix, doctor judged the local table as if it were every host's, and ``--fix`` then
deleted node-0's correct route to node-1's pods as node-1's "own CIDR clash".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from podroutes.lab import netns as labmod

from .conftest import Lab

pytestmark = pytest.mark.lab


def on_node0(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """``podroutes ARGS --local --host node-0`` run on node-0 itself."""
    command = [sys.executable, "-m", "podroutes", *args, "-i", str(lab.machines_txt),
               "--local", "--host", "node-0"]
    return subprocess.run(labmod.exec_argv(lab.spec, "node-0", command), capture_output=True,
                          text=True, timeout=120, check=False,
                          env=dict(os.environ, COLUMNS="200"))


def every_route(lab: Lab) -> dict[str, list[str]]:
    """``ip -j route show table all`` (both families) of every lab machine, entry by entry;
    IPv6 link-local routes the kernel adds on its own schedule are left out."""
    out: dict[str, list[str]] = {}
    for machine in lab.spec.machines():
        entries = []
        for flag in ("-4", "-6"):
            for entry in json.loads(lab.sh(machine.name, "ip", "-j", flag, "route", "show",
                                           "table", "all") or "[]"):
                dst = str(entry.get("dst", ""))
                if flag == "-6" and entry.get("protocol") == "kernel" and (
                        dst.startswith("fe80") or dst == "ff00::/8"):
                    continue
                entry.pop("expires", None)
                entries.append(json.dumps(entry, sort_keys=True))
        out[machine.name] = sorted(entries)
    return out


def test_doctor_local_host_fix_changes_nothing_on_a_healthy_lab(lab: Lab) -> None:
    applied = lab.podroutes("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    healthy = lab.podroutes("doctor", "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    own = lab.route("node-0", "10.200.1.0/24")
    assert own is not None and own.protocol == 147
    before = every_route(lab)
    fixed = on_node0(lab, "doctor", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "fixes run" not in fixed.stdout
    assert every_route(lab) == before
    assert lab.route("node-0", "10.200.1.0/24") == own
    assert lab.smoke_failures() == []


def test_doctor_local_host_reports_only_that_host(lab: Lab) -> None:
    applied = lab.podroutes("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    done = on_node0(lab, "doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [h["host"] for h in report["hosts"]] == ["node-0"]
    assert report["healthy"] is True and report["findings"] == []
    human = on_node0(lab, "doctor")
    assert human.returncode == 0, human.stdout + human.stderr
    assert "healthy: node-0\n" in human.stdout
    assert "1 host: 0 findings on 0 hosts" in human.stdout
    # node-0's own table is judged as node-0's: a missing route there is found there only
    lab.sh("node-0", "ip", "route", "del", "10.200.1.0/24")
    missing = on_node0(lab, "doctor", "--json")
    assert missing.returncode == 3, missing.stdout + missing.stderr
    found = [(f["kind"], f["host"]) for f in json.loads(missing.stdout)["findings"]]
    assert found == [("route-missing", "node-0")]
