"""Read ``ip -j route`` fast when most of the table is known: routes by the text ``ip``
printed for them.

Pure: text in, :class:`~podroutes.core.model.Route` values out, with what earlier reads and
the plan already know. The engine reads every table through a :class:`RouteCache`; the
agent keeps one for its whole life.

``ip -j route`` prints a compact JSON list, its objects separated by exactly ``},{"``.
Each object's text (a *fragment*, without its ``{"`` and ``}``) is looked up, in order:

1. among the fragments this cache read before (an unchanged route: one lookup);
2. cut at ``","dev":"`` into a head, ``dst":"10.200.1.0/24","gateway":"192.168.10.102``,
   looked up among the planned routes' heads (:attr:`Known.heads`: the address objects
   the plan already holds), and a tail, ``eth0","protocol":"147","flags":[]``, among the
   tails read before (the rest of a route: the same for every route through one device).
   A route podroutes planned is then made without parsing any of its text;
3. parsed as JSON, as :func:`~podroutes.core.iproute.parse_routes` would, all such fragments
   of one output in one call.

Nothing is taken on trust: the output is cut into fragments only where every ``},{"``
separates two of its objects (no object inside another, no brace in a string, nothing
but a comma between objects), so a fragment is always one whole object, and whatever is
not looked up is parsed. Output with objects inside objects (a multipath route's
``nexthops``) is cut with the JSON decoder itself, one object at a time; anything else is
parsed the plain way. What comes out is what ``parse_routes`` gives, for any text
(``tests/unit/test_routecache.py`` holds it to that, with hypothesis).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from podroutes.core.errors import ParseError
from podroutes.core.iproute import NOTHING_KNOWN, Known, entry_route
from podroutes.core.jsontext import json_list
from podroutes.core.model import Family, Route, make_route

_SEPARATOR = '},{"'
_DECODER = json.JSONDecoder()
#: Where a fragment's head ends and its tail starts. A head is ``dst":"<dst>","gateway":
#: "<gateway>`` (an address has no ``"``, so the first ``_DEV`` of a fragment that starts
#: with a head follows it).
_DEV = '","dev":"'
#: A route's fields after ``dst`` and ``gateway``, as a tail gives them to make_route.
Rest = tuple[Any, ...]


class RouteCache:
    """Routes parsed before, by the text ``ip`` printed for them, per family and table.

    A table read again (the agent's periodic resync) costs one string comparison if
    nothing changed, else a lookup per unchanged route. Routes are immutable values, so one
    can be handed out any number of times. Used with one protocol-name mapping; holds at
    most ``limit`` routes (emptied when full, so routes that left are forgotten).
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._size = 0
        self._routes: dict[tuple[Family, int], dict[str, Route]] = {}
        #: Per family and table: a tail's text -> the route fields it stands for.
        self._tails: dict[tuple[Family, int], dict[str, Rest]] = {}
        #: The last output read per (family, table) and its routes: the same text again
        #: (a resync of a table nothing changed) is one string comparison.
        self._last: dict[tuple[Family, int], tuple[str, list[Route]]] = {}

    def __len__(self) -> int:
        return self._size

    def parse_text(self, text: str, family: Family, table: int,
                   protocol_names: Mapping[str, int], known: Known = NOTHING_KNOWN) -> list[Route]:
        """What :func:`~podroutes.core.iproute.parse_routes` returns for ``text``."""
        where = (family, table)
        last = self._last.get(where)
        if last is not None and last[0] == text:
            return list(last[1])
        fragments, data = _fragments(text), None
        if fragments is None and (objects := _objects(text)) is not None:
            fragments, data = objects
        if fragments is None:
            data = json_list(text, "ip -j route")
            lookups = _worth(known, len(data))
            routes = [entry_route(e, family, table, protocol_names, lookups) for e in data]
        else:
            routes = self._lookup(fragments, data, where, protocol_names, known)
        self._last[where] = (text, routes)
        return list(routes)

    def _lookup(self, fragments: Sequence[str], data: Sequence[Any] | None,
                where: tuple[Family, int], protocol_names: Mapping[str, int],
                known: Known) -> list[Route]:
        """The routes of ``fragments``; ``data``, if given, is their entries, parsed."""
        family, table = where
        if self._size + len(fragments) > self.limit:
            self.clear()
        keep = len(fragments) <= self.limit
        cached = self._routes.setdefault(where, {})
        tails = self._tails.setdefault(where, {})
        heads = known.heads.get(family, {})
        out: list[Route | None] = []
        missed: list[tuple[int, str]] = []
        for fragment in fragments:
            route = cached.get(fragment)
            if route is None:
                start, _, tail = fragment.partition(_DEV)
                head = heads.get(start)
                if head is None:
                    missed.append((len(out), fragment))
                elif (rest := tails.get(tail)) is not None:
                    route = make_route(head[0], head[1], *rest)
                else:  # the first of its tail: parsed now, so that the next ones are not
                    entry = data[len(out)] if data is not None else _entries([fragment])[0]
                    route = entry_route(entry, family, table, protocol_names, NOTHING_KNOWN)
                    if (rest := _learn(tails, tail, route)) is not None:
                        route = make_route(head[0], head[1], *rest)  # the plan's objects
            out.append(route)
        if missed:
            entries = ([data[i] for i, _ in missed] if data is not None
                       else _entries([f for _, f in missed]))
            lookups = _worth(known, len(missed))
            for (i, _), entry in zip(missed, entries, strict=True):
                out[i] = entry_route(entry, family, table, protocol_names, lookups)
        routes: list[Route] = out  # type: ignore[assignment]  # every None was filled
        if keep:
            before = len(cached)
            cached.update(zip(fragments, routes, strict=True))
            self._size += len(cached) - before
        return routes

    def clear(self) -> None:
        self._routes.clear()
        self._tails.clear()
        self._size = 0


def _worth(known: Known, entries: int) -> Known:
    """``known`` if parsing ``entries`` the long way is worth building its ``networks``
    and ``addresses`` (~1 µs per planned route, to save ~7 µs per entry that has one)."""
    return known if entries * 8 >= known.size else NOTHING_KNOWN


def _entries(fragments: Sequence[str]) -> list[Any]:
    """The objects ``fragments`` are, parsed together as one list: one JSON call."""
    entries = json_list(f'[{{"{_SEPARATOR.join(fragments)}}}]', "ip -j route")
    if len(entries) != len(fragments):  # cannot happen for what _fragments gives
        raise ParseError("`ip -j route` printed entries that do not line up")
    return entries


def _learn(tails: dict[str, Rest], tail: str, route: Route) -> Rest | None:
    """Remember what ``tail`` makes of a route, unless it says anything of dst or gateway
    (a key twice in one object: JSON keeps the last, which the head would not)."""
    if '"dst"' in tail or '"gateway"' in tail:
        return None
    rest = tails[tail] = (route.dev, route.protocol, route.table, route.metric, route.type,
                          route.scope, route.onlink, route.nexthops, route.pref, route.expires,
                          route.extras)
    return rest


def _fragments(text: str) -> list[str] | None:
    """The text of each object of ``ip``'s compact JSON list, without its outer ``{"`` and
    ``}``; ``None`` unless every ``},{"`` in ``text`` separates two of its objects: no
    object may hold another (a multipath route's ``nexthops``) nor a brace in a string,
    and nothing may stand between two objects but ``,`` (no spaces: one ``{`` per
    fragment). Each fragment is then one whole object's text, valid or not."""
    body = text.rstrip()
    if not body or body == "[]":
        return []
    if not (body.startswith('[{"') and body.endswith("}]")):
        return None
    fragments = body[3:-2].split(_SEPARATOR)
    if body.count("{") != len(fragments) or body.count("}") != len(fragments):
        return None
    return fragments


def _objects(text: str) -> tuple[list[str], list[Any]] | None:
    """Each object's fragment and its value, one JSON object at a time: for compact output
    that :func:`_fragments` refused because an object holds others (a multipath route).
    ``None`` for anything else, or for bad JSON (the caller's plain parse says what)."""
    body = text.rstrip()
    if not (body.startswith('[{"') and body.endswith("}]")):
        return None
    fragments: list[str] = []
    data: list[Any] = []
    decode, start, last = _DECODER.raw_decode, 1, len(body) - 1
    while True:
        try:
            entry, end = decode(body, start)
        except json.JSONDecodeError:
            return None
        if type(entry) is not dict:
            return None
        fragments.append(body[start + 2:end - 1])
        data.append(entry)
        if end == last:
            return fragments, data
        if body[end:end + 3] != ',{"':
            return None
        start = end + 1
