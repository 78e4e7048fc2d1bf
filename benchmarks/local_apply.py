"""Local apply of many routes: podroutes against a single ``ip -batch``, and reading state
against ``ip -j route`` (issue 6, target 1).

Builds a throwaway network namespace (``prt<hex>-local``: a veth pair, ``eth0`` holding
192.168.0.1/16 so that every gateway is on-link) and an inventory of N+1 machines: this
host (``node-0``) plus N nodes, each with its own address (the gateway) and pod CIDR, so
``node-0`` gets N routes, each via a different node, as a real cluster's would. The
measuring runs inside that namespace (this script again, under ``ip netns exec``), as a
user on the host would run both sides: ``ip ...`` is a plain ``ip``, podroutes' local
session a plain ``/bin/sh`` (``--from-outside`` measures from the root namespace
instead: ``ip -n NS`` against ``ip netns exec NS /bin/sh``, whose mount-namespace set-up
costs the podroutes side ~5-10 ms per session). Then, per run, from a table without any
of those routes:

- ``ip -batch``: ``ip -batch -`` of exactly the lines podroutes sends (the floor);
- ``podroutes``: the engine's local apply, in-process (``run_hosts(LocalTransport(),
  plan, 147, write=True, only=["node-0"])``): read both tables, diff, one
  ``ip -force -batch -``, read back, diff again. The plan is built before the clock starts
  (an agent has its desired state already); the Python start-up of the CLI is not counted;
- reading, with the N routes installed: ``ip -j route show table main`` plus
  ``json.loads`` (the reference) against podroutes' read of both tables through its
  local shell session, parsed into routes: a first read (a new session and an empty
  :class:`~podroutes.core.routecache.RouteCache`; everything it builds from the plan, such as
  ``Known``, is built inside the timed read), and the same table read again with the
  cache of the first (what the agent's periodic resync does); and a whole no-op local
  apply.

And the command a user runs, end to end (issue 18): ``python -m podroutes apply --local
--host node-0 -i machines.txt`` as a new process, from the same cold table: Python's
start-up, the imports, reading and validating the N+1-host inventory, the plan, the apply
as above, and the human output (to a pipe), against the same ``ip -batch``. Its modules'
bytecode is cached outside the tree (``PYTHONPYCACHEPREFIX``), as an installed copy has it.

Also ``ip -batch`` of N routes all via ONE gateway, for scale: the kernel installs those
much faster than N routes via N gateways (every distinct gateway costs the kernel a new
``fib_info``), and no podroutes plan looks like that.

Run as root from the repository root; only the namespace it made is touched, and it is
deleted by name at the end, also on failure:

    .venv/bin/python benchmarks/local_apply.py --routes 10000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from podroutes.core.model import Host, PlannedRoute
from podroutes.core.plan import RoutePlan, plan
from podroutes.core.routecache import RouteCache
from podroutes.inventory import load
from podroutes.remote.engine import read_state, run_hosts
from podroutes.remote.transport import LocalTransport

OWN = 147
PYCACHE = "/var/tmp/podroutes-bench/pycache"


def ip(ns: str | None, *argv: str, stdin: str | None = None) -> str:
    """``ip`` in namespace ``ns`` (``ip -n``), or in this process's own (``None``)."""
    where = ["-n", ns] if ns else []
    return subprocess.run(["ip", *where, *argv], input=stdin, capture_output=True,
                          text=True, check=True).stdout


def node_address(i: int) -> str:
    return f"192.168.{1 + i // 250}.{1 + i % 250}"


def machines(n: int) -> str:
    lines = ["192.168.0.1 node-0.k node-0 10.250.0.0/24"]
    lines += [f"{node_address(i)} n{i + 1}.k node-{i + 1} 10.{i // 256}.{i % 256}.0/24"
              for i in range(n)]
    return "\n".join(lines) + "\n"


def clear(ns: str | None) -> None:
    ip(ns, "route", "flush", "proto", str(OWN))
    assert ip(ns, "route", "show", "proto", str(OWN)) == ""


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def apply_local(ns: str | None, route_plan: RoutePlan) -> None:
    (outcome,) = asyncio.run(run_hosts(LocalTransport(ns), route_plan, OWN, write=True,
                                       only=["node-0"], timeout=600))
    assert outcome.error is None and outcome.converged, outcome.error


async def podroutes_read(ns: str | None, host: Host, desired: Sequence[PlannedRoute],
                         cache: RouteCache | None) -> int:
    async with LocalTransport(ns).session(host) as session:
        routes = await read_state(session, desired, cache)
    return len(routes)


def cli_apply(ns: str | None, inventory: str) -> None:
    """``podroutes apply --local`` as a user runs it: a new process, human output to a pipe."""
    where = ["ip", "netns", "exec", ns] if ns else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    done = subprocess.run([*where, sys.executable, "-m", "podroutes", "apply", "--local",
                           "--host", "node-0", "-i", inventory], capture_output=True,
                          text=True, env=env, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-800:])


