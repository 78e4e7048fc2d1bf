"""What the CLI's shared modules pull in: ``podroutes.cli.options`` (shared by every
command, the agent's and the lab's too) must not import the engine; it takes
``HostState`` from :mod:`podroutes.core.outcome`. Checked in a fresh interpreter, since
this one has long imported everything."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys, importlib
importlib.import_module(sys.argv[1])
print("\\n".join(sorted(m for m in sys.modules if m.startswith("podroutes"))))
"""


def imported_by(module: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True,
                          text=True, timeout=60, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("module", ["podroutes.cli.options", "podroutes.cli.exit_status"])
def test_the_shared_cli_modules_do_not_import_the_engine(module: str) -> None:
    modules = imported_by(module)
    assert module in modules
    assert "podroutes.remote.engine" not in modules


def test_options_takes_host_state_from_the_core() -> None:
    from podroutes.cli import options
    from podroutes.core.outcome import HostState

    assert options.HostState is HostState


@pytest.mark.parametrize("module", ["podroutes.cli.main", "podroutes.cli.diag",
                                    "podroutes.cli.persist"])
def test_commands_load_kubernetes_code_only_for_a_cluster_inventory(module: str) -> None:
    """``-i kubernetes`` imports lightkube (through ``agent.kube``) when it runs; a run with
    an inventory file never pays for it."""
    modules = imported_by(module)
    assert "podroutes.cli.kubernetes" not in modules
    assert "podroutes.agent.kube" not in modules


RUN = """
import sys
from podroutes.cli.main import main
try:
    main(sys.argv[1:], prog_name="podroutes")
except SystemExit:
    pass
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def modules_after(*argv: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True,
                          timeout=60, check=True)
    return set(done.stderr.split())


def test_start_up_imports_neither_asyncio_nor_rich() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, podroutes.cli.main; "
                           "print(' '.join(sys.modules))"], capture_output=True, text=True,
                          timeout=60, check=True)
    modules = set(done.stdout.split())
    assert "podroutes.cli.main" in modules and "click" in modules
    assert "asyncio" not in modules and "rich" not in modules


def test_plan_as_json_never_loads_asyncio_or_rich(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/machines.txt"
    with open(path, "w") as f:
        f.write("192.168.0.1 a.k a 10.0.0.0/24\n192.168.0.2 b.k b 10.0.1.0/24\n")
    modules = modules_after("plan", "-i", path, "--format", "json")
    assert "podroutes.core.plan" in modules
    assert not {"asyncio", "rich", "podroutes.remote.engine"} & modules
    table = modules_after("plan", "-i", path)
    assert "rich.table" in table and "asyncio" not in table


def test_apply_json_never_loads_rich(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/machines.txt"
    with open(path, "w") as f:
        f.write("192.168.0.1 a.k a 10.0.0.0/24\n")
    # --dry-run --local on a one-host inventory: reads this machine's table, changes nothing
    modules = modules_after("apply", "-i", path, "--local", "--dry-run", "--json")
    assert "podroutes.remote.engine" in modules
    assert "rich" not in modules
