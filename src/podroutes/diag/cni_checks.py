"""Doctor's CNI checks: does the node's CNI configuration agree with the plan?

Pure. Reads the :class:`~podroutes.diag.cni.CniConfig` in a host's facts (the file the
container runtime uses) and compares its bridge plugin with the inventory: the IPAM
subnet must be the node's pod CIDR (and no other node's), the bridge must be the one
doctor checks, and the bridge must be the pods' gateway. Only hosts with a pod CIDR are
judged (KTHW's server runs no pods). A configuration without a bridge plugin (flannel's
delegating conflist, kindnet's ptp) is only checked for being there and readable. Every
fix here is printed, never run: a CNI file is the cluster operator's. Called by
:mod:`podroutes.diag.checks`.
"""

from __future__ import annotations

import json
import shlex

from podroutes.core.model import Family, IPNetwork
from podroutes.diag.cni import CNI_DIR, Bridge, CniConfig
from podroutes.diag.findings import Finding, FindingKind, HostContext


def kthw_bridge_conf(ctx: HostContext) -> str:
    """Kubernetes the Hard Way's ``configs/10-bridge.conf`` for this host's pod CIDR(s)."""
    conf = {"cniVersion": "1.0.0", "name": "bridge", "type": "bridge", "bridge": ctx.bridge,
            "isGateway": True, "ipMasq": True,
            "ipam": {"type": "host-local",
                     "ranges": [[{"subnet": str(c)}] for c in ctx.host.pod_cidrs],
                     "routes": [{"dst": "0.0.0.0/0" if c.version == 4 else "::/0"}
                                for c in ctx.host.pod_cidrs]}}
    return json.dumps(conf, separators=(", ", ": "))


def check_cni(ctx: HostContext) -> list[Finding]:
    cni = ctx.facts.cni
    if cni is None or not ctx.host.pod_cidrs:
        return []
    host = ctx.host.name
    if cni.file is None:
        where = (f"{CNI_DIR} has no *.conf, *.conflist or *.json file"
                 + (f" (it holds {', '.join(cni.others[:3])})" if cni.others else "")
                 if cni.directory else f"there is no {CNI_DIR}")
        return [Finding(
            FindingKind.CNI_MISSING, host, f"no CNI configuration: {where}",
            f"the container runtime cannot set up any pod's network on {host} (\"cni plugin "
            f"not initialized\"): the node stays NotReady and no pod gets an address",
            (f"mkdir -p {CNI_DIR}",
             f"printf '%s\\n' {shlex.quote(kthw_bridge_conf(ctx))} > {CNI_DIR}/10-bridge.conf"),
            note="this is Kubernetes the Hard Way's configs/10-bridge.conf with this node's "
                 "pod CIDR; see pod-to-pod-nat about its ipMasq")]
    if cni.problem is not None:
        return [Finding(
            FindingKind.CNI_INVALID, host, f"{cni.path} cannot be used: {cni.problem}",
            f"the container runtime uses the first file of {CNI_DIR} in lexical order and "
            f"fails to set up pod networks with it: pods on {host} do not start",
            (f"$EDITOR {cni.path}",))]
    if cni.bridge is None:
        return []  # flannel delegates, kindnet uses ptp: not a bridge to compare
    return [*_subnets(ctx, cni, cni.bridge), *_bridge_name(ctx, cni, cni.bridge),
            *_gateway(ctx, cni, cni.bridge)]


def _subnets(ctx: HostContext, cni: CniConfig, bridge: Bridge) -> list[Finding]:
    host, path = ctx.host.name, cni.path
    out: list[Finding] = []
    if not bridge.subnets and bridge.ipam != "host-local":
        return out  # another IPAM (dhcp, static, ...): nothing to compare
    for family in Family:
        own = ctx.host.pod_cidr(family)
        ranges = [s for s in bridge.subnets if Family.of(s) is family]
        if own is None:
            continue
        others = [(h.name, c) for h in ctx.inventory if h.name != host
                  if (c := h.pod_cidr(family)) is not None]
        wrong = [s for s in ranges if s != own]
        if ranges and not wrong:
            continue
        covered = [f"{name}'s {c}" for s in ranges for name, c in others if s.overlaps(c)]
        hands = ", ".join(str(s) for s in ranges) or f"no IPv{family.value} addresses"
        what = (f"{path} hands out {hands}, but {host}'s pod CIDR is {own}"
                + (f"; it covers {', '.join(covered[:3])}" if covered else ""))
        why = (f"{host}'s pods get addresses that no other node routes to {host} (every "
               f"route for {own} leads there, none for {hands}): routes, forwarding and "
               f"firewall all look right and the pods on {host} are unreachable from other "
               f"nodes" + (", and their addresses clash with the pods of "
                           + ", ".join(name for name, c in others
                                       if any(s.overlaps(c) for s in ranges))
                           if covered else ""))
        out.append(Finding(
            FindingKind.CNI_SUBNET_MISMATCH, host, what, why,
            tuple(f"sed -i {shlex.quote(f's|{s}|{own}|g')} {path}" for s in wrong[:1])
            or (f"$EDITOR {path}",),
            note=f"then recreate {host}'s pods (they keep the addresses they were given); "
                 f"KTHW substitutes SUBNET from machines.txt with sed: check that line"))
    return out


def _bridge_name(ctx: HostContext, cni: CniConfig, bridge: Bridge) -> list[Finding]:
    if ctx.bridge_option is None or ctx.bridge_option == bridge.name:
        return []
    how = "" if bridge.named else " (the bridge plugin's default: the file names none)"
    return [Finding(
        FindingKind.CNI_BRIDGE_MISMATCH, ctx.host.name,
        f"doctor checks --bridge {ctx.bridge_option}, but {cni.path} puts pods on "
        f"{bridge.name}{how}",
        f"the pods of {ctx.host.name} are on {bridge.name}: the bridge checks and verdicts "
        f"about {ctx.bridge_option} say nothing about them",
        (f"podroutes doctor --bridge {bridge.name} ...",),
        note="or leave --bridge out: doctor then checks the CNI configuration's bridge")]


def _gateway(ctx: HostContext, cni: CniConfig, bridge: Bridge) -> list[Finding]:
    if bridge.is_gateway:
        return []
    firsts = ", ".join(str(c.network_address + 1) for c in ctx.host.pod_cidrs)
    return [Finding(
        FindingKind.CNI_NOT_GATEWAY, ctx.host.name,
        f"{cni.path} does not set \"isGateway\": true",
        f"the bridge plugin then gives {bridge.name} no address ({firsts}) and the pods' "
        f"default route no gateway on it: pods on {ctx.host.name} reach nothing beyond "
        f"their bridge",
        (f"$EDITOR {cni.path}  # \"isGateway\": true",))]


def cni_subnets(ctx: HostContext) -> tuple[IPNetwork, ...]:
    """The subnets the host's CNI bridge plugin hands out (empty when unknown)."""
    cni = ctx.facts.cni
    return cni.bridge.subnets if cni is not None and cni.bridge is not None else ()
