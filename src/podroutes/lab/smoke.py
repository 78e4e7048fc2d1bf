"""The lab's smoke matrix: every pod pings every other pod, all pairs at once, in-process.

I/O (root). One worker thread enters each source pod's network namespace with
``setns(2)``, opens a raw ICMP socket there (a socket stays in the namespace it was made
in) and goes back to the namespace it came from, always, before the next pod; if it
cannot go back it raises and nothing is sent. The calling thread never changes
namespace: it only sends and receives on those pod sockets, so every packet leaves from
a pod and only addresses of namespaces the lab made are pinged. One poll loop sends an
ICMP echo request for every ordered pair of pods (per family in a dual-stack lab: ICMP
to the IPv4 address, ICMPv6 to the IPv6 one), paced, with an identifier per source and a
token in the payload, so a reply counts only for the pair, attempt and run that asked
for it and only when it comes from the pinged address. Unanswered pairs are asked again
(``tries`` attempts, ``interval`` apart) and fail ``wait`` seconds after the first; an
ICMP error quoting one of the requests (a node's "Destination Net Unreachable") becomes
the failed pair's detail, as ``ping`` prints it. Each pod's socket also receives the
echo requests sent to it: the source address in them is the one the destination saw
(:attr:`Ping.seen`), so a NAT between pods (the bridge plugin's ``ipMasq``) shows. The
packets are built and read by :mod:`podroutes.lab.icmp` (pure). Called by ``podroutes lab smoke``
(:mod:`podroutes.cli.lab`) and the lab tests; returns values, the CLI prints the
matrices.
"""

from __future__ import annotations

import ctypes
import errno
import heapq
import os
import resource
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podroutes.core.errors import LabError
from podroutes.lab.icmp import (
    PASS_TYPES,
    TOKEN,
    Request,
    echo_request,
    parse4,
    parse6,
    request4,
    request6,
    table_fulls,
)
from podroutes.lab.netns import LabSpec
from podroutes.lab.topology import Machine

CLONE_NEWNET = 0x40000000
SOL_RAW = 255  # linux/socket.h; ICMP_FILTER lives at this level
ICMP_FILTER = 1  # linux/icmp.h: a u32, bit N set drops ICMP type N
ICMPV6_FILTER = 1  # linux/icmpv6.h: 8 x u32, bit N set drops ICMPv6 type N
SO_RCVBUFFORCE = 33  # asm-generic/socket.h (root may exceed rmem_max)
RCVBUF = 1 << 20


@dataclass(frozen=True, slots=True)
class Ping:
    src: Machine
    dst: Machine
    ok: bool
    detail: str
    family: int = 4
    #: The source address the destination pod saw on this pair's echo request (the
    #: sender's own address, or a node's when a NAT rewrote it); None: none arrived.
    seen: str | None = None

    @property
    def src_address(self) -> str:
        return self.src.address_of(self.family) or ""

    @property
    def natted(self) -> bool:
        """The destination saw another source than the sending pod's address."""
        return self.seen is not None and self.seen != self.src_address

    @property
    def dst_address(self) -> str:
        return self.dst.address_of(self.family) or ""


