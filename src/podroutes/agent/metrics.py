"""Prometheus metrics, liveness and readiness, served over HTTP.

I/O: an HTTP server in a daemon thread (the standard library's WSGI server, threaded, as
prometheus-client's own ``start_http_server`` uses) serving ``/metrics``, ``/healthz`` and
``/readyz``. A thread, not the event loop, on purpose: ``/healthz`` must still answer
"unhealthy" when the loop is stuck. Used by :mod:`podroutes.agent.runner`, which records
every reconcile here; the registry and the clock are injected, so tests read values
without a server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from podroutes.agent.nodes import ClusterView
from podroutes.agent.reconciler import ReconcileResult
from podroutes.core.errors import UsageError


class AgentMetrics:
    """Every metric the agent exports (docs/agent.md lists them)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.desired = Gauge("podroutes_routes_desired", "Routes this node should have.",
                             registry=r)
        self.installed = Gauge("podroutes_routes_installed",
                               "Desired routes found in sync in the table after the last "
                               "reconcile.", registry=r)
        self.conflicting = Gauge("podroutes_routes_conflicting",
                                 "Desired routes held by a foreign route (left alone).",
                                 registry=r)
        self.added = Counter("podroutes_routes_added", "Routes added.", registry=r)
        self.removed = Counter("podroutes_routes_removed", "Owned routes removed (pruned).",
                               registry=r)
        self.changed = Counter("podroutes_routes_changed",
                               "Routes rewritten in place (new gateway) or adopted.",
                               registry=r)
        self.repaired = Counter("podroutes_routes_repaired",
                                "Routes put back after they went missing (deleted by hand, "
                                "lost with a link).", registry=r)
        self.syncs = Counter("podroutes_syncs", "Reconciles, by what started them.",
                             ["trigger"], registry=r)
        self.duration = Histogram("podroutes_sync_duration_seconds",
                                  "Time one reconcile took.", registry=r,
                                  buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.errors = Counter("podroutes_sync_errors", "Errors, by stage.", ["stage"],
                              registry=r)
        self.last_success = Gauge("podroutes_last_successful_sync_timestamp_seconds",
                                  "Unix time of the last reconcile that converged.",
                                  registry=r)
        self.nodes = Gauge("podroutes_nodes", "Nodes in the desired state, by state.",
                           ["state"], registry=r)
        for stage in ("apply", "kubernetes", "inventory", "netlink"):
            self.errors.labels(stage)
        for trigger in ("start", "nodes", "netlink", "resync"):
            self.syncs.labels(trigger)

    def follow_kubernetes(self, watching: Callable[[], bool]) -> None:
        """Kubernetes mode: export whether the Node list/watch is established, read at
        every scrape (``watching`` is the reflector's own flag)."""
        up = Gauge("podroutes_kubernetes_watch_up",
                   "1 while the Node list and watch are established; 0 from a failure "
                   "until a list succeeds again (the routes stay as they were meanwhile).",
                   registry=self.registry)
        up.set_function(lambda: 1.0 if watching() else 0.0)

    def record_view(self, view: ClusterView) -> None:
        skipped = len({n.node for n in view.skipped})
        self.nodes.labels("routable").set(len(view.inventory))
        self.nodes.labels("skipped").set(skipped)

    def record_sync(self, result: ReconcileResult, seconds: float, trigger: str,
                    now: float) -> None:
        self.syncs.labels(trigger).inc()
        self.duration.observe(seconds)
        t = result.tally
        self.added.inc(t.added)
        self.removed.inc(t.removed)
        self.changed.inc(t.changed + t.adopted)
        self.repaired.inc(t.repaired)
        if result.error is None:
            self.desired.set(result.desired)
            self.installed.set(result.installed)
            self.conflicting.set(len(result.conflicts))
        if result.converged:
            self.last_success.set(now)
        else:
            self.errors.labels("apply").inc()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})


@dataclass(slots=True)
class Health:
    """What ``/healthz`` and ``/readyz`` answer from; written by the runner's loop."""

    stale_after: float
    monotonic: Callable[[], float] = time.monotonic
    heartbeat: float | None = None
    have_state: bool = False
    converged: bool = False
    why_not_ready: str = "no reconcile has run yet"

    def beat(self) -> None:
        self.heartbeat = self.monotonic()

    def live(self) -> tuple[bool, str]:
        if self.heartbeat is None:
            return True, "starting"
        age = self.monotonic() - self.heartbeat
        if age > self.stale_after:
            return False, f"the agent's loop has not run for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.have_state:
            return False, "waiting for the desired state (Nodes or the inventory file)"
        if not self.converged:
            return False, self.why_not_ready
        return True, "ok"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (every address) → host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--metrics-address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9101")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (probes every few seconds would drown the log)."""


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, in a daemon thread."""

    def __init__(self, address: str, metrics: AgentMetrics, health: Health) -> None:
        host, port = parse_listen(address)
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path in ("/healthz", "/readyz"):
                ok, why = health.live() if path == "/healthz" else health.ready()
                start("200 OK" if ok else "503 Service Unavailable",
                      [("Content-Type", "text/plain; charset=utf-8")])
                return [f"{why}\n".encode()]
            if path == "/metrics":
                result: Iterable[bytes] = metrics_app(environ, start)
                return result
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"try /metrics, /healthz or /readyz\n"]

        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self.httpd = make_server(host, port, app, Server, handler_class=_Quiet)
        except OSError as exc:
            raise UsageError(f"--metrics-address {address}: cannot listen: {exc}") from exc
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="podroutes-metrics")
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
