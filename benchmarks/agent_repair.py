"""How fast the agent puts routes back: a route deleted by hand, an owned route replaced
with another gateway, a link flap; and that it does nothing while nothing changes.

Builds a throwaway network namespace (``prt<hex>-bench``: a veth pair, 192.168.10.101/24),
starts ``podroutes agent --netns NS --inventory FILE --resync 3600`` (so only kernel events
can bring a route back, never the periodic resync), and watches the namespace's own
rtnetlink notifications from this process. Each figure is the time between two kernel
notifications as this process receives them:

- route deleted: ``RTM_DELROUTE`` of the owned route → ``RTM_NEWROUTE`` of the same route;
- wrong gateway: ``ip route replace DST via 192.168.10.100 proto 147`` (a change under
  the agent's own protocol, which the agent did not write) → ``RTM_NEWROUTE`` of DST via
  its planned gateway again;
- link flap: ``RTM_NEWLINK`` (eth0 up again) → ``RTM_NEWROUTE`` of the last owned route.

Then, with nothing changing for ``--idle`` seconds, the agent's ``podroutes_syncs``
counter (read from its ``/metrics`` on a loopback port) must not move: no reconcile
triggers itself. The figure printed is the counter's increase over that time.

Run as root from the repository root (nothing outside the namespace is touched; it is
deleted at the end even on failure):

    .venv/bin/python benchmarks/agent_repair.py --runs 20 --flaps 20 --idle 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2 import config as pyroute2_config

OWN = 147
MACHINES = "".join(f"192.168.10.{101 + i} n{i}.k node-{i} 10.200.{i}.0/24\n" for i in range(11))


def ns_run(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True)


def dst_of(msg: Any) -> str:
    return f"{msg.get('RTA_DST')}/{msg.get('dst_len')}"


async def next_event(ipr: Any, match: Any, timeout: float = 10.0) -> float:
    """The monotonic time at which a notification matching ``match`` arrived."""
    async def wait() -> float:
        while True:
            async for msg in ipr.get():
                if match(msg):
                    return time.monotonic()
    return await asyncio.wait_for(wait(), timeout)


def is_route(event: str, dst: str, gateway: str | None = None) -> Any:
    return lambda m: (m.get("event") == event and m.get("proto") == OWN
                      and m.get("table") == 254 and dst_of(m) == dst
                      and (gateway is None or m.get("RTA_GATEWAY") == gateway))


def planned_gateway(dst: str) -> str:
    """MACHINES: node-i has 10.200.i.0/24 via 192.168.10.(101 + i)."""
    return f"192.168.10.{101 + int(dst.split('.')[2])}"


def syncs(metrics: str) -> float:
    """The agent's ``podroutes_syncs`` counter, summed over triggers (loopback only)."""
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("podroutes_syncs_total"))


async def measure(ns: str, runs: int, flaps: int) -> dict[str, list[float]]:
    pyroute2_config.disable_mp_signal = True
    ipr = AsyncIPRoute(netns=ns)
    await ipr.bind()
    out: dict[str, list[float]] = {"route deleted by hand": [], "wrong gateway": [],
                                   "link flap": []}
    try:
        for i in range(runs):
            dst = f"10.200.{1 + i % 10}.0/24"
            replaced = asyncio.ensure_future(next_event(
                ipr, is_route("RTM_NEWROUTE", dst, "192.168.10.100")))
            await asyncio.sleep(0)
            await asyncio.to_thread(ns_run, ns, "ip", "route", "replace", dst, "via",
                                    "192.168.10.100", "proto", str(OWN))
            t_wrong = await replaced
            t_right = await next_event(ipr, is_route("RTM_NEWROUTE", dst, planned_gateway(dst)))
            out["wrong gateway"].append(t_right - t_wrong)
            await asyncio.sleep(0.5)
        for i in range(runs):
            dst = f"10.200.{1 + i % 10}.0/24"
            deleted = asyncio.ensure_future(next_event(ipr, is_route("RTM_DELROUTE", dst)))
            await asyncio.sleep(0)
            await asyncio.to_thread(ns_run, ns, "ip", "route", "del", dst)
            t_del = await deleted
            t_new = await next_event(ipr, is_route("RTM_NEWROUTE", dst))
            out["route deleted by hand"].append(t_new - t_del)
            await asyncio.sleep(0.5)
        last = "10.200.10.0/24"
        for _ in range(flaps):
            await asyncio.to_thread(ns_run, ns, "ip", "link", "set", "eth0", "down")
            await asyncio.sleep(0.3)
            up = asyncio.ensure_future(next_event(
                ipr, lambda m: m.get("event") == "RTM_NEWLINK"
                and m.get("IFLA_IFNAME") == "eth0" and m.get("flags", 0) & 1))
            await asyncio.sleep(0)
            await asyncio.to_thread(ns_run, ns, "ip", "link", "set", "eth0", "up")
            t_up = await up
            t_back = await next_event(ipr, is_route("RTM_NEWROUTE", last))
            out["link flap"].append(t_back - t_up)
            await asyncio.sleep(0.5)
    finally:
        ipr.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--flaps", type=int, default=20)
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds of no change during which no reconcile may start")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (it creates a network namespace)", file=sys.stderr)
        return 1
    ns = f"prt{secrets.token_hex(3)}-bench"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    agent: subprocess.Popen[bytes] | None = None
    metrics = f"127.0.0.1:{20000 + secrets.randbelow(20000)}"
    idle: tuple[float, float] | None = None
    try:
        ns_run(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ns_run(ns, "ip", "addr", "add", "192.168.10.101/24", "dev", "eth0")
        for link in ("lo", "eth0", "eth0p"):
            ns_run(ns, "ip", "link", "set", link, "up")
        with tempfile.TemporaryDirectory() as tmp:
            inventory = Path(tmp) / "machines.txt"
            inventory.write_text(MACHINES)
            log = Path(tmp) / "agent.log"
            agent = subprocess.Popen(
                [sys.executable, "-m", "podroutes", "agent", "--netns", ns, "--inventory",
                 str(inventory), "--node-name", "node-0", "--resync", "3600",
                 "--metrics-address", metrics, "--log-level", "warning"],
                stdout=log.open("wb"), stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 20
            while "10.200.10.0/24" not in subprocess.run(
                    ["ip", "-n", ns, "route"], capture_output=True, text=True).stdout:
                if time.monotonic() > deadline or agent.poll() is not None:
                    print(log.read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.05)
            results = asyncio.run(measure(ns, args.runs, args.flaps))
            time.sleep(5.0)  # the last flap settles: IPv6 DAD on eth0 ends ~2 s after up
            before = syncs(metrics)
            time.sleep(args.idle)
            idle = (args.idle, syncs(metrics) - before)
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    print(f"{'case':24} {'runs':>5} {'median':>9} {'p90':>9} {'max':>9}")
    for case, values in results.items():
        if not values:
            continue
        values.sort()
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(f"{case:24} {len(values):5d} {statistics.median(values) * 1000:7.1f}ms "
              f"{p90 * 1000:7.1f}ms {values[-1] * 1000:7.1f}ms")
    if idle is not None:
        print(f"reconciles while nothing changed for {idle[0]:g} s: {idle[1]:g}")
        if idle[1]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