# --- sockets inside the pods' namespaces --------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def _setns(fd: int) -> None:
    """Move the calling thread (only it) into the network namespace ``fd`` refers to."""
    if int(_libc.setns(fd, CLONE_NEWNET)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ns_id(fd_or_path: int | str) -> tuple[int, int]:
    info = os.stat(fd_or_path)
    return info.st_dev, info.st_ino


class NamespaceEscape(LabError):
    """The socket thread could not get back to the namespace it started in."""


def _probe_socket(family: int, address: str) -> socket.socket:
    """A raw ICMP(v6) socket of the calling thread's namespace, bound to ``address``."""
    if family == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        if family == 4:
            drop = 0xFFFFFFFF & ~sum(1 << t for t in PASS_TYPES[4])
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", drop))
            sock.bind((address, 0))
        else:
            words = [0xFFFFFFFF] * 8
            for t in PASS_TYPES[6]:
                words[t >> 5] &= ~(1 << (t & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMPV6_FILTER, struct.pack("=8I", *words))
            sock.bind((address, 0, 0, 0))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _open_in_namespaces(wanted: Sequence[tuple[str, int, str]]) -> list[socket.socket]:
    """For each (namespace, family, address): a probe socket made inside that namespace.

    Runs in a worker thread: enters each namespace and, in a ``finally``, returns to the
    thread's own before the next; raises :class:`NamespaceEscape` if that fails (the
    thread then ends without sending anything). A namespace that turns out to be the
    thread's own (not a pod's) is refused."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    out: list[socket.socket] = []
    try:
        home_id = _ns_id(home)
        for namespace, family, address in wanted:
            try:
                target = os.open(f"/run/netns/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise LabError(f"pod namespace {namespace}: {exc.strerror}") from exc
            try:
                if _ns_id(target) == home_id:
                    raise LabError(f"{namespace} is this thread's own network namespace")
                _setns(target)
                try:
                    if _ns_id("/proc/thread-self/ns/net") != _ns_id(target):
                        raise LabError(f"setns into {namespace} did not take effect")
                    out.append(_probe_socket(family, address))
                finally:
                    try:
                        _setns(home)
                    except OSError as exc:
                        raise NamespaceEscape(f"cannot return from {namespace}: {exc}") from exc
                    if _ns_id("/proc/thread-self/ns/net") != home_id:
                        raise NamespaceEscape(f"still outside the home namespace after "
                                              f"{namespace}")
            finally:
                os.close(target)
    except BaseException:
        for sock in out:
            sock.close()
        raise
    finally:
        os.close(home)
    return out


def open_sockets(wanted: Sequence[tuple[str, int, str]]) -> list[socket.socket]:
    """:func:`_open_in_namespaces` on a fresh thread (the caller never changes namespace);
    its exception, if any, is re-raised here."""
    result: list[list[socket.socket]] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(_open_in_namespaces(wanted))
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    mine = _ns_id("/proc/thread-self/ns/net")
    worker = threading.Thread(target=work, name="smoke-netns", daemon=True)
    worker.start()
    worker.join()
    if _ns_id("/proc/thread-self/ns/net") != mine:  # cannot happen: setns is per thread
        for sock in result[0] if result else []:
            sock.close()
        raise NamespaceEscape("the calling thread's network namespace changed")
    if failure:
        raise failure[0]
    return result[0]


def neighbour_table_fulls() -> int:
    """How often the kernel's neighbour tables (ARP and NDP) have been full so far: the
    ``table_fulls`` column of ``/proc/net/stat/{arp,ndisc}_cache``, summed over CPUs.

    Those tables are shared by every namespace and capped at ``gc_thresh3`` (1024 by
    default) entries in all; a big lab can fill them, and then pairs fail for want of an
    ARP entry, not of a route. Read-only; 0 where the files are missing."""
    total = 0
    for name in ("arp_cache", "ndisc_cache"):
        try:
            total += table_fulls(Path(f"/proc/net/stat/{name}").read_text())
        except OSError:
            continue
    return total


# --- the probe loop ------------------------------------------------------------------------

@dataclass(slots=True)
class _Pair:
    index: int
    src: int  # index of the source socket
    dst: int  # index of the target pod
    family: int
    target: str
    attempts: int = 0
    sent: list[float] = field(default_factory=list)
    done: bool = False
    ok: bool = False
    detail: str = ""
    seen: str | None = None  # the source the target pod saw on a request of this pair


@dataclass(slots=True)
class _Source:
    sock: socket.socket
    family: int
    pod: int  # index of the source pod
    ident: int
    index: int


class _Prober:
    def __init__(self, sources: list[_Source], pairs: list[_Pair], tries: int,
                 interval: float, wait: float, burst: int, rate: float) -> None:
        self.sources = sources
        self.pairs = pairs
        self.tries, self.interval = max(1, tries), interval
        self.grace = max(wait - (self.tries - 1) * interval, interval)
        self.burst, self.rate = burst, rate
        self.nonce = secrets.token_bytes(8)
        self.by_key = {(p.src, p.dst): p for p in pairs}
        self.by_fd = {s.sock.fileno(): s for s in sources}

    def run(self) -> None:
        left = len(self.pairs)
        due: list[tuple[float, int, int]] = []  # (when, order, pair index)
        now = time.monotonic()
        for i in range(len(self.pairs)):
            heapq.heappush(due, (now, i, i))
        order = len(self.pairs)
        poller = select.poll()
        for fd in self.by_fd:
            poller.register(fd, select.POLLIN)
        tokens, last = float(self.burst), now
        while left:
            now = time.monotonic()
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            last = now
            while due and due[0][0] <= now:
                pair = self.pairs[due[0][2]]
                if pair.done:
                    heapq.heappop(due)
                    continue
                if pair.attempts >= self.tries:  # its last answer is overdue
                    heapq.heappop(due)
                    pair.done = True
                    left -= 1
                    if not pair.detail:
                        pair.detail = (f"no reply ({pair.attempts} requests in "
                                       f"{now - pair.sent[0]:.1f} s)")
                    continue
                if tokens < 1:
                    break
                heapq.heappop(due)
                tokens -= 1
                if self._send(pair, now):
                    later = self.interval if pair.attempts < self.tries else self.grace
                else:  # a full send buffer: again in a moment, no attempt spent
                    later = 0.005
                heapq.heappush(due, (now + later, order, pair.index))
                order += 1
            if not left:
                break
            if due and due[0][0] <= now and tokens >= 1:
                timeout = 0
            else:
                until = due[0][0] - now if due else 0.05
                if tokens < 1:
                    until = min(until, (1 - tokens) / self.rate)
                timeout = max(0, min(50, int(until * 1000) + 1))
            for fd, _ in poller.poll(timeout):
                left -= self._drain(self.by_fd[fd])
        for source in self.sources:  # the requests the last replies answered are queued
            self._drain(source)

    def _send(self, pair: _Pair, now: float) -> bool:
        source = self.sources[pair.src]
        payload = TOKEN.pack(self.nonce, pair.src, pair.dst, pair.attempts)
        packet = echo_request(pair.family, source.ident, _seq(pair.dst, pair.attempts),
                              payload)
        address: tuple[str, int] | tuple[str, int, int, int] = \
            (pair.target, 0) if pair.family == 4 else (pair.target, 0, 0, 0)
        try:
            source.sock.sendto(packet, address)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return False
            if not pair.detail or pair.detail.startswith("sendto"):
                pair.detail = f"sendto: {exc.strerror}"  # e.g. no route in the pod itself
        pair.attempts += 1
        pair.sent.append(now)
        return True

    def _drain(self, source: _Source) -> int:
        """Read everything queued on ``source``'s socket; how many pairs it settled."""
        settled, errors = 0, 0
        while True:
            try:
                data, peer = source.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return settled
            except OSError:  # a pending socket error (an ICMP error's errno): read on
                errors += 1
                if errors > 64:
                    return settled
                continue
            request = request4(data) if source.family == 4 else request6(data, peer[0])
            if request is not None:
                self._saw(source, request)
                continue
            answer = parse4(data) if source.family == 4 else parse6(data, peer[0])
            if answer is None or answer.ident != source.ident:
                continue
            try:
                nonce, src, dst, attempt = TOKEN.unpack_from(answer.payload)
            except struct.error:
                continue
            if nonce != self.nonce or src != source.index or \
                    answer.seq != _seq(dst, attempt):
                continue
            pair = self.by_key.get((src, dst))
            if pair is None or pair.done or answer.target != pair.target or \
                    attempt >= len(pair.sent):
                continue
            if answer.error is None:
                pair.ok, pair.done = True, True
                pair.detail = (f"reply from {answer.sender} in "
                               f"{(time.monotonic() - pair.sent[attempt]) * 1000:.1f} ms")
                settled += 1
            elif not pair.detail or pair.detail.startswith("sendto"):
                pair.detail = f"From {answer.sender}: {answer.error}"


    def _saw(self, target: _Source, request: Request) -> None:
        """An echo request that reached pod ``target``: record the source it came from
        for the pair it belongs to (any attempt: they all take the same path)."""
        try:
            nonce, src, dst, _ = TOKEN.unpack_from(request.payload)
        except struct.error:
            return
        pair = self.by_key.get((src, dst))
        if nonce == self.nonce and pair is not None and dst == target.pod and \
                pair.family == target.family and pair.seen is None:
            pair.seen = request.source


def _seq(dst: int, attempt: int) -> int:
    return (dst * 8 + attempt) & 0xFFFF


def _group_size(families: int) -> int:
    """How many source pods get sockets at once (one per family each), within the
    process's file descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (soft if soft != resource.RLIM_INFINITY else 4096) - 64
    return max(1, min(1024, room) // families)


def _groups(items: Sequence[Machine], size: int) -> Iterator[Sequence[Machine]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def matrix(spec: LabSpec, tries: int = 3, interval: float = 0.4, wait: float = 1.3,
           burst: int = 64, rate: float = 20_000.0) -> list[Ping]:
    """Every ordered pair of distinct pods, per family of the lab (IPv4 pairs first).

    A pair passes when an echo reply from the pinged address answers one of its
    ``tries`` requests (sent ``interval`` s apart) within ``wait`` s of the first; sends
    are paced to ``rate`` a second in bursts of ``burst``."""
    pods = spec.pods()
    where = {p.name: i for i, p in enumerate(pods)}
    for family in spec.families:
        if missing := [p.name for p in pods if p.address_of(family) is None]:
            raise LabError(f"pods without an IPv{family} address: {', '.join(missing)}")
    found: dict[tuple[int, int, int], tuple[bool, str, str | None]] = {}
    base = secrets.randbelow(0x10000)
    for group in _groups(pods, _group_size(len(spec.families))):
        wanted = [(spec.namespace(p.name), family, p.address_of(family) or "")
                  for family in spec.families for p in group]
        socks = open_sockets(wanted)
        try:
            sources = [_Source(sock, family, where[ns_pod.name], (base + i) & 0xFFFF, i)
                       for i, (sock, (_, family, _), ns_pod) in enumerate(
                           zip(socks, wanted, [p for _ in spec.families for p in group],
                               strict=True))]
            pairs: list[_Pair] = []
            for k in range(1, len(pods)):  # each round: every source once, every target once
                for s in sources:
                    d = (s.pod + k) % len(pods)
                    pairs.append(_Pair(len(pairs), s.index, d, s.family,
                                       pods[d].address_of(s.family) or ""))
            _Prober(sources, pairs, tries, interval, wait, burst, rate).run()
        finally:
            for sock in socks:
                sock.close()
        for pair in pairs:
            found[(pair.family, sources[pair.src].pod, pair.dst)] = \
                (pair.ok, pair.detail, pair.seen)
    out = []
    for family in spec.families:
        for i, a in enumerate(pods):
            for j, b in enumerate(pods):
                if i != j:
                    ok, detail, seen = found[(family, i, j)]
                    out.append(Ping(a, b, ok, detail, family, seen))
    return out
