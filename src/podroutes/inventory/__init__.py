"""Parse an inventory (KTHW ``machines.txt`` or YAML) into hosts, with located problems.

Pure: text in, :class:`~podroutes.core.model.Inventory` out; the CLI reads the file. Every
problem names the source, the line and the field. Parsing collects every problem it can
find before raising, so the user fixes a file in one pass; nothing in here can reach a
host, and nothing downstream runs until :func:`load` returns.

machines.txt: ``IPV4 FQDN HOSTNAME [POD_SUBNET]`` separated by spaces or tabs, ``#``
comments and blank lines allowed. A dual-stack host lists one address per family in the
first column and one CIDR per family in the last, comma-separated (``192.168.10.101,fd00::101``).
"""

from __future__ import annotations

import re
from ipaddress import ip_address, ip_network

from podroutes.core.errors import InventoryError, Problem
from podroutes.core.model import Host, Inventory, IPAddress, IPNetwork
from podroutes.inventory.validate import validate

MAX_LINE = 4096
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_RE = re.compile(rf"\A{_LABEL}\Z")
FQDN_RE = re.compile(rf"\A(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")
USER_RE = re.compile(r"\A[a-z_][a-z0-9_.-]{0,31}\Z")
ZONE_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,15}\Z")
_MACHINES_ROLES = {
    "address4": "IPV4", "address6": "IPV4", "fqdn": "FQDN", "name": "HOSTNAME",
    "pod_cidr4": "POD_SUBNET", "pod_cidr6": "POD_SUBNET",
}


class Collector:
    """Accumulates located problems for one source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, line: int, field: str, message: str) -> None:
        self.problems.append(Problem(self.source, line, field, message))

    def address(self, text: str, line: int, field: str) -> IPAddress | None:
        if "%" in text:  # ipaddress accepts any zone text, newlines included
            self.add(line, field, f"{shown(text)} has a zone index ('%...'), which a node "
                     "address cannot have")
            return None
        try:
            return ip_address(text)
        except ValueError:
            self.add(line, field, f"{shown(text)} is not an IPv4 or IPv6 address")
            return None

    def network(self, text: str, line: int, field: str) -> IPNetwork | None:
        if "%" in text:
            self.add(line, field, f"{shown(text)} has a zone index ('%...'), which a pod "
                     "CIDR cannot have")
            return None
        try:
            return ip_network(text, strict=True)
        except ValueError:
            pass
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            self.add(line, field, f"{shown(text)} is not a CIDR (expected e.g. 10.200.0.0/24)")
            return None
        self.add(line, field, f"{text} has host bits set; did you mean {loose}?")
        return None

    def name(self, text: str, line: int, field: str, pattern: re.Pattern[str]) -> str | None:
        if pattern.match(text):
            return text
        what = "an RFC 1123 host name" if pattern is HOSTNAME_RE else "an RFC 1123 domain name"
        self.add(line, field, f"{shown(text)} is not {what} (letters, digits, '-', '.')")
        return None


def shown(text: str) -> str:
    """Quote untrusted text so control characters and look-alikes are visible."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    return ascii(shown)


def looks_like_yaml(text: str, source: str) -> bool:
    if source.endswith((".yaml", ".yml")):
        return True
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.startswith(("---", "hosts:", "hosts :"))
    return False


def load(text: str, source: str) -> Inventory:
    """Parse and validate an inventory; raise :class:`InventoryError` with every problem."""
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


def _split_family_list(
    c: Collector, text: str, line: int, field: str, as_network: bool
) -> tuple[IPAddress | IPNetwork, ...] | None:
    values: list[IPAddress | IPNetwork] = []
    for part in text.split(","):
        value = c.network(part, line, field) if as_network else c.address(part, line, field)
        if value is None:
            return None
        if any(v.version == value.version for v in values):
            c.add(line, field, f"more than one IPv{value.version} value in {shown(text)}")
            return None
        values.append(value)
    return tuple(values)


def parse_machines(text: str, source: str) -> tuple[list[Host], list[Problem]]:
    """Parse KTHW ``machines.txt``: ``IPV4 FQDN HOSTNAME [POD_SUBNET]`` per line."""
    c = Collector(source)
    hosts: list[Host] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if "\x00" in raw:
            c.add(number, "line", "contains a NUL byte")
            continue
        if len(raw) > MAX_LINE:
            c.add(number, "line", f"is {len(raw)} characters long (limit {MAX_LINE})")
            continue
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (3, 4):
            c.add(number, "line", f"expected 3 or 4 fields (IPV4 FQDN HOSTNAME [POD_SUBNET]), "
                  f"found {len(fields)}")
            continue
        before = len(c.problems)
        addresses = _split_family_list(c, fields[0], number, "IPV4", as_network=False)
        fqdn = c.name(fields[1], number, "FQDN", FQDN_RE)
        name = c.name(fields[2], number, "HOSTNAME", HOSTNAME_RE)
        cidrs = (
            _split_family_list(c, fields[3], number, "POD_SUBNET", as_network=True)
            if len(fields) == 4 else ()
        )
        if len(c.problems) > before or addresses is None or cidrs is None or name is None:
            continue
        hosts.append(Host(
            name=name, fqdn=fqdn, addresses=addresses,  # type: ignore[arg-type]
            pod_cidrs=cidrs,  # type: ignore[arg-type]
            source=source, line=number,
            fields={role: (label, number) for role, label in _MACHINES_ROLES.items()},
        ))
    return hosts, c.problems

