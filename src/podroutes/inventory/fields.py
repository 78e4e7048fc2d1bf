"""What both inventory formats share: name patterns, the problem collector, quoting.

Pure. :class:`Collector` gathers every located problem of one file (source, line,
field) so a user fixes a file in one pass; :mod:`podroutes.inventory.machines` and
:mod:`podroutes.inventory.yamlfile` parse through it.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

from podroutes.core.errors import Problem
from podroutes.core.model import USER_RE, IPAddress, IPNetwork

__all__ = ["FQDN_RE", "HOSTNAME_RE", "USER_RE", "ZONE_RE", "Collector", "shown"]

MAX_LINE = 4096
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_RE = re.compile(rf"\A{_LABEL}\Z")
FQDN_RE = re.compile(rf"\A(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")
ZONE_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,15}\Z")

#: The texts of IPv4 octets and prefix lengths exactly as :mod:`ipaddress` accepts them
#: (ASCII digits, no leading zeros): a 10,000-host inventory parses its IPv4 addresses
#: and pod CIDRs by dictionary lookups instead of ``ipaddress``' general parser (~4x
#: faster). Anything else (IPv6, a netmask, any mistake) takes ``ipaddress``' own path,
#: which accepts or rejects it and words the problem.
_OCTETS = {str(n): n for n in range(256)}
_PREFIXES_V4 = {str(n): n for n in range(33)}


def _ipv4_int(text: str) -> int | None:
    """The value of a dotted quad in the form ``ipaddress`` reads, or ``None``."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    a, b, c, d = parts
    octets = _OCTETS
    if a in octets and b in octets and c in octets and d in octets:
        return (octets[a] << 24) | (octets[b] << 16) | (octets[c] << 8) | octets[d]
    return None


def _ipv4_network(text: str) -> IPv4Network | None:
    """``ip_network(text, strict=True)`` for ``A.B.C.D/N`` with no host bits, else ``None``."""
    address, slash, prefix = text.partition("/")
    if not slash or (length := _PREFIXES_V4.get(prefix)) is None:
        return None
    value = _ipv4_int(address)
    if value is None or value & ((1 << (32 - length)) - 1):
        return None
    return IPv4Network((value, length))


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
        if (value := _ipv4_int(text)) is not None:
            return IPv4Address(value)
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
        if (network := _ipv4_network(text)) is not None:
            return network
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
        self.add(line, field, f"{shown(text)} {_name_problem(text, pattern is HOSTNAME_RE)}")
        return None


def _name_problem(text: str, host: bool) -> str:
    """What is wrong with a name, in the words a person fixes it by."""
    labels = [text] if host else text.rstrip(".").split(".")
    if text != text.lower() and pattern_ok(text.lower(), host):
        return "must be lowercase (Kubernetes node names are)"
    if any(len(label) > 63 for label in labels):
        return "has a label longer than 63 characters"
    if not host and len(text) > 253:
        return "is longer than 253 characters"
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        return "has a label that starts or ends with '-'"
    if host and "." in text:
        return "is a host name: one label, no '.' (the FQDN column takes the domain)"
    what = "an RFC 1123 host name" if host else "an RFC 1123 domain name"
    return f"is not {what} (lowercase letters, digits, '-'{'' if host else ', and .'})"


def pattern_ok(text: str, host: bool) -> bool:
    return bool((HOSTNAME_RE if host else FQDN_RE).match(text))


def shown(text: str) -> str:
    """Quote untrusted text so control characters and look-alikes are visible."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    return ascii(shown)
