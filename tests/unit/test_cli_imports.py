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
