"""The base network configuration a lab machine starts with, per network manager.

Pure: a :class:`~podroutes.lab.topology.Machine` in, file texts out. ``lab up --manager
networkd|netplan|ifupdown|nm`` writes these into the machine's own ``/etc`` (its mount
namespace, :mod:`podroutes.lab.machine`), as a freshly installed host of that kind would
have them for its node interface ``eth0``: a ``.network`` file, a cloud-init style
netplan file, a Debian ``/etc/network/interfaces`` that sources ``interfaces.d`` first,
or a NetworkManager keyfile. Every node also gets Kubernetes the Hard Way's
``/etc/cni/net.d/10-bridge.conf`` (:func:`bridge_conf`) and, with ``ipMasq``, the nat rules
the bridge plugin writes for its pods (:func:`ipmasq_rules`). Called by
:mod:`podroutes.lab.machine` and :mod:`podroutes.lab.netns`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network

from podroutes.lab.topology import NODE_NETWORK, NODE_NETWORK6, Machine

MANAGERS = ("networkd", "netplan", "ifupdown", "nm")
#: Directories every lab machine gets fresh (a tmpfs each) in its own /etc.
PRIVATE_ETC = ("/etc/systemd/network", "/etc/netplan", "/etc/network", "/etc/NetworkManager",
               "/etc/cni/net.d")


@dataclass(frozen=True, slots=True)
class Seed:
    """Files (path -> (text, mode)) and empty directories to create in a machine."""

    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    directories: tuple[str, ...] = ()


def _addresses(m: Machine) -> list[str]:
    out = [f"{m.address}/{NODE_NETWORK.prefixlen}"]
    if m.address6:
        out.append(f"{m.address6}/{NODE_NETWORK6.prefixlen}")
    return out


def connection_uuid(lab: str, machine: str) -> str:
    """A stable UUID for a lab machine's NetworkManager connection."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{machine}.{lab}.podroutes-lab"))


def seed(manager: str | None, m: Machine, lab: str) -> Seed:
    if manager is None:
        return Seed()
    if manager == "networkd":
        text = "\n".join([
            f"# The node interface of lab machine {m.name}.",
            "[Match]", "Name=eth0", "", "[Network]",
            *(f"Address={a}" for a in _addresses(m)), "IPv6AcceptRA=no", ""])
        return Seed({"/etc/systemd/network/10-eth0.network": (text, 0o644)})
    if manager == "netplan":
        text = "\n".join([
            f"# The node interface of lab machine {m.name}, as cloud-init writes it.",
            "network:", "  version: 2", "  renderer: networkd", "  ethernets:", "    eth0:",
            "      addresses:", *(f'        - "{a}"' for a in _addresses(m)),
            "      accept-ra: false", ""])
        return Seed({"/etc/netplan/50-cloud-init.yaml": (text, 0o600)})
    if manager == "ifupdown":
        lines = ["# interfaces(5) file used by ifup(8) and ifdown(8)",
                 "# Include files from /etc/network/interfaces.d:",
                 "source /etc/network/interfaces.d/*", "", "auto lo", "iface lo inet loopback",
                 "", "auto eth0", "iface eth0 inet static",
                 f"    address {m.address}/{NODE_NETWORK.prefixlen}"]
        if m.address6:
            lines += ["", "iface eth0 inet6 static",
                      f"    address {m.address6}/{NODE_NETWORK6.prefixlen}",
                      "    accept_ra 0", "    dad-attempts 0"]
        dirs = tuple(f"/etc/network/{d}" for d in (
            "interfaces.d", "if-pre-up.d", "if-up.d", "if-down.d", "if-post-down.d"))
        return Seed({"/etc/network/interfaces": ("\n".join(lines) + "\n", 0o644)}, dirs)
    if manager == "nm":
        v6 = (["method=manual", f"address1={m.address6}/{NODE_NETWORK6.prefixlen}"]
              if m.address6 else ["method=disabled"])
        text = "\n".join([
            "[connection]", "id=eth0", f"uuid={connection_uuid(lab, m.name)}",
            "type=ethernet", "interface-name=eth0", "", "[ethernet]", "", "[ipv4]",
            f"address1={m.address}/{NODE_NETWORK.prefixlen}", "method=manual", "", "[ipv6]",
            "addr-gen-mode=default", *v6, "", "[proxy]", ""])
        return Seed({"/etc/NetworkManager/system-connections/eth0.nmconnection": (text, 0o600)})
    raise ValueError(f"unknown network manager {manager!r} (one of {', '.join(MANAGERS)})")


