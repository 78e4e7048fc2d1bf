"""Draw a :class:`~podroutes.diag.trace.Trace` as Kubernetes the Hard Way's chapter on pod
network routes draws the packet flow: a box per host with the route that matched and the
interfaces, arrows between hosts.

Pure: values in, text out; the CLI prints it. Also the JSON form of a trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from podroutes.core.model import PROTOCOL_NAMES, Route
from podroutes.core.prose import wrap
from podroutes.diag.trace import Disagreement, EndpointKind, Hop, KernelAnswer, Outcome, Trace

_PROTO = {number: name for name, number in PROTOCOL_NAMES.items()}
_MARK = {Outcome.DELIVERED: "✓", Outcome.LOOPED: "↻", Outcome.LEFT_CLUSTER: "↗",
         Outcome.UNKNOWN: "?"}


def route_text(r: Route) -> str:
    """A route as ``ip route`` prints it."""
    words = [] if r.type == "unicast" else [r.type]
    words.append("default" if r.dst.prefixlen == 0 else str(r.dst))
    if r.gateway is not None:
        words += ["via", str(r.gateway)]
    if r.nexthops:
        words += ["nexthops", ",".join(str(n) for n in r.nexthops)]
    if r.dev:
        words += ["dev", r.dev]
    words += ["proto", _PROTO.get(r.protocol, str(r.protocol))]
    if r.metric is not None:
        words += ["metric", str(r.metric)]
    return " ".join(words)


def _endpoint(trace: Trace, which: str) -> str:
    e = trace.src if which == "src" else trace.dst
    return f"{e.kind} {e.address}" + (f" (on {e.host})" if e.kind is EndpointKind.POD else
                                       f" ({e.host})")


def _box(title: str, lines: Sequence[str], limit: int | None = None) -> list[str]:
    """A framed box; with ``limit``, no wider than that: longer lines wrap at spaces,
    continued under the text after their label (``match: ``)."""
    if limit is not None:
        fitted: list[str] = []
        for line in lines:
            label = len(line) - len(line[line.find(":") + 1:].lstrip()) \
                if 0 < line.find(":") < 24 else 0
            fitted += wrap(line, limit - 4, "", " " * min(label, 12))
        lines = fitted
    width = max([len(title) + 4, *(len(line) + 2 for line in lines)]) + 1
    top = f"┌─ {title} " + "─" * (width - len(title) - 3) + "┐"
    body = [f"│ {line}" + " " * (width - len(line) - 1) + "│" for line in lines]
    return [top, *body, "└" + "─" * width + "┘"]


def _hop_lines(hop: Hop, trace: Trace, answer: KernelAnswer | None,
               disagreement: Disagreement | None) -> list[str]:
    arrived = "its own stack (the packet starts here)" if hop.arrived_on is None else \
        hop.arrived_on + (f" from pod {trace.src.address}" if hop.arrived_on
                          and trace.src.kind is EndpointKind.POD and
                          hop.host == trace.src.host else "")
    lines = [f"in:    {arrived}"]
    if hop.route is None:
        lines.append(f"match: {hop.note}")
    else:
        lines.append(f"match: {route_text(hop.route)}")
        if hop.next_host is not None:
            lines.append(f"out:   {hop.route.dev or '?'} → {hop.next_address} ({hop.next_host})")
        elif hop.next_address is not None and trace.outcome is Outcome.DELIVERED:
            lines.append(f"out:   {hop.route.dev or '?'} → pod {hop.next_address}")
        elif hop.next_address is not None:
            lines.append(f"out:   {hop.route.dev or '?'} → {hop.next_address} "
                         "(no host of the inventory)")
    if hop.note and hop.route is not None:
        lines.append(f"note:  {hop.note}")
    if hop.rewritten is not None:
        lines.append(f"nat:   source rewritten to {hop.rewritten} by {hop.nat_by}")
    if answer is not None:
        verdict = "agrees" if disagreement is None else \
            f"DISAGREES (simulation: {disagreement.expected})"
        lines.append(f"kernel (ip route get): {answer} — {verdict}")
    return lines


def draw(trace: Trace, addresses: Mapping[str, str],
         answers: Mapping[int, KernelAnswer] | None = None,
         disagreements: Mapping[int, Disagreement] | None = None,
         width: int | None = None) -> str:
    """The journey as text. ``addresses`` names each host's node address for box titles;
    ``answers``/``disagreements`` are per hop index (``--live``); ``width``, if given,
    is the widest a line may be (boxes wrap their lines to fit)."""
    out = [*wrap(f"{_endpoint(trace, 'src')} → {_endpoint(trace, 'dst')}, through the "
                 f"{'planned' if trace.source == 'plan' else 'observed'} tables", width), ""]
    if trace.src.kind is EndpointKind.POD:
        out += [f"  pod {trace.src.address}", "      │ default route to its node's bridge",
                "      ▼"]
    for index, hop in enumerate(trace.hops):
        title = f"{hop.host}  {addresses.get(hop.host, '')}".rstrip()
        answer = (answers or {}).get(index)
        out += _box(title, _hop_lines(hop, trace, answer, (disagreements or {}).get(index)),
                    width)
        if hop.next_host is not None and index + 1 < len(trace.hops):
            out += [f"      │ {hop.route.dev if hop.route else ''} → {hop.next_address}",
                    "      ▼"]
    last = trace.hops[-1] if trace.hops else None
    if trace.outcome is Outcome.DELIVERED and trace.dst.kind is EndpointKind.POD:
        out += ["      │", "      ▼", f"  pod {trace.dst.address}"]
    elif trace.outcome is Outcome.LOOPED and last is not None:
        out += [f"      │ {last.route.dev if last.route else ''} → {last.next_address}",
                "      ▼", f"  back to {trace.loop[-1]} ↻"]
    elif trace.outcome is Outcome.LEFT_CLUSTER and last is not None:
        out += ["      │", "      ▼", f"  {last.next_address} (outside the inventory) ↗"]
    mark = _MARK.get(trace.outcome, "✗")
    out += ["", *wrap(f"{trace.outcome}: {trace.reason}", width, f"{mark} ")]
    for note in trace.notes:
        out += wrap(note, width, "! ")
    return "\n".join(out) + "\n"


def trace_json(trace: Trace, disagreements: Sequence[Disagreement] = (),
               answers: Mapping[int, KernelAnswer] | None = None) -> dict[str, Any]:
    def endpoint(e: Any) -> dict[str, Any]:
        return {"kind": str(e.kind), "address": str(e.address), "host": e.host}

    return {
        "src": endpoint(trace.src), "dst": endpoint(trace.dst),
        "source": trace.source, "outcome": str(trace.outcome), "reason": trace.reason,
        "loop": list(trace.loop),
        "hops": [{
            "host": h.host, "arrived_on": h.arrived_on,
            "route": route_text(h.route) if h.route else None,
            "next_address": str(h.next_address) if h.next_address else None,
            "next_host": h.next_host, "note": h.note,
            "rewritten_source": str(h.rewritten) if h.rewritten else None,
            "nat_by": h.nat_by or None,
            "kernel": str((answers or {})[i]) if i in (answers or {}) else None,
        } for i, h in enumerate(trace.hops)],
        "notes": list(trace.notes),
        "disagreements": [{"host": d.host, "simulation": d.expected, "kernel": str(d.kernel)}
                          for d in disagreements],
    }
