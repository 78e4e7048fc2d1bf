"""Doctor's fact parsers on real captured output (tests/data/doctor/capture.sh) and on
systemd-networkd files as systemd and netplan write them."""

from __future__ import annotations

import subprocess
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

from podroutes.core.addresses import parse_interfaces
from podroutes.core.model import Family
from podroutes.core.netfiles import FILES_SCRIPT
from podroutes.diag.facts import (
    FACT_COMMANDS,
    FactKind,
    Output,
    parse_facts,
    parse_neigh,
    parse_networkd,
    parse_sysctls,
)

DATA = Path(__file__).parent.parent / "data" / "doctor"


def test_sysctl_capture() -> None:
    values = parse_sysctls((DATA / "sysctl.txt").read_text())
    assert values["net.ipv4.ip_forward"] == 1
    assert values["net.ipv4.conf.eth0.rp_filter"] == 2
    assert values["net.ipv6.conf.all.forwarding"] == 0
    assert values["net.bridge.bridge-nf-call-iptables"] == 1


def test_sysctl_names_of_vlan_interfaces_keep_their_dots() -> None:
    assert parse_sysctls("net.ipv4.conf.eth0/100.rp_filter = 1\ngarbage\n") == {
        "net.ipv4.conf.eth0.100.rp_filter": 1}


def test_effective_rp_filter_is_the_max_of_all_and_the_interface() -> None:
    facts = parse_facts({FactKind.SYSCTL: Output(0, (DATA / "sysctl.txt").read_text())})
    assert facts.rp_filter("eth0") == 2 and facts.rp_filter("cni0") == 0
    assert facts.br_netfilter
    strict = parse_facts({FactKind.SYSCTL: Output(0, "net.ipv4.conf.all.rp_filter = 1\n"
                                                      "net.ipv4.conf.eth0.rp_filter = 0\n")})
    assert strict.rp_filter("eth0") == 1 and not strict.br_netfilter


def test_addr_capture() -> None:
    links = {i.name: i for i in parse_interfaces((DATA / "ip-j-addr.json").read_text())}
    assert set(links) == {"lo", "eth0", "cni0", "veth0", "pod0"}
    assert links["eth0"].addresses[0] == ip_interface("192.168.10.101/24")
    assert links["eth0"].mtu == 1500 and links["eth0"].up
    assert ip_interface("10.200.0.1/24") in links["cni0"].addresses
    assert links["veth0"].master == "cni0"
    assert not links["pod0"].up
    assert links["eth0"].link_type == "ether" and links["lo"].link_type == "loopback"
    assert links["eth0"].mac is not None and links["eth0"].mac == links["eth0"].mac.lower()
    assert [a.address for a in links["cni0"].details] == [a.ip for a in links["cni0"].addresses]


def test_neigh_capture() -> None:
    entries = {str(n.address): n for n in parse_neigh((DATA / "ip-j-neigh.json").read_text())}
    assert entries["192.168.10.103"].states == ("FAILED",)
    assert entries["192.168.10.102"].states == ("REACHABLE",)
    assert entries["192.168.10.102"].dev == "eth0"


NETWORKD_FILES = {
    "etc/systemd/networkd.conf": "[Network]\n#ManageForeignRoutes=yes\n",
    "run/systemd/netif/links/2": "# This is private data. Do not parse.\nADMIN_STATE=configured\n"
                                 "OPER_STATE=routable\n"
                                 "NETWORK_FILE=/run/systemd/network/10-netplan-eth0.network\n",
    "run/systemd/netif/links/1": "ADMIN_STATE=unmanaged\n",
    "run/systemd/network/10-netplan-eth0.network": (
        "[Match]\nName=eth0\n\n[Network]\nAddress=192.168.10.101/24\n\n"
        "[Route]\nDestination=10.200.1.0/24\nGateway=192.168.10.102\n\n"
        "[Route]\nGateway=192.168.10.1\nDestination=0.0.0.0/0\n"),
}


def collect(root: Path, files: dict[str, str], running: bool) -> str:
    """The shared collector run for real over a tree under ``root``; whether networkd
    runs is the one value this machine cannot show (no networkd in this namespace)."""
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    done = subprocess.run(["sh", "-c", FILES_SCRIPT, "sh", str(root)], capture_output=True,
                          text=True, check=True)
    assert "\x1eV networkd-running no" in done.stdout
    return done.stdout.replace("\x1eV networkd-running no",
                               f"\x1eV networkd-running {'yes' if running else 'no'}")


