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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from podroutes.core.addresses import Interface, parse_interfaces
from podroutes.core.iproute import parse_routes, read_routes_argv
from podroutes.core.model import Family, Route

#: Starts every record of :data:`FILES_SCRIPT`'s output (ASCII record separator: config
#: files do not contain it, and the parser ignores a file that does).
MARK = "\x1e"

#: A constant script; ``$1`` is the filesystem root ('' or '/' for the real one). It
#: prints every file a manager reads for the node interface, each as a header line
#: (``MARK F MODE PATH``, the path without the root) and its text; then ``MARK V KEY
#: VALUE`` lines: which managers run in this network namespace, which tools exist,
#: netplan's version. Backups and temp files of podroutes are dotfiles: no glob here (or
#: in ifupdown's ``source dir/*``) matches them.
FILES_SCRIPT = r"""
R=${1%/}
emit() {
  [ -f "$1" ] || return 0
  printf '\n\036F %s %s\n' "$(stat -c %a -- "$1" 2>/dev/null || echo 0)" "${1#"$R"}"
  cat -- "$1" 2>/dev/null
}
value() { printf '\n\036V %s %s\n' "$1" "$2"; }
for d in etc/systemd/network run/systemd/network usr/local/lib/systemd/network \
         usr/lib/systemd/network lib/systemd/network; do
  for f in "$R/$d"/*.network "$R/$d"/*.network.d/*.conf; do emit "$f"; done
done
for f in "$R"/etc/systemd/networkd.conf "$R"/usr/lib/systemd/networkd.conf.d/*.conf \
         "$R"/run/systemd/networkd.conf.d/*.conf "$R"/etc/systemd/networkd.conf.d/*.conf \
         "$R"/run/systemd/netif/links/* \
         "$R"/lib/netplan/*.yaml "$R"/usr/lib/netplan/*.yaml "$R"/etc/netplan/*.yaml \
         "$R"/run/netplan/*.yaml \
         "$R"/etc/network/interfaces "$R"/etc/network/interfaces.d/* \
         "$R"/etc/NetworkManager/system-connections/*.nmconnection \
         "$R"/run/NetworkManager/system-connections/*.nmconnection \
         "$R"/etc/podroutes/nm-routes; do
  emit "$f"
done
me=$(readlink /proc/self/ns/net); nd=no; nm=no
for p in /proc/[0-9]*; do
  { read -r c < "$p/comm"; } 2>/dev/null || continue
  case $c in systemd-network|NetworkManager) ;; *) continue ;; esac
  [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$me" ] || continue
  if [ "$c" = NetworkManager ]; then nm=yes; else nd=yes; fi
done
value networkd-running "$nd"
value nm-running "$nm"
if [ -z "$R" ]; then
  value networkd-enabled "$(systemctl is-enabled systemd-networkd 2>/dev/null || echo unknown)"
fi
for t in ifup ifquery netplan nmcli; do
  if command -v "$t" >/dev/null 2>&1; then value "tool-$t" yes; else value "tool-$t" no; fi
done
v=$(dpkg-query -W -f='${Version}' netplan.io 2>/dev/null) ||
  v=$(rpm -q --qf '%{VERSION}' netplan 2>/dev/null) || v=unknown
value netplan-version "${v:-unknown}"
printf '\n\036E\n'
"""

#: The active NetworkManager connections of this host, ``DEVICE:UUID`` a line (constant).
NM_SCRIPT = r"""
if command -v nmcli >/dev/null 2>&1; then
  nmcli -t -f DEVICE,UUID connection show --active 2>/dev/null || true
fi
"""

_PATH_RE = re.compile(r"\A/[A-Za-z0-9_.@:+ /-]*\Z")


def fact_commands(root: str) -> list[tuple[str, ...]]:
    """The commands whose outputs :func:`parse_persist_facts` reads, in its order."""
    return [
        ("id", "-u"),
        ("ip", "-j", "addr", "show"),
        tuple(read_routes_argv(Family.V4)),
        tuple(read_routes_argv(Family.V6)),
        ("sh", "-c", FILES_SCRIPT, "sh", root),
        ("sh", "-c", NM_SCRIPT),
    ]


@dataclass(frozen=True, slots=True)
class HostFile:
    """A file as read from the host: its text and permission bits (octal, as ``stat``)."""

    content: str
    mode: int


@dataclass(frozen=True, slots=True)
class PersistFacts:
    """Everything persist knows about one host; paths are absolute, without the root."""

    files: Mapping[str, HostFile] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    nm_active: Mapping[str, str] = field(default_factory=dict)  # device -> connection UUID
    is_root: bool = True
    #: Link-layer facts by interface name: ``address`` (MAC) and ``link_type``.
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
        return self.flag("networkd-running") or self.values.get("networkd-enabled") in (
            "enabled", "enabled-runtime", "static", "alias")

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)


def parse_files(text: str) -> tuple[dict[str, HostFile], dict[str, str]]:
    """:data:`FILES_SCRIPT`'s output: files by path, and the ``V`` values."""
    files: dict[str, HostFile] = {}
    values: dict[str, str] = {}
    records = text.split("\n" + MARK)
    for record in records[1:]:
        header, _, body = record.partition("\n")
        kind, _, rest = header.partition(" ")
        if kind == "F":
            mode_text, _, path = rest.partition(" ")
            if not _PATH_RE.match(path) or not mode_text.isdigit():
                continue  # a name podroutes will not handle; the file is left alone
            files[path] = HostFile(body, int(mode_text, 8))
        elif kind == "V":
            key, _, value = rest.partition(" ")
            values[key] = value.strip()
    return files, values


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
        links={i.name: {k: v for k, v in (("address", i.mac), ("link_type", i.link_type))
                        if v is not None} for i in interfaces},
    )
