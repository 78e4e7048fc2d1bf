"""Whether a systemd-networkd ``.network`` file's ``[Match]`` section matches an interface.

Pure. networkd ANDs every key of ``[Match]`` (systemd.network(5)), so one key that is
known to be false settles the file, whatever else it says; only when every key podroutes
can evaluate matches and one it cannot remains is the answer unknown (``None``).

Two kinds of keys, with networkd's own semantics:

* **lists** (``Name=``, ``MACAddress=``, ``Driver=``, ``Type=``, ...): the words of every
  line accumulate, an empty assignment resets the list, a line that starts with ``!``
  makes its words exclusions. The interface matches when it is excluded by none and, if
  any word is not an exclusion, matches one of those (shell globs for names).
* **conditions** (``Host=``, ``Virtualization=``, ``KernelCommandLine=``,
  ``KernelVersion=``, ``Architecture=``, ``Credential=``, ``Firmware=``), evaluated like
  the unit ``Condition*=`` settings they are named after: each line is one condition,
  ``!`` negates it, ``|`` makes it a trigger; all non-trigger conditions must hold and, if
  there are triggers, at least one of them.

What the host is (its virtualization, name, machine id, architecture, kernel command line
and release, each interface's driver) comes from the facts script (``HOST_KEYS``); a key
whose fact is missing is unknown, never guessed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from podroutes.core.ini import ini_sections

#: ``[Match]`` keys whose values are lists of words (systemd.network(5)).
LIST_KEYS = frozenset({"Name", "OriginalName", "MACAddress", "PermanentMACAddress", "Path",
                       "Driver", "Type", "Kind", "Property", "SSID", "BSSID",
                       "WLANInterfaceType"})
#: ``[Match]`` keys that are conditions on the host, as ``Condition*=`` in systemd.unit(5).
CONDITION_KEYS = frozenset({"Host", "Virtualization", "KernelCommandLine", "KernelVersion",
                            "Architecture", "Credential", "Firmware"})
#: ``uname -m`` -> the architecture names systemd uses (systemd.unit(5), ConditionArchitecture).
ARCHITECTURES = {"x86_64": "x86-64", "i386": "x86", "i486": "x86", "i586": "x86",
                 "i686": "x86", "aarch64": "arm64", "aarch64_be": "arm64-be",
                 "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64-le", "ppc64": "ppc64",
                 "ppc": "ppc", "s390x": "s390x", "s390": "s390", "riscv64": "riscv64",
                 "mips64": "mips64", "loongarch64": "loongarch64", "alpha": "alpha",
                 "sparc64": "sparc64", "parisc": "parisc", "sh4": "sh"}
VM_IDS = frozenset({"qemu", "kvm", "amazon", "zvm", "vmware", "microsoft", "oracle",
                    "powervm", "xen", "bochs", "uml", "parallels", "bhyve", "qnx", "acrn",
                    "apple", "sre", "google"})
CONTAINER_IDS = frozenset({"openvz", "lxc", "lxc-libvirt", "systemd-nspawn", "docker",
                           "podman", "rkt", "wsl", "proot", "pouch"})
TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
FALSE = frozenset({"0", "no", "n", "false", "f", "off"})


def _list_matches(patterns: list[str], value: str | None, *, glob: bool) -> bool | None:
    """networkd's list test: excluded by no ``!`` word, and matching a positive one if any."""
    if not patterns:
        return True
    if value is None:
        return None
    positive = False
    hit = False
    for p in patterns:
        negative = p.startswith("!")
        word = p[1:] if negative else p
        found = fnmatch.fnmatchcase(value, word) if glob else value == word
        if negative:
            if found:
                return False
        else:
            positive = True
            hit = hit or found
    return hit or not positive


def _virtualization(value: str, host: Mapping[str, str]) -> bool | None:
    vm, container = host.get("virt-vm"), host.get("virt-container")
    if vm is None or container is None:
        return None
    # only the innermost technology counts: a container inside a VM is a container
    inner = container if container != "none" else vm
    kind = "container" if container != "none" else ("vm" if vm != "none" else "none")
    v = value.lower()
    if v in TRUE | FALSE:
        return (kind != "none") == (v in TRUE)
    if v in ("vm", "container"):
        return kind == v
    if v == "private-users":
        return None
    if v in VM_IDS | CONTAINER_IDS or v == inner:
        return inner == v
    return None


