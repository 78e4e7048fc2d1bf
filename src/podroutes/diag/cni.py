"""A node's CNI network configuration: which file the container runtime uses, and what its
bridge plugin will do.

Pure: the text :data:`CNI_SCRIPT` prints on a host (the names of ``/etc/cni/net.d``'s
candidate files and the contents of the first) in, a :class:`CniConfig` out. Called by
:mod:`podroutes.diag.facts` (parsing) and :mod:`podroutes.diag.cni_checks` (the findings).

The rules followed are the container runtime's and the plugins' own:

- the runtime (containerd, CRI-O, libcni's ``ConfFiles``) uses the **first** of the files
  ending in ``.conf``, ``.conflist`` or ``.json``, in lexical (byte) order;
- a ``.conflist`` (or any file with a ``plugins`` list) is a list of plugins run in order;
  any other file is one plugin;
- the ``bridge`` plugin: ``bridge`` defaults to ``cni0``, ``isGateway`` and ``ipMasq`` to
  false; its ``host-local`` IPAM hands out addresses from ``ranges`` (a list of range
  sets, each a list of ``{"subnet": ...}``) or, in the older form, ``subnet``.

A configuration without a bridge plugin is read and named, never judged further: flannel's
``10-flannel.conflist`` (type ``flannel``) delegates to a bridge plugin it configures at
run time from ``/run/flannel/subnet.env``, and kindnet's ``10-kindnet.conflist`` uses
``ptp`` (a veth per pod and a host route, no bridge). Nothing here raises on any input:
unreadable JSON, a wrong type or an unsubstituted ``SUBNET`` is a :attr:`CniConfig.problem`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from podroutes.core.model import IPNetwork

CNI_DIR = "/etc/cni/net.d"
SUFFIXES = (".conf", ".conflist", ".json")
#: The bridge plugin's default bridge name (plugins/main/bridge: ``defaultBrName``).
DEFAULT_BRIDGE = "cni0"
#: At most this many bytes of the chosen file are read; at most this many names listed.
MAX_BYTES = 65536
MAX_FILES = 64

#: Lists ``$1`` (default /etc/cni/net.d): ``nodir``, or ``dir`` then one ``name`` line per
#: candidate file (base64 name), then ``file NAME SIZE CONTENT`` (base64) for the first
#: in byte order. Constant; the file names and contents never reach a shell word unquoted.
CNI_SCRIPT = r"""
LC_ALL=C; export LC_ALL
d=${1:-/etc/cni/net.d}
[ -d "$d" ] || { echo nodir; exit 0; }
echo dir
n=0; first=
for f in "$d"/*; do
  case $f in *.conf|*.conflist|*.json) ;; *) continue ;; esac
  [ -f "$f" ] || continue
  n=$((n+1)); [ "$n" -gt 64 ] && { echo more; break; }
  [ -n "$first" ] || first=$f
  printf 'name %s\n' "$(printf %s "${f##*/}" | base64 -w0)"
