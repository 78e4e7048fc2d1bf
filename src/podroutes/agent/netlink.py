"""The kernel's route, link and address notifications, as :class:`NetlinkEvent` values.

I/O: an rtnetlink socket (pyroute2's ``AsyncIPRoute``, bound to the route, link and
address multicast groups of both families), optionally in a named network namespace.
Used by :mod:`podroutes.agent.runner` for events only: every change to the table goes
through the engine's ``ip -batch``. Which event needs a reconcile is decided purely in
:mod:`podroutes.agent.triggers`. A socket that overflows (``ENOBUFS``: events were lost)
is reopened and reported as one ``OVERFLOW`` event, so the agent reconciles fully.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2 import config as pyroute2_config

from podroutes.agent.triggers import NetlinkEvent, NetlinkKind

log = logging.getLogger("podroutes.agent.netlink")
_IFF_UP = 0x1
#: rtm_type numbers (linux/rtnetlink.h) as ``ip`` names them.
_ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
                6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}


def to_event(msg: Any) -> NetlinkEvent:
    """A pyroute2 message reduced to what :func:`netlink_reason` reads."""
    try:
        kind = NetlinkKind(msg.get("event"))
    except ValueError:
        return NetlinkEvent(NetlinkKind.OTHER)
    if kind in (NetlinkKind.NEW_ROUTE, NetlinkKind.DEL_ROUTE):
        dst = msg.get("RTA_DST")
        text = f"{dst}/{msg.get('dst_len')}" if dst else "default"
        gateway = msg.get("RTA_GATEWAY")
        return NetlinkEvent(kind, table=msg.get("RTA_TABLE") or msg.get("table"),
                            protocol=msg.get("proto"), dst=text,
                            gateway=str(gateway) if gateway else None,
                            metric=msg.get("RTA_PRIORITY"),
                            type=_ROUTE_TYPES.get(msg.get("type"), str(msg.get("type"))))
    if kind in (NetlinkKind.NEW_LINK, NetlinkKind.DEL_LINK):
        return NetlinkEvent(kind, ifname=msg.get("IFLA_IFNAME"),
                            up=bool((msg.get("flags") or 0) & _IFF_UP))
    address = msg.get("IFA_ADDRESS")
    return NetlinkEvent(kind, dst=f"{address}/{msg.get('prefixlen')}" if address else None,
                        ifname=msg.get("IFA_LABEL"))


class NetlinkMonitor:
    """Route, link and address events of one network namespace (``None``: this one)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    async def _open(self) -> Any:
        # pyroute2 opens a socket in another namespace from a forked child, which it then
        # ends with SIGTERM. The child inherits asyncio's signal wakeup fd: unless its
        # SIGTERM handler is reset, the parent's loop "receives" that SIGTERM and the agent
        # stops (seen, not guessed). This makes the child reset it first thing.
        pyroute2_config.disable_mp_signal = True
        ipr = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
        await ipr.bind()  # the default groups: links, addresses, routes, both families
        return ipr

    async def events(self) -> AsyncIterator[NetlinkEvent]:
        """Every notification, forever; reopens the socket after an overflow."""
        ipr = await self._open()
        try:
            while True:
                try:
                    async for msg in ipr.get():
                        yield to_event(msg)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    log.warning("netlink socket overflowed; reopening it",
                                extra={"fields": {"netns": self.netns}})
                    with contextlib.suppress(OSError):
                        ipr.close()
                    ipr = await self._open()
                    yield NetlinkEvent(NetlinkKind.OVERFLOW)
        finally:
            with contextlib.suppress(OSError):
                ipr.close()