def _kernel_command_line(value: str, host: Mapping[str, str]) -> bool | None:
    line = host.get("kernel-cmdline")
    if line is None:
        return None
    words = line.split()
    if "=" in value:
        return value in words
    return any(w == value or w.startswith(value + "=") for w in words)


def _condition(key: str, value: str, host: Mapping[str, str]) -> bool | None:
    if key == "Host":
        name, machine_id = host.get("hostname"), host.get("machine-id")
        if machine_id is not None and value.lower() == machine_id.lower():
            return True
        if name is not None and fnmatch.fnmatchcase(name.lower(), value.lower()):
            return True
        looks_like_id = len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value)
        if name is None or (looks_like_id and machine_id is None):
            return None
        return False
    if key == "Virtualization":
        return _virtualization(value, host)
    if key == "KernelCommandLine":
        return _kernel_command_line(value, host)
    if key == "KernelVersion":
        release = host.get("kernel-release")
        if release is None or value[:1] in "<>=!":
            return None  # comparisons need systemd's version ordering: not guessed
        return fnmatch.fnmatchcase(release, value.strip())
    if key == "Architecture":
        arch = ARCHITECTURES.get(host.get("arch", ""))
        if arch is None:
            return None
        return value == "native" or value == arch
    return None  # Credential=, Firmware=: not readable from outside networkd


def _conditions(lines: Iterable[tuple[str, str]], host: Mapping[str, str]) -> bool | None:
    required: list[bool | None] = []
    triggers: list[bool | None] = []
    for key, raw in lines:
        trigger = raw.startswith("|")
        value = raw[1:].lstrip() if trigger else raw
        negate = value.startswith("!")
        value = value[1:].lstrip() if negate else value
        result = _condition(key, value, host)
        if result is not None and negate:
            result = not result
        (triggers if trigger else required).append(result)
    if False in required:
        return False
    if triggers and all(t is False for t in triggers):
        return False
    if None in required or (triggers and True not in triggers):
        return None
    return True


def match_network(text: str, ifname: str, link: Mapping[str, str] | None,
                  host: Mapping[str, str] | None = None) -> bool | None:
    """Whether a ``.network`` file's ``[Match]`` section matches the interface: ``True``,
    ``False``, or ``None`` when no key is false but one cannot be decided from the facts.

    ``link`` holds the interface's ``address`` (MAC), ``link_type`` and ``driver``;
    ``host`` the host facts (``virt-vm``, ``virt-container``, ``hostname``, ``machine-id``,
    ``arch``, ``kernel-cmdline``, ``kernel-release``)."""
    link = link or {}
    host = host or {}
    lists: dict[str, list[str]] = {}
    conditions: list[tuple[str, str]] = []
    for section, kvs in ini_sections(text):
        if section != "Match":
            continue
        for key, value in kvs:
            if key in CONDITION_KEYS:
                if value:
                    conditions.append((key, value))
            elif not value:
                lists[key] = []  # an empty assignment resets the list
            else:
                words = value.split()
                if words[0].startswith("!") and len(words[0]) > 1:
                    words = ["!" + w.lstrip("!") for w in words]
                elif words[0] == "!":
                    words = ["!" + w for w in words[1:]]
                lists.setdefault(key, []).extend(words)
    results: list[bool | None] = [_conditions(conditions, host)]
    for key, patterns in lists.items():
        if key in ("Name", "OriginalName"):
            results.append(_list_matches(patterns, ifname, glob=True))
        elif key in ("MACAddress", "PermanentMACAddress"):
            mac = link.get("address")
            results.append(_list_matches([p.lower() for p in patterns],
                                         mac.lower() if mac else None, glob=False))
        elif key == "Type":
            results.append(_list_matches(patterns, link.get("link_type"), glob=True))
        elif key == "Driver":
            results.append(_list_matches(patterns, link.get("driver"), glob=True))
        else:
            results.append(None if patterns else True)
    if False in results:
        return False
    return None if None in results else True
