"""The lab itself: builds what it promises, refuses what it must, removes only its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podroutes.core.errors import LabError
from podroutes.lab import netns as labmod

from .conftest import Lab, unique_name

pytestmark = pytest.mark.lab


def _root_netns_state() -> tuple[str, str, str, str]:
    def ip(*args: str) -> str:
        return subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                              check=True).stdout
    return ip("route", "show", "table", "all"), ip("-6", "route", "show", "table", "all"), \
        ip("link"), ip("addr")


def test_lab_builds_the_topology_and_changes_nothing_in_the_root_namespace() -> None:
    before = _root_netns_state()
    cni_dir_existed = Path("/etc/cni/net.d").exists()
    spec = labmod.up(labmod.LabSpec(name=unique_name(), nodes=3, pods_per_node=2))
    try:
        lab = Lab(spec)
        assert _root_netns_state() == before
        present = labmod.existing_namespaces()
        assert set(spec.all_namespaces()) <= present
        assert len(spec.all_namespaces()) == 1 + 2 + 3 + 6
        # node-2: cni0 holds the first address of its pod CIDR, forwarding on
        addr = json.loads(lab.sh("node-2", "ip", "-j", "-4", "addr", "show", "cni0"))
        assert [a["local"] for a in addr[0]["addr_info"]] == ["10.200.2.1"]
        assert lab.sh("node-2", "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
        assert lab.sh("server", "cat", "/proc/sys/net/ipv4/ip_forward").strip() == "0"
        pod = lab.routes("node-2-pod-1")
        assert any(str(r.dst) == "0.0.0.0/0" and str(r.gateway) == "10.200.2.1" for r in pod)
        assert (lab.dir / "machines.txt").read_text().splitlines()[1:] == [
            "192.168.10.100 server.kubernetes.local server",
            "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24",
            "192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24",
            "192.168.10.103 node-2.kubernetes.local node-2 10.200.2.0/24",
        ]
        state = labmod.status(spec)
        assert state["healthy"] is True
        # KTHW's 10-bridge.conf in node-2's own /etc, with node-2's SUBNET; the real /etc
        # has none of it. By default the bridge plugin's ipMasq rules, one chain per pod.
        conf = json.loads(lab.msh("node-2", "cat", "/etc/cni/net.d/10-bridge.conf"))
        assert conf["ipam"]["ranges"] == [[{"subnet": "10.200.2.0/24"}]]
        assert (conf["bridge"], conf["isGateway"], conf["ipMasq"]) == ("cni0", True, True)
        assert Path("/etc/cni/net.d").exists() == cni_dir_existed
        nat = lab.sh("node-2", "iptables-save", "-t", "nat")
        assert "-A POSTROUTING -s 10.200.2.3/32 -m comment" in nat
        assert nat.count("-j MASQUERADE") == 2
        # ssh with the lab's own config and pinned keys works from the jumpbox
        out = lab.sh("jumpbox", "ssh", "-F", str(lab.dir / "ssh_config"), "node-2",
                     "cat /proc/sys/net/ipv4/ip_forward")
        assert out.strip() == "1"
        assert "StrictHostKeyChecking yes" in (lab.dir / "ssh_config").read_text()
    finally:
        labmod.down(spec)
    assert _root_netns_state() == before
    assert not set(spec.all_namespaces()) & labmod.existing_namespaces()
    assert not spec.directory.exists()
    assert all(labmod.sshd_pid(spec, m.name) is None for m in spec.machines())


def test_lab_refuses_a_name_in_use(lab: Lab) -> None:
    with pytest.raises(LabError, match="in use"):
        labmod.up(labmod.LabSpec(name=lab.spec.name))
    cli = subprocess.run([sys.executable, "-m", "podroutes", "lab", "up", "--name",
                          lab.spec.name], capture_output=True, text=True, check=False)
    assert cli.returncode == 1
    assert "in use" in cli.stderr
    assert labmod.status(lab.spec)["healthy"] is True  # the existing lab is untouched


def test_lab_down_removes_only_what_it_made(lab: Lab) -> None:
    decoy = f"{lab.spec.name}-decoy"
    subprocess.run(["ip", "netns", "add", decoy], check=True)
    try:
        labmod.down(lab.spec)
        present = labmod.existing_namespaces()
        assert decoy in present
        assert not set(lab.spec.all_namespaces()) & present
    finally:
        subprocess.run(["ip", "netns", "del", decoy], check=False)


def test_lab_status_reports_a_stopped_sshd(lab: Lab) -> None:
    assert labmod.stop_sshd(lab.spec, "server")
    cli = subprocess.run([sys.executable, "-m", "podroutes", "lab", "status", "--name",
                          lab.spec.name, "--json"], capture_output=True, text=True, check=False)
    assert cli.returncode == 1
    machines = {m["name"]: m for m in json.loads(cli.stdout)["machines"]}
    assert machines["server"]["sshd_pid"] is None
    assert machines["node-0"]["sshd_pid"] is not None
    labmod.start_sshd(lab.spec, "server")
    assert labmod.status(lab.spec)["healthy"] is True


def test_lab_exec_runs_inside_the_machine(lab: Lab) -> None:
    cli = subprocess.run([sys.executable, "-m", "podroutes", "lab", "exec", "--name",
                          lab.spec.name, "node-1", "--", "ip", "-j", "addr", "show", "eth0"],
                         capture_output=True, text=True, check=False)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)[0]["addr_info"][0]["local"] == "192.168.10.102"
    missing = subprocess.run([sys.executable, "-m", "podroutes", "lab", "exec", "--name",
                              lab.spec.name, "node-9", "--", "true"],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 1
    assert "no machine 'node-9'" in missing.stderr


def test_smoke_human_output_and_exit_status(lab: Lab) -> None:
    cli = subprocess.run([sys.executable, "-m", "podroutes", "lab", "smoke", "--name",
                          lab.spec.name], capture_output=True, text=True, check=False,
                         env=dict(os.environ, COLUMNS="200"))
    assert cli.returncode == 1
    assert "2 of 2 pairs failed" in cli.stdout
    assert "Unreachable" in cli.stdout  # the node's ICMP answer, shown per failed pair
