"""deploy/ is what a cluster admin applies as-is: parse every manifest and check the fields
that make the agent work and keep it least-privileged."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from podroutes.cli.main import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def kind(name: str, k: str) -> dict[str, Any]:
    [doc] = [d for d in documents(name) if d["kind"] == k]
    return doc


def test_every_manifest_parses_and_the_kustomization_lists_them() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")}
    assert set(kustomization["resources"]) == files - {"kustomization.yaml"}
    for name in kustomization["resources"]:
        for doc in documents(name):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys()


def test_namespace_admits_host_network_pods() -> None:
    ns = kind("namespace.yaml", "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_rbac_grants_exactly_what_the_agent_uses() -> None:
    role = kind("rbac.yaml", "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"])
             for r in role["rules"]}
    assert rules == {(("",), ("nodes",)): ["get", "list", "watch"],
                     (("",), ("nodes/status",)): ["patch"],
                     (("",), ("events",)): ["create"]}
    binding = kind("rbac.yaml", "ClusterRoleBinding")
    account = kind("rbac.yaml", "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]


def test_daemonset_is_host_network_net_admin_only_with_probes_and_resources() -> None:
    ds = kind("daemonset.yaml", "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["serviceAccountName"] == kind("rbac.yaml", "ServiceAccount")["metadata"]["name"]
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"].keys() == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    assert f"--metrics-address=:{port}" in container["args"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= \
        ds["spec"]["template"]["metadata"]["labels"].items()


def test_daemonset_args_are_flags_podroutes_agent_accepts() -> None:
    ds = kind("daemonset.yaml", "DaemonSet")
    [container] = ds["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "agent"
    help_text = CliRunner().invoke(main, ["agent", "--help"]).output
    for arg in container["args"][1:]:
        assert arg.split("=")[0] in help_text


def test_containerfile_installs_iproute2_and_the_package() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM \S*python:3\.11-slim", text, re.MULTILINE)
    assert "iproute2" in text and "pip install --no-cache-dir ." in text
    assert 'ENTRYPOINT ["podroutes"]' in text


def test_systemd_unit_runs_file_mode_with_net_admin_only() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "podroutes-agent.service").read_text())
    service = unit["Service"]
    assert "agent --inventory /etc/podroutes/machines.txt" in service["ExecStart"]
    assert service["CapabilityBoundingSet"] == "CAP_NET_ADMIN"
    assert service["AmbientCapabilities"] == "CAP_NET_ADMIN"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert "AF_NETLINK" in service["RestrictAddressFamilies"]
    assert "PrivateNetwork" not in service  # it would hide the table the agent manages


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit() -> None:
    done = subprocess.run(["systemd-analyze", "verify",
                           str(DEPLOY / "systemd" / "podroutes-agent.service")],
                          capture_output=True, text=True, check=False)
    problems = [ln for ln in done.stderr.splitlines()
                if "is not executable" not in ln and ln.strip()]
    assert problems == []
