"""Golden tests for the planner and the plan's renderings (script, batch, JSON, CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from podroutes.cli import plan_output as render
from podroutes.cli.main import main
from podroutes.core.model import Family
from podroutes.core.plan import RoutePlan, plan
from podroutes.inventory import load

SEED = (
    "192.168.10.100 server.kubernetes.local server\n"
    "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n"
    "192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24\n"
)

DUAL = (
    "192.168.10.100,fd00:10::100 server.kubernetes.local server\n"
    "192.168.10.101,fd00:10::101 node-0.kubernetes.local node-0 10.200.0.0/24,fd00:200::/64\n"
    "192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24\n"
    "fd00:10::103 node-2.kubernetes.local node-2 fd00:202::/64\n"
)


def seed_plan(text: str = SEED, source: str = "machines.txt") -> RoutePlan:
    return plan(load(text, source))


def table(route_plan: RoutePlan) -> dict[str, list[tuple[str, str, str]]]:
    return {
        host.name: [(str(r.dst), str(r.gateway), r.via_host) for r in routes]
        for host, routes in route_plan
    }


def test_seed_plan_is_exactly_the_kthw_routes() -> None:
    assert table(seed_plan()) == {
        "server": [
            ("10.200.0.0/24", "192.168.10.101", "node-0"),
            ("10.200.1.0/24", "192.168.10.102", "node-1"),
        ],
        "node-0": [("10.200.1.0/24", "192.168.10.102", "node-1")],
        "node-1": [("10.200.0.0/24", "192.168.10.101", "node-0")],
    }


def test_route_count_matches_the_materialised_routes() -> None:
    for text in (SEED, DUAL):
        route_plan = seed_plan(text)
        assert route_plan.route_count() == sum(len(routes) for _, routes in route_plan)
    assert seed_plan().route_count() == 4
    assert seed_plan(DUAL).route_count() == 8


def test_dual_stack_routes_go_via_the_same_family() -> None:
    assert table(seed_plan(DUAL)) == {
        "server": [
            ("10.200.0.0/24", "192.168.10.101", "node-0"),
            ("fd00:200::/64", "fd00:10::101", "node-0"),
            ("10.200.1.0/24", "192.168.10.102", "node-1"),
            ("fd00:202::/64", "fd00:10::103", "node-2"),
        ],
        "node-0": [
            ("10.200.1.0/24", "192.168.10.102", "node-1"),
            ("fd00:202::/64", "fd00:10::103", "node-2"),
        ],
        # IPv4-only: no IPv6 routes, it could not reach an IPv6 gateway.
        "node-1": [("10.200.0.0/24", "192.168.10.101", "node-0")],
        # IPv6-only: only the IPv6 routes.
        "node-2": [("fd00:200::/64", "fd00:10::101", "node-0")],
    }
    for _, routes in seed_plan(DUAL):
        assert all(r.gateway.version == r.dst.version == r.family for r in routes)


def test_routes_for_one_host_and_the_family_property() -> None:
    route_plan = seed_plan(DUAL)
    routes = route_plan.routes_for(route_plan.inventory.host("node-0"))
    assert [r.family for r in routes] == [Family.V4, Family.V6]


def test_a_single_node_needs_no_routes() -> None:
    route_plan = seed_plan("192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n")
    assert table(route_plan) == {"node-0": []}
    assert route_plan.route_count() == 0
    script = render.plan_script(route_plan, 147, lambda h: h.name, "root")
    assert "# node-0: no routes needed\n" in script
    assert "ssh " not in script


# --- renderings --------------------------------------------------------------------------

SEED_SCRIPT = """\
#!/bin/sh
# Pod network routes for machines.txt, as run by hand.
# 'proto 147' marks them as podroutes' own; 'ip route add' fails with
# 'File exists' on a re-run. 'podroutes apply' does the same idempotently.
set -e

ssh root@server <<'EOF'
  ip route add 10.200.0.0/24 via 192.168.10.101 proto 147
  ip route add 10.200.1.0/24 via 192.168.10.102 proto 147
EOF

ssh root@node-0 <<'EOF'
  ip route add 10.200.1.0/24 via 192.168.10.102 proto 147
EOF

ssh root@node-1 <<'EOF'
  ip route add 10.200.0.0/24 via 192.168.10.101 proto 147
