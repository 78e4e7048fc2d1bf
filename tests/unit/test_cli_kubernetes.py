"""``-i kubernetes`` and ``doctor --compare-kubernetes`` as a user runs them: ``python -m
podroutes`` in a subprocess against a Kubernetes API server **test double** (kmock's
``KubernetesEmulator``, the ``kmock`` fixture and ``kubeconfig`` of tests/unit/conftest.py,
the double the agent's tests use), which holds Node objects created through its HTTP API.

No host is ever contacted: the commands here either stop before any host (plan, trace
without --observed, bad input) or get an ssh whose ``ProxyCommand`` touches a marker file
instead of opening a connection, so "nothing was sent to any host" is checked as "ssh was
never started" (the marker does not exist).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import kmock
import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node

from podroutes.agent.kube import load_config

pytestmark = pytest.mark.asyncio

MACHINES = """\
192.168.10.100 server.kubernetes.local server
192.168.10.101,fd00:10::101 node-0.kubernetes.local node-0 10.200.0.0/24,fd00:200::/64
192.168.10.102,fd00:10::102 node-1.kubernetes.local node-1 10.200.1.0/24,fd00:200:1::/64
192.168.10.103,fd00:10::103 node-2.kubernetes.local node-2 10.200.2.0/24,fd00:200:2::/64
"""


def node(name: str, addresses: list[str], cidrs: list[str] | None, created: str,
         ) -> dict[str, Any]:
    """A Node as a kubelet registers it (``Hostname`` the FQDN, here) and the controller
    manager gives it pod CIDRs."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created},
            "spec": {"podCIDRs": cidrs} if cidrs else {},
            "status": {"addresses": [{"type": "Hostname",
                                      "address": f"{name}.kubernetes.local"}]
                       + [{"type": "InternalIP", "address": a} for a in addresses]}}


#: The cluster MACHINES describes: the server registered as a Node without pod CIDRs.
NODES = [
    node("server", ["192.168.10.100"], None, "2026-01-01T00:00:00Z"),
    node("node-0", ["192.168.10.101", "fd00:10::101"], ["10.200.0.0/24", "fd00:200::/64"],
         "2026-01-01T00:01:00Z"),
    node("node-1", ["fd00:10::102", "192.168.10.102"], ["10.200.1.0/24", "fd00:200:1::/64"],
         "2026-01-01T00:02:00Z"),
    node("node-2", ["192.168.10.103", "fd00:10::103"], ["fd00:200:2::/64", "10.200.2.0/24"],
         "2026-01-01T00:03:00Z"),
]


async def add_nodes(kubeconfig: Path, nodes: list[dict[str, Any]]) -> None:
    admin = AsyncClient(load_config(str(kubeconfig)))
    try:
        for obj in nodes:
            await admin.create(Node.from_dict(obj))
    finally:
        await admin.close()


