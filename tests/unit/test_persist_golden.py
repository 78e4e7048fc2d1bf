"""Golden-file tests for every persist renderer (networkd, netplan, ifupdown, nm),
including the no-op case, the rewrite and removal of an earlier run's file, a manager
switch, and the refusals. Pure, except the ``io`` cases, which also run the real writer
(``podroutes persist --local --root TMP``) into ``tmp_path``: no root, never ``/etc``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from podroutes.cli.main import main
from podroutes.core.netfiles import HostFile

from .persist_cases import (
    UPDATE,
    Case,
    apply_plan,
    cases,
    copy_golden,
    read_tree,
    result_of,
    write_tree,
)

ALL = cases()
IO = [c for c in ALL if c.data.get("io")]


def _visible(files: dict[str, HostFile]) -> dict[str, HostFile]:
    return {p: f for p, f in files.items() if not p.rsplit("/", 1)[-1].startswith(".")}


def test_every_manager_and_situation_has_a_case() -> None:
    names = {c.name for c in ALL}
    assert {"networkd-node", "networkd-state", "networkd-rewrite", "networkd-removal",
            "netplan", "netplan-set-name", "netplan-too-old", "ifupdown",
            "ifupdown-not-sourced", "switch-to-netplan", "nm", "nm-noop",
            "networkd-fix-foreign"} <= names
    assert {c.data.get("format") for c in IO} >= {"networkd", "netplan", "ifupdown"}


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.name)
def test_decision_matches_golden(case: Case) -> None:
    plan, text = result_of(case)
    golden = case.dir / "result.txt"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()
    if "expect_error" in case.data:
        assert plan is None and case.data["expect_error"] in text


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.name)
def test_files_match_golden(case: Case) -> None:
    before = read_tree(case.dir / "before")
    plan, _ = result_of(case)
    after = before if plan is None else apply_plan(before, plan)
    if UPDATE and not case.data.get("io"):
        write_tree(case.dir / "after", after)
    golden = read_tree(case.dir / "after")
    assert _visible(after) == _visible(golden)


@pytest.mark.parametrize("case", [c for c in ALL if "expect_error" not in c.data],
                         ids=lambda c: c.name)
def test_second_run_changes_nothing(case: Case) -> None:
    plan, _ = result_of(case)
    assert plan is not None
    if plan.commands:  # nmcli's effect on the keyfile is proven by nm-noop and the lab
        assert case.data.get("format") in ("nm", "auto")
        return
    after = apply_plan(read_tree(case.dir / "before"), plan)
    facts = case.facts()
    again = case.plan(type(facts)(files=after, values=facts.values,
                                  interfaces=facts.interfaces, routes=facts.routes,
                                  nm_active=facts.nm_active))
    assert again.in_sync, [c for c in again.changes if c.action != "unchanged"]
    assert all(c.action == "unchanged" for c in again.changes)


def _persist(case: Case, root: Path, inventory: Path) -> str:
    result = CliRunner().invoke(main, [
        "persist", "-i", str(inventory), "--local", "--host", case.data["host"],
        "--root", str(root), "--interface", "eth0", "--format", case.data["format"]])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("case", IO, ids=lambda c: c.name)
def test_writer_puts_golden_files_under_the_injected_root(case: Case, tmp_path: Path) -> None:
    root = tmp_path / "root"
    copy_golden(case.dir / "before", root)
    inventory = tmp_path / "machines.txt"
    inventory.write_text(case.data["inventory"])
    first = _persist(case, root, inventory)
    if UPDATE:
        write_tree(case.dir / "after", read_tree(root))
    assert read_tree(root) == read_tree(case.dir / "after")  # backups and modes included
    assert "persisted" in first
    assert not list(root.rglob("*.podroutes-tmp"))
    second = _persist(case, root, inventory)
    assert "1 already persisted" in second and "0 changed" in second
    assert read_tree(root) == read_tree(case.dir / "after")


def test_netplan_file_is_0600_and_backups_are_dotfiles() -> None:
    after = read_tree(CASES_DIR / "netplan" / "after")
    assert after["/etc/netplan/60-podroutes.yaml"].mode == 0o600
    removed = read_tree(CASES_DIR / "switch-to-netplan" / "after")
    assert "/etc/network/interfaces.d/podroutes" not in removed
    assert "/etc/network/interfaces.d/.podroutes.podroutes-bak" in removed
    assert stat.S_IMODE(0o644) == removed["/etc/network/interfaces"].mode


CASES_DIR = Path(__file__).resolve().parent.parent / "data" / "persist"
