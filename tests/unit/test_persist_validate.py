"""The managers' own tools accept every file persist writes (no root, nothing in /etc):

- netplan: ``netplan generate --root-dir`` on the golden trees, for both renderers;
- ifupdown: ``ifquery -i`` and ``ifup --no-act`` on the golden interfaces files (and a
  dotfile backup in interfaces.d is not sourced);
- NetworkManager: ``nmcli --offline connection modify`` runs the exact arguments persist
  gives nmcli on the golden keyfile.

systemd-networkd cannot parse a file offline; it is proven in the lab, where it runs
(tests/lab/test_persist.py). A missing tool skips a test, except under
``PODROUTES_REQUIRE_ROOT=1`` (CI), where it fails: scripts/setup.sh installs them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from podroutes.core.ini import ini_sections
from podroutes.persist.render import keyfile_routes

from .persist_cases import copy_golden

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "data" / "persist"


def need(tool: str) -> str:
    found = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("PODROUTES_REQUIRE_ROOT") == "1":
            pytest.fail(f"{tool} is missing (scripts/setup.sh installs it)")
        pytest.skip(f"{tool} is not installed")
    return found


def nmcli() -> tuple[str, dict[str, str]]:
    """The system nmcli, or the one scripts/setup.sh unpacks (never installs)."""
    env = dict(os.environ)
    if (found := shutil.which("nmcli")) is not None:
        return found, env
    unpacked = REPO / ".venv" / "nm-offline"
    binary = unpacked / "usr" / "bin" / "nmcli"
    if not binary.exists():
        if os.environ.get("PODROUTES_REQUIRE_ROOT") == "1":
            pytest.fail("nmcli is missing (scripts/setup.sh unpacks it into .venv/nm-offline)")
        pytest.skip("nmcli is not available")
    libs = [str(p) for p in (unpacked / "usr" / "lib").glob("*-linux-gnu")]
    env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")])
    return str(binary), env


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          **kw)  # type: ignore[call-overload]


def network_sections(text: str) -> list[dict[str, str]]:
    return [dict(kvs) for name, kvs in ini_sections(text) if name == "Route"]


# --- netplan ---------------------------------------------------------------------------


def test_netplan_generate_merges_the_routes_into_the_users_definition(tmp_path: Path) -> None:
    netplan = need("netplan")
    copy_golden(CASES / "netplan" / "after", tmp_path)
    done = run([netplan, "generate", "--root-dir", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    generated = (tmp_path / "run/systemd/network/10-netplan-eth0.network").read_text()
    assert "Address=192.168.10.102/24" in generated and "Address=fd00:10::102/64" in generated
    routes = network_sections(generated)
    assert {"Destination": "10.200.0.0/24", "Gateway": "192.168.10.101", "Metric": "0"} in routes
    assert {"Destination": "fd00:200::/64", "Gateway": "fd00:10::101",
            "Metric": "1024"} in routes
    assert {"Destination": "0.0.0.0/0", "Gateway": "192.168.10.1"} in routes  # the user's
    assert "60-podroutes.yaml are too open" not in done.stderr  # written 0600


def test_netplan_generate_for_networkmanager_keeps_the_default_metric(tmp_path: Path) -> None:
    netplan = need("netplan")
    copy_golden(CASES / "netplan-set-name" / "after", tmp_path)
    done = run([netplan, "generate", "--root-dir", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    keyfile = (tmp_path / "run/NetworkManager/system-connections/netplan-lan.nmconnection")
    text = keyfile.read_text()
    assert "interface-name=eth0" in text
    assert "route1=10.200.0.0/24,192.168.10.101,0" in text
    assert "route2=10.200.1.0/24,192.168.10.102,0" in text
    assert "60-podroutes.yaml are too open" not in done.stderr  # written 0600


def test_netplan_has_no_route_protocol_key(tmp_path: Path) -> None:
    """Why netplan's routes come back as 'proto static': it rejects a protocol."""
    netplan = need("netplan")
    (tmp_path / "etc/netplan").mkdir(parents=True)
    yaml = tmp_path / "etc/netplan/60-x.yaml"
    yaml.write_text("network:\n  version: 2\n  ethernets:\n    eth0:\n      routes:\n"
                    "        - to: 10.0.0.0/8\n          via: 192.168.10.1\n"
                    "          protocol: 147\n")
    yaml.chmod(0o600)
    done = run([netplan, "generate", "--root-dir", str(tmp_path)])
    assert done.returncode != 0
    assert "protocol" in done.stderr


