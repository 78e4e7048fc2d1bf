"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import kmock
import pytest
import yaml


@pytest.fixture
def kubeconfig(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> Path:
    """A kubeconfig pointing at kmock's ``kmock`` fixture, the Kubernetes API server
    test double, which then serves Nodes and Events."""
    kmock.resources["v1/nodes"] = kmock.ResourceInfo(kind="Node", namespaced=False)
    kmock.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url)}}],
        "users": [{"name": "agent", "user": {"token": "test"}}],
        "contexts": [{"name": "t", "context": {"cluster": "kmock", "user": "agent"}}]}))
    return path
