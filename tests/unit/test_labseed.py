"""The base configurations ``lab up --manager`` seeds into each machine's own /etc."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from podroutes.core.ini import ini_sections
from podroutes.lab.machine import MOUNT_SCRIPT
from podroutes.lab.seed import (
    MANAGERS,
    PRIVATE_ETC,
    bridge_conf,
    connection_uuid,
    container_id,
    ipmasq_rules,
    seed,
)
from podroutes.lab.topology import machines

V4 = machines(2)[2]  # node-0
DS = machines(2, dual_stack=True)[2]


def test_every_private_directory_is_a_fresh_mount_in_each_machine() -> None:
    for directory in PRIVATE_ETC:
        assert directory in MOUNT_SCRIPT
    assert "--move" in MOUNT_SCRIPT and "lowerdir=/etc" in MOUNT_SCRIPT


def test_networkd_seed_configures_both_families_of_eth0() -> None:
    (path, (text, mode)), = seed("networkd", DS, "lab").files.items()
    assert path == "/etc/systemd/network/10-eth0.network" and mode == 0o644
    sections = dict(ini_sections(text)[1:])
    assert ("Name", "eth0") in sections["Match"]
    assert ("Address", "192.168.10.101/24") in sections["Network"]
    assert ("Address", "fd00:10::101/64") in sections["Network"]


def test_netplan_seed_is_private_and_valid_yaml() -> None:
    (path, (text, mode)), = seed("netplan", V4, "lab").files.items()
    assert path == "/etc/netplan/50-cloud-init.yaml" and mode == 0o600
    eth0 = yaml.safe_load(text)["network"]["ethernets"]["eth0"]
    assert eth0["addresses"] == ["192.168.10.101/24"]


def test_ifupdown_seed_sources_interfaces_d_before_its_own_stanza() -> None:
    s = seed("ifupdown", DS, "lab")
    text = s.files["/etc/network/interfaces"][0]
    assert text.index("source /etc/network/interfaces.d/*") < text.index("iface eth0 inet ")
    assert "iface eth0 inet6 static" in text and "/etc/network/if-up.d" in s.directories


def test_nm_seed_binds_a_stable_connection_to_eth0() -> None:
    (path, (text, mode)), = seed("nm", V4, "lab").files.items()
    assert path.endswith("/eth0.nmconnection") and mode == 0o600
    connection = dict(ini_sections(text)[1][1])
    assert connection["interface-name"] == "eth0"
    assert connection["uuid"] == connection_uuid("lab", "node-0") != connection_uuid("x", "node-0")


def test_no_manager_seeds_nothing_and_an_unknown_one_is_refused() -> None:
    assert seed(None, V4, "lab").files == {}
    assert set(MANAGERS) == {"networkd", "netplan", "ifupdown", "nm"}
    with pytest.raises(ValueError, match="unknown network manager"):
        seed("wicked", V4, "lab")


def test_bridge_conf_is_kthw_upstream_with_subnet_substituted() -> None:
    upstream = (Path(__file__).parent.parent / "data" / "cni" / "10-bridge.conf").read_text()
    assert bridge_conf("10.200.3.0/24") == upstream.replace("SUBNET", "10.200.3.0/24") + "\n"
    dual = json.loads(bridge_conf("10.200.3.0/24", "fd00:200:3::/64"))
    assert dual["ipam"]["ranges"] == [[{"subnet": "10.200.3.0/24"}],
                                      [{"subnet": "fd00:200:3::/64"}]]
    assert dual["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_ipmasq_rules_have_the_bridge_plugins_exact_layout() -> None:
    """The same three rules per pod as the captured iptables-save of the plugin's own
    (tests/data/nat/ipt-nat-bridge.txt), for the lab's pods."""
    text = ipmasq_rules("lab", [("node-0-pod-0", "10.200.0.2")], "10.200.0.0/24", 4)
    cid = container_id("lab", "node-0-pod-0")
    chain = "CNI-" + hashlib.sha512(f"bridge{cid}".encode()).hexdigest()[:24]
    comment = f'"name: \\"bridge\\" id: \\"{cid}\\""'
    assert text.splitlines() == [
        "*nat", f":{chain} - [0:0]",
        f"-A {chain} -d 10.200.0.0/24 -m comment --comment {comment} -j ACCEPT",
        f"-A {chain} ! -d 224.0.0.0/4 -m comment --comment {comment} -j MASQUERADE",
        f"-A POSTROUTING -s 10.200.0.2/32 -m comment --comment {comment} -j {chain}",
        "COMMIT"]
    assert len(chain) == 28 and len(cid) == 64
    six = ipmasq_rules("lab", [("p", "fd00:200::2")], "fd00:200::/64", 6)
    assert "! -d ff00::/8" in six and "-s fd00:200::2/128" in six
