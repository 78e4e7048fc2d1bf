"""What ``podroutes persist`` and ``status --check-persist`` read from a host, and its parser.

Pure. :func:`fact_commands` lists the argv lists that :mod:`podroutes.persist.wire` sends to
a host in one round trip (``session.run_many``); :func:`parse_persist_facts` turns their
captured output into one :class:`PersistFacts` value: the network manager files under the
filesystem root (every ``.network`` file and drop-in, ``networkd.conf``, networkd's link
state, netplan YAML, ``/etc/network/interfaces`` and what it sources, NetworkManager
keyfiles, podroutes' own files), which managers run in the host's network namespace, which
tools exist, netplan's version, the interfaces and both routing tables. Detection and
rendering (:mod:`podroutes.persist.detect`, :mod:`podroutes.persist.render`) read this value
and nothing else, so they are tested on captured text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from podroutes.core.addresses import Interface, parse_interfaces
from podroutes.core.iproute import parse_routes, read_routes_argv
from podroutes.core.model import Family, Route
from podroutes.core.netfiles import FILES_SCRIPT, HostFile, networkd_in_use, parse_files

#: The active NetworkManager connections of this host, ``DEVICE:UUID`` a line (constant).
NM_SCRIPT = r"""
if command -v nmcli >/dev/null 2>&1; then
  nmcli -t -f DEVICE,UUID connection show --active 2>/dev/null || true
fi
"""


def fact_commands(root: str) -> list[tuple[str, ...]]:
    """The commands whose outputs :func:`parse_persist_facts` reads, in its order."""
    return [
        ("id", "-u"),
        ("ip", "-j", "addr", "show"),
        tuple(read_routes_argv(Family.V4)),
        tuple(read_routes_argv(Family.V6)),
        ("sh", "-c", FILES_SCRIPT, "sh", root, "match"),
        ("sh", "-c", NM_SCRIPT),
    ]


@dataclass(frozen=True, slots=True)
class PersistFacts:
    """Everything persist knows about one host; paths are absolute, without the root."""

    files: Mapping[str, HostFile] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    nm_active: Mapping[str, str] = field(default_factory=dict)  # device -> connection UUID
    is_root: bool = True
    #: Link-layer facts by interface name: ``address`` (MAC), ``link_type``, ``driver``.
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def text(self, path: str) -> str | None:
        f = self.files.get(path)
        return f.content if f is not None else None

    def under(self, directory: str, suffix: str = "") -> list[str]:
        """Paths of files directly in ``directory`` ending in ``suffix``, sorted."""
        return sorted(p for p in self.files
                      if str(PurePosixPath(p).parent) == directory and p.endswith(suffix))

    def flag(self, key: str) -> bool:
        return self.values.get(key) == "yes"

    def tool(self, name: str) -> bool:
        return self.flag(f"tool-{name}")

    @property
    def networkd_in_use(self) -> bool:
        """networkd runs in this host's network namespace, or is enabled to at boot."""
        return networkd_in_use(self.values)

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)


def parse_nm_active(text: str) -> dict[str, str]:
    """``nmcli -t -f DEVICE,UUID connection show --active``: device -> UUID."""
    out = {}
    for line in text.splitlines():
        device, sep, uuid = line.rpartition(":")
        if sep and device and uuid:
            out[device.replace("\\:", ":")] = uuid
    return out


def parse_persist_facts(outputs: list[tuple[int, str, str]]) -> PersistFacts:
    """The outputs (status, stdout, stderr) of :func:`fact_commands`, in order."""
    uid, addr, route4, route6, files_out, nm_out = outputs
    routes: list[Route] = []
    for (status, text, _), family in ((route4, Family.V4), (route6, Family.V6)):
        if status == 0:
            routes += parse_routes(text, family)
    files, values = parse_files(files_out[1])
    interfaces = tuple(parse_interfaces(addr[1])) if addr[0] == 0 else ()
    return PersistFacts(
        files=files, values=values,
        interfaces=interfaces,
        routes=tuple(routes),
        nm_active=parse_nm_active(nm_out[1]) if nm_out[0] == 0 else {},
        is_root=uid[1].strip() == "0",
        links={i.name: {k: v for k, v in (("address", i.mac), ("link_type", i.link_type),
                                          ("driver", values.get(f"driver-{i.name}")))
                        if v is not None} for i in interfaces},
    )
