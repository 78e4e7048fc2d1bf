"""Fixtures for end-to-end tests on a real lab: namespaces, bridges, sshd per machine.

Each test gets its own lab with a unique name (``prt`` + random hex), so tests can run
while a user's own lab exists, and the lab is torn down by name even when the test fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from podroutes.core.iproute import parse_routes
from podroutes.core.model import Family, Route
from podroutes.core.plan import plan
from podroutes.inventory import load
from podroutes.lab import netns as labmod


def unique_name() -> str:
    return "prt" + secrets.token_hex(3)


@dataclass
class Lab:
    spec: labmod.LabSpec

    @property
    def dir(self) -> Path:
        return self.spec.directory

    @property
    def machines_txt(self) -> Path:
        return self.dir / "machines.txt"

    def ns(self, machine: str) -> str:
        return self.spec.namespace(machine)

    def podroutes(self, *args: str, inventory: Path | str | None = None,
                  ssh: bool = True, stdin: str | None = None,
                  ssh_config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run podroutes on the jumpbox, as a user of the lab would."""
        argv = ["ip", "netns", "exec", self.ns("jumpbox"), sys.executable, "-m", "podroutes",
                *args, "-i", str(inventory or self.machines_txt)]
        if ssh:
            argv += ["--ssh-config", str(ssh_config or self.dir / "ssh_config"),
                     "--ssh-target", "hostname", "--timeout", "20"]
        env = dict(os.environ, COLUMNS="200")
        return subprocess.run(argv, capture_output=True, text=True, input=stdin, env=env,
                              timeout=120, check=False)

    def sh(self, machine: str, *argv: str, check: bool = True) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.ns(machine), *argv],
                              capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{machine}: {argv} failed: {done.stderr}")
        return done.stdout

    def routes(self, machine: str) -> list[Route]:
        out: list[Route] = []
        for family in Family:
            out += parse_routes(self.sh(machine, "ip", "-j", family.flag, "route", "show",
                                        "table", "main"), family)
        return out

    def route(self, machine: str, dst: str) -> Route | None:
        return next((r for r in self.routes(machine) if str(r.dst) == dst), None)

    def smoke(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "podroutes", "lab", "smoke", "--name",
                               self.spec.name, "--json"], capture_output=True, text=True,
                              timeout=120, check=False)

    def smoke_failures(self) -> list[tuple[str, str]]:
        data = json.loads(self.smoke().stdout)
        return [(r["src"], r["dst"]) for r in data["results"] if not r["ok"]]

    def smoke_failures_by_family(self) -> dict[int, list[tuple[str, str]]]:
        """Failed (src, dst) pod pairs per address family (4, and 6 in a dual-stack lab)."""
        data = json.loads(self.smoke().stdout)
        out: dict[int, list[tuple[str, str]]] = {f: [] for f in data["families"]}
        for r in data["results"]:
            if not r["ok"]:
                out[r["family"]].append((r["src"], r["dst"]))
        return out

    def sshd_log(self, machine: str) -> str:
        path = self.dir / "sshd" / f"{machine}.log"
        return path.read_text() if path.exists() else ""

    def msh(self, machine: str, *argv: str, check: bool = True) -> str:
        """Run a command in the machine as its ssh sessions see it: its own network
        namespace and its own mount namespace (its /etc, /run)."""
        done = subprocess.run(labmod.exec_argv(self.spec, machine, argv), capture_output=True,
                              text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{machine}: {argv} failed: {done.stderr}")
        return done.stdout


#: The fault suites judge one fault at a time against a lab that is otherwise healthy, so
#: their labs leave out the nat rules KTHW's bridge plugin writes with "ipMasq": true
#: (``lab up``'s default): that NAT is a finding of its own (pod-to-pod-nat), tested in
#: test_cni.py, and would otherwise be reported beside every fault.
FAULT_SUITE_IPMASQ = False


def make_lab(nodes: int = 2, pods: int = 1, ipmasq: bool = FAULT_SUITE_IPMASQ,
             cni_subnets: tuple[tuple[str, str], ...] = ()) -> labmod.LabSpec:
    return labmod.up(labmod.LabSpec(name=unique_name(), nodes=nodes, pods_per_node=pods,
                                    ipmasq=ipmasq, cni_subnets=cni_subnets))


def teardown(spec: labmod.LabSpec) -> None:
    """Take the lab down and check that no ssh connection master (podroutes' connection
    reuse) is left running in any of its namespaces."""
    inodes = labmod.namespace_inodes(spec)
    labmod.down(spec)
    left = labmod.ssh_masters(inodes)
    assert not left, f"ssh masters left after lab down: {left}"


@pytest.fixture
def lab() -> Iterator[Lab]:
    spec = make_lab()
    try:
        yield Lab(spec)
    finally:
        teardown(spec)


def make_dual_stack_lab(nodes: int = 2, pods: int = 1,
                        ipmasq: bool = FAULT_SUITE_IPMASQ) -> labmod.LabSpec:
    return labmod.up(labmod.LabSpec(name=unique_name(), nodes=nodes, pods_per_node=pods,
                                    dual_stack=True, ipmasq=ipmasq))


@pytest.fixture
def dual_lab() -> Iterator[Lab]:
    """A dual-stack lab: IPv4 and IPv6 node addresses, pod CIDRs and pods."""
    spec = make_dual_stack_lab()
    try:
        yield Lab(spec)
    finally:
        teardown(spec)


def cross_node(failures: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in failures if a.split("-pod-")[0] != b.split("-pod-")[0]]


# --- helpers for the fault suite ---------------------------------------------------------

OWN_PROTOCOL = 147


def foreign_routes(lab: Lab, machine: str) -> set[str]:
    """Every route of every table, both families, that podroutes does not own, as text:
    the snapshot the fault tests compare before and after."""
    out: set[str] = set()
    for flag in ("-4", "-6"):
        data = json.loads(lab.sh(machine, "ip", "-j", flag, "route", "show", "table", "all"))
        for entry in data:
            if str(entry.get("protocol")) == str(OWN_PROTOCOL) or _autoconf(flag, entry):
                continue
            out.add(json.dumps(entry, sort_keys=True))
    return out


def _autoconf(flag: str, entry: dict[str, object]) -> bool:
    """IPv6 link-local routes the kernel adds on its own schedule after links come up
    (fe80::/64, the local fe80 address, ff00::/8): they change without anyone acting."""
    dst = str(entry.get("dst", ""))
    return flag == "-6" and entry.get("protocol") == "kernel" and (
        dst.startswith("fe80") or dst == "ff00::/8")


def snapshot(lab: Lab) -> dict[str, set[str]]:
    return {m.name: foreign_routes(lab, m.name) for m in lab.spec.machines()}


def podroutes_popen(lab: Lab, *args: str, env: dict[str, str] | None = None,
                    inventory: Path | None = None) -> subprocess.Popen[str]:
    """Start podroutes on the jumpbox in the background (for kill and Ctrl-C tests)."""
    argv = ["ip", "netns", "exec", lab.ns("jumpbox"), sys.executable, "-m", "podroutes",
            *args, "-i", str(inventory or lab.machines_txt),
            "--ssh-config", str(lab.dir / "ssh_config"), "--ssh-target", "hostname"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, COLUMNS="200", **(env or {})))


