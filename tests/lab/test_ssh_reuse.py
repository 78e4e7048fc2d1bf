"""Connection reuse on a real lab: one ssh master per host carries the commands that
follow, and every way a master goes wrong ends in a correct answer or a clear per-host
error, never a trusted unknown host key and never a master left behind.

Which master is a host's is read from the kernel (the master's TCP connection to the
host's port 22); that a command reused it, from the host's sshd log (one "Accepted
publickey" per connection). The ``lab`` fixture's teardown checks that no master is left
in the lab's namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podroutes.lab import netns as labmod

from .conftest import CLUSTER, Lab, podroutes_popen

pytestmark = pytest.mark.lab


def run(lab: Lab, *args: str, timeout: str = "20") -> subprocess.CompletedProcess[str]:
    """podroutes on the jumpbox, as a user runs it (reuse on by default)."""
    argv = ["ip", "netns", "exec", lab.ns("jumpbox"), sys.executable, "-m", "podroutes",
            *args, "-i", str(lab.machines_txt), "--ssh-config", str(lab.dir / "ssh_config"),
            "--ssh-target", "hostname", "--timeout", timeout]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, COLUMNS="200"))


def verdicts(done: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str | None]]:
    data: dict[str, Any] = json.loads(done.stdout)
    return {h["host"]: (h["verdict"], h.get("error")) for h in data["hosts"]}


def status(lab: Lab, *args: str, timeout: str = "20") -> dict[str, tuple[str, str | None]]:
    return verdicts(run(lab, "status", "--json", *args, timeout=timeout))


def accepted(lab: Lab, machine: str) -> int:
    """Connections the machine's sshd authenticated."""
    return lab.sshd_log(machine).count("Accepted publickey")


def masters(lab: Lab) -> dict[int, str]:
    return labmod.ssh_masters(labmod.namespace_inodes(lab.spec))