done
[ -n "$first" ] || exit 0
printf 'file %s %s %s\n' "$(printf %s "${first##*/}" | base64 -w0)" "$(wc -c < "$first")" \
  "$(head -c 65536 "$first" | base64 -w0)"
"""


@dataclass(frozen=True, slots=True)
class CniListing:
    """What :data:`CNI_SCRIPT` found: whether the directory exists, the candidate names,
    and the chosen file's contents (``None``: not read)."""

    directory: bool = False
    names: tuple[str, ...] = ()
    chosen: str | None = None
    content: str | None = None
    size: int = 0
    more: bool = False  # more than MAX_FILES candidates

    @property
    def truncated(self) -> bool:
        return self.content is not None and self.size > MAX_BYTES


@dataclass(frozen=True, slots=True)
class Bridge:
    """The bridge plugin of a configuration, as the plugin itself reads it."""

    name: str = DEFAULT_BRIDGE
    named: bool = False  # "bridge" was given (else the plugin's default)
    is_gateway: bool = False
    ip_masq: bool = False
    ipam: str | None = None  # the IPAM plugin's type
    subnets: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class CniConfig:
    """A node's CNI configuration: the file the runtime uses and its plugins."""

    directory: bool = False
    file: str | None = None  # the name of the chosen file (None: no candidate)
    others: tuple[str, ...] = ()  # the candidates it wins over
    network: str | None = None  # the network's "name"
    plugins: tuple[str, ...] = ()  # plugin types, in order
    bridge: Bridge | None = None
    #: Why the file cannot be used as it is (bad JSON, no plugin type, a bad subnet).
    problem: str | None = None

    @property
    def path(self) -> str | None:
        return f"{CNI_DIR}/{self.file}" if self.file else None


def _b64(word: str) -> str | None:
    try:
        return base64.b64decode(word, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def parse_listing(text: str) -> CniListing:
    """The output of :data:`CNI_SCRIPT`; lines it does not know are skipped."""
    directory, names, more = False, [], False
    chosen = content = None
    size = 0
    for line in text.splitlines():
        words = line.split(" ")
        if words[0] == "dir":
            directory = True
        elif words[0] == "more":
            more = True
        elif words[0] == "name" and len(words) == 2 and (name := _b64(words[1])):
            names.append(name)
        elif words[0] == "file" and len(words) in (3, 4) and words[2].isdigit():
            chosen = _b64(words[1])
            content = _b64(words[3]) if len(words) == 4 else ""
            size = int(words[2])
            if content is None:
                chosen = None
    return CniListing(directory, tuple(names), chosen, content, size, more)


def choose(names: Sequence[str]) -> str | None:
    """The file the runtime uses: the first candidate in byte order."""
    candidates = sorted((n for n in names if n.endswith(SUFFIXES) and "/" not in n),
                        key=lambda n: n.encode("utf-8", "surrogateescape"))
    return candidates[0] if candidates else None


def read_config(listing: CniListing) -> CniConfig:
    """The configuration the runtime uses, from a listing (never raises)."""
    if not listing.directory:
        return CniConfig()
    chosen = choose(listing.names) or listing.chosen
    others = tuple(n for n in sorted(listing.names) if n != chosen)
    if chosen is None:
        return CniConfig(True, others=others)
    if listing.content is None or listing.chosen != chosen:
        return CniConfig(True, chosen, others, problem="its contents were not read")
    if listing.truncated:
        return CniConfig(True, chosen, others,
                         problem=f"it is {listing.size} bytes, more than doctor reads "
                                 f"({MAX_BYTES})")
    return parse_config(chosen, listing.content, others)


def parse_config(name: str, text: str, others: tuple[str, ...] = ()) -> CniConfig:
    """One CNI configuration file (``.conf``/``.json``: one plugin; ``.conflist`` or a
    ``plugins`` list: several), never raising."""
    base = CniConfig(True, name, others)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _with(base, problem=f"it is not valid JSON ({_short(exc)})")
    if not isinstance(data, dict):
        return _with(base, problem="it is not a JSON object")
    network = data.get("name") if isinstance(data.get("name"), str) else None
    if name.endswith(".conflist") or "plugins" in data:
        plugins = data.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            return _with(base, network=network,
                         problem="a conflist needs a non-empty \"plugins\" list")
    else:
        plugins = [data]
    types: list[str] = []
    for i, plugin in enumerate(plugins):
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if not isinstance(kind, str) or not kind:
            return _with(base, network=network, plugins=tuple(types),
                         problem=f"plugin {i + 1} has no \"type\"")
        types.append(kind)
    found = next((p for p in plugins if p.get("type") == "bridge"), None)
    if found is None:
        return _with(base, network=network, plugins=tuple(types))
    bridge, problem = _bridge(found)
    return _with(base, network=network, plugins=tuple(types), bridge=bridge, problem=problem)


def _with(base: CniConfig, **changes: Any) -> CniConfig:
    return CniConfig(**{f: changes.get(f, getattr(base, f)) for f in CniConfig.__slots__})


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _flag(value: object) -> bool:
    return value is True  # the plugin's JSON decoding takes booleans only


def _bridge(plugin: Mapping[str, Any]) -> tuple[Bridge, str | None]:
    given = plugin.get("bridge")
    name = given if isinstance(given, str) and given else None
    found = plugin.get("ipam")
    ipam: Mapping[str, Any] = found if isinstance(found, dict) else {}
    ipam_type = ipam.get("type") if isinstance(ipam.get("type"), str) else None
    subnets, problem = _subnets(ipam)
    return Bridge(name or DEFAULT_BRIDGE, name is not None,
                  _flag(plugin.get("isGateway")), _flag(plugin.get("ipMasq")), ipam_type,
                  tuple(subnets)), problem


def _subnets(ipam: Mapping[str, Any]) -> tuple[list[IPNetwork], str | None]:
    """host-local's subnets: every ``ranges`` set's subnets, or the legacy ``subnet``."""
    texts: list[object] = []
    ranges = ipam.get("ranges")
    if isinstance(ranges, list):
        for rangeset in ranges:
            for r in rangeset if isinstance(rangeset, list) else [rangeset]:
                texts.append(r.get("subnet") if isinstance(r, dict) else r)
    elif "subnet" in ipam:
        texts.append(ipam.get("subnet"))
    out: list[IPNetwork] = []
    for text in texts:
        if not isinstance(text, str):
            return out, f"an IPAM subnet is not a string: {json.dumps(text)[:40]}"
        try:
            out.append(ip_network(text.strip(), strict=False))
        except ValueError:
            hint = " (the SUBNET placeholder was never substituted)" if text == "SUBNET" else ""
            return out, f"IPAM subnet {text[:40]!r} is not a network{hint}"
    return out, None
