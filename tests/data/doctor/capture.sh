#!/usr/bin/env bash
# Recaptures the doctor fixtures in this directory from real tools (iproute2, iptables-nft,
# nftables, procps) in a throwaway network namespace pair (run as root; the namespaces
# are deleted on exit; nothing outside them is touched).
set -euo pipefail
cd "$(dirname "$0")"
P="zzcap$$"; A="$P-a"; B="$P-b"
trap 'ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null' EXIT
ip netns add "$A"; ip netns add "$B"
inside() { ip netns exec "$A" "$@"; }
ip -n "$A" link add eth0 type veth peer name eth0 netns "$B"
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip -n "$A" addr add 192.168.10.101/24 dev eth0; ip -n "$A" link set eth0 up
ip -n "$B" addr add 192.168.10.102/24 dev eth0; ip -n "$B" link set eth0 up
ip -n "$A" link add cni0 type bridge; ip -n "$A" addr add 10.200.0.1/24 dev cni0
ip -n "$A" link set cni0 up
ip -n "$A" link add veth0 type veth peer name pod0; ip -n "$A" link set veth0 master cni0
ip -n "$A" link set veth0 up
ip -n "$A" route add 10.200.1.0/24 via 192.168.10.102 proto 147
inside sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.eth0.rp_filter=2
inside ping -c 1 -W 1 192.168.10.102 >/dev/null
ip -n "$A" neigh add 192.168.10.103 dev eth0 nud failed
ip -j -n "$A" addr show > ip-j-addr.json
ip -j -n "$A" neigh show > ip-j-neigh.json
inside sysctl -e -a -r '^net\.(ipv4\.ip_forward|ipv4\.conf\.[^.]+\.rp_filter|ipv6\.conf\.all\.forwarding|bridge\.bridge-nf-call-ip6?tables)$' > sysctl.txt
# Docker's FORWARD chain (as Docker 24 writes it), plus kube-proxy's jump.
inside iptables -N DOCKER; inside iptables -N DOCKER-ISOLATION-STAGE-1
inside iptables -N DOCKER-ISOLATION-STAGE-2; inside iptables -N DOCKER-USER; inside iptables -N KUBE-FORWARD
inside iptables -P FORWARD DROP
inside iptables -A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
inside iptables -A FORWARD -j DOCKER-USER
inside iptables -A FORWARD -j DOCKER-ISOLATION-STAGE-1
inside iptables -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
inside iptables -A FORWARD -o docker0 -j DOCKER
inside iptables -A FORWARD -i docker0 ! -o docker0 -j ACCEPT
inside iptables -A FORWARD -i docker0 -o docker0 -j ACCEPT
inside iptables -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
inside iptables -A DOCKER-ISOLATION-STAGE-1 -j RETURN
inside iptables -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
inside iptables -A DOCKER-ISOLATION-STAGE-2 -j RETURN
inside iptables -A DOCKER-USER -j RETURN
inside iptables -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
inside iptables -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
inside iptables-save -t filter > iptables-save-docker.txt
inside ip6tables-save -t filter > ip6tables-save-empty.txt
inside nft -f - <<'NFT'
table inet podtest {
  chain fw_chain {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "cni0" oifname "eth0" accept
    ip saddr 10.9.0.0/24 counter accept
    ip daddr { 10.9.0.0/24, 10.9.1.0/24 } accept
    ip6 daddr fd00::/64 accept
    ip daddr 10.9.0.0/16 jump sub
    iifname != "eth1" drop
    oifname { "cni0", "eth0" } accept
    ip daddr 10.9.3.0-10.9.3.255 accept
  }
  chain sub {
    ip saddr 10.0.0.0/8 return
    accept
  }
}
table bridge brt {
  chain f {
    type filter hook forward priority 0; policy accept;
  }
}
NFT
inside nft -j list ruleset > nft-ruleset.json
