"""Parse an inventory (KTHW ``machines.txt`` or YAML) into hosts, with located problems.

Pure: text in, :class:`~podroutes.model.Inventory` out; the CLI reads the file. Every
problem names the source, the line and the field. Parsing collects every problem it can
find before raising, so the user fixes a file in one pass; nothing in here can reach a
host, and nothing downstream runs until :func:`load` returns.

machines.txt: ``IPV4 FQDN HOSTNAME [POD_SUBNET]`` separated by spaces or tabs, ``#``
comments and blank lines allowed. A dual-stack host lists one address per family in the
first column and one CIDR per family in the last, comma-separated (``192.168.10.101,fd00::101``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import ip_address, ip_network

import yaml

from podroutes.errors import InventoryError, Problem
from podroutes.model import Host, Inventory, IPAddress, IPNetwork, SshSpec
from podroutes.validate import validate

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


class _Collector:
    """Accumulates located problems for one source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, line: int, field: str, message: str) -> None:
        self.problems.append(Problem(self.source, line, field, message))

    def address(self, text: str, line: int, field: str) -> IPAddress | None:
        if "%" in text:  # ipaddress accepts any zone text, newlines included
            self.add(line, field, f"{_show(text)} has a zone index ('%...'), which a node "
                     "address cannot have")
            return None
        try:
            return ip_address(text)
        except ValueError:
            self.add(line, field, f"{_show(text)} is not an IPv4 or IPv6 address")
            return None

    def network(self, text: str, line: int, field: str) -> IPNetwork | None:
        if "%" in text:
            self.add(line, field, f"{_show(text)} has a zone index ('%...'), which a pod "
                     "CIDR cannot have")
            return None
        try:
            return ip_network(text, strict=True)
        except ValueError:
            pass
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            self.add(line, field, f"{_show(text)} is not a CIDR (expected e.g. 10.200.0.0/24)")
            return None
        self.add(line, field, f"{text} has host bits set; did you mean {loose}?")
        return None

    def name(self, text: str, line: int, field: str, pattern: re.Pattern[str]) -> str | None:
        if pattern.match(text):
            return text
        what = "an RFC 1123 host name" if pattern is HOSTNAME_RE else "an RFC 1123 domain name"
        self.add(line, field, f"{_show(text)} is not {what} (letters, digits, '-', '.')")
        return None


def _show(text: str) -> str:
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
    hosts, problems = parse_yaml(text, source) if looks_like_yaml(text, source) else (
        parse_machines(text, source)
    )
    if not problems and not hosts:
        problems.append(Problem(source, 1, "hosts", "the inventory lists no hosts"))
    if not problems:
        problems = validate(hosts)
    if problems:
        raise InventoryError(problems)
    return Inventory(source=source, hosts=tuple(hosts))


def _split_family_list(
    c: _Collector, text: str, line: int, field: str, as_network: bool
) -> tuple[IPAddress | IPNetwork, ...] | None:
    values: list[IPAddress | IPNetwork] = []
    for part in text.split(","):
        value = c.network(part, line, field) if as_network else c.address(part, line, field)
        if value is None:
            return None
        if any(v.version == value.version for v in values):
            c.add(line, field, f"more than one IPv{value.version} value in {_show(text)}")
            return None
        values.append(value)
    return tuple(values)


def parse_machines(text: str, source: str) -> tuple[list[Host], list[Problem]]:
    """Parse KTHW ``machines.txt``: ``IPV4 FQDN HOSTNAME [POD_SUBNET]`` per line."""
    c = _Collector(source)
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


# --- YAML --------------------------------------------------------------------------------

