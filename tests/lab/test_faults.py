"""Fault suite: podroutes never breaks what it did not make and never leaves a host
half-configured without saying so.

Every test snapshots every machine's foreign routes (all tables, both families) before
and after and asserts they are unchanged, except routes the test itself made or removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podroutes.lab import netns as labmod

from .conftest import (
    OWN_PROTOCOL,
    Lab,
    lab_ssh_processes,
    podroutes_popen,
    restart_sshd,
    snapshot,
)

pytestmark = pytest.mark.lab


def wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def wait_all(gate: Path, hosts: tuple[str, ...] = ("server", "node-0", "node-1")) -> None:
    """Wait until every host has reached the failpoint."""
    for host in hosts:
        wait_for(Path(f"{gate}.{host}.reached"))


def wait_gone(pids_of: object, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := pids_of()) and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    return left  # type: ignore[no-any-return]


def assert_converged(lab: Lab) -> None:
    status = lab.podroutes("status")
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The file a failpoint waits on while it exists."""
    path = tmp_path / "gate"
    path.touch()
    yield path
    path.unlink(missing_ok=True)


# --- partial batch failures ------------------------------------------------------------


def test_a_line_failing_mid_batch_does_not_drop_the_rest(lab: Lab, gate: Path) -> None:
    """A route appears between podroutes' read and its batch (a real race): that one line
    fails with File exists, every other line still applies, the foreign route survives,
    and the report names exactly the route that is not done."""
    proc = podroutes_popen(lab, "apply", "--json",
                           env={"PODROUTES_FAILPOINT": f"read:{gate}"})
    wait_all(gate)
    lab.sh("server", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.101")
    before = snapshot(lab)
    gate.unlink()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    server = hosts["server"]["results"]
    assert [(r["dst"], r["outcome"]) for r in server] == [
        ("10.200.0.0/24", "applied"), ("10.200.1.0/24", "failed")]
    assert "File exists" in server[1]["message"]
    assert hosts["node-0"]["converged"] and hosts["node-1"]["converged"]
    assert snapshot(lab) == before
    hand = lab.route("server", "10.200.1.0/24")
    assert hand is not None and (str(hand.gateway), hand.protocol) == ("192.168.10.101", 3)


def test_missing_device_is_reported_per_route(lab: Lab, gate: Path) -> None:
    """An on-link route to adopt whose device vanishes before the batch: the kernel says
    the device is gone, podroutes reports that route and applies the rest."""
    lab.sh("node-0", "ip", "link", "add", "vtest0", "type", "veth", "peer", "name", "vtest1")
    lab.sh("node-0", "ip", "link", "set", "vtest0", "up")
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.102", "dev",
           "vtest0", "onlink")
    proc = podroutes_popen(lab, "apply", "--json",
                           env={"PODROUTES_FAILPOINT": f"read:{gate}"})
    wait_all(gate)
    lab.sh("node-0", "ip", "link", "del", "vtest0")
    gate.unlink()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    [result] = hosts["node-0"]["results"]
    assert (result["action"], result["outcome"]) == ("adopt", "failed")
    assert "Cannot find device" in result["message"]
    assert hosts["server"]["converged"] and hosts["node-1"]["converged"]
    assert lab.podroutes("apply").returncode == 0  # the next run simply adds it
    assert_converged(lab)


def test_gateway_off_the_segment_is_withheld_before_sending(lab: Lab) -> None:
    """A node on another subnet: every host is told before anything is sent that host-gw
    needs one L2 segment; all other routes still converge."""
    inventory = lab.dir / "far.txt"
    inventory.write_text(lab.machines_txt.read_text()
                         + "192.168.20.9 node-9.kubernetes.local node-9 10.200.9.0/24\n")
    before = snapshot(lab)
    applied = lab.podroutes("apply", "--json", inventory=inventory)
    assert applied.returncode == 1
    hosts = {h["host"]: h for h in json.loads(applied.stdout)["hosts"]}
    for name in ("server", "node-0", "node-1"):
        withheld = [r for r in hosts[name]["results"] if r["outcome"] == "withheld"]
        assert [r["dst"] for r in withheld] == ["10.200.9.0/24"], name
        assert "same L2 segment" in withheld[0]["message"]
        assert all(r["outcome"] == "applied" for r in hosts[name]["results"]
                   if r["dst"] != "10.200.9.0/24")
        assert lab.route(name, "10.200.9.0/24") is None
    assert "could not resolve" in hosts["node-9"]["error"]  # not in the lab's ssh_config
    assert snapshot(lab) == before
    assert lab.smoke_failures() == []


