"""Talk iproute2's language, purely: parse ``ip -j route`` and render ``ip -batch`` lines.

Pure: strings in, :class:`~podroutes.core.model.Route` values or command lines out. The
transports run the commands; this module only knows their text. Every line rendered is
built from validated ``ipaddress`` values and integers, never from raw inventory text,
so no inventory field can inject ``ip`` or shell syntax.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

from podroutes.core.errors import ParseError
from podroutes.core.jsontext import json_list
from podroutes.core.model import (
    MAIN_TABLE,
    PROTOCOL_NAMES,
    Family,
    IPAddress,
    IPNetwork,
    PlannedRoute,
    Route,
    make_route,
)

#: ``ip route`` does not print ``proto boot``, the protocol of a plain ``ip route add``.
_IMPLICIT_PROTOCOL = PROTOCOL_NAMES["boot"]
_TABLE_NAMES = {"main": MAIN_TABLE, "local": 255, "default": 253}
#: What the kernel allows in an interface name (IFNAMSIZ 16, no '/', ':' or space).
IFNAME_RE = re.compile(r"\A[A-Za-z0-9_.@-]{1,15}\Z")


def read_routes_argv(family: Family, table: int = MAIN_TABLE) -> list[str]:
    """The command whose output :func:`parse_routes` reads."""
    return ["ip", "-j", family.flag, "route", "show", "table", str(table)]


_OCTETS = tuple(str(n) for n in range(256))


def text_of(value: IPAddress | IPNetwork) -> str:
    """``str(value)``, three times faster for IPv4 (``ipaddress`` formats through several
    Python calls; reading 10,000 planned routes spent 25 ms here)."""
    if isinstance(value, IPv4Address):
        n = int(value)
        return (f"{_OCTETS[n >> 24]}.{_OCTETS[n >> 16 & 255]}.{_OCTETS[n >> 8 & 255]}."
                f"{_OCTETS[n & 255]}")
    if isinstance(value, IPv4Network):
        n = int(value.network_address)
        return (f"{_OCTETS[n >> 24]}.{_OCTETS[n >> 16 & 255]}.{_OCTETS[n >> 8 & 255]}."
                f"{_OCTETS[n & 255]}/{value.prefixlen}")
    return str(value)


class Known:
    """What the plan already holds, by the text ``ip`` prints for it.

    Reading a table of thousands of routes is mostly building ``ipaddress`` objects; the
    routes podroutes itself wants are already objects in the plan, so the readers take
    them from here instead of parsing their text again (a lookup instead of ~7 µs).
    ``heads`` holds, per family, how ``ip -j route`` starts each planned route's entry
    (``dst":"10.200.1.0/24","gateway":"192.168.10.102`` after its ``{"``) with the
    (destination, gateway) it stands for: what
    :class:`~podroutes.core.routecache.RouteCache` looks whole entries up by. ``networks`` and
    ``addresses`` (each planned destination and gateway by its text, for entries parsed
    the long way) are built the first time they are asked for.
    """

    __slots__ = ("_addresses", "_networks", "_routes", "heads")

    def __init__(self, heads: Mapping[Family, Mapping[str, tuple[IPNetwork, IPAddress]]],
                 routes: Sequence[PlannedRoute] = ()) -> None:
        self.heads = heads
        self._routes = routes
        self._networks: dict[str, IPNetwork] | None = None
        self._addresses: dict[str, IPAddress] | None = None

    @classmethod
    def of(cls, routes: Sequence[PlannedRoute]) -> Known:
        o = _OCTETS
        v4: dict[str, tuple[IPNetwork, IPAddress]] = {}
        v6: dict[str, tuple[IPNetwork, IPAddress]] = {}
        for r in routes:
            dst, gateway = r.dst, r.gateway
            if type(dst) is IPv4Network:  # text_of's formatting, in one step per route
                n, g = int(dst.network_address), int(gateway)
                v4[f'dst":"{o[n >> 24]}.{o[n >> 16 & 255]}.{o[n >> 8 & 255]}.{o[n & 255]}'
                   f'/{dst.prefixlen}","gateway":"{o[g >> 24]}.{o[g >> 16 & 255]}.'
                   f'{o[g >> 8 & 255]}.{o[g & 255]}'] = (dst, gateway)
            else:
                v6[f'dst":"{text_of(dst)}","gateway":"{text_of(gateway)}'] = (dst, gateway)
        return cls({Family.V4: v4, Family.V6: v6}, routes)

    @property
    def size(self) -> int:
        """How many planned routes this knows."""
        return len(self._routes)

    @property
    def networks(self) -> Mapping[str, IPNetwork]:
        if self._networks is None:
            self._networks = {text_of(r.dst): r.dst for r in self._routes}
        return self._networks

    @property
    def addresses(self) -> Mapping[str, IPAddress]:
        if self._addresses is None:
            self._addresses = {text_of(r.gateway): r.gateway for r in self._routes}
        return self._addresses


NOTHING_KNOWN = Known({})


def parse_routes(
    text: str,
    family: Family,
    table: int = MAIN_TABLE,
    protocol_names: Mapping[str, int] = PROTOCOL_NAMES,
    known: Known = NOTHING_KNOWN,
) -> list[Route]:
    """Parse ``ip -j -4|-6 route show table N`` output into canonical routes."""
    data = json_list(text, "ip -j route")
    return [entry_route(entry, family, table, protocol_names, known) for entry in data]


def entry_route(
    entry: Any, family: Family, table: int, protocol_names: Mapping[str, int], known: Known
) -> Route:
    """One entry of ``ip -j route``'s list as a route."""
    if not isinstance(entry, dict) or "dst" not in entry:
        raise ParseError(f"`ip -j route` entry without a destination: {entry!r}")
    try:
        dst = known.networks.get(entry["dst"])
        if dst is None or dst.version != family:
            dst = _destination(str(entry["dst"]), family)
        gateway = None
        if "gateway" in entry:
            gateway = known.addresses.get(entry["gateway"])
            if gateway is None:
                gateway = ip_address(entry["gateway"])
        nexthops = () if "nexthops" not in entry else tuple(
            ip_address(hop["gateway"]) for hop in entry["nexthops"] if "gateway" in hop
        )
        metric = int(entry["metric"]) if "metric" in entry else None
    except (ValueError, TypeError, KeyError) as exc:
        raise ParseError(f"`ip -j route` entry with a bad address: {entry!r}") from exc
    return make_route(
        dst,
        gateway,
        entry.get("dev"),
        _protocol(entry.get("protocol"), protocol_names),
        _table(entry.get("table"), table),
        metric,
        str(entry.get("type", "unicast")),
        _scope(entry, family),
        "onlink" in entry.get("flags", ()),
        nexthops,
        str(entry["pref"]) if "pref" in entry else None,
        _expires(entry.get("expires")),
        _extras(entry) if len(entry) > len(_PLAIN_KEYS & entry.keys()) else (),
    )


#: ``ip -j route`` keys a :class:`Route` holds (or that say nothing a rewrite would drop:
#: ``flags`` are the kernel's state, ``pref`` and ``expires`` are kept as fields).
_PLAIN_KEYS = frozenset({"dst", "gateway", "dev", "protocol", "table", "metric", "type",
                         "scope", "flags", "nexthops", "pref", "expires"})


def _extras(entry: dict[str, Any]) -> tuple[str, ...]:
    """What else a route carries, in ``ip route`` words, for keys outside _PLAIN_KEYS."""
    out: list[str] = []
    for key, value in entry.items():
        if key in _PLAIN_KEYS:
            continue
        if key == "prefsrc":
            out.append(f"src {value}")
        elif key == "metrics" and isinstance(value, list):
            for metrics in value:
                if isinstance(metrics, dict):
                    out += [k if v is None else f"{k} {v}" for k, v in metrics.items()]
        elif key == "flow" and isinstance(value, dict):
            out += [f"realm {v}" if k == "to" else f"realm {k} {v}" for k, v in value.items()]
        else:
            out.append(str(key))
    return tuple(out)


def _scope(entry: dict[str, Any], family: Family) -> str:
    """The route's scope, the same notion in both families.

    The kernel reports every IPv6 route with universe scope, so ``ip -j -6`` never prints
    one; an IPv6 route straight out of a device (no gateway, no nexthops, unicast) is what
    IPv4 calls ``scope link``: its destination is on-link. Normalised here, once, so that
    "which networks is this host directly connected to" has one answer for both families.
    """
    if "scope" in entry:
        return str(entry["scope"])
    direct = ("gateway" not in entry and "nexthops" not in entry and "dev" in entry
              and entry.get("type", "unicast") == "unicast")
    return "link" if family is Family.V6 and direct else "global"


def _expires(value: object) -> int | None:
    """Seconds left: iproute2 6.1 prints ``"expires": 296``; ``"296sec"`` (the text form)
    is read the same way."""
    if value is None:
        return None
    text = str(value).removesuffix("sec")
    if not text.isdigit():
        raise ParseError(f"`ip -j route` entry with a bad expiry: {value!r}")
    return int(text)


def _destination(text: str, family: Family) -> IPNetwork:
    if text == "default":
        return ip_network("0.0.0.0/0" if family is Family.V4 else "::/0")
    network = ip_network(text, strict=False)
    if network.version != family:
        raise ValueError(f"IPv{network.version} route in IPv{family.value} output")
    return network


def _protocol(value: object, names: Mapping[str, int]) -> int:
    if value is None:
        return _IMPLICIT_PROTOCOL
    text = str(value)
    if text.isdigit():
        return int(text)
    if text in names:
        return names[text]
    raise ParseError(f"unknown route protocol name {text!r} (not in rt_protos)")


def _table(value: object, default: int) -> int:
    if value is None:
        return default
    text = str(value)
    return int(text) if text.isdigit() else _TABLE_NAMES.get(text, default)


# --- rendering ---------------------------------------------------------------------------


def route_spec(
    dst: IPNetwork,
    gateway: IPAddress | None,
    protocol: int | None = None,
    metric: int | None = None,
    table: int = MAIN_TABLE,
    onlink_dev: str | None = None,
) -> list[str]:
    """``ip route`` arguments after the verb, from canonical values only.

    ``onlink_dev`` keeps a route's ``onlink`` flag, which the kernel accepts only with the
    device named; the name comes from the host's own table and must look like one.
    """
    words = [text_of(dst)]
    if gateway is not None:
        words += ["via", text_of(gateway)]
    if onlink_dev is not None:
        if not IFNAME_RE.match(onlink_dev):
            raise ValueError(f"not an interface name: {onlink_dev!r}")
        words += ["dev", onlink_dev, "onlink"]
    if protocol is not None:
        words += ["proto", str(int(protocol))]
    if metric is not None:
        words += ["metric", str(int(metric))]
    if table != MAIN_TABLE:
        words += ["table", str(int(table))]
    return words


def batch_line(verb: str, spec: Sequence[str]) -> str:
    """One ``ip -batch`` line, e.g. ``route replace fd00::/64 via fd00::1 proto 147``.

    ``ip -batch`` rejects a per-line ``-4``/``-6``; the family follows from the addresses.
    """
    if verb not in ("add", "replace", "del"):
        raise ValueError(f"unsupported route verb {verb!r}")
    return " ".join(["route", verb, *spec])


def add_line(dst: IPNetwork, gateway: IPAddress, protocol: int) -> str:
    """``batch_line("add", route_spec(dst, gateway, protocol))``, formatted in one step: a
    cold apply renders one per planned route (10,000 cost 25 ms the long way)."""
    return f"route add {text_of(dst)} via {text_of(gateway)} proto {int(protocol)}"


def shell_command(line: str) -> str:
    """The same change as a standalone shell command (``ip route add ...``)."""
    return "ip " + " ".join(shlex.quote(word) for word in line.split(" "))
