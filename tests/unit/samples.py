"""Inventories shared by unit tests: the Kubernetes the Hard Way cluster (server, node-0,
node-1), and the same dual-stack."""

MACHINES = """\
192.168.10.100 server.kubernetes.local server
192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24
192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24
"""
DUAL = """hosts:
  - {name: server, ipv4: 192.168.10.100, ipv6: 'fd00:10::100'}
  - {name: node-0, ipv4: 192.168.10.101, ipv6: 'fd00:10::101',
     pod_cidrs: [10.200.0.0/24, 'fd00:200::/64']}
  - {name: node-1, ipv4: 192.168.10.102, ipv6: 'fd00:10::102',
     pod_cidrs: [10.200.1.0/24, 'fd00:200:1::/64']}
"""
