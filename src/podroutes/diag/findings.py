"""The value every doctor check returns: a :class:`Finding`, and the context checks read.

Pure. A finding names the host, what is wrong, why it breaks pod traffic, and the exact
commands that fix it, with a :class:`FixClass` saying whether ``doctor --fix`` (or
``--fix-firewall``) may run them. Built by :mod:`podroutes.diag.checks` and
:mod:`podroutes.diag.firewall_checks`; printed by the CLI; executed by :mod:`podroutes.diag.wire`.
"""

from __future__ import annotations

import enum
import shlex
from dataclasses import dataclass

from podroutes.core.addresses import Interface
from podroutes.core.model import Family, Host, Inventory, PlannedRoute
from podroutes.diag.facts import HostFacts


class FindingKind(enum.StrEnum):
    """Every known cause of "pods cannot reach each other", in the order doctor reports."""

    FORWARDING_OFF = "forwarding-off"
    ACCEPT_RA = "accept-ra"
    IPTABLES_FORWARD_DROP = "iptables-forward-drop"
    NFT_FORWARD_DROP = "nft-forward-drop"
    BR_NETFILTER = "br-netfilter"
    POD_TO_POD_NAT = "pod-to-pod-nat"
    RP_FILTER = "rp-filter"
    ROUTE_MISSING = "route-missing"
    ROUTE_WRONG_GATEWAY = "route-wrong-gateway"
    ROUTE_STALE = "route-stale"
    ROUTE_SHADOWED = "route-shadowed"
    ROUTE_OVERRIDDEN = "route-overridden"
    ROUTE_POLICY = "route-policy-table"
    ROUTE_DROPPED = "route-dropped"
    ROUTE_ELSEWHERE = "route-elsewhere"
    OWN_CIDR_CLASH = "own-cidr-clash"
    OWN_CIDR_OFF_BRIDGE = "own-cidr-off-bridge"
    BRIDGE_MISSING = "bridge-missing"
    BRIDGE_DOWN = "bridge-down"
    BRIDGE_ADDRESS = "bridge-address"
    GATEWAY_UNREACHABLE = "gateway-unreachable"
    GATEWAY_NOT_ON_LINK = "gateway-not-on-link"
    UNSTABLE_NODE_ADDRESS = "unstable-node-address"
    NETWORKD_FOREIGN_ROUTES = "networkd-foreign-routes"
    CNI_MISSING = "cni-missing"
    CNI_INVALID = "cni-invalid"
    CNI_SUBNET_MISMATCH = "cni-subnet-mismatch"
    CNI_BRIDGE_MISMATCH = "cni-bridge-mismatch"
    CNI_NOT_GATEWAY = "cni-not-gateway"
    MTU_MISMATCH = "mtu-mismatch"
    PROBE_UNANSWERED = "probe-unanswered"
    PATH_UNCERTAIN = "path-uncertain"
    PATH_MODEL_DISAGREES = "path-model-disagrees"


class FixClass(enum.StrEnum):
    """Who may run a finding's fix."""

    SAFE = "safe"  # doctor --fix
    FIREWALL = "firewall"  # doctor --fix-firewall (adds narrow accept rules, never policy)
    MANUAL = "manual"  # printed only: a person decides


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    host: str
    what: str
    why: str
    #: The commands that fix it, exactly as a person would type them (shell syntax).
    fix: tuple[str, ...]
    fix_class: FixClass = FixClass.MANUAL
    #: The same commands as argv lists, for SAFE and FIREWALL fixes only; built from
    #: ``ipaddress`` values, integers and validated names, never from raw host text.
    argv: tuple[tuple[str, ...], ...] = ()
    #: What a person must do beyond (or instead of) the commands.
    note: str = ""

    @property
    def automatic(self) -> bool:
        return bool(self.argv) and self.fix_class is not FixClass.MANUAL


def runnable(kind: FindingKind, host: str, what: str, why: str,
             argvs: list[tuple[str, ...]], fix_class: FixClass) -> Finding:
    """A finding whose fix doctor can run: the shown commands are exactly the argvs."""
    return Finding(kind, host, what, why, tuple(shlex.join(a) for a in argvs), fix_class,
                   tuple(argvs))


@dataclass(frozen=True, slots=True)
class HostContext:
    """What every per-host check reads: the host, its facts, its share of the plan."""

    host: Host
    facts: HostFacts
    planned: tuple[PlannedRoute, ...]
    inventory: Inventory
    protocol: int
    #: The pods' bridge doctor checks: ``--bridge``, else the CNI configuration's, else cni0.
    bridge: str = "cni0"
    #: What ``--bridge`` said (None: not given, the bridge comes from the CNI config).
    bridge_option: str | None = None

    def node_interface(self, family: Family) -> Interface | None:
        """The interface holding the host's inventory address of ``family``."""
        address = self.host.address(family)
        return self.facts.interface_with(address) if address is not None else None

    def host_of(self, address: object) -> Host | None:
        return next((h for h in self.inventory if address in h.addresses), None)
