"""The smoke matrix's in-process prober is exact: every pair passes when the routes are
there (run after run), and with one route gone exactly the pairs that need it fail, in
both directions (a reply needs the route back), in the family it was removed from. Its
sockets are made by a worker thread inside the pods' namespaces; the calling thread
never changes namespace, and a worker that cannot return raises before anything is sent.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator

import pytest

from podroutes.core.errors import LabError
from podroutes.lab import netns as labmod
from podroutes.lab import smoke

from .conftest import Lab, install_planned_routes, make_dual_stack_lab

pytestmark = pytest.mark.lab


@pytest.fixture
def big_dual_lab() -> Iterator[Lab]:
    """A dual-stack lab of 3 nodes x 2 pods with every planned route installed."""
    spec = make_dual_stack_lab(nodes=3, pods=2)
    try:
        lab = Lab(spec)
        install_planned_routes(lab)
        yield lab
    finally:
        labmod.down(spec)


def _netns() -> tuple[int, int]:
    info = os.stat("/proc/thread-self/ns/net")
    return info.st_dev, info.st_ino


def _failures(results: list[smoke.Ping]) -> dict[int, set[tuple[str, str]]]:
    out: dict[int, set[tuple[str, str]]] = {4: set(), 6: set()}
    for r in results:
        if not r.ok:
            out[r.family].add((r.src.name, r.dst.name))
    return out


def _node(pod: str) -> str:
    return pod.split("-pod-")[0]


def _sockets() -> set[tuple[str, str]]:
    """This process's open sockets, as (fd, inode) pairs."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add((fd, target))
    return out


def test_every_pair_passes_run_after_run_and_the_caller_stays_home(big_dual_lab: Lab) -> None:
    home, fds = _netns(), _sockets()
    pods = big_dual_lab.spec.pods()
    for _ in range(3):
        results = smoke.matrix(big_dual_lab.spec)
        assert len(results) == 2 * len(pods) * (len(pods) - 1) == 60
        assert [r for r in results if not r.ok] == []
        for r in results:  # every pair answered by the pod it pinged, in its family
            assert r.detail.startswith(f"reply from {r.dst_address} in "), r
        assert [(r.family, r.src.name, r.dst.name) for r in results] == [
            (f, a.name, b.name) for f in (4, 6) for a in pods for b in pods if a is not b]
    assert _netns() == home  # the calling thread never left its namespace
    # every socket it opened is closed (fds of earlier tests may close meanwhile: only
    # sockets that were not there before count)
    assert _sockets() - fds == set()
    assert not [t for t in threading.enumerate() if t.name == "smoke-netns"]


def test_one_missing_route_fails_exactly_the_pairs_that_need_it(big_dual_lab: Lab) -> None:
    lab = big_dual_lab
    # node-0 forgets how to reach node-2's IPv4 pods; node-1 its IPv6 route to node-2's
    lab.sh("node-0", "ip", "-4", "route", "del", "10.200.2.0/24")
    lab.sh("node-1", "ip", "-6", "route", "del", "fd00:200:2::/64")
    pods = [p.name for p in lab.spec.pods()]

    def both_ways(x: str, y: str) -> set[tuple[str, str]]:
        # x's pods reach y's only via x's route; y's pods get no reply without it either
        return {(a, b) for a in pods for b in pods
                if (_node(a), _node(b)) in ((x, y), (y, x))}

    expected = {4: both_ways("node-0", "node-2"), 6: both_ways("node-1", "node-2")}
    assert len(expected[4]) == len(expected[6]) == 8
    for run in range(3):
        results = smoke.matrix(lab.spec)
        assert _failures(results) == expected, run
        detail = {(r.family, r.src.name, r.dst.name): r.detail for r in results if not r.ok}
        for a, b in expected[6]:
            if _node(a) == "node-1":  # node-1 itself answers: it has no route
                assert detail[(6, a, b)] == \
                    "From fd00:200:1::1: Destination unreachable: No route"
            else:  # the request arrived; the reply died on node-1 (its error went there)
                assert detail[(6, a, b)].startswith("no reply"), detail[(6, a, b)]
        # node-0 answers its pods' IPv4 requests with an ICMP error too, but the kernel
        # rate-limits IPv4 errors per destination (net.ipv4.icmp_ratelimit, 1 s, a token
        # bucket in node-0's namespace) where IPv6 allows 10 a second: some of its pairs
        # may only say "no reply" (as ping's would), and only the first run is sure to
        # hear the answer at all. Never is an error taken for another pair's.
        unreachable = "From 10.200.0.1: Destination Net Unreachable"
        heard = [(a, b) for a, b in expected[4] if detail[(4, a, b)] == unreachable]
        assert all(_node(a) == "node-0" for a, _ in heard)
        assert all(detail[(4, a, b)].startswith("no reply")
                   for a, b in expected[4] - set(heard)), detail
        if run == 0:
            assert heard, detail

    lab.sh("node-0", "ip", "-4", "route", "add", "10.200.2.0/24", "via", "192.168.10.103",
           "proto", "147")
    lab.sh("node-1", "ip", "-6", "route", "add", "fd00:200:2::/64", "via", "fd00:10::103",
           "proto", "147")
    assert _failures(smoke.matrix(lab.spec)) == {4: set(), 6: set()}


def test_a_namespace_that_is_the_callers_own_is_refused(lab: Lab) -> None:
    """Only pod namespaces: a path that leads back to the thread's own namespace (here
    /run/netns/../../proc/thread-self/ns/net) gets no socket and no setns."""
    with pytest.raises(LabError, match="own network namespace"):
        smoke.open_sockets([("../../proc/thread-self/ns/net", 4, "127.0.0.1")])
    with pytest.raises(LabError, match="pod namespace"):
        smoke.open_sockets([(lab.ns("node-0-pod-9"), 4, "10.200.0.11")])


def test_a_worker_that_cannot_return_raises_before_anything_is_sent(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    home, fds = _netns(), _sockets()
    real = smoke._setns
    calls: list[int] = []

    def refuse_the_way_back(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the first return to the worker's home namespace
            raise OSError(errno.EPERM, "setns: refused by the test")
        real(fd)

    monkeypatch.setattr(smoke, "_setns", refuse_the_way_back)
    sent: list[object] = []
    monkeypatch.setattr(smoke._Prober, "run", lambda self: sent.append(self))
    with pytest.raises(smoke.NamespaceEscape, match="cannot return from"):
        smoke.matrix(lab.spec)
    assert sent == [] and len(calls) == 2  # no probing, no second pod entered
    assert _netns() == home
    assert _sockets() - fds == set()  # the socket made there was closed