def test_networkd_state_routes_and_default_manage_foreign_routes(tmp_path: Path) -> None:
    nd = parse_networkd(collect(tmp_path, NETWORKD_FILES, running=True))
    assert nd.active and nd.manage_foreign_routes  # commented out: the default, yes
    assert nd.managed == {2: "/run/systemd/network/10-netplan-eth0.network"}
    assert nd.persisted["/run/systemd/network/10-netplan-eth0.network"] == (
        (ip_network("10.200.1.0/24"), ip_address("192.168.10.102")),
        (ip_network("0.0.0.0/0"), ip_address("192.168.10.1")))


def test_networkd_drop_in_wins_over_the_main_file(tmp_path: Path) -> None:
    files = {**NETWORKD_FILES, "etc/systemd/networkd.conf.d/50-podroutes.conf":
             "[Network]\nManageForeignRoutes=no\n"}
    assert not parse_networkd(collect(tmp_path, files, running=True)).manage_foreign_routes
    assert not parse_networkd(collect(tmp_path / "idle", {}, running=False)).active


def test_parse_facts_records_what_could_not_be_read() -> None:
    facts = parse_facts({
        FactKind.NFT: Output(127, "", "sh: 1: nft: not found\n"),
        FactKind.IPTABLES4: Output(0, (DATA / "iptables-save-docker.txt").read_text()),
        FactKind.ROUTE4: Output(0, '[{"dst":"10.200.1.0/24","gateway":"192.168.10.102",'
                                   '"dev":"eth0","protocol":"147","flags":[]}]'),
        FactKind.ROUTE6: Output(1, "", "RTNETLINK answers: Operation not supported\n"),
    })
    assert facts.nft is None
    assert facts.unreadable[FactKind.NFT] == "sh: 1: nft: not found"
    assert FactKind.ROUTE6 in facts.unreadable
    assert Family.V4 in facts.iptables and Family.V6 not in facts.iptables
    assert [(str(r.dst), r.protocol) for r in facts.routes] == [("10.200.1.0/24", 147)]


def test_every_fact_command_is_a_plain_argv() -> None:
    assert set(FACT_COMMANDS) == set(FactKind)
    for argv in FACT_COMMANDS.values():
        assert all(isinstance(word, str) and word for word in argv)
    # the only script is a constant: nothing of the inventory or the host is in it
    assert FACT_COMMANDS[FactKind.NETWORKD][:2] == ("sh", "-c")


def test_networkd_enabled_is_read_from_the_unit_symlinks(tmp_path: Path) -> None:
    """What `systemctl is-enabled systemd-networkd` answers, read from the symlinks that
    `systemctl enable` makes (no systemctl process per host): disabled, enabled, runtime,
    masked; and on this machine the same as systemctl itself."""
    import shutil

    from podroutes.core.netfiles import networkd_in_use, parse_files

    def enabled(root: Path) -> str:
        done = subprocess.run(["sh", "-c", FILES_SCRIPT, "sh", str(root)],
                              capture_output=True, text=True, check=True)
        values = parse_files(done.stdout)[1]
        return values["networkd-enabled"]

    assert enabled(tmp_path) == "disabled"
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "systemd-networkd.service").symlink_to(
        "/lib/systemd/system/systemd-networkd.service")  # dangling here: still enabled
    assert enabled(tmp_path) == "enabled"
    assert networkd_in_use({"networkd-enabled": "enabled"})
    (tmp_path / "etc/systemd/system/systemd-networkd.service").symlink_to("/dev/null")
    assert enabled(tmp_path) == "masked"
    assert not networkd_in_use({"networkd-enabled": "masked"})
    runtime = tmp_path / "r/run/systemd/system/sockets.target.wants"
    runtime.mkdir(parents=True)
    (runtime / "systemd-networkd.service").write_text("")
    assert enabled(tmp_path / "r") == "enabled-runtime"
    if shutil.which("systemctl"):
        real = subprocess.run(["systemctl", "is-enabled", "systemd-networkd"],
                              capture_output=True, text=True).stdout.strip()
        assert enabled(Path("/")) == real
