"""``podroutes agent`` flags, refused before anything runs; metrics and health over HTTP on
loopback (127.0.0.1 of this namespace, which tests may use)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner

from podroutes.agent import logs
from podroutes.agent.app import Settings, check
from podroutes.agent.metrics import AgentMetrics, Health, HealthServer, parse_listen
from podroutes.cli.main import main
from podroutes.core.errors import UsageError


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["agent", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(("args", "says"), [
    (["--protocol", "4"], "--protocol 4"),
    (["--metrics-address", "nope"], "--metrics-address"),
    (["--inventory", "m.txt", "--kubeconfig", "k"], "two different modes"),
    (["--netns", "prt-no-such-namespace"], "no such network namespace"),
    (["--resync", "0"], "0.1<=x<=3600"),
    (["--inventory", "/nonexistent/machines.txt"], "cannot be read: No such file"),
])
def test_bad_flags_exit_2_before_anything_runs(args: list[str], says: str) -> None:
    status, output = run(*args)
    assert status == 2, output
    assert says in output


def test_help_names_every_mode_and_the_defaults() -> None:
    status, output = run("--help")
    assert status == 0
    for flag in ("--node-name", "--kubeconfig", "--inventory", "--resync", "--protocol",
                 "--metrics-address", "--cleanup-on-exit", "--netns"):
        assert flag in output
    assert "[default: 10.0" in " ".join(output.split())


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9101") == ("127.0.0.1", 9101)
    assert parse_listen(":9101") == ("0.0.0.0", 9101)
    assert parse_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(UsageError):
        parse_listen("9101")


def test_an_invalid_inventory_at_start_is_rejected_not_kept_waiting_for(
        tmp_path: Path) -> None:
    """There is no "last valid inventory" to keep before the first: exit 2 with the
    located problems, as every other command does."""
    bad = tmp_path / "machines.txt"
    bad.write_text("192.168.10.101 node-0\n")
    status, output = run("--inventory", str(bad), "--node-name", "node-0",
                         "--metrics-address", "off")
    assert status == 2, output
    assert f"{bad}:1: line: expected 3 or 4 fields" in output


def test_settings_check(tmp_path: Path) -> None:
    (tmp_path / "ns1").touch()
    check(Settings("n", 147, netns="ns1", netns_dir=tmp_path))
    with pytest.raises(UsageError):
        check(Settings("n", 147, netns="ns2", netns_dir=tmp_path))


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_server_answers_metrics_liveness_and_readiness() -> None:
    now = [100.0]
    metrics = AgentMetrics()
    health = Health(stale_after=30, monotonic=lambda: now[0])
    server = HealthServer("127.0.0.1:0", metrics, health)
    try:
        assert get(server.port, "/healthz") == (200, "starting\n")
        assert get(server.port, "/readyz")[0] == 503
        health.beat()
        health.have_state = health.converged = True
        assert get(server.port, "/readyz") == (200, "ok\n")
        now[0] += 31
        status, body = get(server.port, "/healthz")
        assert status == 503 and "has not run for 31s" in body
        status, text = get(server.port, "/metrics")
        assert status == 200
        for name in ("podroutes_routes_desired", "podroutes_routes_installed",
                     "podroutes_routes_added_total", "podroutes_routes_removed_total",
                     "podroutes_routes_repaired_total", "podroutes_sync_duration_seconds_bucket",
                     "podroutes_sync_errors_total", "podroutes_syncs_total",
                     "podroutes_last_successful_sync_timestamp_seconds"):
            assert f"\n{name}" in text, name
        assert get(server.port, "/")[0] == 404
    finally:
        server.close()


def test_logs_are_one_json_object_per_line_with_fields() -> None:
    stream = StringIO()
    log = logs.setup(stream, "info", "json")
    try:
        log.info("routes converged", extra={"fields": {"added": 2, "msg": "ignored"}})
        log.debug("not shown")
        record = json.loads(stream.getvalue())
        assert record["msg"] == "routes converged" and record["added"] == 2
        assert record["level"] == "info" and record["logger"] == "podroutes.agent"
        assert stream.getvalue().count("\n") == 1
        logs.setup(stream, "info", "text")
        log.warning("x", extra={"fields": {"node": "n1"}})
        assert stream.getvalue().splitlines()[-1].endswith('x node="n1"')
    finally:
        logging.getLogger("podroutes").handlers.clear()
        logging.getLogger("podroutes").propagate = True
