"""The pure helpers of benchmarks/fanout.py (no lab, no ssh, no ansible)."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fanout.py"


@pytest.fixture(scope="module")
def fanout() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fanout_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


PLAN = {"hosts": [
    {"name": "server", "routes": [
        {"dst": "10.200.0.0/24", "gateway": "192.168.10.101"},
        {"dst": "10.200.1.0/24", "gateway": "192.168.10.102"}]},
    {"name": "node-0", "routes": [{"dst": "10.200.1.0/24", "gateway": "192.168.10.102"}]},
]}


def test_plan_and_commands(fanout: ModuleType) -> None:
    plan = fanout.parse_plan(PLAN)
    assert plan["node-0"] == [("10.200.1.0/24", "192.168.10.102")]
    command = fanout.host_command(plan["server"])
    assert command == ("ip -j route show >/dev/null && "
                       "ip route replace 10.200.0.0/24 via 192.168.10.101 proto 147 && "
                       "ip route replace 10.200.1.0/24 via 192.168.10.102 proto 147")


def test_scripts_quote_each_command_once(fanout: ModuleType) -> None:
    commands = {"server": "ip -j route show >/dev/null && ip route replace a via b proto 147"}
    seq = fanout.sequential_script("/x/ssh_config", commands)
    assert seq.splitlines()[0] == "set -e"
    assert shlex.split(seq.splitlines()[1]) == ["ssh", "-n", "-F", "/x/ssh_config", "server",
                                                commands["server"]]
    par = fanout.parallel_script("/x/ssh_config", commands)
    assert par.count(" &\n") == 1 and "wait" in par and par.rstrip().endswith("exit $rc")


def test_table_comparison(fanout: ModuleType) -> None:
    text = json.dumps([{"dst": "10.200.1.0/24", "gateway": "192.168.10.102", "dev": "eth0",
                        "flags": []}])
    actual = fanout.parse_table(text)
    assert fanout.table_mismatch("node-0", [("10.200.1.0/24", "192.168.10.102")], actual) is None
    assert fanout.parse_table("") == set()
    wrong = fanout.table_mismatch("node-0", [("10.200.2.0/24", "192.168.10.103")], actual)
    assert wrong is not None and "1 planned route(s) missing" in wrong and "1 unexpected" in wrong


def test_ansible_inventory_and_playbook(fanout: ModuleType) -> None:
    plan = fanout.parse_plan(PLAN)
    hosts = fanout.ansible_inventory(plan)["all"]["hosts"]
    assert hosts["node-0"]["route_commands"] == (
        "ip route replace 10.200.1.0/24 via 192.168.10.102 proto 147")
    (play,) = fanout.ansible_playbook("raw", "free")
    assert play["gather_facts"] is False and play["strategy"] == "free"
    assert [task.get("raw") for task in play["tasks"]] == ["ip -j route show",
                                                           "{{ route_commands }}"]
    cfg = fanout.ansible_cfg(Path("/w"), "/lab/ssh_config")
    assert "pipelining = True" in cfg and "forks = 30" in cfg and "-F /lab/ssh_config" in cfg


def test_table_and_ratios(fanout: ModuleType) -> None:
    fast = fanout.Summary([1.0, 1.2, 1.1])
    slow = fanout.Summary([9.0, 10.0, 11.0])
    broken = fanout.Summary([], ["routes wrong"])
    assert fanout.speedup(slow.median, fast.median) == pytest.approx(10.0 / 1.1)
    table = fanout.markdown_table([("ansible-shell", "shell", slow), ("ansible-raw", "raw",
                                                                      broken),
                                   ("podroutes", "podroutes", fast)], "podroutes", True)
    assert "| shell | 3/3 | **10.00 s** (*shared*) |" in table
    assert "9.09x | ≥ 8x: met |" in table
    assert "| raw | 0/1 | failed |" in table
    assert not broken.ok and fast.ok


def test_version_tuple(fanout: ModuleType) -> None:
    assert fanout.version_tuple("2.3.1") < (2, 20) <= fanout.version_tuple("2.21.5")


def test_warm_reads_are_what_status_and_doctor_read(fanout: ModuleType) -> None:
    from podroutes.core.paths import TABLES_SCRIPT
    from podroutes.diag.facts import FACT_COMMANDS

    assert fanout.table_reads() == ("ip -j -4 route show table main; "
                                    "ip -j -6 route show table main")
    status = fanout.status_reads()
    assert status.startswith(fanout.table_reads() + "; sh -c " + shlex.quote(TABLES_SCRIPT))
    assert status.endswith("; printf 'route get %s\\n' {{ route_gets | join(' ') }} | "
                           "ip -j -force -batch -")
    doctor = fanout.doctor_reads()
    for argv in FACT_COMMANDS.values():
        assert shlex.join(argv) + " 2>&1" in doctor
    [play] = fanout.ansible_read_playbook("true", "read")
    assert play["gather_facts"] is False and [t["shell"] for t in play["tasks"]] == ["true"]


def test_warm_table_puts_each_command_next_to_its_ansible_peer(fanout: ModuleType) -> None:
    s = fanout.Summary
    results = {"podroutes-status": s([0.3, 0.35, 0.32], cpu=[0.2, 0.3, 0.25]),
               "podroutes-apply": s([0.5]), "podroutes-doctor": s([], ["exit 1: boom"]),
               "ansible-status": s([6.0, 6.4], cpu=[5.0, 5.5]), "ansible-read": s([6.2]),
               "ansible-doctor": s([7.0])}
    labels = {k: k.upper() for k in results}
    table = fanout.warm_table(results, labels, shared=True).splitlines()
    assert "6.20 s (ANSIBLE-READ)" in table[3]
    assert table[2].startswith("| PODROUTES-STATUS | 3/3 | **0.320 s** (*shared*) | 0.300 s")
    assert ("≤ 0.4 s: met | 6.20 s (ANSIBLE-STATUS) | 19.4x | ≥ 15x: met | 0.25 s / 5.25 s |"
            in table[2])
    assert "≤ 0.4 s: not met" in table[3] and "12.4x | ≥ 15x: not met" in table[3]
    assert table[4] == "| PODROUTES-DOCTOR | 0/1 | failed | | | | | | | |"


def test_route_gets_are_statuss_samples(fanout: ModuleType, tmp_path: Path) -> None:
    from .samples import MACHINES

    path = tmp_path / "machines.txt"
    path.write_text(MACHINES)
    gets = fanout.route_gets(str(path))
    assert gets["server"] == ["10.200.0.1", "10.200.0.254", "10.200.1.1", "10.200.1.254"]
    assert set(gets) == {"server", "node-0", "node-1"}


def test_one_batch_per_host(fanout: ModuleType) -> None:
    plan = fanout.parse_plan(PLAN)
    assert fanout.batch_text(plan["server"]) == (
        "route replace 10.200.0.0/24 via 192.168.10.101 proto 147\n"
        "route replace 10.200.1.0/24 via 192.168.10.102 proto 147\n")
    files = {"server": "/w/server.batch", "node-0": "/w/node 0.batch"}
    sequential = fanout.batch_script("/lab/ssh_config", files, parallel=False)
    assert sequential.splitlines() == [
        "set -e",
        "ssh -F /lab/ssh_config server ip -batch - < /w/server.batch",
        "ssh -F /lab/ssh_config node-0 ip -batch - < '/w/node 0.batch'"]
    parallel = fanout.batch_script("/lab/ssh_config", files, parallel=True)
    assert "ssh -F /lab/ssh_config server ip -batch - < /w/server.batch &" in parallel
    assert parallel.rstrip().endswith("exit $rc")
    assert "-n" not in shlex.split(parallel.splitlines()[1])  # stdin is the batch


def test_kex_config_switches_and_restores(fanout: ModuleType) -> None:
    lab = "Port 22\nSetEnv SHLVL=1\n" + fanout.LAB_KEX_LINE + "\nLogLevel VERBOSE\n"
    default = fanout.kex_config(lab, "default")
    assert "KexAlgorithms" not in default and "LogLevel VERBOSE" in default
    assert fanout.kex_config(default, "curve25519") == lab
    assert fanout.kex_config(lab, "curve25519") == lab
