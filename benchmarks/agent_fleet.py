"""A fleet of agents: how fast a Node event reaches every table, and a resync at 5,000 routes.

Run as root from the repository root (everything it makes is named ``prt<hex>-...`` and
deleted by name at the end, even on failure; the root namespace is never touched):

    .venv/bin/python benchmarks/agent_fleet.py --agents 10 --runs 20 --routes 5000

The API server is the tests' **test double**, kmock's ``KubernetesEmulator``, served on
127.0.0.1 from a thread of this process (so its own time is in the figures, as a real
API server's would be). The agents are real ``python -m podroutes agent`` processes,
each managing the table of its own network namespace with ``--netns`` (a veth pair, the
node's address on ``eth0``) and ``--resync 3600``, so only the watch moves them.

(a) **Node event → routes on every agent.** N agents follow a cluster of N Nodes. Each
run creates one more Node (``POST /api/v1/nodes``) and waits until every agent's
namespace has announced the new route; then deletes it and waits until every namespace
has announced its removal. Each time is measured from just before the request is sent
to the rtnetlink notification (``RTM_NEWROUTE`` / ``RTM_DELROUTE`` of the owned route)
as this process receives it from each namespace (pyroute2 sockets bound in each
namespace; no polling). Reported per run: the last agent (all N routed) and the first.

(b) **Full resync at scale.** One agent whose API holds 5,001 Nodes (itself and 5,000
others: 5,000 desired routes; the Nodes are put in the emulator's store directly, which
the agent then lists over HTTP). Reported: from starting the process to the 5,000th
route in the table (Python start, list, plan, one ``ip -batch``; polled every 50 ms),
the start-up reconcile's own duration, and then ``--resync 2`` passes that find the
table in sync, each as the agent logs it (``duration_ms`` of its debug-level "routes in
sync" record: the same clock as ``podroutes_sync_duration_seconds``), and Nodes added
one at a time to the 5,001 (the reconcile each wakes, from the agent's log).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightkube.resources.core_v1 import Node
from pyroute2 import AsyncIPRoute
from pyroute2 import config as pyroute2_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' API double
from tests.netns.conftest import ApiServer

OWN = 147


# --- the API server test double ---------------------------------------------------------

class Api(ApiServer):
    """The tests' API server test double (kmock's KubernetesEmulator on 127.0.0.1, see
    tests/netns/conftest.py), with a longer timeout and a way to load Nodes in bulk."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory, timeout=60.0)

    def store(self, objs: list[dict[str, Any]]) -> None:
        """Put Nodes straight into the emulator's store (no watch event: set-up only)."""
        def put() -> None:
            assert self.emulator is not None
            for obj in objs:
                self.emulator.objects["v1/nodes", None, obj["metadata"]["name"]] = obj
        self.in_loop(put)


def node(name: str, address: str, cidr: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"uid-{name}",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": address}]}}


# --- namespaces and agents ----------------------------------------------------------------

class Bench:
    """What this run made: namespaces and agent processes, removed by name and PID."""

    def __init__(self, prefix: str, directory: Path) -> None:
        self.prefix = prefix
        self.directory = directory
        self.namespaces: list[str] = []
        self.agents: list[subprocess.Popen[bytes]] = []

    def namespace(self, suffix: str, address: str) -> str:
        name = f"{self.prefix}-{suffix}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.namespaces.append(name)
        batch = (f"link add eth0 type veth peer name eth0p\naddr add {address} dev eth0\n"
                 "link set lo up\nlink set eth0 up\nlink set eth0p up\n")
        subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True)
        return name

    def agent(self, ns: str, node_name: str, kubeconfig: Path, *extra: str) -> Path:
        log = self.directory / f"{ns}.log"
        self.agents.append(subprocess.Popen(
            [sys.executable, "-m", "podroutes", "agent", "--netns", ns, "--node-name",
             node_name, "--kubeconfig", str(kubeconfig), "--metrics-address", "off",
             "--unavailable-after", "3600", *extra],
            stdout=log.open("wb"), stderr=subprocess.STDOUT))
        return log

    def stop_agents(self) -> None:
        for proc in self.agents:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.agents:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.agents.clear()

    def remove(self) -> None:
        self.stop_agents()
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False)
        self.namespaces.clear()


