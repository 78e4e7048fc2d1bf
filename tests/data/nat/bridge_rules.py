"""The nat rules the CNI bridge plugin writes for two pods with ipMasq (see README.md):
``ipt`` prints iptables-restore input, ``nft`` nft -f input. Used by capture.sh."""

import hashlib
import sys

IDS = ["7f3c0b6a5d1e4c2b9a8f7e6d5c4b3a2918f7e6d5c4b3a2910f1e2d3c4b5a6978",
       "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"]
PODS = ["10.200.0.2", "10.200.0.3"]
SUBNET = "10.200.0.0/24"
TABLE = "inet cni_plugins_masquerade"


def sha(text: str, length: int) -> str:
    return hashlib.sha512(text.encode()).hexdigest()[:length]


def iptables() -> list[str]:
    """pkg/ip/ipmasq_iptables_linux.go: FormatChainName, FormatComment, three rules."""
    chains = ["CNI-" + sha("bridge" + i, 24) for i in IDS]
    out = ["*nat", *(f":{c} - [0:0]" for c in chains)]
    for chain, cid, pod in zip(chains, IDS, PODS, strict=True):
        com = f'"name: \\"bridge\\" id: \\"{cid}\\""'
        out += [f"-A {chain} -d {SUBNET} -m comment --comment {com} -j ACCEPT",
                f"-A {chain} ! -d 224.0.0.0/4 -m comment --comment {com} -j MASQUERADE",
                f"-A POSTROUTING -s {pod}/32 -m comment --comment {com} -j {chain}"]
    return [*out, "COMMIT"]


def nftables() -> list[str]:
    """pkg/ip/ipmasq_nftables_linux.go: the table, two chains, a rule per pod."""
    lines = [
        f'add table {TABLE} {{ comment "Masquerading for plugins from '
        f'github.com/containernetworking/plugins" ; }}',
        f'add chain {TABLE} masq_checks {{ comment "Masquerade traffic from certain IPs to '
        f'any (non-multicast) IP outside their subnet" ; }}',
        f"add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat ; }}",
        f"flush chain {TABLE} postrouting",
        f"add rule {TABLE} postrouting ip daddr == 224.0.0.0/4  return",
        f"add rule {TABLE} postrouting ip6 daddr == ff00::/8  return",
        f"add rule {TABLE} postrouting goto masq_checks"]
    for cid, pod in zip(IDS, PODS, strict=True):
        comment = f"{sha('bridge', 16)}-{sha('eth0:' + cid, 16)}, net: bridge, if: eth0, " \
                  f"id: {cid}"[:128]
        lines.append(f"add rule {TABLE} masq_checks ip saddr == {pod} ip daddr != {SUBNET} "
                     f'masquerade comment "{comment}"')
    return lines


if __name__ == "__main__":
    print("\n".join(iptables() if sys.argv[1] == "ipt" else nftables()))
