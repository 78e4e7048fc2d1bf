"""Wire the agent's parts from its settings and run it until SIGTERM or SIGINT.

I/O composition: builds the transport, the reconciler, the source (Kubernetes or an
inventory file), the netlink monitor and the metrics server, then runs
:class:`~podroutes.agent.runner.Agent`. Called by :mod:`podroutes.cli.agent`; raises
:class:`~podroutes.core.errors.UsageError` for settings that cannot work, before touching
anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from podroutes.agent.filesource import InventoryFileSource, read_view
from podroutes.agent.kube import KubeCluster, make_client
from podroutes.agent.metrics import AgentMetrics, Health, HealthServer
from podroutes.agent.netlink import NetlinkMonitor
from podroutes.agent.reconciler import Reconciler
from podroutes.agent.runner import Agent, AgentConfig, Reporter, Source
from podroutes.agent.triggers import Pacing
from podroutes.core.errors import InventoryError, UsageError
from podroutes.remote.transport import LocalTransport

log = logging.getLogger("podroutes.agent")


@dataclass(frozen=True)
class Settings:
    node: str
    protocol: int
    kubeconfig: str | None = None
    inventory: Path | None = None
    resync: float = 10.0
    metrics_address: str | None = "127.0.0.1:9101"
    cleanup_on_exit: bool = False
    netns: str | None = None
    unavailable_after: float = 30.0
    poll: float = 1.0
    engine_timeout: float = 30.0
    lock_wait: float = 5.0
    netns_dir: Path = Path("/run/netns")


def check(settings: Settings) -> None:
    if settings.netns is not None and not (settings.netns_dir / settings.netns).exists():
        raise UsageError(f"--netns {settings.netns}: no such network namespace "
                         f"({settings.netns_dir / settings.netns})")
    if settings.inventory is not None and settings.kubeconfig is not None:
        raise UsageError("--inventory and --kubeconfig are two different modes; give one")
    if settings.inventory is not None:
        # Read once before anything runs: "keeping the last valid inventory" only makes
        # sense once there was one (an invalid file raises InventoryError: exit 2 too).
        try:
            read_view(settings.inventory)
        except (OSError, ValueError) as exc:
            if isinstance(exc, InventoryError):
                raise
            raise UsageError(f"--inventory {settings.inventory}: cannot be read: "
                             f"{getattr(exc, 'strerror', None) or exc}") from exc


async def serve(settings: Settings) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    check(settings)
    config = AgentConfig(node=settings.node, protocol=settings.protocol,
                         resync=settings.resync, pacing=Pacing(),
                         unavailable_after=settings.unavailable_after,
                         cleanup_on_exit=settings.cleanup_on_exit)
    metrics = AgentMetrics()
    health = Health(stale_after=3 * settings.resync + settings.engine_timeout + 30)
    reconciler = Reconciler(settings.node, settings.protocol,
                            LocalTransport(netns=settings.netns),
                            timeout=settings.engine_timeout, lock_wait=settings.lock_wait)
    cluster: KubeCluster | None = None
    source: Source
    reporter: Reporter | None = None
    if settings.inventory is not None:
        source = InventoryFileSource(settings.inventory, poll=settings.poll)
    else:
        cluster = KubeCluster(make_client(settings.kubeconfig), settings.node)
        source = reporter = cluster
        kube = cluster
        metrics.follow_kubernetes(lambda: kube.watching)
    server = (HealthServer(settings.metrics_address, metrics, health)
              if settings.metrics_address else None)
    agent = Agent(config, source=source, reconciler=reconciler, reporter=reporter,
                  monitor=NetlinkMonitor(settings.netns), metrics=metrics, health=health)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("starting", extra={"fields": {
        "node": settings.node, "mode": "inventory" if settings.inventory else "kubernetes",
        "protocol": settings.protocol, "resync_s": settings.resync, "netns": settings.netns,
        "metrics": f"{settings.metrics_address.rpartition(':')[0]}:{server.port}"
        if server is not None and settings.metrics_address else None}})
    try:
        await agent.run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if server is not None:
            server.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                await cluster.close()
