"""persist end to end: from the jumpbox over SSH into lab machines that each have their
own /etc and /run (a mount namespace) and run their network manager, then a simulated
reboot through that manager: routes flushed, link down, runtime state cleared, the
interface brought back by ifup / systemd-networkd (after ``netplan generate``), and the
pods reach each other again. The real /etc and the root network namespace are checked
unchanged. NetworkManager cannot run here: its commands are proven with nmcli --offline.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from podroutes.lab import netns as labmod

from .conftest import (
    CLUSTER,
    Lab,
    lab_mounts,
    make_managed_lab,
    real_etc_digest,
    root_netns_state,
    simulate_reboot,
)

pytestmark = pytest.mark.lab

DROPIN = "/etc/systemd/network/10-eth0.network.d/60-podroutes.conf"


def planned(lab: Lab, machine: str, protocols: tuple[int, ...] = (147,)) -> set[str]:
    """The machine's pod routes (via another node) with one of ``protocols``."""
    return {f"{r.dst} via {r.gateway}" for r in lab.routes(machine)
            if r.gateway is not None and r.protocol in protocols}


def test_ifupdown_reboot_in_machines_with_their_own_etc() -> None:
    etc_before, netns_before = real_etc_digest(), root_netns_state()
    spec = make_managed_lab("ifupdown", dual_stack=True)
    lab = Lab(spec)
    try:
        assert lab.podroutes("apply").returncode == 0
        first = lab.podroutes("persist")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "ifupdown on eth0" in first.stdout and "3 changed" in first.stdout
        again = lab.podroutes("persist")
        assert "0 changed, 3 already persisted" in again.stdout, again.stdout
        node0 = lab.msh("node-0", "cat", "/etc/network/interfaces.d/podroutes")
        assert ("up ip -6 route replace fd00:200:1::/64 via fd00:10::102 dev eth0 onlink "
                "proto 147 || true") in node0
        assert node0 != lab.msh("node-1", "cat", "/etc/network/interfaces.d/podroutes")
        assert "podroutes" not in lab.sh("node-0", "ls", "/etc/network/interfaces.d")
        before = {m: planned(lab, m) for m in CLUSTER}
        assert len(before["server"]) == 4

        simulate_reboot(lab, "ifupdown")
        assert {m: planned(lab, m) for m in CLUSTER} == before
        assert all(r.onlink for r in lab.routes("node-0") if r.protocol == 147)
        assert lab.smoke_failures_by_family() == {4: [], 6: []}
        status = lab.podroutes("status", "--check-persist")
        assert status.returncode == 0, status.stdout

        # node-1 leaves: its routes leave every file; node-0 then needs none at all.
        smaller = lab.dir / "smaller.txt"
        smaller.write_text("".join(line for line in lab.machines_txt.read_text()
                                   .splitlines(keepends=True) if "node-1" not in line))
        pruned = lab.podroutes("persist", inventory=smaller)
        assert pruned.returncode == 0, pruned.stdout
        assert "10.200.1.0" not in lab.msh("server", "cat", "/etc/network/interfaces.d/podroutes")
        listing = lab.msh("node-0", "ls", "-A", "/etc/network/interfaces.d")
        assert listing.split() == [".podroutes.podroutes-bak"]
    finally:
        labmod.down(spec)
    assert lab_mounts(lab) == []
    assert real_etc_digest() == etc_before
    assert root_netns_state() == netns_before


def test_networkd_deletes_unpersisted_routes_and_brings_persisted_ones_back() -> None:
    spec = make_managed_lab("networkd")
    lab = Lab(spec)
    try:
        assert lab.podroutes("apply").returncode == 0
        unpersisted = lab.podroutes("status", "--check-persist", "--json")
        assert unpersisted.returncode == 3
        states = {r["state"] for h in json.loads(unpersisted.stdout)["hosts"]
                  for r in h["persistence"]["routes"]}
        assert states == {"applied, not persisted"}
        # doctor sees networkd in the machines' own namespaces, as persist does, and warns
        # before networkd deletes the routes
        warned = lab.podroutes("doctor", "--json")
        assert warned.returncode == 3, warned.stdout + warned.stderr
        kinds = {(f["kind"], f["host"]) for f in json.loads(warned.stdout)["findings"]}
        assert {("networkd-foreign-routes", m) for m in ("node-0", "node-1")} <= kinds
        assert "podroutes persist" in json.loads(warned.stdout)["findings"][0]["note"]
        # kube-router#1815: a reload of a changed file (what `netplan apply` does too)
        # reconfigures eth0, and the routes networkd does not configure are gone.
        reload_changed(lab, "node-0")
        assert settled(lab, "node-0", set())

        assert lab.podroutes("apply").returncode == 0
        persisted = lab.podroutes("persist")
        assert persisted.returncode == 0, persisted.stdout
        assert "networkd's own state says /etc/systemd/network/10-eth0.network" in \
            persisted.stdout
        assert "Protocol=147" in lab.msh("node-0", "cat", DROPIN)
        assert lab.podroutes("status", "--check-persist").returncode == 0
        calm = lab.podroutes("doctor", "--json")
        assert "networkd-foreign-routes" not in {
            f["kind"] for f in json.loads(calm.stdout)["findings"]}, calm.stdout
        route = {"10.200.1.0/24 via 192.168.10.102"}
        reload_changed(lab, "node-0")  # now networkd configures the route itself
        assert settled(lab, "node-0", route)
        lab.msh("node-0", "networkctl", "reconfigure", "eth0")
        assert settled(lab, "node-0", route)
        log = (spec.directory / "managers" / "node-0.log").read_text()
        assert "60-podroutes.conf:" not in log  # networkd parsed it without a complaint

        before = {m: planned(lab, m) for m in CLUSTER}
        simulate_reboot(lab, "networkd")
        assert {m: planned(lab, m) for m in CLUSTER} == before
        assert lab.smoke_failures() == []
        assert lab.podroutes("status", "--check-persist").returncode == 0
    finally:
        labmod.down(spec)


