"""The Kubernetes-the-Hard-Way lab in network namespaces: topology, seed files, machines, smoke."""
