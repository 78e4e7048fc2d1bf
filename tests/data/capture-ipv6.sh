#!/bin/sh
# Capture real `ip -j -6 route` and `ip -j addr` output for podroutes' parser tests.
# Usage (root): sh tests/data/capture-ipv6.sh [OUTDIR]   (default: tests/data)
# Builds two throwaway namespaces named pr7cap<random>-a/-b joined by a veth pair, adds
# the routes and addresses listed below inside them only, captures, and deletes both
# namespaces by name on exit (even on failure). Nothing touches the root namespace.
set -eu
out=${1:-$(dirname "$0")}
prefix=pr7cap$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
a=$prefix-a b=$prefix-b
trap 'ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true' EXIT INT TERM
ip netns add "$a"
ip netns add "$b"
ip -n "$a" link set lo up
ip -n "$b" link set lo up
ip -n "$a" link add eth0 type veth peer name eth0 netns "$b"
ip -n "$a" link add eth1 type veth peer name eth2     # eth2 stays down: eth1 has no carrier
ip -n "$a" link add eth3 type veth peer name eth4     # both up: one fe80::/64 route each
# temporary (privacy) addresses are made by the kernel from a mngtmpaddr template
ip netns exec "$a" sh -c 'echo 2 > /proc/sys/net/ipv6/conf/eth0/use_tempaddr'
ip -n "$a" link set eth0 up
ip -n "$b" link set eth0 up
ip -n "$a" link set eth1 up
ip -n "$a" link set eth3 up
ip -n "$a" link set eth4 up

# --- routes (ns a) ---
ip -n "$a" addr add fd00:10::100/64 dev eth0 nodad
ip -n "$a" -6 route add fd00:200:1::/64 via fd00:10::101 proto 147
ip -n "$a" -6 route add fd00:200:2::/64 via fd00:10::102 pref high
ip -n "$a" -6 route add fd00:200:3::/64 via fd00:10::103 expires 300
ip -n "$a" -6 route add fd00:200:4::/64 via fe80::1 dev eth0
ip -n "$a" -6 route add fd00:300::/64 nexthop via fd00:10::101 dev eth0 \
    nexthop via fd00:10::102 dev eth0
ip -n "$a" -6 route add fd00:301::/64 proto 147 nexthop via fe80::1 dev eth0 weight 2 \
    nexthop via fe80::2 dev eth1
ip -n "$a" -6 route add unreachable fd00:666::/48
ip -n "$a" -6 route add default via fe80::1 dev eth0 proto ra expires 1800 pref low

# --- addresses (ns a, eth0 and eth1) ---
ip -n "$a" addr add 192.168.10.100/24 dev eth0
ip -n "$a" addr add 192.168.10.200/24 dev eth0                      # secondary
ip -n "$a" addr add 2001:db8:10::1234/64 dev eth0 mngtmpaddr noprefixroute
ip -n "$a" addr add 2001:db8:10::5/64 dev eth0 preferred_lft 0        # deprecated
ip -n "$a" addr add 2001:db8:10::77/64 dev eth0 valid_lft 3600 preferred_lft 1800
ip -n "$b" addr add fd00:10::99/64 dev eth0 nodad
ip -n "$a" addr add fd00:10::99/64 dev eth0                           # DAD fails
ip -n "$a" addr add fd00:20::1/64 dev eth1                            # stays tentative
sleep 3    # DAD (1 s) and the temporary address

ip -n "$a" -j -6 route show table main > "$out/ip-j-route-v6-extra.json"
ip -n "$a" -j addr show > "$out/ip-j-addr.json"
echo >> "$out/ip-j-route-v6-extra.json"
echo >> "$out/ip-j-addr.json"
ip -n "$a" -6 route show table main
ip -n "$a" addr show