# --- crash safety ------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["connect", "read", "batch", "verify"])
def test_kill_9_at_any_point_then_rerun_converges(lab: Lab, gate: Path, point: str) -> None:
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.102")  # adopt
    lab.sh("server", "ip", "route", "add", "10.77.0.0/16", "via", "192.168.10.101")  # bystander
    before = snapshot(lab)
    proc = podroutes_popen(lab, "apply", env={"PODROUTES_FAILPOINT": f"{point}:{gate}"})
    wait_for(Path(str(gate) + ".reached"))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    gate.unlink()
    assert wait_gone(lambda: lab_ssh_processes(lab)) == []  # ssh children do not linger
    rerun = lab.podroutes("apply")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_converged(lab)
    after = snapshot(lab)
    adopted = {r for r in before["node-0"] if '"dst": "10.200.1.0/24"' in r}
    assert after["node-0"] == before["node-0"] - adopted
    assert {k: v for k, v in after.items() if k != "node-0"} == \
        {k: v for k, v in before.items() if k != "node-0"}
    assert lab.smoke_failures() == []


# --- concurrency -------------------------------------------------------------------------


def test_a_second_apply_fails_clearly_while_the_first_holds_the_lock(
    lab: Lab, gate: Path
) -> None:
    first = podroutes_popen(lab, "apply", env={"PODROUTES_FAILPOINT": f"read:{gate}"})
    wait_all(gate)
    second = lab.podroutes("apply", "--json", "--lock-wait", "1")
    assert second.returncode == 1
    for host in json.loads(second.stdout)["hosts"]:
        assert "holds this host's lock" in host["error"], host
        assert host["applied"] is False and host["results"] == []  # nothing, not a mix
    assert lab.route("node-0", "10.200.1.0/24") is None  # the first has not written yet
    gate.unlink()
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert_converged(lab)


def test_a_second_apply_waits_for_the_lock_then_finds_nothing_to_do(
    lab: Lab, gate: Path
) -> None:
    first = podroutes_popen(lab, "apply", env={"PODROUTES_FAILPOINT": f"read:{gate}"})
    wait_all(gate)
    second = podroutes_popen(lab, "apply", "--json", "--lock-wait", "20")
    time.sleep(1.0)
    assert second.poll() is None  # still waiting on the lock
    gate.unlink()
    first.communicate(timeout=60)
    out, err = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err
    for host in json.loads(out)["hosts"]:
        assert host["before"]["changes"] == [], host  # the first's work, seen whole


# --- ssh faults: a clear, host-named message, and the other hosts proceed ---------------


def _apply_with_one_bad_host(lab: Lab, *extra: str,
                             inventory: Path | None = None) -> dict[str, dict[str, Any]]:
    before = snapshot(lab)
    applied = lab.podroutes("apply", "--json", *extra, inventory=inventory)
    assert applied.returncode == 1, applied.stdout + applied.stderr
    hosts = {h["host"]: h for h in json.loads(applied.stdout)["hosts"]}
    for name in ("server", "node-0"):
        assert hosts[name]["converged"], hosts[name]
    assert snapshot(lab) == before
    return hosts


def test_unreachable_host(lab: Lab) -> None:
    """node-1's address answers nobody (ARP fails): ssh says no route to host."""
    inventory = lab.dir / "ghost.txt"
    inventory.write_text(lab.machines_txt.read_text().replace("192.168.10.102 ",
                                                              "192.168.10.150 "))
    config = lab.dir / "ssh_config"
    config.write_text(config.read_text().replace("HostName 192.168.10.102",
                                                 "HostName 192.168.10.150"))
    hosts = _apply_with_one_bad_host(lab, inventory=inventory)
    assert "host unreachable" in hosts["node-1"]["error"]


def test_connection_refused(lab: Lab) -> None:
    labmod.stop_sshd(lab.spec, "node-1")
    hosts = _apply_with_one_bad_host(lab)
    assert "connection refused" in hosts["node-1"]["error"]


def test_authentication_failure(lab: Lab) -> None:
    stranger = lab.dir / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    config = lab.dir / "ssh_config"
    config.write_text(config.read_text().replace(
        "Host node-1 node-1.kubernetes.local\n",
        f"Host node-1 node-1.kubernetes.local\n  IdentityFile {stranger}\n"))
    # ssh uses the first IdentityFile that matches: node-1 now only offers the stranger's
    config.write_text(config.read_text().replace(
        f"  IdentityFile {lab.dir}/id_ed25519\n", "").replace(
        "Host *\n", f"Host server node-0\n  IdentityFile {lab.dir}/id_ed25519\nHost *\n"))
    hosts = _apply_with_one_bad_host(lab)
    assert "authentication failed" in hosts["node-1"]["error"]


