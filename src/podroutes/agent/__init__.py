"""The in-cluster agent: keep this node's pod routes converged, by itself, for as long as it runs.

One agent per node (a DaemonSet, or a systemd service in inventory-file mode). Desired
state comes from Kubernetes Node objects (:mod:`.kube`) or a watched inventory file
(:mod:`.filesource`); convergence reuses :func:`podroutes.remote.engine.run_hosts` on this
machine's own table (:mod:`.reconciler`); a netlink monitor (:mod:`.netlink`) wakes it
when a route or link changes; :mod:`.runner` ties them together.

Pure modules (no I/O, listed in the import-linter pure-core contract): :mod:`.nodes`
(Node object → host), :mod:`.triggers` (which event needs a reconcile, pacing),
:mod:`.convergence` (deletes before adds, tallies) and :mod:`.conditions` (the Node
condition and Events to send). The CLI command lives in :mod:`podroutes.cli.agent`.
"""
