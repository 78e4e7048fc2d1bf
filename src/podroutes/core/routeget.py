"""The kernel's own answer, read and checked against the forwarding model: what ``ip -j
route get`` says about one address.

Owns :class:`RouteGetAnswer` and :func:`parse_route_get` (a route found),
:func:`parse_route_get_error` (a failure, as a
:class:`~podroutes.core.decision.DecisionKind`) and :func:`agrees` (whether an answer is
what a :class:`~podroutes.core.decision.Decision` predicts). :mod:`podroutes.core.paths`
reads every sample address's answer here and reports a disagreement, never guessing it
away; the tests check the model against captured and live kernels with it.

Pure: text and values in, values out; no I/O. What the kernel answers, as measured, is
told with the function that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address

from podroutes.core.decision import Decision, DecisionKind
from podroutes.core.errors import ParseError
from podroutes.core.jsontext import json_list
from podroutes.core.model import MAIN_TABLE, Family, IPAddress
from podroutes.core.rules import LOCAL_TABLE, TABLE_NAMES, table_number


@dataclass(frozen=True, slots=True)
class RouteGetAnswer:
    """``ip -j route get ADDR``'s answer when it found a route: the kind, the gateway (for
    a multipath route, the one nexthop the kernel hashed to), the device and the table
    (``ip`` prints it unless it is main)."""

    dst: IPAddress
    kind: DecisionKind
    gateway: IPAddress | None
    dev: str | None
    table: int

    def __str__(self) -> str:
        if self.kind is DecisionKind.LOCAL:
            text = "local"
        else:
            text = (f"via {self.gateway} " if self.gateway else "") + f"dev {self.dev}"
        return text + ("" if self.table == MAIN_TABLE else f" table {self.table}")


_ANSWER_TYPES = {"local": DecisionKind.LOCAL, "broadcast": DecisionKind.LOCAL,
                 "anycast": DecisionKind.LOCAL}


def parse_route_get(text: str, family: Family,
                    table_names: Mapping[str, int] = TABLE_NAMES) -> RouteGetAnswer:
    """Parse ``ip -j route get ADDR``'s output (exit status 0): a list of one entry with
    ``dst``, ``gateway`` (``via`` for an IPv4 route via inet6), ``dev``, ``type`` (absent
    for unicast) and ``table`` (absent for main). Raises
    :class:`~podroutes.core.errors.ParseError` on anything else."""
    data = json_list(text, "ip -j route get")
    if len(data) != 1 or not isinstance(data[0], dict) or "dst" not in data[0]:
        raise ParseError(f"`ip -j route get` printed no single route: {text.strip()!r}")
    entry = data[0]
    try:
        dst = ip_address(entry["dst"])
        gateway = None
        if "gateway" in entry:
            gateway = ip_address(entry["gateway"])
        elif isinstance(entry.get("via"), dict) and "host" in entry["via"]:
            gateway = ip_address(entry["via"]["host"])
    except (ValueError, TypeError) as exc:
        raise ParseError(f"`ip -j route get` entry with a bad address: {entry!r}") from exc
    if dst.version != family:
        raise ParseError(f"`ip -j route get` answered IPv{dst.version}, not "
                         f"IPv{family.value}: {entry!r}")
    type_ = str(entry.get("type", "unicast"))
    if type_ == "unicast":
        kind = DecisionKind.CONNECTED if gateway is None else DecisionKind.VIA
    elif type_ in _ANSWER_TYPES:
        kind = _ANSWER_TYPES[type_]
    else:
        raise ParseError(f"`ip -j route get` answered a {type_} route: {entry!r}")
    table = table_number(entry["table"], table_names) if "table" in entry else MAIN_TABLE
    dev = entry.get("dev")
    return RouteGetAnswer(dst, kind, gateway, None if dev is None else str(dev), table)


#: ``ip route get``'s errors (``RTNETLINK answers: ...``), measured in both families.
_ERRORS = {
    "Network is unreachable": DecisionKind.NO_ROUTE,  # ENETUNREACH
    "No route to host": DecisionKind.UNREACHABLE,  # EHOSTUNREACH
    "Permission denied": DecisionKind.PROHIBIT,  # EACCES
    "Invalid argument": DecisionKind.BLACKHOLE,  # EINVAL
}


def parse_route_get_error(stderr: str) -> DecisionKind:
    """What a failed ``ip route get`` (exit status 2) says about the address.

    Measured, both families: "Network is unreachable" when nothing matched, when a
    ``throw`` fell through every rule, or for an ``unreachable`` *rule* (NO_ROUTE); "No
    route to host" for an ``unreachable`` route (UNREACHABLE); "Permission denied" for a
    prohibit route or rule (PROHIBIT); "Invalid argument" for a blackhole route or rule
    (BLACKHOLE). With ``iif``, "Invalid argument" is also a rejected source (``rp_filter``,
    a martian, no ``from``), and IPv4 with forwarding off answers "No route to host";
    without, an IPv4 ``from`` that is not local answers "Network is unreachable". Raises
    :class:`~podroutes.core.errors.ParseError` for any other error."""
    for text, kind in _ERRORS.items():
        if text in stderr:
            return kind
    raise ParseError(f"`ip route get` failed in a way the model does not know: "
                     f"{stderr.strip()!r}")


def agrees(decision: Decision, answer: RouteGetAnswer | DecisionKind) -> bool:
    """Whether the kernel's answer for one address (:func:`parse_route_get`, or
    :func:`parse_route_get_error`'s kind when it failed) is what ``decision`` predicts:
    the same kind (an ``unreachable`` rule, unlike a route, fails as NO_ROUTE), the same
    table (IPv4 with only the default rules merges the local table into main, and then
    reports local routes as main), the gateway (one of a multipath route's), and the
    device unless the route is multipath or delivers locally. An UNCERTAIN decision
    agrees with what one of its candidates agrees with: consistent with the model, not
    confirmed by it."""
    if decision.kind is DecisionKind.UNCERTAIN:
        return any(agrees(c, answer) for c in decision.candidates)
    if isinstance(answer, DecisionKind):
        expected = decision.kind
        if expected is DecisionKind.UNREACHABLE and decision.route is None:
            expected = DecisionKind.NO_ROUTE
        return answer is expected
    route = decision.route
    if answer.kind is not decision.kind or route is None:
        return False
    if answer.table != decision.table and not (
            decision.table == LOCAL_TABLE and answer.table == MAIN_TABLE):
        return False  # IPv4 with only the default rules: local merged into main (measured)
    if decision.kind is DecisionKind.VIA:
        return answer.gateway in decision.gateways and (
            bool(route.nexthops) or route.dev is None or route.dev == answer.dev)
    if decision.kind is DecisionKind.CONNECTED:
        return answer.gateway is None and (route.dev is None or route.dev == answer.dev)
    return True
