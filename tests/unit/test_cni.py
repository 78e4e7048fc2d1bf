"""The CNI reader on real-shaped files (tests/data/cni/README.md says where each is from),
the file the runtime picks, the listing script's output, and doctor's CNI findings."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podroutes.diag.checks import check_all
from podroutes.diag.cni import (
    CNI_SCRIPT,
    MAX_BYTES,
    CniConfig,
    CniListing,
    choose,
    parse_config,
    parse_listing,
    read_config,
)
from podroutes.diag.findings import FindingKind
from podroutes.inventory import load

from .samples import MACHINES
from .test_doctor_checks import World, healthy, plan

DATA = Path(__file__).parent.parent / "data" / "cni"
K = FindingKind


def data(name: str) -> str:
    return (DATA / name).read_text()


def kthw(subnet: str) -> str:
    """KTHW's 10-bridge.conf with SUBNET substituted, as its sed does."""
    return data("10-bridge.conf").replace("SUBNET", subnet)


def listing(files: dict[str, str]) -> CniListing:
    first = choose(list(files))
    return CniListing(True, tuple(files), first, files[first] if first else None,
                      len(files[first].encode()) if first else 0)


# --- the reader ---------------------------------------------------------------------------


def test_kthw_bridge_conf_substituted() -> None:
    cni = parse_config("10-bridge.conf", kthw("10.200.0.0/24"))
    assert cni.problem is None
    assert cni.network == "bridge" and cni.plugins == ("bridge",)
    assert cni.bridge is not None
    assert (cni.bridge.name, cni.bridge.named, cni.bridge.is_gateway, cni.bridge.ip_masq,
            cni.bridge.ipam) == ("cni0", True, True, True, "host-local")
    assert cni.bridge.subnets == (ip_network("10.200.0.0/24"),)


def test_kthw_bridge_conf_as_upstream_ships_it_names_the_placeholder() -> None:
    cni = parse_config("10-bridge.conf", data("10-bridge.conf"))
    assert cni.problem is not None and "SUBNET placeholder" in cni.problem


def test_conflist_bridge_portmap_loopback() -> None:
    cni = parse_config("10-bridge-portmap.conflist", data("10-bridge-portmap.conflist"))
    assert cni.problem is None
    assert cni.plugins == ("bridge", "portmap", "loopback")
    assert cni.bridge is not None and cni.bridge.name == "cbr0" and not cni.bridge.ip_masq
    assert cni.bridge.subnets == (ip_network("10.200.1.0/24"), ip_network("fd00:10:200:1::/64"))


@pytest.mark.parametrize(("name", "plugins"), [
    ("10-flannel.conflist", ("flannel", "portmap")),
    ("10-kindnet.conflist", ("ptp", "portmap")),
])
def test_flannel_and_kindnet_are_read_but_are_no_bridge(name: str, plugins: tuple[str, ...]
                                                        ) -> None:
    cni = parse_config(name, data(name))
    assert cni.problem is None and cni.plugins == plugins and cni.bridge is None


def test_defaults_of_the_bridge_plugin_and_the_legacy_subnet() -> None:
    cni = parse_config("x.conf", json.dumps(
        {"name": "n", "type": "bridge", "ipam": {"type": "host-local", "subnet": "10.9.0.5/24"}}))
    assert cni.bridge is not None
    assert (cni.bridge.name, cni.bridge.named, cni.bridge.is_gateway, cni.bridge.ip_masq) == \
        ("cni0", False, False, False)
    assert cni.bridge.subnets == (ip_network("10.9.0.0/24"),)


@pytest.mark.parametrize(("text", "words"), [
    ("{", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"plugins": []}', "non-empty"),
    ('{"plugins": [{"type": "bridge"}, {}]}', "plugin 2 has no"),
    ('{"type": "bridge", "ipam": {"ranges": [[{"subnet": 7}]]}}', "not a string"),
    ('{"type": "bridge", "ipam": {"subnet": "10.0.0.0/33"}}', "not a network"),
    ("\ufeff{}", "not valid JSON"),
])
def test_broken_files_are_a_problem_never_an_exception(text: str, words: str) -> None:
    cni = parse_config("10-x.conflist" if "plugins" in text else "10-x.conf", text)
    assert cni.problem is not None and words in cni.problem


def test_the_runtime_uses_the_first_candidate_in_byte_order() -> None:
    assert choose(["99-loopback.conf", "10-bridge.conf", "05-a.json", "00-z.txt",
                   "10-bridge.conf.bak"]) == "05-a.json"
    assert choose(["b.conflist", "B.conf"]) == "B.conf"
    assert choose(["README", "x.yaml"]) is None


def test_read_config_of_a_listing() -> None:
    assert read_config(CniListing()) == CniConfig()
    empty = read_config(CniListing(True, ("README",)))
    assert empty.directory and empty.file is None
    cni = read_config(listing({"99-loopback.conf": data("99-loopback.conf"),
                               "10-bridge.conf": kthw("10.200.0.0/24")}))
    assert cni.file == "10-bridge.conf" and cni.others == ("99-loopback.conf",)
    big = read_config(CniListing(True, ("a.conf",), "a.conf", "{", MAX_BYTES + 1))
    assert big.problem is not None and "more than doctor reads" in big.problem


