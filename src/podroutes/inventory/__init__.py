"""Read an inventory (KTHW ``machines.txt`` or YAML) into a validated inventory.

Pure: text in, :class:`~podroutes.core.model.Inventory` out; the CLI reads the file. Every
problem names the source, the line and the field. Parsing collects every problem it can
find before raising, so the user fixes a file in one pass; nothing in here can reach a
host, and nothing downstream runs until :func:`load` returns. The formats live in
:mod:`.machines` and :mod:`.yamlfile`, what they share in :mod:`.fields`, the checks
across hosts in :mod:`.validate`.
"""

from __future__ import annotations

from podroutes.core.errors import InventoryError, Problem
from podroutes.core.model import Inventory
from podroutes.inventory.machines import parse_machines
from podroutes.inventory.validate import validate

__all__ = ["load", "looks_like_yaml", "parse_machines"]


def looks_like_yaml(text: str, source: str) -> bool:
    if source.endswith((".yaml", ".yml")):
        return True
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.startswith(("---", "hosts:", "hosts :"))
    return False


def load(text: str, source: str) -> Inventory:
    """Parse and validate an inventory; raise :class:`InventoryError` with every problem.
    A UTF-8 byte-order mark at the start (some Windows editors write one) is ignored, as
    the YAML parser ignores it."""
    text = text.removeprefix("\ufeff")
    if looks_like_yaml(text, source):
        from podroutes.inventory.yamlfile import parse_yaml  # PyYAML loads only for YAML files

        hosts, problems = parse_yaml(text, source)
    else:
        hosts, problems = parse_machines(text, source)
    if not problems and not hosts:
        problems.append(Problem(source, 1, "hosts", "the inventory lists no hosts"))
    if not problems:
        problems = validate(hosts)
    if problems:
        raise InventoryError(problems)
    return Inventory(source=source, hosts=tuple(hosts))
