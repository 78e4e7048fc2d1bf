"""Golden cases for persist: ``tests/data/persist/<case>/``.

Each case has ``case.yaml`` (inventory, host, format, injected facts), ``before/`` (the
host's files under its filesystem root), ``after/`` (the files after persist, backups
included) and ``result.txt`` (what persist decided: manager, evidence, warnings, file
actions, nmcli commands, or the error). ``PODROUTES_UPDATE_GOLDEN=1`` rewrites
``after/`` and ``result.txt`` from the code; review the diff before committing it.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import yaml

from podroutes.core.addresses import Interface
from podroutes.core.errors import PersistError
from podroutes.core.model import Inventory, Manager, Route
from podroutes.core.netfiles import HostFile
from podroutes.core.plan import plan
from podroutes.inventory import load
from podroutes.persist.facts import PersistFacts
from podroutes.persist.plan import FileAction, HostPersistPlan, plan_host

CASES = Path(__file__).resolve().parent.parent / "data" / "persist"
UPDATE = os.environ.get("PODROUTES_UPDATE_GOLDEN") == "1"


@dataclass
class Case:
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return CASES / self.name

    @property
    def inventory(self) -> Inventory:
        return load(self.data["inventory"], f"{self.name}/machines.txt")

    @property
    def forced(self) -> Manager | None:
        fmt = self.data.get("format", "auto")
        return None if fmt == "auto" else Manager(fmt)

    def facts(self, root: Path | None = None) -> PersistFacts:
        """The host's facts as persist would read them, from ``before/`` (or ``root``)."""
        interfaces = tuple(Interface(name, index, True, 1500)
                           for name, index in (self.data.get("interfaces") or {}).items())
        return PersistFacts(files=read_tree(root or self.dir / "before"),
                            values=self.data.get("values") or {},
                            interfaces=interfaces,
                            routes=tuple(kernel_route(t) for t in self.data.get(
                                "kernel_routes") or ()),
                            nm_active=self.data.get("nm_active") or {})

    def plan(self, facts: PersistFacts | None = None) -> HostPersistPlan:
        inventory = self.inventory
        host = inventory.host(self.data["host"])
        return plan_host(host, plan(inventory).routes_for(host), facts or self.facts(), 147,
                         self.forced, self.data.get("interface", "eth0"),
                         bool(self.data.get("fix_foreign_routes")))


def cases() -> list[Case]:
    return [Case(d.name, yaml.safe_load((d / "case.yaml").read_text()))
            for d in sorted(CASES.iterdir()) if (d / "case.yaml").exists()]


def golden_mode(relative: str) -> int:
    """The mode a golden file stands for. Git keeps no modes but the executable bit, so
    golden trees carry them by rule: netplan files and NetworkManager keyfiles are 0600
    (netplan warns about anything more open, NetworkManager ignores such keyfiles, and
    the writer writes 0600), every other file 0644."""
    private = ("etc/netplan/", "etc/NetworkManager/system-connections/")
    return 0o600 if relative.lstrip("/").startswith(private) else 0o644


def _is_golden(root: Path) -> bool:
    return root.resolve().is_relative_to(CASES.resolve())


def read_tree(root: Path, dotfiles: bool = True) -> dict[str, HostFile]:
    out = {}
    if not root.exists():
        return out
    golden = _is_golden(root)
    for path in sorted(root.rglob("*")):
        if path.is_file() and (dotfiles or not path.name.startswith(".")):
            relative = "/" + str(path.relative_to(root))
            mode = golden_mode(relative) if golden else stat.S_IMODE(path.stat().st_mode)
            out[relative] = HostFile(path.read_text(), mode)
    return out


def copy_golden(source: Path, target: Path) -> None:
    """Copy a golden tree and give its files the modes they stand for."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    for path in target.rglob("*"):
        if path.is_file():
            path.chmod(golden_mode(str(path.relative_to(target))))


def write_tree(root: Path, files: dict[str, HostFile]) -> None:
    if root.exists():
        shutil.rmtree(root)
    for path, f in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(f.mode)


def kernel_route(text: str) -> Route:
    """``DST via GW dev DEV proto N``: a route as ``ip -j route`` would give it."""
    words = text.split()
    return Route(dst=ip_network(words[0]), gateway=ip_address(words[2]), dev=words[4],
                 protocol=int(words[6]))


def apply_plan(before: dict[str, HostFile], p: HostPersistPlan) -> dict[str, HostFile]:
    """What the files become when the plan's changes are made (backups aside)."""
    out = {k: v for k, v in before.items() if not k.rsplit("/", 1)[-1].startswith(".")}
    for c in p.changes:
        if c.action is FileAction.REMOVE:
            out.pop(c.path, None)
        elif c.new is not None:
            out[c.path] = HostFile(c.new, c.mode or 0o644)
    return out


def describe(p: HostPersistPlan | None, error: str | None = None) -> str:
    """The decision as text (``result.txt``)."""
    if p is None:
        return f"error: {error}\n"
    lines = [f"manager: {p.detection.manager}", f"interface: {p.detection.interface}",
             f"why: {p.detection.why}", f"routes: {p.routes}"]
    lines += [f"warning: {w}" for w in p.warnings]
    lines += [f"{c.action} {c.path}" + (f" (mode {c.mode:o})" if c.mode else "")
              for c in p.changes]
    lines += ["run: " + " ".join(repr(a) if " " in a else a for a in argv) for argv in p.commands]
    return "\n".join(lines) + "\n"


def result_of(case: Case) -> tuple[HostPersistPlan | None, str]:
    try:
        p = case.plan()
    except PersistError as exc:
        return None, describe(None, str(exc))
    return p, describe(p)
