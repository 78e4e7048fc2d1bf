"""The files a host's network managers read, collected in one command, and their reader.

Pure: :data:`FILES_SCRIPT` is a constant shell script (nothing is interpolated into it;
the filesystem root is its ``$1``) and :func:`parse_files` reads its output. persist
reads these files to decide where routes go; doctor reads the same output to see what
systemd-networkd manages and whether it would delete routes it did not configure, so
both detect networkd the same way: a ``systemd-networkd`` process in the host's own
network namespace (found through ``/proc``, not ``systemctl``, which answers for PID 1's
namespace), or the unit enabled at boot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: Starts every record of :data:`FILES_SCRIPT`'s output (ASCII record separator: config
#: files do not contain it, and the parser ignores a file that does).
MARK = "\x1e"

#: A constant script; ``$1`` is the filesystem root ('' or '/' for the real one), ``$2``
#: ``match`` to add the host facts networkd's ``[Match]`` tests and netplan's version
#: (persist needs them, doctor does not: they cost a few processes per host). It
#: prints every file a manager reads for the node interface, each as a header line
#: (``MARK F MODE PATH``, the path without the root) and its text; then ``MARK V KEY
#: VALUE`` lines: which managers run in this network namespace, which tools exist,
#: netplan's version, and what networkd's ``[Match]`` conditions test (virtualization,
#: host name, machine id, architecture, kernel release and command line, and each
#: interface's driver as ``driver-IFNAME``); an empty value is left out. Backups and
#: temp files of podroutes are dotfiles: no glob here (or in ifupdown's ``source dir/*``)
#: matches them.
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
# enabled at boot: the symlinks `systemctl enable` makes, read as `systemctl is-enabled`
# would (which costs ~40 ms of CPU a host): /etc wants it (enabled), /run (runtime), the
# distribution's own unit directories (static); masked in /etc or /run wins
en=disabled
for f in "$R"/usr/lib/systemd/system/*.wants/systemd-networkd.service \
         "$R"/lib/systemd/system/*.wants/systemd-networkd.service; do
  { [ -e "$f" ] || [ -L "$f" ]; } && en=static
done
for f in "$R"/run/systemd/system/*.wants/systemd-networkd.service; do
  { [ -e "$f" ] || [ -L "$f" ]; } && en=enabled-runtime
done
for f in "$R"/etc/systemd/system/*.wants/systemd-networkd.service; do
  { [ -e "$f" ] || [ -L "$f" ]; } && en=enabled
done
for f in "$R"/etc/systemd/system/systemd-networkd.service \
         "$R"/run/systemd/system/systemd-networkd.service; do
  [ -L "$f" ] && [ "$(readlink "$f" 2>/dev/null)" = /dev/null ] && en=masked
done
value networkd-enabled "$en"
# what only persist needs ($2 = match): what networkd's [Match] conditions test (the
# host, each interface's driver) and netplan's version
if [ "$2" = match ]; then
if command -v systemd-detect-virt >/dev/null 2>&1; then
  value virt-vm "$(systemd-detect-virt --vm 2>/dev/null)"
  value virt-container "$(systemd-detect-virt --container 2>/dev/null)"
fi
value hostname "$(uname -n)"
value arch "$(uname -m)"
value kernel-release "$(uname -r)"
{ read -r m < /etc/machine-id && value machine-id "$m"; } 2>/dev/null
{ read -r m < /proc/cmdline && value kernel-cmdline "$m"; } 2>/dev/null
for i in /sys/class/net/*; do
  d=$(readlink "$i/device/driver" 2>/dev/null) ||
    d=$(ethtool -i "${i##*/}" 2>/dev/null | sed -n 's/^driver: //p')
  [ -n "$d" ] && value "driver-${i##*/}" "${d##*/}"
done
v=$(dpkg-query -W -f='${Version}' netplan.io 2>/dev/null) ||
  v=$(rpm -q --qf '%{VERSION}' netplan 2>/dev/null) || v=unknown
value netplan-version "${v:-unknown}"
fi
for t in ifup ifquery netplan nmcli; do
  if command -v "$t" >/dev/null 2>&1; then value "tool-$t" yes; else value "tool-$t" no; fi
done
printf '\n\036E\n'
"""

@dataclass(frozen=True, slots=True)
class HostFile:
    """A file as read from the host: its text and permission bits (octal, as ``stat``)."""

    content: str
    mode: int


_PATH_RE = re.compile(r"\A/[A-Za-z0-9_.@:+ /-]*\Z")


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
            if value.strip():
                values[key] = value.strip()
    return files, values


#: ``systemctl is-enabled`` answers that mean networkd starts at boot.
_ENABLED = frozenset({"enabled", "enabled-runtime", "static", "alias"})


def networkd_in_use(values: Mapping[str, str]) -> bool:
    """networkd runs in this host's network namespace, or is enabled to start at boot
    (``values`` as :func:`parse_files` returns them)."""
    return values.get("networkd-running") == "yes" or values.get("networkd-enabled") in _ENABLED
