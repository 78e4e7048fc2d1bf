"""Pure persist logic on captured facts: which manager, which file, what is persisted,
what networkd would delete; and the facts script's output parsed back exactly."""

from __future__ import annotations

import subprocess
from ipaddress import ip_interface
from pathlib import Path

import pytest

from podroutes.core.addresses import Interface
from podroutes.core.errors import PersistError
from podroutes.core.model import Manager, Route
from podroutes.core.netfiles import FILES_SCRIPT, HostFile, parse_files
from podroutes.core.plan import plan
from podroutes.inventory import load
from podroutes.persist.detect import (
    detect,
    match_network,
    matched_network_file,
    node_interface,
    sources_file,
)
from podroutes.persist.facts import PersistFacts
from podroutes.persist.plan import PersistState, persist_state, plan_host
from podroutes.persist.render import IFUPDOWN_FILE, NETWORKD_CONF_FIX, render_ifupdown

INVENTORY = load("192.168.10.100 server.kubernetes.local server\n"
                 "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n"
                 "192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24\n",
                 "machines.txt")
NODE0 = INVENTORY.host("node-0")
ROUTES = plan(INVENTORY).routes_for(NODE0)
ETH0 = Interface("eth0", 2, True, 1500, addresses=(ip_interface("192.168.10.101/24"),))
NETWORK = "[Match]\nName=eth0\n\n[Network]\nAddress=192.168.10.101/24\n"
INTERFACES = ("source /etc/network/interfaces.d/*\nauto eth0\niface eth0 inet static\n"
              "    address 192.168.10.101/24\n")


def facts(files: dict[str, str], **values: str) -> PersistFacts:
    routes = values.pop("routes", "")
    return PersistFacts(files={p: HostFile(t, 0o644) for p, t in files.items()},
                        values=values, interfaces=(ETH0,),
                        links={"eth0": {"address": "aa:bb:cc:00:00:01", "link_type": "ether"}},
                        routes=tuple(Route(dst=r.dst, gateway=r.gateway, dev="eth0",
                                           protocol=147) for r in ROUTES) if routes else ())


def test_the_node_interface_is_the_one_holding_the_hosts_address() -> None:
    assert node_interface(facts({}), NODE0) == "eth0"
    with pytest.raises(PersistError, match="pass --interface"):
        node_interface(facts({}), INVENTORY.host("server"))
    with pytest.raises(PersistError, match="not an interface name"):
        node_interface(facts({}), NODE0, "eth0;reboot")


@pytest.mark.parametrize(("match", "expected"), [
    ("Name=eth0", True), ("Name=en* eth*", True), ("Name=!eth1 eth2", True),
    ("Name=!eth*", False), ("Name=wlan0", False), ("MACAddress=AA:BB:CC:00:00:01", True),
    ("MACAddress=aa:bb:cc:00:00:02", False), ("Type=ether", True), ("Type=wlan", False),
    ("Name=eth0\nDriver=virtio_net", None), ("Path=pci-0000:00:03.0", None), ("", True),
])
def test_match_sections_like_networkd(match: str, expected: bool | None) -> None:
    text = f"[Match]\n{match}\n\n[Network]\nDHCP=yes\n"
    assert match_network(text, "eth0", {"address": "aa:bb:cc:00:00:01",
                                        "link_type": "ether"}) is expected


def test_the_first_file_in_lexical_order_wins_and_etc_hides_usr_lib() -> None:
    f = facts({"/usr/lib/systemd/network/20-eth0.network": "[Match]\nName=eth0\n",
               "/etc/systemd/network/20-eth0.network": "[Match]\nName=eth1\n",
               "/run/systemd/network/30-any.network": "[Match]\nName=*\n",
               "/etc/systemd/network/99-eth0.network": NETWORK})
    path, why = matched_network_file(f, "eth0")
    assert path == "/run/systemd/network/30-any.network"  # /etc's 20- matches eth1 only
    assert "first .network file" in why