_HOST_KEYS = {"name", "fqdn", "ipv4", "ipv6", "pod_cidrs", "pod_cidr", "ssh"}
_SSH_KEYS = {"target", "user", "port"}


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(
    c: _Collector, node: yaml.Node, field: str, allowed: set[str]
) -> dict[str, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        c.add(_line(node), field, "expected a mapping of keys to values")
        return None
    out: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in allowed:
            c.add(_line(key_node), field, f"unknown key {_show(str(key))} (allowed: "
                  f"{', '.join(sorted(allowed))})")
        elif key in out:
            c.add(_line(key_node), f"{field}.{key}", "is given twice")
        else:
            out[key] = value_node
    return out


def _scalar(c: _Collector, node: yaml.Node, field: str) -> str | None:
    if not isinstance(node, yaml.ScalarNode) or node.value == "":
        c.add(_line(node), field, "expected a single value")
        return None
    return str(node.value)


def parse_yaml(text: str, source: str) -> tuple[list[Host], list[Problem]]:
    """Parse the YAML inventory: ``hosts:`` then per host name, ipv4/ipv6, pod_cidrs, ssh."""
    c = _Collector(source)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        c.add(line, "file", "contains a NUL byte")
        return [], c.problems
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else 1
        c.add(line, "yaml", str(getattr(exc, "problem", None) or exc))
        return [], c.problems
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        c.add(1, "yaml", "nested too deeply")
        return [], c.problems
    if root is None:
        return [], c.problems
    top = _mapping(c, root, "inventory", {"hosts"})
    if top is None or "hosts" not in top:
        if top is not None:
            c.add(_line(root), "hosts", "missing: the inventory needs a 'hosts:' list")
        return [], c.problems
    hosts_node = top["hosts"]
    if not isinstance(hosts_node, yaml.SequenceNode):
        c.add(_line(hosts_node), "hosts", "expected a list of hosts")
        return [], c.problems
    hosts = [h for h in (_yaml_host(c, n, source) for n in hosts_node.value) if h is not None]
    return hosts, c.problems


def _yaml_host(c: _Collector, node: yaml.Node, source: str) -> Host | None:
    before = len(c.problems)
    keys = _mapping(c, node, "hosts[]", _HOST_KEYS)
    if keys is None:
        return None
    lines: dict[str, tuple[str, int]] = {"name": ("name", _line(node))}
    name = None
    if "name" not in keys:
        c.add(_line(node), "name", "missing: every host needs a name")
    else:
        text = _scalar(c, keys["name"], "name")
        name = text and c.name(text, _line(keys["name"]), "name", HOSTNAME_RE)
        lines["name"] = ("name", _line(keys["name"]))
    fqdn = None
    if "fqdn" in keys and (text := _scalar(c, keys["fqdn"], "fqdn")):
        lines["fqdn"] = ("fqdn", _line(keys["fqdn"]))
        fqdn = c.name(text, _line(keys["fqdn"]), "fqdn", FQDN_RE)
    addresses: list[IPAddress] = []
    for key, version in (("ipv4", 4), ("ipv6", 6)):
        if key not in keys or not (text := _scalar(c, keys[key], key)):
            continue
        lines[f"address{version}"] = (key, _line(keys[key]))
        address = c.address(text, _line(keys[key]), key)
        if address is not None and address.version != version:
            c.add(_line(keys[key]), key, f"{text} is an IPv{address.version} address")
        elif address is not None:
            addresses.append(address)
    if not addresses and "ipv4" not in keys and "ipv6" not in keys:
        c.add(_line(node), "ipv4", "missing: a host needs an ipv4 or an ipv6 address")
    cidrs = _yaml_cidrs(c, keys, lines)
    ssh = _yaml_ssh(c, keys["ssh"]) if "ssh" in keys else SshSpec()
    if len(c.problems) > before or name is None or ssh is None:
        return None
    return Host(name=name, fqdn=fqdn, addresses=tuple(addresses), pod_cidrs=tuple(cidrs),
                ssh=ssh, source=source, line=_line(node), fields=lines)


def _yaml_cidrs(
    c: _Collector, keys: dict[str, yaml.Node], lines: dict[str, tuple[str, int]]
) -> list[IPNetwork]:
    if "pod_cidr" in keys and "pod_cidrs" in keys:
        c.add(_line(keys["pod_cidr"]), "pod_cidr", "give either pod_cidr or pod_cidrs, not both")
        return []
    key = "pod_cidrs" if "pod_cidrs" in keys else "pod_cidr"
    if key not in keys:
        return []
    node = keys[key]
    items: Iterable[yaml.Node] = node.value if isinstance(node, yaml.SequenceNode) else [node]
    cidrs: list[IPNetwork] = []
    for item in items:
        text = _scalar(c, item, key)
        cidr = text and c.network(text, _line(item), key)
        if not cidr:
            continue
        if any(x.version == cidr.version for x in cidrs):
            c.add(_line(item), key, f"more than one IPv{cidr.version} pod CIDR (at most one "
                  "per family)")
            continue
        lines[f"pod_cidr{cidr.version}"] = (key, _line(item))
        cidrs.append(cidr)
    return cidrs


def _yaml_ssh(c: _Collector, node: yaml.Node) -> SshSpec | None:
    keys = _mapping(c, node, "ssh", _SSH_KEYS)
    if keys is None:
        return None
    before = len(c.problems)
    target = user = None
    port = None
    if "target" in keys and (text := _scalar(c, keys["target"], "ssh.target")):
        try:
            address = ip_address(text)
        except ValueError:
            target = c.name(text, _line(keys["target"]), "ssh.target", FQDN_RE)
        else:  # fe80::1%eth0 is fine; a zone is otherwise free text (shell, newlines)
            if address.version == 6 and address.scope_id and not ZONE_RE.match(
                    address.scope_id):
                c.add(_line(keys["target"]), "ssh.target",
                      f"{_show(text)}: the zone index is not an interface name")
            else:
                target = str(address)
    if "user" in keys and (text := _scalar(c, keys["user"], "ssh.user")):
        if USER_RE.match(text):
            user = text
        else:
            c.add(_line(keys["user"]), "ssh.user", f"{_show(text)} is not a valid user name")
    if "port" in keys and (text := _scalar(c, keys["port"], "ssh.port")):
        if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
            port = int(text)
        else:
            c.add(_line(keys["port"]), "ssh.port", f"{_show(text)} is not a port (1-65535)")
    if len(c.problems) > before:
        return None
    return SshSpec(target=target, user=user, port=port)
