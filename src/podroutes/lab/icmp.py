"""The smoke matrix's ICMP packets, pure: what the prober sends and what it makes of what
comes back.

Pure (no sockets, threads or files): the Internet checksum, ICMP and ICMPv6 echo
requests carrying a token (:data:`TOKEN`: run nonce, source, target, attempt), the
reading of a received echo reply or of an ICMP error that quotes one of the requests
(:func:`parse4`, :func:`parse6`, as an :class:`Answer`) with ``ping``'s words for the
error, the reading of an echo request a pinged pod received (:func:`request4`,
:func:`request6`: the source it saw, NAT included), the ICMP types a probe socket lets
through, and :func:`table_fulls`, the reading of the kernel's neighbour-table counters
that the smoke reports beside its pairs. Called by :mod:`podroutes.lab.smoke` (the
prober: namespaces, sockets, the poll loop), which does all the I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
#: The ICMP types a probe socket receives: echo replies and the errors that may quote one
#: of its requests, and the echo requests other pods send to this one (their source is
#: the address this pod sees them from: a NAT on the way shows there). Every other type
#: (neighbour discovery, ...) is dropped by the kernel before it reaches the socket.
PASS_TYPES = {4: (0, 3, 8, 11, 12), 6: (1, 2, 3, 4, 128, 129)}

TOKEN = struct.Struct("!8sIIH")  # run nonce, source index, target index, attempt

_UNREACH4 = {
    0: "Destination Net Unreachable", 1: "Destination Host Unreachable",
    2: "Destination Protocol Unreachable", 3: "Destination Port Unreachable",
    4: "Frag needed and DF set", 5: "Source Route Failed",
    6: "Destination Net Unknown", 7: "Destination Host Unknown",
    8: "Source Host Isolated", 9: "Destination Net Prohibited",
    10: "Destination Host Prohibited",
    11: "Destination Net Unreachable for Type of Service",
    12: "Destination Host Unreachable for Type of Service", 13: "Packet filtered",
    14: "Precedence Violation", 15: "Precedence Cutoff"}
_UNREACH6 = {
    0: "No route", 1: "Administratively prohibited", 2: "Beyond scope of source address",
    3: "Address unreachable", 4: "Port unreachable",
    5: "Source address failed ingress/egress policy", 6: "Reject route to destination"}


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (4) or ICMPv6 (6) echo request. ICMPv6's checksum covers a pseudo-header
    with the addresses, so the kernel fills it in on raw ICMPv6 sockets; ICMP's is ours."""
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq)
    if family == 6:
        return header + payload
    cs = checksum(header + payload)
    return header[:2] + struct.pack("!H", cs) + header[4:] + payload


@dataclass(frozen=True, slots=True)
class Answer:
    """An ICMP message that answers an echo request: a reply, or an error quoting it."""

    ident: int
    seq: int
    payload: bytes
    sender: str  # who sent this message (the pinged pod, or a router)
    target: str  # the address the request went to
    error: str | None = None  # ping's words for an error; None for an echo reply


def error_text(family: int, type_: int, code: int, extra: int = 0) -> str:
    """What ``ping`` prints for an ICMP error (iputils' wording)."""
    if family == 4:
        if type_ == 3:
            text = _UNREACH4.get(code, f"Dest Unreachable, Bad Code: {code}")
            return f"{text} (mtu = {extra & 0xFFFF})" if code == 4 else text
        if type_ == 11:
            return "Frag reassembly time exceeded" if code else "Time to live exceeded"
        if type_ == 12:
            return f"Parameter problem: pointer = {extra >> 24}"
        return f"Bad ICMP type: {type_}"
    if type_ == 1:
        return "Destination unreachable: " + _UNREACH6.get(code, f"Unknown code {code}")
    if type_ == 2:
        return f"Packet too big: mtu={extra}"
    if type_ == 3:
        return "Time exceeded: " + ("Defragmentation failure" if code else "Hop limit")
    if type_ == 4:
        return f"Parameter problem: code {code}, pointer {extra}"
    return f"Bad ICMPv6 type: {type_}"


