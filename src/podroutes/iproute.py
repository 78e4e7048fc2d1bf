"""Talk iproute2's language, purely: parse ``ip -j route`` and render ``ip -batch`` lines.

Pure: strings in, :class:`~podroutes.model.Route` values or command lines out. The
transports run the commands; this module only knows their text. Every line rendered is
built from validated ``ipaddress`` values and integers, never from raw inventory text,
so no inventory field can inject ``ip`` or shell syntax.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

from podroutes.errors import ParseError
from podroutes.jsontext import json_list
from podroutes.model import (
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


@dataclass(frozen=True, slots=True)
class Known:
    """Addresses and networks already parsed, by the text ``ip`` prints for them.

    Reading a table of thousands of routes is mostly building ``ipaddress`` objects; the
    routes podroutes itself wants are already objects in the plan, so the parser takes
    them from here instead of parsing their text again (a lookup instead of ~7 µs).
    """

    networks: Mapping[str, IPNetwork]
    addresses: Mapping[str, IPAddress]

    @classmethod
    def of(cls, routes: Iterable[PlannedRoute]) -> Known:
        networks: dict[str, IPNetwork] = {}
        addresses: dict[str, IPAddress] = {}
        for r in routes:
            networks[text_of(r.dst)] = r.dst
            addresses[text_of(r.gateway)] = r.gateway
        return cls(networks, addresses)


def text_of(value: IPAddress | IPNetwork) -> str:
    """``str(value)``, three times faster for IPv4 (``ipaddress`` formats through several
    Python calls; 10,000 routes spent 25 ms here)."""
    if isinstance(value, IPv4Address):
        n = int(value)
        return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    if isinstance(value, IPv4Network):
        n = int(value.network_address)
        return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}/{value.prefixlen}"
    return str(value)


NOTHING_KNOWN = Known({}, {})


#: The keys of an ``ip -j route`` entry that a :class:`RouteCache` key covers; an entry
#: with any other key (``nexthops``, ``expires``, ``encap``, ...) is always parsed.
_PLAIN_KEYS = frozenset({"dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric",
                         "flags", "type", "table", "pref"})


_NO_FLAGS: list[str] = []  # never changed: the default of an entry without "flags"


class RouteCache:
    """Routes parsed before, by what ``ip`` printed for them.

    A table read again (the agent's periodic resync) then costs one string comparison if
    nothing changed, else a dictionary lookup per unchanged route instead of building it
    again. Routes are immutable values, so one
    can be handed out any number of times. Used with one protocol-name mapping; holds at
    most ``limit`` routes (emptied when full, so routes that left are forgotten).
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._routes: dict[tuple[object, ...], Route] = {}
        #: The last output read per (family, table) and its routes: the same text again
        #: (a resync of a table nothing changed) is one string comparison.
        self._last: dict[tuple[Family, int], tuple[str, list[Route]]] = {}

    def __len__(self) -> int:
        return len(self._routes)

    def parse_text(self, text: str, family: Family, table: int,
                   protocol_names: Mapping[str, int], known: Known) -> list[Route]:
        last = self._last.get((family, table))
        if last is not None and last[0] == text:
            return list(last[1])
        routes = self.parse(json_list(text, "ip -j route"), family, table, protocol_names,
                            known)
        self._last[(family, table)] = (text, routes)
        return list(routes)

    def parse(self, data: list[Any], family: Family, table: int,
              protocol_names: Mapping[str, int], known: Known) -> list[Route]:
        routes = self._routes
        out: list[Route] = []
        for entry in data:
            key = _cache_key(entry, family, table)
            if key is not None:
                try:
                    hit = routes.get(key)
                except TypeError:  # a value no ``ip`` prints: parsed the long way
                    hit = key = None
                if hit is not None:
                    out.append(hit)
                    continue
            route = _route(entry, family, table, protocol_names, known)
            if key is not None:
                self._store(key, route)
            out.append(route)
        return out

    def expect(self, entry: dict[str, Any], family: Family, table: int,
               protocol_names: Mapping[str, int], known: Known) -> None:
        """Parse ``entry``, the way ``ip`` will print a route about to be made, ahead of
        time (apply does it while the host runs the batch): reading it back is a lookup.
        A wrong guess costs nothing but the work: it is simply never looked up."""
        key = _cache_key(entry, family, table)
        if key is not None and key not in self._routes:
            with contextlib.suppress(ParseError):
                self._store(key, _route(entry, family, table, protocol_names, known))

    def _store(self, key: tuple[object, ...], route: Route) -> None:
        if len(self._routes) >= self.limit:
            self._routes.clear()
        self._routes[key] = route


def _cache_key(entry: object, family: Family, table: int) -> tuple[object, ...] | None:
    """Everything of a plain entry that makes its route; ``None`` for any other entry."""
    if type(entry) is dict and entry.keys() <= _PLAIN_KEYS:
        flags, metric = entry.get("flags", _NO_FLAGS), entry.get("metric")
        if type(flags) is list and (metric is None or type(metric) is int):
            return (family, table, entry.get("dst"), entry.get("gateway"), entry.get("dev"),
                    entry.get("protocol"), entry.get("scope"), metric, entry.get("type"),
                    entry.get("table"), entry.get("pref"), *flags)
    return None


def parse_routes(
    text: str,
    family: Family,
    table: int = MAIN_TABLE,
    protocol_names: Mapping[str, int] = PROTOCOL_NAMES,
    known: Known = NOTHING_KNOWN,
    cache: RouteCache | None = None,
) -> list[Route]:
    """Parse ``ip -j -4|-6 route show table N`` output into canonical routes."""
    if cache is not None:
        return cache.parse_text(text, family, table, protocol_names, known)
    data = json_list(text, "ip -j route")
    return [_route(entry, family, table, protocol_names, known) for entry in data]


def _route(
    entry: Any, family: Family, table: int, protocol_names: Mapping[str, int], known: Known
) -> Route:
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
    )


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


def shell_command(line: str) -> str:
    """The same change as a standalone shell command (``ip route add ...``)."""
    return "ip " + " ".join(shlex.quote(word) for word in line.split(" "))