EOF
"""

SEED_BATCH = """\
# server: ip -batch -  (2 routes)
route add 10.200.0.0/24 via 192.168.10.101 proto 147
route add 10.200.1.0/24 via 192.168.10.102 proto 147
# node-0: ip -batch -  (1 route)
route add 10.200.1.0/24 via 192.168.10.102 proto 147
# node-1: ip -batch -  (1 route)
route add 10.200.0.0/24 via 192.168.10.101 proto 147
"""


def test_plan_script_golden() -> None:
    assert render.plan_script(seed_plan(), 147, lambda h: h.name, "root") == SEED_SCRIPT


def test_plan_script_uses_the_target_and_user_given() -> None:
    script = render.plan_script(seed_plan(), 200, lambda h: str(h.addresses[0]), "admin")
    assert "ssh admin@192.168.10.101 <<'EOF'\n  ip route add 10.200.1.0/24 via" in script
    assert "proto 200\n" in script
    assert "proto 147" not in script


def test_plan_script_quotes_the_ssh_destination() -> None:
    script = render.plan_script(seed_plan(), 147, lambda h: h.name, "x;reboot")
    assert "ssh 'x;reboot@server' <<'EOF'\n" in script


def test_plan_batch_golden() -> None:
    assert render.plan_batch(seed_plan(), 147) == SEED_BATCH


def test_plan_batch_dual_stack_has_no_family_flags() -> None:
    batch = render.plan_batch(seed_plan(DUAL), 147)
    assert "route add fd00:202::/64 via fd00:10::103 proto 147\n" in batch
    assert " -4" not in batch
    assert " -6" not in batch


def test_plan_json_golden() -> None:
    doc = render.plan_json(seed_plan(), 147)
    assert doc["inventory"] == "machines.txt"
    assert doc["protocol"] == 147
    assert doc["hosts"][0] == {
        "name": "server",
        "fqdn": "server.kubernetes.local",
        "addresses": ["192.168.10.100"],
        "pod_cidrs": [],
        "routes": [
            {"dst": "10.200.0.0/24", "gateway": "192.168.10.101", "via_host": "node-0",
             "family": "ipv4"},
            {"dst": "10.200.1.0/24", "gateway": "192.168.10.102", "via_host": "node-1",
             "family": "ipv4"},
        ],
    }
    assert [h["name"] for h in doc["hosts"]] == ["server", "node-0", "node-1"]
    assert doc["hosts"][2]["pod_cidrs"] == ["10.200.1.0/24"]
    assert json.loads(render.to_json(doc)) == doc


def test_plan_json_families_in_dual_stack() -> None:
    doc = render.plan_json(seed_plan(DUAL), 147)
    node2 = doc["hosts"][3]
    assert node2["addresses"] == ["fd00:10::103"]
    assert [(r["dst"], r["family"]) for r in node2["routes"]] == [("fd00:200::/64", "ipv6")]


def test_plan_rows() -> None:
    assert render.plan_rows(seed_plan())[0] == (
        "server", "10.200.0.0/24", "192.168.10.101 (node-0)", "node-0's pod CIDR")
    assert len(render.plan_rows(seed_plan())) == 4


# --- through the CLI ---------------------------------------------------------------------


def invoke(*args: str, text: str = SEED) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["plan", "-i", "-", *args], input=text)
    return result.exit_code, result.stdout


def test_cli_table() -> None:
    code, out = invoke()
    assert code == 0
    assert "Pod network routes for <stdin>" in out
    assert "┃ host   ┃ destination   ┃ gateway                 ┃ meaning           ┃" in out
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines()
            if line.startswith("│")]
    assert rows == [
        ["server", "10.200.0.0/24", "192.168.10.101 (node-0)", "node-0's pod CIDR"],
        ["", "10.200.1.0/24", "192.168.10.102 (node-1)", "node-1's pod CIDR"],
        ["node-0", "10.200.1.0/24", "192.168.10.102 (node-1)", "node-1's pod CIDR"],
        ["node-1", "10.200.0.0/24", "192.168.10.101 (node-0)", "node-0's pod CIDR"],
    ]
    assert out.rstrip().endswith("3 hosts, 4 routes")


@pytest.mark.parametrize("args", [("--format", "json"), ("--json",)])
def test_cli_json(args: tuple[str, ...]) -> None:
    code, out = invoke(*args)
    assert code == 0
    expected = render.plan_json(seed_plan(source="<stdin>"), 147)
    assert json.loads(out) == expected


def test_cli_script() -> None:
    code, out = invoke("--format", "script")
    assert code == 0
    assert out == SEED_SCRIPT.replace("machines.txt", "<stdin>")


def test_cli_script_targets_fqdn_with_user() -> None:
    code, out = invoke("--format", "script", "--ssh-user", "admin", "--ssh-target", "fqdn")
    assert code == 0
    assert "ssh admin@node-1.kubernetes.local <<'EOF'\n" in out


def test_cli_batch_with_protocol() -> None:
    code, out = invoke("--format", "batch", "--protocol", "200")
    assert code == 0
    assert out == SEED_BATCH.replace("proto 147", "proto 200")


@pytest.mark.parametrize("protocol", ["4", "0", "255", "186"])
def test_cli_rejects_a_reserved_protocol(protocol: str) -> None:
    result = CliRunner().invoke(main, ["plan", "-i", "-", "--protocol", protocol], input=SEED)
    assert result.exit_code == 2
    assert f"--protocol {protocol}" in result.stderr


def test_cli_unknown_format_is_a_usage_error() -> None:
    code, _ = invoke("--format", "yaml")
    assert code == 2


def test_huge_plans_print_one_row_per_host_and_stream_json(tmp_path: Path) -> None:
    """Above TABLE_ROUTE_LIMIT routes the table is a per-host summary (nothing quadratic
    is built); --full lists every route; JSON streams one host at a time and parses."""
    from podroutes.cli.main import TABLE_ROUTE_LIMIT

    n = 60  # 60 nodes: 60*59 = 3540 routes > TABLE_ROUTE_LIMIT
    lines = [f"172.16.0.{i + 2} node-{i}.k8s.local node-{i} 10.0.{i}.0/24" for i in range(n)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    assert n * (n - 1) > TABLE_ROUTE_LIMIT
    summary = CliRunner().invoke(main, ["plan", "-i", str(path)])
    assert summary.exit_code == 0
    assert "one row per host" in summary.output and "3540 routes" in summary.output
    assert "(node-1)" not in summary.output  # no per-route rows (gateway column)
    full = CliRunner().invoke(main, ["plan", "-i", str(path), "--full"])
    assert "172.16.0.3 (node-1)" in full.output
    streamed = CliRunner().invoke(main, ["plan", "-i", str(path), "--format", "json"])
    data = json.loads(streamed.output)
    assert data == render.plan_json(plan(load(path.read_text(), str(path))), 147)


def test_an_inventorys_repr_stays_short_at_any_size() -> None:
    """asyncio repr()s what its tasks hold; a 10,000-host repr once cost 0.5 s per run."""
    from podroutes.inventory import load

    text = "".join(f"192.168.{1 + i // 250}.{1 + i % 250} n{i}.k node-{i} "
                   f"10.{i // 256}.{i % 256}.0/24\n" for i in range(2000))
    inventory = load(text, "big.txt")
    assert repr(inventory) == "Inventory(source='big.txt', hosts=<2000 hosts>)"
    assert len(repr(plan(inventory))) < 100


def test_a_big_diff_and_outcome_repr_short() -> None:
    from ipaddress import ip_address, ip_network

    from podroutes.core.diff import diff
    from podroutes.core.model import Host, PlannedRoute
    from podroutes.core.outcome import HostOutcome

    desired = [PlannedRoute(ip_network(f"10.{i // 256}.{i % 256}.0/24"),
                            ip_address("192.168.0.2"), "n") for i in range(3000)]
    d = diff(desired, [], 147)
    assert repr(d) == "HostDiff(<3000 changes>, <3000 statuses>)"
    host = Host(name="node-0", addresses=(ip_address("192.168.0.1"),))
    assert len(repr(HostOutcome(host, before=d, after=d))) < 200


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path: Path) -> None:
    """``podroutes plan --format json | head -c 10``: exit 141 (as Unix tools do after
    SIGPIPE), no traceback, no message."""
    import subprocess
    import sys

    machines = tmp_path / "machines.txt"
    machines.write_text("".join(f"192.168.{i // 200}.{i % 200 + 1} n{i}.k node-{i} "
                                f"10.{i // 250}.{i % 250}.0/24\n" for i in range(300)))
    plan_cmd = subprocess.Popen([sys.executable, "-m", "podroutes", "plan", "-i",
                                 str(machines), "--format", "json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert plan_cmd.stdout is not None and plan_cmd.stderr is not None
    assert plan_cmd.stdout.read(10) == b'{"inventor'
    plan_cmd.stdout.close()  # the reader is gone
    assert plan_cmd.wait(timeout=60) == 141
    assert plan_cmd.stderr.read() == b""


def test_the_progress_bar_names_the_hosts_still_running_not_one_that_finished() -> None:
    """"applying node-0 ... 2/3" while node-2 hangs was misleading: name who is left."""
    from podroutes.cli.main import still_running
    from podroutes.core.outcome import HostState

    states = {"server": HostState.DONE, "node-0": HostState.DONE,
              "node-1": HostState.RUNNING, "node-2": HostState.PENDING}
    assert still_running(states) == "node-1"
    states["node-1"] = HostState.DONE
    assert still_running(states) == "node-2"  # none running yet: the next to start
    many = {f"node-{i}": HostState.RUNNING for i in range(5)}
    assert still_running(many) == "node-0, node-1, node-2 and 2 more"


def test_status_json_says_each_hosts_verdict_whatever_the_exit_status() -> None:
    from podroutes.cli.apply_output import outcome_json
    from podroutes.core.diff import diff
    from podroutes.core.errors import TransportError
    from podroutes.core.outcome import HostOutcome

    from .samples import MACHINES

    inv = load(MACHINES, "machines.txt")
    route_plan = plan(inv)
    server, node0 = inv.host("server"), inv.host("node-0")
    down = HostOutcome(server, failure=TransportError("server", "connection refused"))
    drifted = HostOutcome(node0, before=diff(route_plan.routes_for(node0), [], 147))
    assert outcome_json(down)["verdict"] == "unreachable"
    assert outcome_json(drifted)["verdict"] == "drift"