def summary(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:8.1f} ms  "
            f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--from-outside", action="store_true",
                        help="stay in the root namespace: `ip -n NS` against podroutes "
                             "through `ip netns exec NS /bin/sh` (the layout before "
                             "2026-11-27 17:00)")
    parser.add_argument("--inside", metavar="NS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:  # the child: already in the namespace, which the parent owns
        return measure(None, args.routes, args.runs, f"inside {args.inside}")
    ns = f"prt{secrets.token_hex(3)}-local"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ip(ns, "addr", "add", "192.168.0.1/16", "dev", "eth0")
        ip(ns, "link", "set", "eth0", "up")
        ip(ns, "link", "set", "eth0p", "up")
        if args.from_outside:
            return measure(ns, args.routes, args.runs, "from the root namespace")
        # Both sides as a user on the host itself would run them: podroutes --local is a
        # plain /bin/sh, `ip -j route` a plain ip.
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__,
                               "--inside", ns, "--routes", str(args.routes),
                               "--runs", str(args.runs)], check=False).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def measure(ns: str | None, routes: int, runs: int, where: str) -> int:
    """Time every method ``runs`` times on the namespace (``ns``, or the one this
    process is in) and print the medians."""
    text = machines(routes)
    route_plan = plan(load(text, "bench-machines.txt"))
    workdir = tempfile.mkdtemp(prefix="local-apply-")
    inventory = str(Path(workdir) / "machines.txt")
    Path(inventory).write_text(text)
    cli_apply(ns, inventory)  # compiles the bytecode cache once, untimed
    try:
        return _measure(ns, routes, runs, where, route_plan, inventory)
    finally:
        Path(inventory).unlink()
        os.rmdir(workdir)


def _measure(ns: str | None, routes: int, runs: int, where: str, route_plan: RoutePlan,
             inventory: str) -> int:
    host = route_plan.inventory.hosts[0]
    desired = route_plan.routes_for(host)  # the plan: known before anything is read
    lines = "".join(f"route replace {r.dst} via {r.gateway} proto {OWN}\n" for r in desired)
    one_gateway = "".join(f"route replace {r.dst} via 192.168.0.2 proto {OWN}\n"
                          for r in desired)
    results: dict[str, list[float]] = {k: [] for k in (
        "ip -batch", "podroutes apply", "podroutes apply --local (CLI)",
        "ip -batch, one gateway",
        "ip -j route + json.loads", "podroutes read", "podroutes read again",
        "podroutes no-op apply")}
    for _ in range(runs):
        clear(ns)
        results["ip -batch"].append(timed(lambda: ip(ns, "-batch", "-", stdin=lines)))
        clear(ns)
        results["ip -batch, one gateway"].append(
            timed(lambda: ip(ns, "-batch", "-", stdin=one_gateway)))
        clear(ns)
        results["podroutes apply"].append(timed(lambda: apply_local(ns, route_plan)))
        installed = len(ip(ns, "route", "show", "proto", str(OWN)).splitlines())
        assert installed == routes, installed
        clear(ns)
        results["podroutes apply --local (CLI)"].append(timed(lambda: cli_apply(ns, inventory)))
        installed = len(ip(ns, "route", "show", "proto", str(OWN)).splitlines())
        assert installed == routes, installed
        results["ip -j route + json.loads"].append(timed(
            lambda: json.loads(ip(ns, "-j", "route", "show", "table", "main"))))
        count = 0
        cache = RouteCache()

        def read(cache: RouteCache = cache) -> None:
            nonlocal count
            count = asyncio.run(podroutes_read(ns, host, desired, cache))

        results["podroutes read"].append(timed(read))
        assert count >= routes, count
        results["podroutes read again"].append(timed(read))
        assert count >= routes, count
        results["podroutes no-op apply"].append(timed(lambda: apply_local(ns, route_plan)))
    with open("/proc/loadavg") as f:
        load_average = f.read().split()[:3]
    print(f"{routes} routes via {routes} gateways, median of {runs} runs, {where} "
          f"(load average after: {' '.join(load_average)})")
    for name, values in results.items():
        print(f"  {name:26} {summary(values)}")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"  apply speed, podroutes / ip -batch: {med['ip -batch'] / med['podroutes apply']:.2f}x"
          " (target >= 0.8x)")
    print(f"  the CLI end to end, podroutes apply --local / ip -batch: "
          f"{med['ip -batch'] / med['podroutes apply --local (CLI)']:.2f}x (target >= 0.8x)")
    print(f"  read time, podroutes / ip -j route: "
          f"{med['podroutes read'] / med['ip -j route + json.loads']:.2f}x first read, "
          f"{med['podroutes read again'] / med['ip -j route + json.loads']:.2f}x read again "
          "(target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