def test_host_key_mismatch(lab: Lab) -> None:
    """The lab rotates node-1's host key; the pinned known_hosts no longer matches."""
    key = lab.dir / "hostkeys" / "node-1"
    key.unlink()
    key.with_suffix(".pub").unlink(missing_ok=True)
    Path(str(key) + ".pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    restart_sshd(lab, "node-1", [])
    hosts = _apply_with_one_bad_host(lab)
    assert "host key" in hosts["node-1"]["error"]
    assert "IDENTIFICATION HAS CHANGED" in hosts["node-1"]["error"] or \
        "verification failed" in hosts["node-1"]["error"]


def test_a_hanging_host_times_out_alone(lab: Lab) -> None:
    pid = labmod.sshd_pid(lab.spec, "node-1")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        hosts = _apply_with_one_bad_host(lab, "--timeout", "3")
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    # ssh's own ConnectTimeout (the smaller of --timeout and 10 s) or podroutes' timeout
    assert "timed out" in hosts["node-1"]["error"]
    assert took < 15
    assert wait_gone(lambda: lab_ssh_processes(lab)) == []


def test_remote_without_ip_in_path(lab: Lab) -> None:
    conf = lab.dir / "sshd" / "node-1.conf"  # sshd takes the first SetEnv: extend it
    conf.write_text(conf.read_text().replace("SetEnv SHLVL=1", "SetEnv SHLVL=1 PATH=/nonexistent"))
    restart_sshd(lab, "node-1", [])
    hosts = _apply_with_one_bad_host(lab)
    assert "`ip` (iproute2) is not in the remote PATH" in hosts["node-1"]["error"]


def test_non_root_user_without_sudo(lab: Lab) -> None:
    restart_sshd(lab, "node-1", [
        "ForceCommand exec setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh"])
    hosts = _apply_with_one_bad_host(lab)
    assert "not root and cannot sudo" in hosts["node-1"]["error"]
    assert lab.route("node-1", "10.200.0.0/24") is None


# --- Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.parametrize(("parallel", "interrupted", "never"), [("8", 3, 0), ("1", 1, 2)])
def test_ctrl_c_stops_cleanly_and_says_where_each_host_was(
    lab: Lab, gate: Path, parallel: str, interrupted: int, never: int
) -> None:
    before = snapshot(lab)
    proc = podroutes_popen(lab, "apply", "--parallel", parallel,
                           env={"PODROUTES_FAILPOINT": f"read:{gate}"})
    wait_for(Path(str(gate) + ".reached"))
    if parallel != "1":
        wait_all(gate)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"interrupted ({interrupted})" in err
    if never:
        assert f"never started ({never})" in err
    else:
        assert "never started" not in err
    assert wait_gone(lambda: lab_ssh_processes(lab)) == []
    assert snapshot(lab) == before


# --- routes the kernel or others manage --------------------------------------------------


def test_routes_of_others_are_neither_touched_nor_drift(lab: Lab) -> None:
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.100",
           "proto", "dhcp", "metric", "100")
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.100",
           "table", "100")
    lab.sh("node-0", "ip", "route", "add", "10.50.0.0/16", "via", "192.168.10.100",
           "proto", "ra")
    before = snapshot(lab)
    assert lab.podroutes("apply").returncode == 0
    status = lab.podroutes("status")
    assert status.returncode == 0, status.stdout
    assert "foreign, other metric" in status.stdout
    assert snapshot(lab) == before
    ours = lab.route("node-0", "10.200.1.0/24")
    mine = [r for r in lab.routes("node-0") if str(r.dst) == "10.200.1.0/24"
            and r.protocol == OWN_PROTOCOL]
    assert ours is not None and len(mine) == 1 and str(mine[0].gateway) == "192.168.10.102"
    # the kernel's own cni0 route is never planned, touched or reported
    cni = [r for r in lab.routes("node-0") if str(r.dst) == "10.200.0.0/24"]
    assert [(r.dev, r.protocol) for r in cni] == [("cni0", 2)]
    assert "10.200.0.0/24" not in status.stdout.split("node-1")[0].split("node-0", 1)[1]
