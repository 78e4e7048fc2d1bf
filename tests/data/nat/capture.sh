#!/usr/bin/env bash
# Recaptures the nat fixtures in this directory (see README.md) in two throwaway network
# namespaces (root; deleted on exit; nothing outside them is touched).
set -euo pipefail
cd "$(dirname "$0")"
A="zznat$$-a"; B="zznat$$-b"
trap 'ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null' EXIT
ip netns add "$A"; ip netns add "$B"
python3 bridge_rules.py ipt | ip netns exec "$A" iptables-restore -n
ip netns exec "$A" iptables-save -t nat > ipt-nat-bridge.txt
ip netns exec "$A" nft -j list ruleset > nft-iptables-nft-bridge.json
ip netns exec "$A" iptables -t nat -I POSTROUTING 1 -s 10.200.0.0/24 \
  -d 10.200.1.0/24,10.200.2.0/24 -m comment --comment podroutes -j RETURN
ip netns exec "$A" iptables-save -t nat > ipt-nat-bridge-fixed.txt
python3 bridge_rules.py nft | ip netns exec "$B" nft -f -
ip netns exec "$B" nft -j list ruleset > nft-bridge-plugin.json
ip netns exec "$B" nft insert rule inet cni_plugins_masquerade masq_checks \
  ip saddr 10.200.0.0/24 ip daddr '{ 10.200.1.0/24, 10.200.2.0/24 }' return comment podroutes
ip netns exec "$B" nft -j list ruleset > nft-bridge-plugin-fixed.json
