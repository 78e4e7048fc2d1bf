"""networkd's [Match]: keys are ANDed, so a key known false settles a file even when
another cannot be evaluated; tested on Debian's stock .network files and on the facts the
real facts script collects on this machine."""

from __future__ import annotations

import platform
import shutil
import subprocess
from ipaddress import ip_interface
from pathlib import Path

import pytest

from podroutes.core.addresses import Interface
from podroutes.core.errors import PersistError
from podroutes.core.model import Manager
from podroutes.core.netfiles import FILES_SCRIPT, HostFile, parse_files
from podroutes.persist.detect import detect, matched_network_file
from podroutes.persist.facts import PersistFacts
from podroutes.persist.match import ARCHITECTURES, match_network

STOCK = Path(__file__).parent.parent / "data" / "networkd-stock"
ETH0 = Interface("eth0", 2, True, 1500, addresses=(ip_interface("192.168.10.101/24"),))
LINK = {"address": "aa:bb:cc:00:00:01", "link_type": "ether"}
HOST = {"virt-vm": "kvm", "virt-container": "none", "hostname": "node-0",
        "machine-id": "0123456789abcdef0123456789abcdef", "arch": "x86_64",
        "kernel-release": "6.1.0-28-amd64",
        "kernel-cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro quiet net.ifnames=0"}
USER = "[Match]\nName=eth0\n\n[Network]\nAddress=192.168.10.101/24\n"


def stock_files(under: str = "/usr/lib/systemd/network") -> dict[str, HostFile]:
    return {f"{under}/{p.name}": HostFile(p.read_text(), 0o644)
            for p in sorted(STOCK.glob("*.network"))}


def facts(files: dict[str, HostFile], **values: str) -> PersistFacts:
    return PersistFacts(files=files, values=values, interfaces=(ETH0,), links={"eth0": LINK})


def test_the_stock_files_are_debians() -> None:
    names = sorted(p.name for p in STOCK.glob("*.network"))
    assert "80-container-host0.network" in names and len(names) >= 5
    assert "Virtualization=container" in (STOCK / "80-container-host0.network").read_text()


@pytest.mark.parametrize("host", [{}, HOST, HOST | {"virt-container": "docker"}])
def test_no_stock_file_matches_eth0_whatever_the_host(host: dict[str, str]) -> None:
    """Each stock file has a key known false for eth0 (Name=host0, Name=ve-*, Type=wlan),
    so no fact about the host is needed: before, the first unknown key refused."""
    for path, f in stock_files().items():
        assert match_network(f.content, "eth0", LINK, host) is False, path


def test_a_users_file_after_the_stock_ones_is_found() -> None:
    files = stock_files() | {"/etc/systemd/network/eth0.network": HostFile(USER, 0o644)}
    path, why = matched_network_file(facts(files), "eth0")
    assert path == "/etc/systemd/network/eth0.network"
    assert "first .network file" in why
    det = detect(facts(files, **{"networkd-running": "yes"}), "eth0")
    assert det.manager is Manager.NETWORKD and det.network_file == path


def test_stock_files_only_networkd_does_not_manage_eth0() -> None:
    with pytest.raises(PersistError, match="systemd-networkd does not manage eth0") as e:
        detect(facts(stock_files()), "eth0", Manager.NETWORKD)
    assert "cannot evaluate" not in str(e.value)
    ifupdown = stock_files() | {"/etc/network/interfaces": HostFile(
        "auto eth0\niface eth0 inet static\n  address 192.168.10.101/24\n", 0o644)}
    with pytest.raises(PersistError, match="ifupdown configures it: use --format ifupdown"):
        detect(facts(ifupdown), "eth0", Manager.NETWORKD)


