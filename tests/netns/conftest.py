"""Fixtures for the agent's namespace tests: a node's table in a throwaway network namespace,
a Kubernetes API server test double, and the agent as a real process.

- ``node_ns``: a namespace ``prt<hex>-agent`` with a veth pair (``eth0`` holds the node's
  addresses 192.168.10.101/24 and fd00:10::101/64; its peer ``eth0p`` stays in the same
  namespace: the kernel here has no ``dummy`` links), deleted by name in ``finally``.
- ``apiserver``: **test double** for the Kubernetes API server: kmock's
  ``KubernetesEmulator`` (PyPI ``kmock``), served on 127.0.0.1 from a background thread.
  Tests change Nodes through its HTTP API with lightkube's client, as a controller would,
  so the agent sees real list and watch traffic. Known difference from a real API server
  (kmock's documented simplification): a patch merges dictionaries and replaces lists, so
  a strategic-merge patch of ``status.conditions`` replaces the whole list.
- ``AgentProcess``: ``python -m podroutes agent`` started by the test (``--netns``, or
  inside the namespace with ``ip netns exec``), stopped by PID, logs in a file.

Nothing here touches the root namespace's network: the agent's HTTP server listens on
127.0.0.1 (loopback), and every route, link and address change is inside ``node_ns``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx2
import kmock
import pytest
import yaml
from lightkube import Client, KubeConfig
from lightkube.resources.core_v1 import Event, Node

from podroutes.core.iproute import parse_routes
from podroutes.core.model import Family, Route

OWN = 147


def wait_until(what: Callable[[], Any], timeout: float = 10.0, every: float = 0.05,
               message: str = "") -> Any:
    """Poll until ``what()`` is truthy; fail after a generous ``timeout`` (not a timing
    claim: benchmarks/agent_repair.py measures how fast)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message or what}")
        time.sleep(every)


class NodeNamespace:
    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                              text=True, timeout=30, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} failed: {done.stderr}")
        return done.stdout

    def ip(self, *argv: str, check: bool = True) -> str:
        return self.sh("ip", *argv, check=check)

    def routes(self) -> list[Route]:
        out: list[Route] = []
        for family in Family:
            out += parse_routes(self.ip("-j", family.flag, "route", "show", "table", "main"),
                                family)
        return out

    def route(self, dst: str) -> Route | None:
        return next((r for r in self.routes() if str(r.dst) == dst), None)

    def owned(self) -> dict[str, str]:
        return {str(r.dst): str(r.gateway) for r in self.routes() if r.protocol == OWN}


def unique_name() -> str:
    return "prt" + secrets.token_hex(3)


@pytest.fixture
def node_ns() -> Iterator[NodeNamespace]:
    name = f"{unique_name()}-agent"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns = NodeNamespace(name)
        ns.sh("sysctl", "-qw", "net.ipv6.conf.all.keep_addr_on_down=1")
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ns.sh("sysctl", "-qw", "net.ipv6.conf.eth0.keep_addr_on_down=1")
        ns.ip("addr", "add", "192.168.10.101/24", "dev", "eth0")
        ns.ip("-6", "addr", "add", "fd00:10::101/64", "dev", "eth0", "nodad")
        for link in ("lo", "eth0", "eth0p"):
            ns.ip("link", "set", link, "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def node(name: str, address: str | None, cidrs: list[str] | None = None,
         address6: str | None = None, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    addresses = [{"type": "Hostname", "address": name}]
    addresses += [{"type": "InternalIP", "address": a} for a in (address, address6) if a]
    spec: dict[str, Any] = {"podCIDRs": cidrs} if cidrs else {}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created},
            "spec": spec, "status": {"addresses": addresses}}


class ApiServer:
    """Test double for the Kubernetes API server: kmock's KubernetesEmulator on 127.0.0.1."""

    def __init__(self, directory: Path, timeout: float = 10.0) -> None:
        #: How long a request (and a call into the emulator's thread) may take; the fleet
        #: benchmark, which loads thousands of Nodes on a busy machine, asks for more.
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._ready: Future[str] = Future()
        self._stop: asyncio.Event | None = None
        self.emulator: kmock.KubernetesEmulator | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        self.url = self._ready.result(timeout=10)
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "agent", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "kmock", "user": "agent"}}],
        }))
        self.client = Client(KubeConfig.from_file(self.kubeconfig), field_manager="test",
                             timeout=httpx2.Timeout(timeout))

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.resources["v1/nodes"] = kmock.ResourceInfo(kind="Node", namespaced=False)
            emulator.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True)
            self.emulator = emulator
            self._ready.set_result(str(server.url).rstrip("/"))
            await self._stop.wait()

    def close(self) -> None:
        self.client.close()
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        try:
            self._serving.result(timeout=self.timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def in_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the emulator's thread (its state is not shared across threads)."""
        async def call() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=self.timeout)

    # --- the cluster, changed through the API ------------------------------------------------

    def add(self, obj: dict[str, Any]) -> None:
        self.client.create(Node.from_dict(obj))

    def delete(self, name: str) -> None:
        self.client.delete(Node, name)

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        from lightkube.types import PatchType
        self.client.patch(Node, name, patch, patch_type=PatchType.MERGE)

    def condition(self, name: str) -> dict[str, Any] | None:
        obj = self.client.get(Node, name).to_dict()
        return next((c for c in obj.get("status", {}).get("conditions", [])
                     if c.get("type") == "NetworkUnavailable"), None)

    def events(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.client.list(Event, namespace="default")]


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


class AgentProcess:
    """``podroutes agent`` as a real process; ``stop()`` sends SIGTERM to its PID."""

    def __init__(self, args: list[str], log: Path, *, inside: str | None = None) -> None:
        prefix = ["ip", "netns", "exec", inside] if inside else []
        self.argv = [*prefix, sys.executable, "-m", "podroutes", "agent",
                     "--metrics-address", "127.0.0.1:0", "--log-format", "json", *args]
        self.log = log
        self.inside = inside
        self._out = log.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.port = wait_until(self._port, message="the agent's metrics port in its log")

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"msg": line, "level": "raw"})
        return out

    def _port(self) -> int | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}: {self.log.read_text()}")
        for r in self.records():
            if r.get("msg") == "starting" and r.get("metrics"):
                return int(str(r["metrics"]).rpartition(":")[2])
        return None

    def get(self, path: str) -> tuple[int, str]:
        """GET from the agent's HTTP server on 127.0.0.1, from the agent's own namespace."""
        url = f"http://127.0.0.1:{self.port}{path}"
        if self.inside:
            script = ("import sys,urllib.request,urllib.error\n"
                      "try:\n r=urllib.request.urlopen(sys.argv[1],timeout=5)\n"
                      " print(r.status);print(r.read().decode(),end='')\n"
                      "except urllib.error.HTTPError as e:\n"
                      " print(e.code);print(e.read().decode(),end='')\n")
            out = subprocess.run(["ip", "netns", "exec", self.inside, sys.executable, "-c",
                                  script, url], capture_output=True, text=True, timeout=30,
                                 check=True).stdout
            status, _, body = out.partition("\n")
            return int(status), body
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, labels: str = "") -> float | None:
        _, text = self.get("/metrics")
        key = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return None

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Agents a test started; each is stopped by its PID afterwards."""
    started: list[AgentProcess] = []
    try:
        yield started
    finally:
        for agent in started:
            agent.stop()
