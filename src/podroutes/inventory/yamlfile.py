"""The YAML inventory: hosts with optional SSH settings, every problem located by line.

Pure, like :mod:`podroutes.inventory` (whose checks it shares); loaded only when an
inventory is YAML, so a machines.txt run never imports PyYAML.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address

import yaml

from podroutes.core.errors import Problem
from podroutes.core.model import Host, IPAddress, IPNetwork, SshSpec
from podroutes.inventory.fields import (
    FQDN_RE,
    HOSTNAME_RE,
    USER_RE,
    ZONE_RE,
    Collector,
    shown,
)

_HOST_KEYS = {"name", "fqdn", "ipv4", "ipv6", "pod_cidrs", "pod_cidr", "ssh"}
_SSH_KEYS = {"target", "user", "port"}


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(
    c: Collector, node: yaml.Node, field: str, allowed: set[str]
) -> dict[str, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        c.add(_line(node), field, "expected a mapping of keys to values")
        return None
    out: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in allowed:
            c.add(_line(key_node), field, f"unknown key {shown(str(key))} (allowed: "
                  f"{', '.join(sorted(allowed))})")
        elif key in out:
            c.add(_line(key_node), f"{field}.{key}", "is given twice")
        else:
            out[key] = value_node
    return out


def _scalar(c: Collector, node: yaml.Node, field: str) -> str | None:
    if not isinstance(node, yaml.ScalarNode) or node.value == "":
        c.add(_line(node), field, "expected a single value")
        return None
    return str(node.value)


def parse_yaml(text: str, source: str) -> tuple[list[Host], list[Problem]]:
    """Parse the YAML inventory: ``hosts:`` then per host name, ipv4/ipv6, pod_cidrs, ssh."""
    c = Collector(source)
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


def _yaml_host(c: Collector, node: yaml.Node, source: str) -> Host | None:
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
    c: Collector, keys: dict[str, yaml.Node], lines: dict[str, tuple[str, int]]
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


def _yaml_ssh(c: Collector, node: yaml.Node) -> SshSpec | None:
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
                      f"{shown(text)}: the zone index is not an interface name")
            else:
                target = str(address)
    if "user" in keys and (text := _scalar(c, keys["user"], "ssh.user")):
        if USER_RE.match(text):
            user = text
        else:
            c.add(_line(keys["user"]), "ssh.user", f"{shown(text)} is not a valid user name")
    if "port" in keys and (text := _scalar(c, keys["port"], "ssh.port")):
        if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535:
            port = int(text)
        else:
            c.add(_line(keys["port"]), "ssh.port", f"{shown(text)} is not a port (1-65535)")
    if len(c.problems) > before:
        return None
    return SshSpec(target=target, user=user, port=port)