async def podroutes(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``python -m podroutes ARGS`` in a subprocess, while this event loop serves the
    double."""
    env = dict(os.environ, COLUMNS="120", KUBECONFIG=str(cwd / "no-such-kubeconfig"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "podroutes", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def never_ssh(directory: Path) -> tuple[list[str], Path]:
    """ssh flags under which any ssh started creates ``marker`` instead of connecting."""
    marker = directory / "ssh-was-started"
    return ["--ssh-option", f"ProxyCommand=touch {marker}", "--timeout", "5"], marker


@pytest.fixture
def machines(tmp_path: Path) -> Path:
    path = tmp_path / "machines.txt"
    path.write_text(MACHINES)
    return path


@pytest.mark.parametrize("fmt", ["table", "json", "script", "batch"])
async def test_plan_from_the_cluster_is_the_plan_of_the_equivalent_machines_txt(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path, fmt: str) -> None:
    await add_nodes(kubeconfig, NODES)
    code, from_file, _ = await podroutes("plan", "-i", "machines.txt", "--format", fmt,
                                         cwd=machines.parent)
    assert code == 0
    code, from_cluster, err = await podroutes("plan", "-i", "kubernetes", "--kubeconfig",
                                              str(kubeconfig), "--format", fmt,
                                              cwd=machines.parent)
    assert code == 0, err
    # Byte for byte, but for the one place that names the inventory: the table's title
    # (centred by Rich, so its padding follows the name's length), the JSON's "inventory"
    # and the script's comment.
    if fmt == "table":
        title = "Pod network routes for "
        assert from_file.splitlines()[0].strip() == title + "machines.txt"
        assert from_cluster.splitlines()[0].strip() == title + "kubernetes"
        assert from_cluster.splitlines()[1:] == from_file.splitlines()[1:]
    elif fmt == "json":
        assert from_cluster == from_file.replace('"inventory": "machines.txt"',
                                                 '"inventory": "kubernetes"')
        assert [h["fqdn"] for h in json.loads(from_cluster)["hosts"]] == [
            "server.kubernetes.local", "node-0.kubernetes.local", "node-1.kubernetes.local",
            "node-2.kubernetes.local"]
    elif fmt == "script":
        assert from_cluster == from_file.replace("routes for machines.txt,",
                                                 "routes for kubernetes,")
    else:
        assert from_cluster == from_file
    # The server has no pod CIDR: said on stderr, like a three-field line of machines.txt.
    assert "node server: has no spec.podCIDRs yet" in err


async def test_plan_json_flag_too(kmock: kmock.KubernetesEmulator, kubeconfig: Path,
                                  machines: Path) -> None:
    await add_nodes(kubeconfig, NODES)
    _, from_file, _ = await podroutes("plan", "-i", "machines.txt", "--json",
                                      cwd=machines.parent)
    code, from_cluster, _ = await podroutes("plan", "-i", "kubernetes", "--json",
                                            "--kubeconfig", str(kubeconfig), cwd=machines.parent)
    assert code == 0
    assert json.loads(from_cluster)["hosts"] == json.loads(from_file)["hosts"]


async def test_trace_takes_its_hosts_from_the_cluster(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path) -> None:
    await add_nodes(kubeconfig, NODES)
    args = ("trace", "10.200.0.5", "10.200.2.7", "--json")
    _, from_file, _ = await podroutes(*args, "-i", "machines.txt", cwd=machines.parent)
    code, from_cluster, err = await podroutes(*args, "-i", "kubernetes", "--kubeconfig",
                                              str(kubeconfig), cwd=machines.parent)
    assert code == 0, err
    assert json.loads(from_cluster) == json.loads(from_file)
    assert json.loads(from_cluster)["outcome"] == "delivered"


async def test_ssh_targets_are_the_internal_ip_or_the_node_name(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path) -> None:
    await add_nodes(kubeconfig, NODES)
    base = ("plan", "-i", "kubernetes", "--kubeconfig", str(kubeconfig), "--format", "script")
    _, by_name, _ = await podroutes(*base, cwd=machines.parent)
    _, by_address, _ = await podroutes(*base, "--ssh-target", "address", cwd=machines.parent)
    _, by_fqdn, _ = await podroutes(*base, "--ssh-target", "fqdn", cwd=machines.parent)
    assert "ssh root@node-1 <<'EOF'" in by_name
    assert "ssh root@192.168.10.102 <<'EOF'" in by_address
    assert "ssh root@node-1.kubernetes.local <<'EOF'" in by_fqdn


async def test_doctor_lists_every_disagreement_between_the_file_and_the_cluster(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path) -> None:
    nodes = [NODES[0],
             node("node-0", ["192.168.10.201", "fd00:10::101"],
                  ["10.200.0.0/24", "fd00:200::/64"], "2026-01-01T00:01:00Z"),
             node("node-1", ["192.168.10.102", "fd00:10::102"],
                  ["10.200.9.0/24", "fd00:200:1::/64"], "2026-01-01T00:02:00Z"),
             node("node-7", ["192.168.10.107"], ["10.200.7.0/24"], "2026-01-01T00:07:00Z")]
    await add_nodes(kubeconfig, nodes)  # node-2 has no Node
    flags, marker = never_ssh(machines.parent)
    args = ("doctor", "-i", "machines.txt", "--compare-kubernetes", "--kubeconfig",
            str(kubeconfig), *flags)
    code, out, err = await podroutes(*args, "--json", cwd=machines.parent)
    assert code == 1, err  # the hosts could not be read (ssh never connected)
    report = json.loads(out)["kubernetes"]
    assert report["pod_cidrs_compared"] is True
    assert [(d["kind"], d["node"], d["family"], d["inventory"], d["cluster"])
            for d in report["disagreements"]] == [
        ("address-differs", "node-0", "ipv4", "192.168.10.101", "192.168.10.201"),
        ("pod-cidr-differs", "node-1", "ipv4", "10.200.1.0/24", "10.200.9.0/24"),
        ("not-in-cluster", "node-2", None, None, None),
        ("not-in-inventory", "node-7", None, None, None)]
    code, out, _ = await podroutes(*args, cwd=machines.parent)
    assert code == 1
    assert "machines.txt against the cluster's Nodes: 4 disagreements" in out
    assert ("address-differs: node-0's IPv4 address is 192.168.10.101 in machines.txt but "
            "its Node's InternalIP is 192.168.10.201") in out
    assert "not-in-inventory: Node node-7 is in the cluster but not in machines.txt" in out
    assert marker.exists()  # the flags do reach ssh: the marker proves it in other tests


async def test_doctor_compare_needs_a_file_and_kubeconfig_needs_the_cluster(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path) -> None:
    flags, marker = never_ssh(machines.parent)
    code, _, err = await podroutes("doctor", "-i", "kubernetes", "--compare-kubernetes",
                                   "--kubeconfig", str(kubeconfig), *flags, cwd=machines.parent)
    assert code == 2 and "give the file with -i" in err
    code, _, err = await podroutes("status", "-i", "machines.txt", "--kubeconfig",
                                   str(kubeconfig), *flags, cwd=machines.parent)
    assert code == 2 and "--kubeconfig goes with -i kubernetes" in err
    assert not marker.exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_no_pod_cidrs_in_the_cluster_exits_2_and_points_to_an_inventory_file(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path) -> None:
    await add_nodes(kubeconfig, [node(n["metadata"]["name"], [f"192.168.10.1{i:02d}"], None,
                                      n["metadata"]["creationTimestamp"])
                                 for i, n in enumerate(NODES)])
    flags, marker = never_ssh(machines.parent)
    for command in ("apply", "status", "doctor", "persist"):
        code, _, err = await podroutes(command, "-i", "kubernetes", "--kubeconfig",
                                       str(kubeconfig), *flags, cwd=machines.parent)
        assert code == 2, (command, err)
        assert "no Node has a pod CIDR" in err and "--allocate-node-cidrs" in err
        assert "-i machines.txt" in err
    assert not marker.exists()


@pytest.mark.parametrize("case", ["missing", "garbage", "unreachable", "forbidden",
                                  "bad-node"])
async def test_a_cluster_that_cannot_be_read_exits_2_and_reaches_no_host(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path, case: str) -> None:
    config = kubeconfig
    expected = {"missing": "cannot load the Kubernetes configuration",
                "garbage": "cannot load the Kubernetes configuration",
                "unreachable": "cannot list Nodes from the Kubernetes API at http://127.0.0.1:",
                "forbidden": "podroutes needs get and list on nodes",
                "bad-node": "nodes/node-1: has no InternalIP"}[case]
    if case == "missing":
        config = machines.parent / "nope"
    elif case == "garbage":
        config = machines.parent / "garbage"
        config.write_text("clusters: [this is: not a kubeconfig\n")
    elif case == "unreachable":
        config = machines.parent / "unreachable"
        config.write_text(kubeconfig.read_text().replace(
            str(kmock.url).rstrip("/"), f"http://127.0.0.1:{closed_port()}"))
    elif case == "forbidden":
        kmock[kmock.action.LIST, kmock.resource("v1/nodes")] << 403 << {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
            "reason": "Forbidden", "message": 'nodes is forbidden: User "x" cannot list '
            'resource "nodes" in API group "" at the cluster scope'}
    else:
        await add_nodes(kubeconfig, [NODES[1], node("node-1", [], ["10.200.1.0/24"],
                                                    "2026-01-01T00:02:00Z")])
    flags, marker = never_ssh(machines.parent)
    code, out, err = await podroutes("apply", "-i", "kubernetes", "--kubeconfig", str(config),
                                     *flags, cwd=machines.parent)
    assert code == 2, (out, err)
    assert expected in " ".join(err.split()), err
    assert "Traceback" not in err
    assert not marker.exists()


async def test_a_file_named_kubernetes_is_never_taken_for_the_cluster(
        kmock: kmock.KubernetesEmulator, kubeconfig: Path, machines: Path) -> None:
    (machines.parent / "kubernetes").write_text(MACHINES)
    code, _, err = await podroutes("plan", "-i", "kubernetes", "--kubeconfig",
                                   str(kubeconfig), cwd=machines.parent)
    assert code == 2 and "write -i ./kubernetes" in err
    code, out, _ = await podroutes("plan", "-i", "./kubernetes", "--json", cwd=machines.parent)
    assert code == 0 and json.loads(out)["inventory"] == "./kubernetes"