@given(st.binary(max_size=400))
@settings(max_examples=300)
def test_any_bytes_never_raise(raw: bytes) -> None:
    text = raw.decode("utf-8", "replace")
    parse_config("10-x.conf", text)
    parse_config("10-x.conflist", text)
    parse_listing(text)
    b64 = base64.b64encode(raw).decode()
    read_config(parse_listing(f"dir\nname {base64.b64encode(b'a.conf').decode()}\n"
                              f"file {base64.b64encode(b'a.conf').decode()} {len(raw)} {b64}\n"))


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["type", "bridge", "ipam", "ranges", "subnet", "plugins", "name",
                         "isGateway", "ipMasq", "x"]), inner, max_size=5),
                    max_leaves=20))
@settings(max_examples=300)
def test_any_json_never_raises(value: object) -> None:
    for name in ("a.conf", "a.conflist"):
        parse_config(name, json.dumps(value))


def test_the_listing_script_on_a_real_directory(tmp_path: Path) -> None:
    (tmp_path / "99-loopback.conf").write_text(data("99-loopback.conf"))
    (tmp_path / "10-bridge.conf").write_text(kthw("10.200.1.0/24"))
    (tmp_path / "zz notes.txt").write_text("not a candidate")
    (tmp_path / "dir.conf").mkdir()
    out = subprocess.run(["sh", "-c", CNI_SCRIPT, "sh", str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    found = parse_listing(out)
    assert found.names == ("10-bridge.conf", "99-loopback.conf")
    cni = read_config(found)
    assert cni.file == "10-bridge.conf" and cni.bridge is not None
    assert cni.bridge.subnets == (ip_network("10.200.1.0/24"),)
    missing = subprocess.run(["sh", "-c", CNI_SCRIPT, "sh", str(tmp_path / "none")],
                             capture_output=True, text=True, check=True).stdout
    assert read_config(parse_listing(missing)) == CniConfig()


# --- doctor's CNI findings ----------------------------------------------------------------


def world(node0: str | None = "10.200.0.0/24", node1: str | None = "10.200.1.0/24",
          name: str = "10-bridge.conf") -> World:
    inventory = load(MACHINES, "machines.txt")
    facts = healthy(inventory)
    for host, subnet in (("node-0", node0), ("node-1", node1)):
        files = {} if subnet is None else {name: kthw(subnet) if name == "10-bridge.conf"
                                           else data(name)}
        facts[host] = replace(facts[host], cni=read_config(listing(files)))
    facts["server"] = replace(facts["server"], cni=read_config(CniListing()))
    return plan(inventory), facts


def kinds(w: World, bridge: str | None = None) -> list[tuple[FindingKind, str]]:
    return [(f.kind, f.host) for f in check_all(w[0], w[1], 147, bridge)]


def test_kthw_configs_with_the_right_subnets_are_healthy() -> None:
    assert kinds(world()) == []


def test_a_wrong_subnet_is_found_on_that_node_only() -> None:
    w = world(node1="10.200.9.0/24")
    [finding] = check_all(w[0], w[1], 147)
    assert (finding.kind, finding.host) == (K.CNI_SUBNET_MISMATCH, "node-1")
    assert "hands out 10.200.9.0/24" in finding.what and "10.200.1.0/24" in finding.what
    assert finding.fix == ("sed -i 's|10.200.9.0/24|10.200.1.0/24|g' "
                           "/etc/cni/net.d/10-bridge.conf",)


def test_a_subnet_copied_from_another_node_names_it() -> None:
    w = world(node1="10.200.0.0/24")
    [finding] = check_all(w[0], w[1], 147)
    assert finding.kind is K.CNI_SUBNET_MISMATCH and "node-0's 10.200.0.0/24" in finding.what


def test_missing_and_invalid_configs() -> None:
    assert kinds(world(node0=None)) == [(K.CNI_MISSING, "node-0")]
    w = world(node0="SUBNET")
    [finding] = check_all(w[0], w[1], 147)
    assert finding.kind is K.CNI_INVALID and "SUBNET placeholder" in finding.what


def test_missing_config_fix_is_kthw_conf_for_that_node() -> None:
    w = world(node0=None)
    [finding] = check_all(w[0], w[1], 147)
    assert '"subnet": "10.200.0.0/24"' in finding.fix[1]


@pytest.mark.parametrize("name", ["10-flannel.conflist", "10-kindnet.conflist"])
def test_configs_without_a_bridge_are_not_judged_further(name: str) -> None:
    assert kinds(world(name=name)) == []


def test_bridge_name_comes_from_the_cni_config_and_bridge_overrides() -> None:
    w = world(name="10-bridge-portmap.conflist")  # cbr0, and not node-0's subnet
    found = kinds(w)
    # doctor checks cbr0, which the facts do not have: bridge-missing, not a mismatch
    assert (K.BRIDGE_MISSING, "node-0") in found
    assert (K.CNI_BRIDGE_MISMATCH, "node-0") not in found
    found = kinds(w, bridge="cni0")
    assert (K.CNI_BRIDGE_MISMATCH, "node-0") in found and (K.BRIDGE_MISSING, "node-0") \
        not in found


def test_is_gateway_false() -> None:
    w = world()
    text = kthw("10.200.0.0/24").replace('"isGateway": true', '"isGateway": false')
    w[1]["node-0"] = replace(w[1]["node-0"], cni=read_config(listing({"10-bridge.conf": text})))
    assert kinds(w) == [(K.CNI_NOT_GATEWAY, "node-0")]