# --- the CNI configuration and the bridge plugin's ipMasq rules --------------------------

CNI_CONF = "/etc/cni/net.d/10-bridge.conf"
#: Kubernetes the Hard Way's configs/10-bridge.conf, byte for byte (RANGES and ROUTES are
#: its ``[{"subnet": "SUBNET"}]`` and ``{"dst": "0.0.0.0/0"}`` for an IPv4-only node).
_BRIDGE_CONF = """{
  "cniVersion": "1.0.0",
  "name": "bridge",
  "type": "bridge",
  "bridge": "cni0",
  "isGateway": true,
  "ipMasq": true,
  "ipam": {
    "type": "host-local",
    "ranges": [
      RANGES
    ],
    "routes": [ROUTES]
  }
}"""


def bridge_conf(subnet: str, subnet6: str | None = None) -> str:
    """KTHW's ``10-bridge.conf`` with SUBNET substituted (dual-stack: a second range set
    and an IPv6 default route, as host-local takes them)."""
    ranges = [f'[{{"subnet": "{subnet}"}}]'] + ([f'[{{"subnet": "{subnet6}"}}]'] if subnet6
                                                else [])
    routes = ['{"dst": "0.0.0.0/0"}'] + (['{"dst": "::/0"}'] if subnet6 else [])
    return _BRIDGE_CONF.replace("RANGES", ",\n      ".join(ranges)).replace(
        "ROUTES", ", ".join(routes)) + "\n"  # upstream's file ends without one


def container_id(lab: str, pod: str) -> str:
    """A stable 64-hex-digit container id for a lab pod."""
    return hashlib.sha256(f"{lab}/{pod}".encode()).hexdigest()


def ipmasq_rules(lab: str, pods: Sequence[tuple[str, str]], subnet: str, family: int) -> str:
    """``iptables-restore --noflush`` input: the nat rules the CNI bridge plugin (iptables
    backend, containernetworking/plugins pkg/ip/ipmasq_iptables_linux.go) writes for each
    ``(pod name, address)`` with ``"ipMasq": true``: a chain ``CNI-`` + 24 hex digits of
    sha512(network name + container id) holding ``-d SUBNET -j ACCEPT`` and ``! -d
    MULTICAST -j MASQUERADE``, and ``-A POSTROUTING -s POD -j CHAIN``, all commented
    ``name: "bridge" id: "ID"``."""
    multicast, host = ("224.0.0.0/4", 32) if family == 4 else ("ff00::/8", 128)
    net = str(ip_network(subnet, strict=False))
    chains, rules = [], []
    for pod, address in pods:
        cid = container_id(lab, pod)
        chain = "CNI-" + hashlib.sha512(f"bridge{cid}".encode()).hexdigest()[:24]
        comment = f'"name: \\"bridge\\" id: \\"{cid}\\""'
        chains.append(f":{chain} - [0:0]")
        rules += [f"-A {chain} -d {net} -m comment --comment {comment} -j ACCEPT",
                  f"-A {chain} ! -d {multicast} -m comment --comment {comment} -j MASQUERADE",
                  f"-A POSTROUTING -s {address}/{host} -m comment --comment {comment} "
                  f"-j {chain}"]
    return "\n".join(["*nat", *chains, *rules, "COMMIT", ""])