def test_networkds_own_state_beats_guessing() -> None:
    f = facts({"/etc/systemd/network/10-eth0.network": NETWORK,
               "/run/systemd/netif/links/2": "ADMIN_STATE=configured\n"
                                             "NETWORK_FILE=/etc/systemd/network/50-x.network\n"})
    assert matched_network_file(f, "eth0")[0] == "/etc/systemd/network/50-x.network"


def test_an_undecidable_match_is_refused_not_guessed() -> None:
    f = facts({"/etc/systemd/network/10-eth0.network": "[Match]\nDriver=e1000\n"})
    with pytest.raises(PersistError, match="cannot evaluate"):
        matched_network_file(f, "eth0")


def test_auto_detection_order() -> None:
    nm = ("[connection]\nid=eth0\nuuid=7d3c2c9e-5d0a-4d55-9a5e-6b1f2f0c1a11\n"
          "type=ethernet\ninterface-name=eth0\n")
    netplan = "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"
    every = {"/etc/NetworkManager/system-connections/eth0.nmconnection": nm,
             "/etc/netplan/01.yaml": netplan,
             "/etc/systemd/network/10-eth0.network": NETWORK,
             "/etc/network/interfaces": INTERFACES}
    running = facts(every, **{"nm-running": "yes", "networkd-running": "yes"})
    assert detect(running, "eth0").manager is Manager.NM
    no_nm = facts(every, **{"networkd-running": "yes"})
    assert detect(no_nm, "eth0").manager is Manager.NETPLAN
    del every["/etc/netplan/01.yaml"]
    assert detect(facts(every, **{"networkd-running": "yes"}), "eth0").manager is \
        Manager.NETWORKD
    assert detect(facts(every, **{"networkd-enabled": "enabled"}), "eth0").manager is \
        Manager.NETWORKD
    assert detect(facts(every), "eth0").manager is Manager.IFUPDOWN  # networkd not in use
    with pytest.raises(PersistError, match="persist --format, status --persist-format"):
        detect(facts({}), "eth0")


@pytest.mark.parametrize(("main", "sourced"), [
    ("source /etc/network/interfaces.d/*\n", True),
    ("source interfaces.d/*\n", True),
    ("source-directory /etc/network/interfaces.d\n", True),
    ("source-directory interfaces.d\n", True),
    ("source /etc/network/interfaces.d/*.cfg\n", False),
    ("# source /etc/network/interfaces.d/*\n", False),
    ("", False),
])
def test_ifupdown_must_source_the_file(main: str, sourced: bool) -> None:
    assert sources_file(main, IFUPDOWN_FILE) is sourced
    assert not sources_file("source /etc/network/interfaces.d/*\n",
                            "/etc/network/interfaces.d/.podroutes.podroutes-bak")


def test_networkd_deleting_applied_routes_is_warned_about_or_fixed() -> None:
    files = {"/etc/systemd/network/10-eth0.network": NETWORK,
             "/etc/network/interfaces": INTERFACES}
    f = facts(files, routes="yes", **{"networkd-running": "yes"})
    warned = plan_host(NODE0, ROUTES, f, 147, Manager.IFUPDOWN)
    assert any("ManageForeignRoutes=yes" in w and "10.200.1.0/24 via 192.168.10.102" in w
               for w in warned.warnings)
    fixed = plan_host(NODE0, ROUTES, f, 147, Manager.IFUPDOWN, fix_foreign_routes=True)
    assert NETWORKD_CONF_FIX in {c.path for c in fixed.changes}
    as_networkd = plan_host(NODE0, ROUTES, f, 147, Manager.NETWORKD)
    assert not any("ManageForeignRoutes" in w for w in as_networkd.warnings)  # kept now
    off = facts(files | {"/etc/systemd/networkd.conf.d/10-keep.conf":
                         "[Network]\nManageForeignRoutes=no\n"},
                routes="yes", **{"networkd-running": "yes"})
    assert not any("ManageForeignRoutes" in w
                   for w in plan_host(NODE0, ROUTES, off, 147, Manager.IFUPDOWN).warnings)


