"""``-i kubernetes`` on a real lab: apply, status and doctor run on the jumpbox, over SSH
to the lab's machines, with the hosts taken from Node objects.

The API server is a **test double**: kmock's ``KubernetesEmulator`` (``ApiServer`` of
tests/netns/conftest.py, the double the agent's tests use), served from inside the lab's
jumpbox namespace, where podroutes runs: the double's event-loop thread enters that
namespace (``setns`` is per thread for network namespaces) before it opens its socket,
so it listens on the jumpbox's own 127.0.0.1 and nothing listens in the root namespace.
The test creates Nodes from the same thread (the test's own client, as a controller
would). The Nodes describe the lab's two workers as a cluster with
``--allocate-node-cidrs`` would: each node's InternalIP and pod CIDR as in the lab's
``machines.txt`` (the server, which runs no kubelet in Kubernetes the Hard Way, has no
Node).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Node

from podroutes.inventory import load
from podroutes.lab import netns as labmod
from tests.netns.conftest import ApiServer, node

from .conftest import Lab, cross_node

pytestmark = [pytest.mark.lab, pytest.mark.root]

OWN = 147
CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    """Move the calling thread (only) into the named network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class JumpboxApiServer(ApiServer):
    """The API server test double, listening inside one network namespace."""

    def __init__(self, directory: Path, netns: str) -> None:
        self.netns = netns
        super().__init__(directory)

    async def _serve(self) -> None:
        enter_netns(self.netns)  # this loop's thread: its sockets are the jumpbox's
        await super()._serve()

    def create(self, obj: dict[str, Any]) -> None:
        """Create a Node through the HTTP API, from inside the namespace."""
        async def go() -> None:
            client = AsyncClient(KubeConfig.from_file(self.kubeconfig))
            try:
                await client.create(Node.from_dict(obj))
            finally:
                await client.close()
        asyncio.run_coroutine_threadsafe(go(), self.loop).result(timeout=self.timeout)


@pytest.fixture
def k8s_lab(tmp_path: Path) -> Iterator[tuple[Lab, JumpboxApiServer]]:
    spec = labmod.up(labmod.LabSpec(name="prtd17" + secrets.token_hex(2)[:3], nodes=2,
                                    pods_per_node=1))
    try:
        lab = Lab(spec)
        api = JumpboxApiServer(tmp_path, lab.ns("jumpbox"))
        try:
            yield lab, api
        finally:
            api.close()
    finally:
        labmod.down(spec)


def owned(lab: Lab, machine: str) -> dict[str, str]:
    return {str(r.dst): str(r.gateway) for r in lab.routes(machine) if r.protocol == OWN}


def test_apply_and_status_take_their_hosts_from_the_nodes(
        k8s_lab: tuple[Lab, JumpboxApiServer]) -> None:
    lab, api = k8s_lab
    inventory = load(lab.machines_txt.read_text(), str(lab.machines_txt))
    workers = [h for h in inventory if h.pod_cidrs]
    for number, host in enumerate(workers):
        api.create(node(host.name, str(host.addresses[0]), [str(host.pod_cidrs[0])],
                        created=f"2026-01-01T00:0{number}:00Z"))
    kubeconfig = ("--kubeconfig", str(api.kubeconfig))
    assert not any(owned(lab, h.name) for h in inventory)

    status = lab.podroutes("status", "--json", *kubeconfig, inventory="kubernetes")
    assert status.returncode == 3, status.stderr  # drift: no route yet
    assert [h["host"] for h in json.loads(status.stdout)["hosts"]] == ["node-0", "node-1"]

    applied = lab.podroutes("apply", *kubeconfig, inventory="kubernetes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert owned(lab, "node-0") == {"10.200.1.0/24": "192.168.10.102"}
    assert owned(lab, "node-1") == {"10.200.0.0/24": "192.168.10.101"}
    assert owned(lab, "server") == {}  # no Node: not a host of this run
    assert cross_node(lab.smoke_failures()) == []

    status = lab.podroutes("status", *kubeconfig, inventory="kubernetes")
    assert status.returncode == 0, status.stdout + status.stderr

    # The file and the cluster agree (the server has no Node, rightly): doctor says so.
    doctor = lab.podroutes("doctor", "--compare-kubernetes", "--json", *kubeconfig)
    report = json.loads(doctor.stdout)
    assert report["kubernetes"]["disagreements"] == [], report["kubernetes"]

    # A Node whose pod CIDR differs from machines.txt: doctor names it, with both values.
    api.create(node("node-9", "192.168.10.109", ["10.200.9.0/24"],
                    created="2026-01-01T00:09:00Z"))
    doctor = lab.podroutes("doctor", "--compare-kubernetes", "--json", *kubeconfig)
    assert doctor.returncode == 3, doctor.stderr
    assert [(d["kind"], d["node"]) for d in json.loads(doctor.stdout)["kubernetes"][
        "disagreements"]] == [("not-in-inventory", "node-9")]