def stop_sshd(lab: Lab, machine: str) -> bool:
    """Make a machine unreachable over ssh: close the lab's ssh masters (connection
    reuse), then stop its sshd. Stopping sshd alone (like ``systemctl stop ssh``) leaves
    the connections it already carries, a live master's among them. Whether sshd ran."""
    labmod.close_ssh_masters(lab.spec)
    return labmod.stop_sshd(lab.spec, machine)


def restart_sshd(lab: Lab, machine: str, extra: Sequence[str]) -> None:
    """Restart a machine's sshd with extra sshd_config lines (e.g. SetEnv, ForceCommand);
    every later command connects afresh, so the lines apply to it."""
    conf = lab.dir / "sshd" / f"{machine}.conf"
    conf.write_text(conf.read_text() + "\n".join(extra) + "\n")
    stop_sshd(lab, machine)
    labmod.start_sshd(lab.spec, machine)


def lab_ssh_processes(lab: Lab) -> list[int]:
    """Client ssh processes started for this lab (their command line names its config)."""
    pids = []
    marker = str(lab.dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ssh\0") and marker in cmdline:
            pids.append(int(entry.name))
    return pids


def install_planned_routes(lab: Lab, protocol: int = 147) -> None:
    """The planned routes, added by hand as ``apply`` would (``proto 147``), so a test can
    start from a converged lab without depending on the engine."""
    inventory = load(lab.machines_txt.read_text(), str(lab.machines_txt))
    for host, routes in plan(inventory):
        for r in routes:
            lab.sh(host.name, "ip", "route", "add", str(r.dst), "via", str(r.gateway),
                   "proto", str(protocol))


# --- helpers for the persist tests -------------------------------------------------------

CLUSTER = ("server", "node-0", "node-1")
#: The network configuration of the real machine, which no lab machine may ever change.
REAL_ETC = ("/etc/network", "/etc/systemd/network", "/etc/systemd/networkd.conf.d",
            "/etc/netplan", "/etc/NetworkManager", "/etc/podroutes")


def make_managed_lab(manager: str, dual_stack: bool = False) -> labmod.LabSpec:
    return labmod.up(labmod.LabSpec(name=unique_name(), nodes=2, pods_per_node=1,
                                    dual_stack=dual_stack, manager=manager,
                                    ipmasq=FAULT_SUITE_IPMASQ))


def real_etc_digest() -> str:
    """Names, modes, link targets and contents of the real network configuration."""
    digest = hashlib.sha256()
    for top in REAL_ETC:
        for path in sorted([Path(top), *Path(top).rglob("*")] if Path(top).exists() else []):
            info = path.lstat()
            digest.update(f"{path} {info.st_mode:o}\n".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def root_netns_state() -> str:
    """The root network namespace's links, addresses, routes and rules (expiry timers
    removed: they count down on their own)."""
    parts = []
    for argv in (["ip", "-j", "addr"], ["ip", "-j", "-4", "route", "show", "table", "all"],
                 ["ip", "-j", "-6", "route", "show", "table", "all"], ["ip", "-j", "rule"]):
        data = json.loads(subprocess.run(argv, capture_output=True, text=True,
                                         check=True).stdout or "[]")
        for entry in data:
            entry.pop("expires", None)
            for info in entry.get("addr_info", ()):
                info.pop("valid_life_time", None)
                info.pop("preferred_life_time", None)
        parts.append(json.dumps(data, sort_keys=True))
    return "\n".join(parts)


def lab_mounts(lab: Lab) -> list[str]:
    """Mount points in this (the host's) mount namespace that belong to the lab."""
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(lab.dir) in line.split()[4]]


#: Step 2 of a simulated reboot: the routes and addresses go, the link goes down, and the
#: runtime state a reboot clears (/run) is cleared.
FLUSH = """
ip -4 route flush proto 147; ip -6 route flush proto 147
ip -4 route flush proto static; ip -6 route flush proto static
ip addr flush dev eth0 scope global
ip link set eth0 down
rm -rf /run/systemd/netif /run/systemd/network /run/network/ifstate*
"""


def simulate_reboot(lab: Lab, manager: str, machines: Sequence[str] = CLUSTER) -> None:
    """Flush the routes, bounce the link, and bring the interface back through the
    manager itself, in each machine's own namespaces."""
    from podroutes.lab import machine as labmachine

    for m in machines:
        if manager in ("networkd", "netplan"):
            labmachine.stop_networkd(lab.spec, m)
        lab.msh(m, "sh", "-c", FLUSH)
        assert not [r for r in lab.routes(m) if r.protocol in (147, 4)]
        assert "state DOWN" in lab.msh(m, "ip", "link", "show", "eth0")
    for m in machines:
        if manager == "ifupdown":
            lab.msh(m, "ifup", "-a")  # what networking.service runs at boot
        else:
            labmachine.start_networkd(lab.spec, m, generate=manager == "netplan")
    if manager in ("networkd", "netplan"):
        labmachine.wait_configured(lab.spec, machines)