def owned_count(ns: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "-j", "route", "show", "proto", str(OWN)],
                         capture_output=True, text=True, check=True).stdout
    return len(json.loads(out or "[]"))


def wait_for(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout}s: {message}")
        time.sleep(0.05)


def records(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


# --- (a) Node event → every agent ---------------------------------------------------------

def fanout_address(i: int) -> str:
    return str(ipaddress.ip_address("192.168.0.1") + i)


async def _listen(ns: str, seen: asyncio.Queue[tuple[str, str, str, float]]) -> None:
    ipr = AsyncIPRoute(netns=ns)
    await ipr.bind()
    try:
        while True:
            async for msg in ipr.get():
                event = msg.get("event")
                if event in ("RTM_NEWROUTE", "RTM_DELROUTE") and msg.get("proto") == OWN:
                    dst = f"{msg.get('RTA_DST')}/{msg.get('dst_len')}"
                    seen.put_nowait((ns, event, dst, time.monotonic()))
    finally:
        ipr.close()


async def _measure_fanout(api: Api, namespaces: list[str], agents: int, runs: int
                          ) -> dict[str, list[float]]:
    pyroute2_config.disable_mp_signal = True
    seen: asyncio.Queue[tuple[str, str, str, float]] = asyncio.Queue()
    listeners = [asyncio.create_task(_listen(ns, seen)) for ns in namespaces]
    out: dict[str, list[float]] = {"add: all agents": [], "add: first agent": [],
                                   "delete: all agents": [], "delete: first agent": []}
    try:
        await asyncio.sleep(1.0)  # every socket bound
        for r in range(runs):
            i = agents + r
            name, cidr = f"node-{i}", f"10.200.{i}.0/24"
            for verb, event in (("add", "RTM_NEWROUTE"), ("delete", "RTM_DELROUTE")):
                while not seen.empty():
                    seen.get_nowait()
                started = time.monotonic()
                if verb == "add":
                    await asyncio.to_thread(api.client.create,
                                            Node.from_dict(node(name, fanout_address(i), cidr)))
                else:
                    await asyncio.to_thread(api.client.delete, Node, name)
                arrived: dict[str, float] = {}
                while len(arrived) < len(namespaces):
                    ns, kind, dst, when = await asyncio.wait_for(seen.get(), 60)
                    if kind == event and dst == cidr:
                        arrived.setdefault(ns, when)
                times = sorted(t - started for t in arrived.values())
                out[f"{verb}: all agents"].append(times[-1])
                out[f"{verb}: first agent"].append(times[0])
                await asyncio.sleep(0.5)
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    return out


def fanout(bench: Bench, api: Api, agents: int, runs: int) -> dict[str, list[float]]:
    namespaces = [bench.namespace(f"f{i}", f"{fanout_address(i)}/16") for i in range(agents)]
    for i in range(agents):
        api.client.create(Node.from_dict(node(f"node-{i}", fanout_address(i),
                                              f"10.200.{i}.0/24")))
    for i, ns in enumerate(namespaces):
        bench.agent(ns, f"node-{i}", api.kubeconfig, "--resync", "3600", "--log-level",
                    "warning")
    wait_for(lambda: all(owned_count(ns) == agents - 1 for ns in namespaces), 120,
             "every agent converged")
    return asyncio.run(_measure_fanout(api, namespaces, agents, runs))


# --- (b) resync at scale ------------------------------------------------------------------

def scale_nodes(count: int) -> list[dict[str, Any]]:
    base = ipaddress.ip_address("172.16.0.1")
    return [node(f"node-{i}", str(base + i),
                 str(ipaddress.ip_network((int(ipaddress.ip_address("10.0.0.0")) + i * 256,
                                           24))))
            for i in range(count + 1)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def resync(bench: Bench, api: Api, routes: int, passes: int, adds: int) -> dict[str, Any]:
    ns = bench.namespace("r", "172.16.0.1/16")
    api.store(scale_nodes(routes))
    started = time.monotonic()
    log = bench.agent(ns, "node-0", api.kubeconfig, "--resync", "2", "--log-level", "debug")
    proc = bench.agents[-1]
    wait_for(lambda: owned_count(ns) == routes or proc.poll() is not None, 300,
             f"{routes} routes installed")
    installed = time.monotonic() - started
    if proc.poll() is not None:
        raise RuntimeError(f"the agent exited: {log.read_text()[-2000:]}")

    def syncs(trigger: str) -> list[dict[str, Any]]:
        return [r for r in records(log) if r.get("trigger") == trigger and "duration_ms" in r]

    wait_for(lambda: len(syncs("resync")) >= passes, 30 + passes * 10,
             f"{passes} resync passes")
    start = syncs("start")[0]
    in_sync = [r for r in syncs("resync")[:passes]]
    assert all(r["installed"] == routes and r["converged"] for r in in_sync), in_sync
    rss = rss_mib(proc.pid)
    # More Nodes among the 5,001, one at a time: the reconcile each wakes.
    more = scale_nodes(routes + adds)[routes + 1:]
    for i, obj in enumerate(more, start=1):
        api.client.create(Node.from_dict(obj))
        wait_for(lambda i=i: len(syncs("nodes")) >= i, 60, "the reconcile of an added Node")
        time.sleep(0.5)
    woken = syncs("nodes")[:adds]
    assert all(r["added"] == 1 and r["converged"] for r in woken), woken
    return {"install_s": installed, "start_ms": start["duration_ms"],
            "start_added": start["added"], "resync_ms": [r["duration_ms"] for r in in_sync],
            "node_added_ms": [r["duration_ms"] for r in woken], "rss_mib": rss}


# --- report -------------------------------------------------------------------------------

def stats(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return statistics.median(ordered), p90, ordered[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--routes", type=int, default=5000)
    parser.add_argument("--passes", type=int, default=10, help="in-sync resync passes")
    parser.add_argument("--adds", type=int, default=5, help="Nodes added at scale")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-resync", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (it creates network namespaces)", file=sys.stderr)
        return 1
    if not 2 <= args.agents <= 200 or args.agents + args.runs > 250:
        print("--agents 2-200, and --agents + --runs at most 250", file=sys.stderr)
        return 2
    prefix = f"prt{secrets.token_hex(3)}"
    print(f"namespaces: {prefix}-*; load average before: {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs", flush=True)
    fan: dict[str, list[float]] = {}
    scale: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(prefix, Path(tmp))
        try:
            if not args.skip_fanout:
                api = Api(Path(tmp) / "a")
                try:
                    fan = fanout(bench, api, args.agents, args.runs)
                finally:
                    bench.stop_agents()
                    api.close()
            if not args.skip_resync:
                api = Api(Path(tmp) / "b")
                try:
                    scale = resync(bench, api, args.routes, args.passes, args.adds)
                finally:
                    bench.stop_agents()
                    api.close()
        finally:
            bench.remove()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if fan:
        print(f"\n(a) Node event -> route in every table, {args.agents} agents, "
              f"{args.runs} runs (rtnetlink notifications as received)")
        print(f"{'case':22} {'median':>9} {'p90':>9} {'max':>9}")
        for case, values in fan.items():
            median, p90, top = stats(values)
            print(f"{case:22} {median * 1000:7.1f}ms {p90 * 1000:7.1f}ms {top * 1000:7.1f}ms")
    if scale:
        median, p90, top = stats(scale["resync_ms"])
        print(f"\n(b) one agent, {args.routes} desired routes ({args.routes + 1} Nodes)")
        print(f"process start -> {args.routes} routes in the table: {scale['install_s']:.2f} s")
        print(f"start-up reconcile (added {scale['start_added']}): {scale['start_ms']:.0f} ms")
        print(f"in-sync resync, {len(scale['resync_ms'])} passes: median {median:.0f} ms, "
              f"p90 {p90:.0f} ms, max {top:.0f} ms")
        median, p90, top = stats(scale["node_added_ms"])
        print(f"one Node added, reconcile it wakes, {len(scale['node_added_ms'])} times: "
              f"median {median:.0f} ms, p90 {p90:.0f} ms, max {top:.0f} ms")
        print(f"agent resident size: {scale['rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