# --- ifupdown --------------------------------------------------------------------------


def _interfaces(tmp_path: Path, case: str) -> Path:
    copy_golden(CASES / case / "after", tmp_path)
    main = tmp_path / "etc/network/interfaces"
    main.write_text(main.read_text().replace("/etc/network/interfaces.d",
                                             f"{tmp_path}/etc/network/interfaces.d"))
    return main


def test_ifquery_reads_the_stanzas_and_skips_dotfile_backups(tmp_path: Path) -> None:
    ifquery = need("ifquery")
    main = _interfaces(tmp_path, "ifupdown")
    backup = tmp_path / "etc/network/interfaces.d/.podroutes.podroutes-bak"
    backup.write_text("iface eth0 inet manual\n    up ip route replace 10.99.0.0/16 via "
                      "192.168.10.9 proto 147\n")
    done = run([ifquery, "-i", str(main), "eth0"])
    assert done.returncode == 0, done.stderr
    assert ("up: ip route replace 10.200.1.0/24 via 192.168.10.102 dev eth0 onlink proto 147 "
            "|| true") in done.stdout
    assert ("up: ip -6 route replace fd00:200:1::/64 via fd00:10::102 dev eth0 onlink "
            "proto 147 || true") in done.stdout
    assert "address: 192.168.10.101" in done.stdout  # the user's stanza still applies
    assert "10.99.0.0" not in done.stdout


def test_ifup_no_act_runs_the_route_lines_before_the_address(tmp_path: Path) -> None:
    ifup = need("ifup")
    main = _interfaces(tmp_path, "ifupdown")
    done = run([ifup, "--no-act", "-i", str(main), "--state-dir", str(tmp_path / "state"),
                "eth0"])
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()  # ifup prints what it would run
    route = lines.index("ip route replace 10.200.1.0/24 via 192.168.10.102 dev eth0 onlink "
                        "proto 147 || true")
    address = next(i for i, line in enumerate(lines) if line.startswith("ip addr add "))
    assert route < address  # why the lines say 'dev eth0 onlink'


# --- NetworkManager --------------------------------------------------------------------


def test_nmcli_offline_accepts_the_exact_modify_arguments(tmp_path: Path) -> None:
    binary, env = nmcli()
    keyfile = next((CASES / "nm" / "before/etc/NetworkManager/system-connections").iterdir())
    result = (CASES / "nm" / "result.txt").read_text()
    line = next(ln for ln in result.splitlines() if ln.startswith("run: nmcli connection"))
    argv = shlex.split(line.removeprefix("run: "))
    assert argv[:3] == ["nmcli", "connection", "modify"]
    done = run([binary, "--offline", "connection", "modify", *argv[4:]],
               input=keyfile.read_text(), env=env)
    assert done.returncode == 0, done.stderr
    routes = {(str(d), str(g)) for d, g in keyfile_routes(done.stdout)}
    assert routes == {("10.99.0.0/16", "192.168.10.1"),  # the user's own, kept
                      ("10.200.1.0/24", "192.168.10.102"),
                      ("fd00:200:1::/64", "fd00:10::102")}  # node-2's recorded route gone
    assert "route2=10.200.1.0/24,192.168.10.102,0" in done.stdout  # metric 0: the slot


def test_nmcli_offline_rejects_what_persist_never_writes() -> None:
    binary, env = nmcli()
    done = run([binary, "--offline", "connection", "modify", "+ipv4.routes",
                "10.200.1.0/24 via 192.168.10.102"], input="[connection]\nid=x\n"
                "type=ethernet\n", env=env)
    assert done.returncode != 0  # so the accepted case above proves something
