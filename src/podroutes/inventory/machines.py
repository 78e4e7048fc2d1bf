"""Parse Kubernetes the Hard Way's ``machines.txt`` into hosts, with located problems.

Pure. ``IPV4 FQDN HOSTNAME [POD_SUBNET]`` separated by spaces or tabs, ``#`` comments and
blank lines allowed. A dual-stack host lists one address per family in the first column
and one CIDR per family in the last, comma-separated (``192.168.10.101,fd00::101``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from podroutes.core.errors import Problem
from podroutes.core.model import Host, IPAddress, IPNetwork
from podroutes.inventory.fields import FQDN_RE, HOSTNAME_RE, MAX_LINE, Collector, shown

_MACHINES_ROLES = {
    "address4": "IPV4", "address6": "IPV4", "fqdn": "FQDN", "name": "HOSTNAME",
    "pod_cidr4": "POD_SUBNET", "pod_cidr6": "POD_SUBNET",
}


def _split_family_list(
    c: Collector, text: str, line: int, field: str, as_network: bool
) -> tuple[IPAddress | IPNetwork, ...] | None:
    if "," not in text:  # one family: the common case, without the list
        single = c.network(text, line, field) if as_network else c.address(text, line, field)
        return None if single is None else (single,)
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


class _Columns(Mapping[str, tuple[str, int]]):
    """A machines.txt host's ``fields``: every role's column label, all on the host's one
    line (one small object per host instead of a dictionary of six tuples)."""

    __slots__ = ("line",)

    def __init__(self, line: int) -> None:
        self.line = line

    def __getitem__(self, role: str) -> tuple[str, int]:
        return _MACHINES_ROLES[role], self.line

    def __iter__(self) -> Iterator[str]:
        return iter(_MACHINES_ROLES)

    def __len__(self) -> int:
        return len(_MACHINES_ROLES)

    def __repr__(self) -> str:
        return f"{dict(self)!r}"


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
            fields=_Columns(number),
        ))
    return hosts, c.problems