def reload_changed(lab: Lab, machine: str) -> None:
    """Change the user's .network file (a comment) and ``networkctl reload``."""
    lab.msh(machine, "sh", "-c", "echo '# edited' >> /etc/systemd/network/10-eth0.network && "
                                 "networkctl reload")


def settled(lab: Lab, machine: str, routes: set[str], seconds: float = 8.0) -> bool:
    """The machine's routes are ``routes`` and stay so (networkd reconfigures eth0 in the
    background: it removes and re-adds the address, then its routes)."""
    deadline = time.monotonic() + seconds
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if planned(lab, machine) == routes else 0
        if streak >= 10:  # half a second unchanged
            return True
        time.sleep(0.05)
    return False


def test_netplan_reboot_brings_the_routes_back_as_static_and_apply_adopts_them() -> None:
    spec = make_managed_lab("netplan", dual_stack=True)
    lab = Lab(spec)
    try:
        assert lab.podroutes("apply").returncode == 0
        done = lab.podroutes("persist")
        assert done.returncode == 0, done.stdout
        assert "netplan on eth0" in done.stdout
        mode = lab.msh("node-0", "stat", "-c", "%a", "/etc/netplan/60-podroutes.yaml")
        assert mode.strip() == "600"
        lab.msh("node-0", "netplan", "generate")  # netplan itself accepts the merge
        before = {m: planned(lab, m) for m in CLUSTER}

        simulate_reboot(lab, "netplan")
        # netplan cannot set a route protocol: the routes come back as networkd's static.
        assert {m: planned(lab, m, (4,)) for m in CLUSTER} == before
        assert lab.smoke_failures_by_family() == {4: [], 6: []}
        status = lab.podroutes("status", "--check-persist", "--json")
        assert status.returncode == 3  # not owned (adoptable) until apply re-tags them
        hosts = json.loads(status.stdout)["hosts"]
        assert {r["state"] for h in hosts for r in h["before"]["routes"]} == {"not owned"}
        assert {r["state"] for h in hosts for r in h["persistence"]["routes"]} == {"persisted"}
        adopted = lab.podroutes("apply", "--json")
        assert adopted.returncode == 0
        assert all(h["before"]["counts"]["adopt"] == len(before[h["host"]])
                   for h in json.loads(adopted.stdout)["hosts"])

        # The alternative that keeps the protocol: a drop-in for netplan's generated file.
        switched = lab.podroutes("persist", "--format", "networkd")
        assert switched.returncode == 0, switched.stdout
        assert "remove /etc/netplan/60-podroutes.yaml" in switched.stdout
        assert "Protocol=147" in lab.msh(
            "node-0", "cat", "/etc/systemd/network/10-netplan-eth0.network.d/60-podroutes.conf")
        simulate_reboot(lab, "netplan")
        assert {m: planned(lab, m) for m in CLUSTER} == before
        assert lab.podroutes("status").returncode == 0
    finally:
        labmod.down(spec)


def test_networkmanager_commands_are_what_nmcli_offline_accepts() -> None:
    from tests.unit.test_persist_validate import nmcli  # the unpacked nmcli

    binary, env = nmcli()
    spec = make_managed_lab("nm")
    lab = Lab(spec)
    try:
        auto = lab.podroutes("persist")
        assert auto.returncode == 1 and "cannot tell what configures eth0" in auto.stdout
        dry = lab.podroutes("persist", "--format", "nm", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stdout
        node0 = next(h for h in json.loads(dry.stdout)["hosts"] if h["host"] == "node-0")
        assert any("NetworkManager does not run" in w for w in node0["warnings"])
        modify, reapply = node0["commands"]
        assert reapply == ["nmcli", "device", "reapply", "eth0"]
        keyfile = lab.msh("node-0", "cat",
                          "/etc/NetworkManager/system-connections/eth0.nmconnection")
        done = subprocess.run([binary, "--offline", "connection", "modify", *modify[4:]],
                              input=keyfile, capture_output=True, text=True, env=env,
                              check=False)
        assert done.returncode == 0, (shlex.join(modify), done.stderr)
        assert "route1=10.200.1.0/24,192.168.10.102,0" in done.stdout
        real = lab.podroutes("persist", "--format", "nm")
        assert real.returncode == 1 and "NetworkManager does not run" in real.stdout
        # issue 15 #1: nothing was written or run, and the output says so, claiming nothing
        assert "nothing written" in real.stdout
        assert "ran: " not in real.stdout and "create /etc/podroutes" not in real.stdout
        assert " 0 changed, " in real.stdout
        assert lab.msh("node-0", "ls", "-A", "/etc/NetworkManager/system-connections").split() \
            == ["eth0.nmconnection"]
    finally:
        labmod.down(spec)


def test_networkd_format_where_no_network_file_matches_fails_plainly(lab: Lab) -> None:
    """The lab's machines see this machine's /usr/lib/systemd/network (Debian's stock
    80-*.network files, with Virtualization= and Driver= keys) and have no .network file
    for eth0: persist says networkd does not manage eth0, never that a [Match] key cannot
    be evaluated, and writes nothing."""
    done = lab.podroutes("persist", "--format", "networkd", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    hosts = json.loads(done.stdout)["hosts"]
    assert len(hosts) == 3
    for h in hosts:
        assert "systemd-networkd does not manage eth0" in h["error"], h
        assert "cannot evaluate" not in h["error"]
        assert h["written"] is False and h["files"] == [] and h["commands"] == []
