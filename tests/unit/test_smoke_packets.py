"""The smoke prober's ICMP packets and its reply matching, checked without root: what
it sends, what it makes of what comes back, and that only the answer to one of its own
requests, from the pinged address, settles a pair."""

from __future__ import annotations

import socket
import struct

from podroutes.lab import icmp, smoke
from podroutes.lab.topology import Machine


def ipv4(src: str, dst: str, payload: bytes) -> bytes:
    """A minimal IPv4 header (protocol ICMP) in front of ``payload``."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 1, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + payload


def ipv6_header(src: str, dst: str, length: int) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, length, 58, 64,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst))


def reply_of(request: bytes, family: int = 4) -> bytes:
    """What the pinged host sends back: the request with the reply type (and checksum)."""
    body = bytes([icmp.ECHO_REPLY[family], 0, 0, 0]) + request[4:]
    if family == 6:
        return body
    return body[:2] + struct.pack("!H", icmp.checksum(body)) + body[4:]


def test_echo_requests_carry_id_seq_payload_and_a_valid_checksum() -> None:
    packet = icmp.echo_request(4, 0x1234, 7, b"token")
    assert packet[0] == 8 and packet[4:8] == struct.pack("!HH", 0x1234, 7)
    assert packet[8:] == b"token"
    assert icmp.checksum(packet) == 0  # a correct checksum sums to zero
    six = icmp.echo_request(6, 0x1234, 7, b"token")
    assert six[0] == 128 and six[2:4] == b"\0\0"  # the kernel fills ICMPv6's in
    assert icmp.checksum(b"\x45\x00\x00\x73\x00\x00\x40\x00\x40\x11\x00\x00\xc0\xa8\x00"
                          b"\x01\xc0\xa8\x00\xc7") == 0xB861  # RFC 1071's example header


def test_an_echo_reply_and_an_icmp_error_that_quotes_the_request() -> None:
    request = icmp.echo_request(4, 99, 3, b"payload")
    answer = icmp.parse4(ipv4("10.200.1.2", "10.200.0.2", reply_of(request)))
    assert answer == icmp.Answer(99, 3, b"payload", "10.200.1.2", "10.200.1.2")
    quoted = ipv4("10.200.0.2", "10.200.1.2", request)
    error = icmp.parse4(ipv4("10.200.0.1", "10.200.0.2",
                             struct.pack("!BBHI", 3, 0, 0, 0) + quoted))
    assert error == icmp.Answer(99, 3, b"payload", "10.200.0.1", "10.200.1.2",
                                "Destination Net Unreachable")
    # an error about an echo *reply* (the pinged pod's answer that died on the way back)
    # is about someone else's request: ignored
    bounced = ipv4("10.200.0.2", "10.200.2.2", reply_of(request))
    assert icmp.parse4(ipv4("10.200.0.1", "10.200.0.2",
                            struct.pack("!BBHI", 3, 0, 0, 0) + bounced)) is None
    assert icmp.parse4(ipv4("10.200.1.2", "10.200.0.2", request)) is None  # a request


def test_icmpv6_reply_and_error() -> None:
    request = icmp.echo_request(6, 5, 9, b"p6")
    assert icmp.parse6(reply_of(request, 6), "fd00:200:1::2") == icmp.Answer(
        5, 9, b"p6", "fd00:200:1::2", "fd00:200:1::2")
    quoted = ipv6_header("fd00:200::2", "fd00:200:1::2", len(request)) + request
    error = icmp.parse6(struct.pack("!BBHI", 1, 0, 0, 0) + quoted, "fd00:200::1")
    assert error == icmp.Answer(5, 9, b"p6", "fd00:200::1", "fd00:200:1::2",
                                "Destination unreachable: No route")
    assert icmp.parse6(struct.pack("!BBHI", 135, 0, 0, 0) + bytes(16), "fe80::1") is None


def test_error_texts_are_pings() -> None:
    assert icmp.error_text(4, 3, 1) == "Destination Host Unreachable"
    assert icmp.error_text(4, 11, 0) == "Time to live exceeded"
    assert icmp.error_text(6, 1, 3) == "Destination unreachable: Address unreachable"
    assert icmp.error_text(6, 3, 0) == "Time exceeded: Hop limit"


def test_only_the_answer_to_this_run_this_pair_from_the_pinged_address_counts() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mine.setblocking(False)
    try:
        source = smoke._Source(mine, 4, pod=0, ident=0x4242, index=0)
        pair = smoke._Pair(0, src=0, dst=1, family=4, target="10.200.1.2", attempts=1,
                           sent=[0.0])
        other = smoke._Pair(1, src=0, dst=2, family=4, target="10.200.2.2", attempts=1,
                            sent=[0.0])
        prober = smoke._Prober([source], [pair, other], tries=3, interval=0.4, wait=1.3,
                               burst=8, rate=1000.0)

        def request(nonce: bytes, dst: int, ident: int = 0x4242) -> bytes:
            return icmp.echo_request(4, ident, smoke._seq(dst, 0),
                                     icmp.TOKEN.pack(nonce, 0, dst, 0))

        stale = b"x" * 8  # another run's nonce (an earlier smoke, a concurrent one)
        theirs.send(ipv4("10.200.1.2", "10.200.0.2", reply_of(request(stale, 1))))
        theirs.send(ipv4("10.200.1.2", "10.200.0.2",
                         reply_of(request(prober.nonce, 1, ident=0x4343))))
        # pair 2's token, answered by pair 1's target: not pair 2's answer
        theirs.send(ipv4("10.200.1.2", "10.200.0.2", reply_of(request(prober.nonce, 2))))
        # node-0's error quoting the request to 10.200.2.2: pair 2's detail, not a reply
        quoted = ipv4("10.200.0.2", "10.200.2.2", request(prober.nonce, 2))
        theirs.send(ipv4("10.200.0.1", "10.200.0.2",
                         struct.pack("!BBHI", 3, 0, 0, 0) + quoted))
        assert prober._drain(source) == 0
        assert not pair.done and not other.done
        assert other.detail == "From 10.200.0.1: Destination Net Unreachable"
        theirs.send(ipv4("10.200.1.2", "10.200.0.2", reply_of(request(prober.nonce, 1))))
        assert prober._drain(source) == 1
        assert pair.ok and pair.done and pair.detail.startswith("reply from 10.200.1.2 in ")
        assert not other.ok
    finally:
        mine.close()
        theirs.close()


def test_table_fulls_sums_the_column_over_cpus() -> None:
    from podroutes.lab.icmp import table_fulls

    text = ("entries  allocs   destroys hash_grows lookups  hits     res_failed "
            "rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs "
            "unresolved_discards table_fulls\n"
            "00000401 0000349b 00003ac9 00000004   000219e4 0000cac0 0000004e   00000000 "
            "        00000000         000002e6         00003ae4       00000000            "
            "00003acc\n"
            "00000401 00000001 00000000 00000000   00000000 00000000 00000000   00000000 "
            "        00000000         00000000         00000000       00000000            "
            "00000010\n")
    assert table_fulls(text) == 0x3ACC + 0x10
    assert table_fulls("entries allocs\n00000001 00000002\n") == 0
    assert table_fulls("") == 0


def test_an_echo_request_received_tells_the_source_the_destination_saw() -> None:
    request = icmp.echo_request(4, 7, 9, b"token")
    # as the pinged pod receives it after node-0 masqueraded it
    seen = icmp.request4(ipv4("192.168.10.101", "10.200.1.2", request))
    assert seen == icmp.Request(7, 9, b"token", "192.168.10.101")
    assert icmp.request4(ipv4("10.200.1.2", "10.200.0.2", reply_of(request))) is None
    assert icmp.request4(b"\x45" + b"\0" * 10) is None
    six = icmp.echo_request(6, 7, 9, b"token")
    assert icmp.request6(six, "fd00:200::2") == icmp.Request(7, 9, b"token", "fd00:200::2")
    assert icmp.request6(reply_of(six, 6), "fd00:200::2") is None
    assert 8 in icmp.PASS_TYPES[4] and 128 in icmp.PASS_TYPES[6]


def test_a_ping_seen_from_another_address_was_natted() -> None:
    a = Machine("node-0-pod-0", "pod", "10.200.0.2", node="node-0")
    b = Machine("node-1-pod-0", "pod", "10.200.1.2", node="node-1")
    assert smoke.Ping(a, b, True, "", 4, "192.168.10.101").natted
    assert not smoke.Ping(a, b, True, "", 4, "10.200.0.2").natted
    assert not smoke.Ping(a, b, False, "", 4, None).natted