def test_persist_state_applied_persisted_both_neither_and_stale() -> None:
    server = INVENTORY.host("server")
    routes = plan(INVENTORY).routes_for(server)  # 10.200.0.0/24 and 10.200.1.0/24
    dropin = ("[Route]\nDestination=10.200.1.0/24\nGateway=192.168.10.102\nProtocol=147\n"
              "[Route]\nDestination=10.200.9.0/24\nGateway=192.168.10.109\nProtocol=147\n")
    eth0 = Interface("eth0", 2, True, 1500, addresses=(ip_interface("192.168.10.100/24"),))
    f = PersistFacts(
        files={"/etc/systemd/network/10-eth0.network": HostFile(NETWORK, 0o644),
               "/etc/systemd/network/10-eth0.network.d/60-podroutes.conf":
                   HostFile(dropin, 0o644)},
        values={"networkd-running": "yes"}, interfaces=(eth0,),
        routes=(Route(dst=routes[0].dst, gateway=routes[0].gateway, protocol=147),))
    state = persist_state(server, routes, f)
    assert state.manager is Manager.NETWORKD
    assert [(r.state, r.dst) for r in state.routes] == [
        (PersistState.APPLIED_ONLY, "10.200.0.0/24"),
        (PersistState.PERSISTED_ONLY, "10.200.1.0/24"),
        (PersistState.STALE, "10.200.9.0/24")]
    assert not state.in_sync


def test_facts_script_output_round_trips_files_exactly(tmp_path: Path) -> None:
    (tmp_path / "etc/netplan").mkdir(parents=True)
    (tmp_path / "etc/NetworkManager/system-connections").mkdir(parents=True)
    (tmp_path / "etc/netplan/50 a.yaml").write_text("no newline at the end")
    (tmp_path / "etc/netplan/50 a.yaml").chmod(0o600)
    keyfile = tmp_path / "etc/NetworkManager/system-connections/Wired connection 1.nmconnection"
    keyfile.write_text("[connection]\n\nid=x\n\n")
    (tmp_path / "etc/netplan/.60-podroutes.yaml.podroutes-bak").write_text("old")
    done = subprocess.run(["sh", "-c", FILES_SCRIPT, "sh", str(tmp_path), "match"],
                          capture_output=True, text=True, check=True)
    files, values = parse_files(done.stdout)
    assert files["/etc/netplan/50 a.yaml"] == HostFile("no newline at the end", 0o600)
    assert files["/etc/NetworkManager/system-connections/Wired connection 1.nmconnection"] == \
        HostFile("[connection]\n\nid=x\n\n", 0o644)
    assert not any("podroutes-bak" in p for p in files)
    assert set(values) >= {"networkd-running", "nm-running", "tool-ifup", "netplan-version"}


def test_rendered_lines_are_made_of_canonical_values_only() -> None:
    det = detect(facts({"/etc/network/interfaces": INTERFACES}), "eth0", Manager.IFUPDOWN)
    text = render_ifupdown(det, ROUTES, 147, "node-0")[IFUPDOWN_FILE].content
    for line in text.splitlines():
        if not line.startswith("#"):
            assert set(line) <= set("abcdefghijklmnopqrstuvwxyz0123456789 ./:-|"), line


def test_status_check_persist_counts_the_hosts_it_could_not_check() -> None:
    """No manager found on a host: it is "not checked", never counted as persisted or
    as "0 hosts not persisted"; the advice names status's own flag."""
    from rich.console import Console

    from podroutes.cli.persist_output import print_persistence
    from podroutes.persist.plan import HostPersistence

    out = Console(record=True, width=200)
    print_persistence(out, [HostPersistence("node-0", error="cannot tell what configures "
                                            "eth0 (persist --format, status "
                                            "--persist-format)"),
                            HostPersistence("node-1")])
    text = out.export_text()
    assert "1 host not checked: node-0" in text
    assert "not persisted as planned" not in text and "--persist-format" in text