def parse4(packet: bytes) -> Answer | None:
    """An IPv4 datagram as a raw ICMP socket returns it (IP header first)."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_ICMP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    sender = str(IPv4Address(packet[12:16]))
    icmp = packet[ihl:]
    if len(icmp) < 8:
        return None
    type_, code, _, rest = struct.unpack("!BBHI", icmp[:8])
    if type_ == ECHO_REPLY[4]:
        ident, seq = struct.unpack("!HH", icmp[4:8])
        return Answer(ident, seq, icmp[8:], sender, sender)
    if type_ in (0, ECHO_REQUEST[4]) or type_ not in PASS_TYPES[4]:
        return None
    inner = icmp[8:]  # the IP header and (at least) 8 bytes of the request it quotes
    if len(inner) < 20 or inner[0] >> 4 != 4 or inner[9] != IPPROTO_ICMP:
        return None
    inner_icmp = inner[(inner[0] & 0x0F) * 4:]
    if len(inner_icmp) < 8 or inner_icmp[0] != ECHO_REQUEST[4]:
        return None
    ident, seq = struct.unpack("!HH", inner_icmp[4:8])
    return Answer(ident, seq, inner_icmp[8:], sender, str(IPv4Address(inner[16:20])),
                  error_text(4, type_, code, rest))


def parse6(message: bytes, sender: str) -> Answer | None:
    """An ICMPv6 message as a raw ICMPv6 socket returns it (no IPv6 header)."""
    if len(message) < 8:
        return None
    type_, code, _, rest = struct.unpack("!BBHI", message[:8])
    if type_ == ECHO_REPLY[6]:
        ident, seq = struct.unpack("!HH", message[4:8])
        return Answer(ident, seq, message[8:], sender, sender)
    if type_ >= 128:
        return None
    inner = message[8:]  # the IPv6 header and as much of the request as fits
    if len(inner) < 48 or inner[0] >> 4 != 6 or inner[6] != IPPROTO_ICMPV6 or \
            inner[40] != ECHO_REQUEST[6]:
        return None
    ident, seq = struct.unpack("!HH", inner[44:48])
    return Answer(ident, seq, inner[48:], sender, str(IPv6Address(inner[24:40])),
                  error_text(6, type_, code, rest))


@dataclass(frozen=True, slots=True)
class Request:
    """An echo request as the pinged pod received it: ``source`` is the address it came
    from after any NAT on the way (the sending pod's own address, or a node's)."""

    ident: int
    seq: int
    payload: bytes
    source: str


def request4(packet: bytes) -> Request | None:
    """An IPv4 echo request as a raw ICMP socket returns it (IP header first)."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_ICMP:
        return None
    icmp = packet[(packet[0] & 0x0F) * 4:]
    if len(icmp) < 8 or icmp[0] != ECHO_REQUEST[4]:
        return None
    ident, seq = struct.unpack("!HH", icmp[4:8])
    return Request(ident, seq, icmp[8:], str(IPv4Address(packet[12:16])))


def request6(message: bytes, sender: str) -> Request | None:
    """An ICMPv6 echo request as a raw ICMPv6 socket returns it (no IPv6 header)."""
    if len(message) < 8 or message[0] != ECHO_REQUEST[6]:
        return None
    ident, seq = struct.unpack("!HH", message[4:8])
    return Request(ident, seq, message[8:], sender)


def table_fulls(text: str) -> int:
    """The ``table_fulls`` column of a ``/proc/net/stat/*_cache`` file (hex, one row per
    CPU), summed; 0 if the file has no such column."""
    lines = text.splitlines()
    header = lines[0].split() if lines else []
    if "table_fulls" not in header:
        return 0
    column = header.index("table_fulls")
    return sum(int(row.split()[column], 16) for row in lines[1:]
               if len(row.split()) > column)