@pytest.mark.parametrize(("match", "expected"), [
    # a false key settles the file even beside one podroutes cannot evaluate
    ("Name=eth1\nPath=pci-0000:00:03.0", False),
    ("Path=pci-0000:00:03.0\nName=eth1", False),
    ("Name=eth0\nPath=pci-0000:00:03.0", None),
    ("Name=eth0\nCredential=x", None),
    # lists accumulate over lines; an empty assignment resets; '!' lines exclude
    ("Name=eth1\nName=eth0", True),
    ("Name=eth0\nName=\nName=eth1", False),
    ("Name=!eth0\nName=eth*", False),
    ("Name=!eth1\nName=eth*", True),
    ("Driver=virtio_net", None),
    # conditions on the host
    ("Virtualization=vm", True), ("Virtualization=container", False),
    ("Virtualization=yes", True), ("Virtualization=no", False),
    ("Virtualization=kvm", True), ("Virtualization=!kvm", False),
    ("Virtualization=docker", False),
    ("Host=node-0", True), ("Host=node-*", True), ("Host=server", False),
    ("Host=0123456789ABCDEF0123456789ABCDEF", True),
    ("KernelCommandLine=quiet", True), ("KernelCommandLine=net.ifnames", True),
    ("KernelCommandLine=net.ifnames=1", False), ("KernelCommandLine=splash", False),
    ("KernelVersion=6.1.*", True), ("KernelVersion=5.*", False),
    ("KernelVersion=>=6.0", None),
    ("Architecture=x86-64", True), ("Architecture=arm64", False),
    ("Architecture=native", True),
    ("Firmware=device-tree", None),
    # several conditions: all must hold; triggers ('|'): one of them
    ("Host=node-0\nVirtualization=container", False),
    ("Host=|server\nHost=|node-0", True),
    ("Host=|server\nHost=|worker", False),
    ("Host=|server\nFirmware=|device-tree", None),
])
def test_match_keys_are_anded_like_networkd(match: str, expected: bool | None) -> None:
    text = f"[Match]\n{match}\n\n[Network]\nDHCP=yes\n"
    assert match_network(text, "eth0", LINK, HOST) is expected


def test_container_inside_a_vm_is_a_container() -> None:
    nested = HOST | {"virt-container": "docker"}
    host0 = (STOCK / "80-container-host0.network").read_text()
    assert match_network(host0, "host0", LINK, nested) is True
    assert match_network(host0, "host0", LINK, HOST) is False  # a VM, not a container
    assert match_network(host0, "host0", LINK, {}) is None  # nothing known: not guessed


def test_driver_from_the_facts() -> None:
    text = (STOCK / "80-container-ve.network").read_text()
    assert match_network(text, "ve-pod", LINK | {"driver": "veth"}, HOST) is True
    assert match_network(text, "ve-pod", LINK | {"driver": "e1000"}, HOST) is False
    assert match_network(text, "ve-pod", LINK, HOST) is None


def test_the_facts_script_reports_what_match_conditions_test(tmp_path: Path) -> None:
    """The real script on this machine: the values agree with the real tools, and
    Virtualization=/Architecture= are judged from them."""
    done = subprocess.run(["sh", "-c", FILES_SCRIPT, "sh", str(tmp_path), "match"],
                          capture_output=True, text=True, check=True)
    _, values = parse_files(done.stdout)
    assert values["arch"] == platform.machine()
    assert values["kernel-release"] == platform.release()
    assert values["hostname"] == platform.node()
    assert values["kernel-cmdline"] == Path("/proc/cmdline").read_text().strip()
    arch = ARCHITECTURES[platform.machine()]
    assert match_network(f"[Match]\nArchitecture={arch}\n", "eth0", LINK, values) is True
    assert match_network("[Match]\nArchitecture=alpha\n", "eth0", LINK, values) is False
    if shutil.which("systemd-detect-virt"):
        container = subprocess.run(["systemd-detect-virt", "--container"],
                                   capture_output=True, text=True).stdout.strip()
        assert values["virt-container"] == container
        inside = container != "none"
        assert match_network("[Match]\nVirtualization=container\n", "eth0", LINK,
                             values) is inside


def test_without_match_the_script_reads_no_host_facts(tmp_path: Path) -> None:
    """doctor runs the same script without ``match``: none of those processes."""
    done = subprocess.run(["sh", "-c", FILES_SCRIPT, "sh", str(tmp_path)],
                          capture_output=True, text=True, check=True)
    _, values = parse_files(done.stdout)
    assert not {"arch", "hostname", "virt-vm", "kernel-cmdline"} & set(values)
    assert not any(k.startswith("driver-") for k in values)
