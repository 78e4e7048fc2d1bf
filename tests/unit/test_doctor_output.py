"""doctor's human output stays readable at 30 hosts: the shape first, findings grouped by
host, each explanation once, healthy hosts on one line; and its JSON form."""

from __future__ import annotations

import io

from rich.console import Console

from podroutes.cli.diag_output import doctor_json, print_doctor
from podroutes.core.model import Inventory
from podroutes.diag.facts import HostFacts
from podroutes.diag.findings import Finding, FindingKind, FixClass, runnable
from podroutes.diag.wire import DoctorReport
from podroutes.inventory import load


def thirty() -> tuple[DoctorReport, Inventory]:
    lines = ["192.168.10.100 server.kubernetes.local server"] + [
        f"192.168.10.{101 + i} node-{i}.kubernetes.local node-{i} 10.200.{i}.0/24"
        for i in range(29)]
    inventory = load("\n".join(lines) + "\n", "machines.txt")
    findings = [runnable(FindingKind.FORWARDING_OFF, f"node-{i}", "net.ipv4.ip_forward is 0",
                         "WHY-FORWARDING", [("sysctl", "-w", "net.ipv4.ip_forward=1")],
                         FixClass.SAFE) for i in range(20)]
    findings.insert(1, Finding(FindingKind.MTU_MISMATCH, "node-0", "eth0 has MTU 1400",
                               "WHY-MTU", ("ip link set dev eth0 mtu 1500",)))
    facts = {h.name: HostFacts() for h in inventory if h.name != "node-28"}
    report = DoctorReport(findings, {"node-28": "Connection refused (exit status 255)"}, facts)
    return report, inventory


def render(report: DoctorReport, inventory: Inventory) -> str:
    buffer = io.StringIO()
    print_doctor(Console(file=buffer, width=200, highlight=False), report, inventory)
    return buffer.getvalue()


def test_thirty_hosts_read_shape_first_and_explain_each_kind_once() -> None:
    report, inventory = thirty()
    text = render(report, inventory)
    lines = text.splitlines()
    assert lines[0] == ("forwarding-off on 20 hosts: node-0, node-1, node-2, node-3, node-4, "
                        "node-5, node-6, node-7, node-8, node-9, node-10, node-11 and 8 more")
    assert lines[1] == "mtu-mismatch on 1 host: node-0"
    assert text.count("WHY-FORWARDING") == 1 and text.count("WHY-MTU") == 1
    assert text.count("why: as for forwarding-off above") == 19
    assert "node-0 (192.168.10.101): 2 findings" in text
    assert text.index("node-0 (") < text.index("node-1 (") < text.index("node-19 (")
    assert "node-28: could not be checked: Connection refused (exit status 255)" in text
    assert "healthy: server, node-20, node-21, node-22, node-23, node-24, node-25, node-26, " \
        "node-27" in text
    assert lines[-1] == ("30 hosts: 21 findings on 20 hosts, 20 with an automatic fix, "
                         "1 not reachable")


def test_json_lists_every_finding_with_its_fix() -> None:
    report, inventory = thirty()
    data = doctor_json(report, inventory)
    assert data["healthy"] is False
    assert len(data["findings"]) == 21 and len(data["hosts"]) == 30
    first = data["findings"][0]
    assert first == {"host": "node-0", "kind": "forwarding-off",
                     "what": "net.ipv4.ip_forward is 0", "why": "WHY-FORWARDING",
                     "fix": ["sysctl -w net.ipv4.ip_forward=1"], "fix_class": "safe",
                     "automatic": True, "note": None}
    assert {"host": "node-28", "error": "Connection refused (exit status 255)",
            "findings": 0, "not_checked": {}} in data["hosts"]