def master_of(lab: Lab, machine: str) -> int | None:
    """The pid of the master connected to ``machine``'s sshd, from the kernel's TCP table
    of the master's own sockets."""
    address = next(m.address for m in lab.spec.machines() if m.name == machine)
    peer = socket.inet_aton(address)[::-1].hex().upper() + ":0016"
    for pid in masters(lab):
        try:
            fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in table:
            fields = line.split()
            if fields[2] == peer and f"socket:[{fields[9]}]" in fds:
                return pid
    return None


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still runs"


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (by parent pid in /proc/PID/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += [child for child, parent in parents.items() if parent == p]
    return tree


def new_host_key(lab: Lab, machine: str) -> str:
    """Replace the machine's host key on disk (sshd reads it when it starts)."""
    key = lab.dir / "hostkeys" / machine
    key.unlink()
    Path(f"{key}.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True)
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def reboot(lab: Lab, machine: str, key: bool = False) -> None:
    """What a reboot looks like from the jumpbox: the link goes away, every sshd process
    of the machine (its connections too) dies without a word to the peer, and the host
    comes back with a fresh sshd (with ``key``, a new host key: a reinstalled host)."""
    pid = labmod.sshd_pid(lab.spec, machine)
    assert pid is not None
    tree = descendants(pid)
    lab.sh(machine, "ip", "link", "set", "eth0", "down")
    for p in tree:
        os.kill(p, signal.SIGKILL)
    for p in tree:
        wait_gone(p)
    if key:
        new_host_key(lab, machine)
    lab.sh(machine, "ip", "link", "set", "eth0", "up")
    labmod.start_sshd(lab.spec, machine)


def pin(lab: Lab, machine: str, key: str) -> None:
    """Put ``key`` in the lab's known_hosts for ``machine`` (what a user does by hand)."""
    known = lab.dir / "known_hosts"
    lines = [ln for ln in known.read_text().splitlines()
             if machine not in ln.split()[0].split(",")]
    m = next(m for m in lab.spec.machines() if m.name == machine)
    names = ",".join(x for x in (m.name, m.fqdn, m.address, m.address6) if x)
    known.write_text("\n".join([*lines, f"{names} {key}"]) + "\n")


IN_DRIFT = {m: ("drift", None) for m in CLUSTER}  # a fresh lab: every route missing


def test_a_second_command_reuses_each_hosts_master(lab: Lab) -> None:
    """Two commands, one connection and one authentication per host; then apply and
    status over the same masters; the sockets live in a private 0700 directory."""
    assert status(lab) == IN_DRIFT
    assert status(lab) == IN_DRIFT
    assert {m: accepted(lab, m) for m in CLUSTER} == {m: 1 for m in CLUSTER}
    sockets = masters(lab)
    assert len(sockets) == 3 and all(master_of(lab, m) in sockets for m in CLUSTER)
    for path in {Path(s).parent for s in sockets.values()}:
        info = path.stat()
        assert (info.st_mode & 0o777, info.st_uid) == (0o700, os.getuid())
    applied = run(lab, "apply", "--json")
    assert applied.returncode == 0, applied.stderr
    assert status(lab) == {m: ("in sync", None) for m in CLUSTER}
    assert {m: accepted(lab, m) for m in CLUSTER} == {m: 1 for m in CLUSTER}


def test_ssh_persist_zero_leaves_no_master(lab: Lab) -> None:
    assert status(lab, "--ssh-persist", "0") == IN_DRIFT
    assert status(lab, "--ssh-persist", "0") == IN_DRIFT
    assert masters(lab) == {}
    assert {m: accepted(lab, m) for m in CLUSTER} == {m: 2 for m in CLUSTER}


def test_a_stale_socket_is_replaced_by_a_new_master(lab: Lab) -> None:
    """The master died (SIGKILL) and left its socket: the next command connects afresh
    (ssh finds the socket refuses connections, removes it and becomes the master)."""
    assert status(lab) == IN_DRIFT
    pid = master_of(lab, "server")
    assert pid is not None
    stale = masters(lab)[pid]
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    assert Path(stale).exists()  # the socket is left behind
    assert status(lab) == IN_DRIFT
    assert accepted(lab, "server") == 2 and accepted(lab, "node-0") == 1
    renewed = master_of(lab, "server")
    assert renewed is not None and renewed != pid and masters(lab)[renewed] == stale


def test_the_first_run_after_a_reboot_is_as_correct_as_a_cold_one(lab: Lab) -> None:
    """The host rebooted behind a live master (no FIN reached it): the next command still
    reads that host's real table, over a new connection."""
    assert run(lab, "apply", "--json").returncode == 0
    reboot(lab, "node-0")
    lab.sh("node-0", "ip", "route", "flush", "proto", "147")  # a reboot loses the routes
    assert status(lab) == {**{m: ("in sync", None) for m in CLUSTER}, "node-0": ("drift", None)}
    assert accepted(lab, "node-0") == 2
    assert run(lab, "apply", "--json").returncode == 0
    assert status(lab) == {m: ("in sync", None) for m in CLUSTER}


def test_a_host_reinstalled_behind_a_master_is_not_trusted(lab: Lab) -> None:
    """The host came back with a new host key: its master is gone with its connection,
    and the new connection's key check fails, so the host is reported, never used; once
    the user pins the new key the host is reached again."""
    assert status(lab) == IN_DRIFT
    reboot(lab, "server", key=True)
    for _ in range(2):
        got = status(lab)
        assert got["server"][0] == "unreachable"
        assert "host key mismatch" in str(got["server"][1])
        assert got["node-0"] == got["node-1"] == ("drift", None)
        assert master_of(lab, "server") is None
    pin(lab, "server", " ".join((lab.dir / "hostkeys" / "server.pub").read_text().split()[:2]))
    assert status(lab) == IN_DRIFT


def test_editing_known_hosts_behind_a_live_master_forces_a_fresh_key_check(lab: Lab) -> None:
    """sshd restarted with a new key while the master's connection (to the old sshd
    process, whose key was checked) lives on: that connection is still the host it was.
    But once known_hosts changes (the user removes or replaces the key), podroutes opens
    a new connection and checks the key against the file as it is now."""
    assert status(lab) == IN_DRIFT
    old = master_of(lab, "server")
    labmod.stop_sshd(lab.spec, "server")  # the listener only: connections live on
    fresh = new_host_key(lab, "server")
    labmod.start_sshd(lab.spec, "server")
    assert status(lab) == IN_DRIFT  # over the master opened (and checked) before
    assert accepted(lab, "server") == 1
    subprocess.run(["ssh-keygen", "-R", "server", "-f", str(lab.dir / "known_hosts")],
                   check=True, capture_output=True)
    got = status(lab)
    assert got["server"][0] == "unreachable"
    assert "host key verification failed" in str(got["server"][1])
    pin(lab, "server", fresh)
    assert status(lab) == IN_DRIFT
    assert accepted(lab, "server") == 2
    assert old is not None and old in masters(lab)  # closed at teardown, with the rest


def test_the_first_connection_checks_the_host_key(lab: Lab) -> None:
    """A wrong key in known_hosts before any master: refused, and no master is made."""
    wrong = " ".join((lab.dir / "hostkeys" / "server.pub").read_text().split()[:2])
    pin(lab, "node-1", wrong)
    for _ in range(2):
        got = status(lab)
        assert got["node-1"][0] == "unreachable"
        assert "host key mismatch" in str(got["node-1"][1])
        assert master_of(lab, "node-1") is None
    assert accepted(lab, "node-1") == 0


@pytest.fixture
def stopped(lab: Lab) -> Iterator[list[int]]:
    """Masters this test stops (SIGSTOP); continued and killed by pid afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def test_a_hung_master_is_cut_by_timeout(lab: Lab, stopped: list[int]) -> None:
    """A master that stops answering (SIGSTOP): the command finishes at --timeout with a
    clear error for that host only; the others answer."""
    assert status(lab) == IN_DRIFT
    pid = master_of(lab, "node-0")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
    got = status(lab, timeout="3")
    assert got["server"] == got["node-1"] == ("drift", None)
    assert got["node-0"][0] == "unreachable"
    error = str(got["node-0"][1])
    assert error.startswith("timed out after 3s (--timeout)")
    assert "shared ssh connection" in error and "--ssh-persist 0" in error


def test_lab_down_closes_even_a_stopped_master(lab: Lab, stopped: list[int]) -> None:
    assert status(lab) == IN_DRIFT
    pid = master_of(lab, "node-1")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
    assert pid in labmod.close_ssh_masters(lab.spec)  # what lab down does first
    wait_gone(pid)
    assert masters(lab) == {}


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gate"
    path.touch()
    yield path
    path.unlink(missing_ok=True)


def test_a_master_killed_mid_run(lab: Lab, gate: Path) -> None:
    """The server's master is killed while apply has sent its batch and not read the
    result: the server's outcome is an error that says the shared connection went away
    (or, if the answer was already in, correct); the other hosts converge; the next run
    converges the server over a new connection."""
    assert status(lab) == IN_DRIFT
    proc = podroutes_popen(lab, "apply", "--json",
                           env={"PODROUTES_FAILPOINT": f"batch:{gate}"})
    try:
        deadline = time.monotonic() + 30
        while not all(Path(f"{gate}.{m}.reached").exists() for m in CLUSTER):
            assert time.monotonic() < deadline, "apply never reached the batch"
            time.sleep(0.01)
        pid = master_of(lab, "server")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
    finally:
        gate.unlink()
        out, err = proc.communicate(timeout=60)
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    assert hosts["node-0"]["converged"] and hosts["node-1"]["converged"], err
    server = hosts["server"]
    if not server["converged"]:
        assert proc.returncode == 1
        assert "shared ssh connection" in json.dumps(server), server
    again = run(lab, "apply", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert status(lab) == {m: ("in sync", None) for m in CLUSTER}
