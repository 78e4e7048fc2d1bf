"""The Kubernetes-the-Hard-Way lab in network namespaces: ``podroutes lab`` and the test bed.

Pure (no I/O, listed in the import-linter pure-module contract): :mod:`.topology` (the
addressing plan as values, and the ``machines.txt`` / YAML inventories that describe it),
:mod:`.seed` (each network manager's base configuration for a lab machine) and
:mod:`.icmp` (the smoke matrix's ICMP packets, built and read). I/O, as root:
:mod:`.netns` (builds and removes the namespaces, links, bridges, pods and one ``sshd``
per machine), :mod:`.machine` (each machine's own mount namespace: its ``/etc``, ``/run``
and network manager), :mod:`.commands` (runs one program to completion, stops a daemon
it started) and :mod:`.smoke` (every pod pings every other pod). Independent of the other
features; the CLI command lives in :mod:`podroutes.cli.lab`.
"""
