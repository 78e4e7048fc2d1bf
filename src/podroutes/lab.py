"""The lab: the Kubernetes-the-Hard-Way topology in network namespaces on this machine.

I/O (root). Builds a jumpbox, a server and node-0..N-1 on one L2 segment (a bridge in a
namespace of its own), a ``cni0`` bridge with pods on every node, and a real ``sshd`` per
machine. It is both a user feature (``podroutes lab``) and the test bed. Every namespace
is named ``<lab>-<machine>``; links live only inside those namespaces, so the root
namespace is never touched. ``down`` removes exactly what ``lab.json`` lists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network
from pathlib import Path

from podroutes.errors import LabError

DEFAULT_ROOT = Path(os.environ.get("PODROUTES_LAB_ROOT", "/run/podroutes/lab"))
NAME_RE = re.compile(r"\A[a-z][a-z0-9-]{0,23}\Z")
NODE_NETWORK = IPv4Network("192.168.10.0/24")
DOMAIN = "kubernetes.local"
MAX_NODES = 150
SSHD = shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/sshd"


@dataclass(frozen=True, slots=True)
class Machine:
    """A lab machine: the jumpbox, the server, a node, or a pod (on a node's cni0)."""

    name: str
    role: str  # jumpbox | server | node | pod
    address: str
    pod_cidr: str | None = None
    node: str | None = None  # a pod's node

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"


@dataclass(frozen=True, slots=True)
class LabSpec:
    name: str
    nodes: int = 2
    pods_per_node: int = 2
    root: str = str(DEFAULT_ROOT)

    @property
    def directory(self) -> Path:
        return Path(self.root) / self.name

    def namespace(self, machine: str) -> str:
        return f"{self.name}-{machine}"

    @property
    def segment(self) -> str:
        """The namespace holding the node network's bridge."""
        return self.namespace("net")

    def machines(self) -> list[Machine]:
        hosts = NODE_NETWORK.network_address
        out = [Machine("jumpbox", "jumpbox", str(hosts + 10)),
               Machine("server", "server", str(hosts + 100))]
        for i in range(self.nodes):
            out.append(Machine(f"node-{i}", "node", str(hosts + 101 + i),
                               pod_cidr=f"10.200.{i}.0/24"))
        return out

    def pods(self) -> list[Machine]:
        out = []
        for node in self.machines():
            if node.pod_cidr is None:
                continue
            base = IPv4Network(node.pod_cidr).network_address
            for p in range(self.pods_per_node):
                out.append(Machine(f"{node.name}-pod-{p}", "pod", str(base + 2 + p),
                                   node=node.name))
        return out

    def all_namespaces(self) -> list[str]:
        return [self.segment] + [self.namespace(m.name) for m in self.machines() + self.pods()]


def validate_spec(spec: LabSpec) -> None:
    if not NAME_RE.match(spec.name):
        raise LabError(f"lab name {spec.name!r}: use 1-24 lowercase letters, digits and '-', "
                       "starting with a letter")
    if not 1 <= spec.nodes <= MAX_NODES:
        raise LabError(f"--nodes {spec.nodes}: must be 1-{MAX_NODES}")
    if not 1 <= spec.pods_per_node <= 200:
        raise LabError(f"--pods-per-node {spec.pods_per_node}: must be 1-200")


def _run(argv: Sequence[str], input: str | None = None) -> str:
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({done.returncode}): "
                       f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _ip_batch(namespace: str | None, lines: Iterable[str]) -> None:
    argv = ["ip"] + (["-n", namespace] if namespace else []) + ["-batch", "-"]
    _run(argv, "".join(line + "\n" for line in lines))


def existing_namespaces() -> set[str]:
    out = _run(["ip", "-j", "netns", "list"]).strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates network namespaces and runs sshd); "
                       "run it as root")


def state_file(spec: LabSpec) -> Path:
    return spec.directory / "lab.json"


def load_spec(name: str, root: str = str(DEFAULT_ROOT)) -> LabSpec:
    path = Path(root) / name / "lab.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LabError(f"no lab named {name!r} (no {path})") from exc
    return LabSpec(name=data["name"], nodes=data["nodes"], pods_per_node=data["pods_per_node"],
                   root=data["root"])


def up(spec: LabSpec) -> LabSpec:
    """Build the lab; on any failure remove whatever was made and re-raise."""
    require_root()
    validate_spec(spec)
    taken = [ns for ns in existing_namespaces() if ns.startswith(spec.name + "-")]
    if spec.directory.exists() or taken:
        raise LabError(f"lab name {spec.name!r} is in use "
                       f"({spec.directory if spec.directory.exists() else taken[0]}); "
                       f"pick another --name or run 'podroutes lab down --name {spec.name}'")
    spec.directory.mkdir(parents=True, mode=0o700)
    os.chmod(spec.directory, 0o700)
    state_file(spec).write_text(json.dumps(asdict(spec) | {
        "namespaces": spec.all_namespaces()}, indent=2))
    try:
        _build(spec)
    except BaseException:
        down(spec)
        raise
    return spec


def _build(spec: LabSpec) -> None:
    machines, pods = spec.machines(), spec.pods()
    _ip_batch(None, (f"netns add {ns}" for ns in spec.all_namespaces()))
    # The node network: a bridge in its own namespace, one veth pair per machine.
    segment = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
    for m in machines:
        port = f"v-{m.name}"
        segment += [f"link add {port} type veth peer name eth0 netns {spec.namespace(m.name)}",
                    f"link set {port} master br0", f"link set {port} up"]
    _ip_batch(spec.segment, segment)
    for m in machines:
        lines = ["link set lo up", "link set eth0 up",
                 f"addr add {m.address}/{NODE_NETWORK.prefixlen} dev eth0"]
        if m.pod_cidr is not None:
            cidr = IPv4Network(m.pod_cidr)
            lines += ["link add cni0 type bridge",
                      f"addr add {cidr.network_address + 1}/{cidr.prefixlen} dev cni0",
                      "link set cni0 up"]
            for p in (p for p in pods if p.node == m.name):
                port = "veth" + p.name.rsplit("-", 1)[1]
                lines += [f"link add {port} type veth peer name eth0 netns "
                          f"{spec.namespace(p.name)}",
                          f"link set {port} master cni0", f"link set {port} up"]
        _ip_batch(spec.namespace(m.name), lines)
        if m.role == "node":  # nodes forward pod traffic, as KTHW's nodes do
            _run(["ip", "netns", "exec", spec.namespace(m.name), "sh", "-c",
                  "echo 1 > /proc/sys/net/ipv4/ip_forward"])
    for p in pods:
        node = next(m for m in machines if m.name == p.node)
        assert node.pod_cidr is not None
        cidr = IPv4Network(node.pod_cidr)
        _ip_batch(spec.namespace(p.name), [
            "link set lo up", "link set eth0 up", f"addr add {p.address}/{cidr.prefixlen} dev eth0",
            f"route add default via {cidr.network_address + 1}"])
    _write_files(spec, machines)
    for m in machines:
        _start_sshd(spec, m)


def _keygen(path: Path, comment: str) -> str:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_suffix(".pub").read_text().strip() if path.suffix else \
        Path(str(path) + ".pub").read_text().strip()


def _write_files(spec: LabSpec, machines: list[Machine]) -> None:
    d = spec.directory
    (d / "hostkeys").mkdir(mode=0o700)
    (d / "sshd").mkdir(mode=0o700)
    user_key = _keygen(d / "id_ed25519", f"podroutes-lab-{spec.name}")
    (d / "authorized_keys").write_text(user_key + "\n")
    os.chmod(d / "authorized_keys", 0o600)
    known = []
    config = [f"# ssh client config for podroutes lab {spec.name!r}: ssh -F {d}/ssh_config HOST",
              "# Host keys are pinned in the lab's own known_hosts; checking stays on.", ""]
    machines_txt = [f"# machines.txt for podroutes lab {spec.name!r} (IPV4 FQDN HOSTNAME "
                    "[POD_SUBNET])"]
    for m in machines:
        host_key = _keygen(d / "hostkeys" / m.name, f"{m.name}@{spec.name}")
        known.append(f"{m.name},{m.fqdn},{m.address} {' '.join(host_key.split()[:2])}")
        config += [f"Host {m.name} {m.fqdn}", f"  HostName {m.address}", ""]
        if m.role != "jumpbox":
            machines_txt.append(" ".join(x for x in (m.address, m.fqdn, m.name, m.pod_cidr) if x))
        (d / "sshd" / f"{m.name}.conf").write_text("\n".join([
            f"# sshd of lab machine {m.name} (netns {spec.namespace(m.name)})",
            f"ListenAddress {m.address}", "Port 22",
            f"HostKey {d}/hostkeys/{m.name}",
            f"PidFile {d}/sshd/{m.name}.pid",
            f"AuthorizedKeysFile {d}/authorized_keys",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "PrintMotd no",
            "AcceptEnv LANG LC_*", "MaxStartups 200:30:400", "MaxSessions 50",
            "LogLevel VERBOSE", "",
        ]))
    config += ["Host *", "  User root", f"  IdentityFile {d}/id_ed25519", "  IdentitiesOnly yes",
               f"  UserKnownHostsFile {d}/known_hosts", "  GlobalKnownHostsFile /dev/null",
               "  StrictHostKeyChecking yes", "  LogLevel ERROR", ""]
    (d / "known_hosts").write_text("\n".join(known) + "\n")
    (d / "ssh_config").write_text("\n".join(config))
    (d / "machines.txt").write_text("\n".join(machines_txt) + "\n")


def _start_sshd(spec: LabSpec, m: Machine) -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd refuses to start without it
    d = spec.directory
    _run(["ip", "netns", "exec", spec.namespace(m.name), SSHD, "-f", f"{d}/sshd/{m.name}.conf",
          "-E", f"{d}/sshd/{m.name}.log"])
    pid_file = d / "sshd" / f"{m.name}.pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists():
        if time.monotonic() > deadline:
            raise LabError(f"sshd of {m.name} did not start; see {d}/sshd/{m.name}.log")
        time.sleep(0.01)


def sshd_pid(spec: LabSpec, machine: str) -> int | None:
    """The pid of a lab machine's sshd, if it runs and really is that sshd."""
    pid_file = spec.directory / "sshd" / f"{machine}.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if f"{spec.directory}/sshd/{machine}.conf".encode() in cmdline else None


def stop_sshd(spec: LabSpec, machine: str) -> bool:
    pid = sshd_pid(spec, machine)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(200):
        if sshd_pid(spec, machine) is None:
            break
        time.sleep(0.01)
    return True


def start_sshd(spec: LabSpec, machine: str) -> None:
    m = next(x for x in spec.machines() if x.name == machine)
    _start_sshd(spec, m)


def down(spec: LabSpec) -> list[str]:
    """Stop the lab's sshds (by pid) and delete exactly its namespaces and directory."""
    require_root()
    for m in spec.machines():
        stop_sshd(spec, m.name)
    present = existing_namespaces()
    planned = spec.all_namespaces()
    try:
        recorded = json.loads(state_file(spec).read_text()).get("namespaces", planned)
    except (OSError, ValueError):
        recorded = planned
    gone = [ns for ns in recorded if ns in present]
    if gone:
        _ip_batch(None, (f"netns del {ns}" for ns in gone))
    shutil.rmtree(spec.directory, ignore_errors=True)
    return gone


def status(spec: LabSpec) -> dict[str, object]:
    present = existing_namespaces()
    machines = []
    for m in spec.machines() + spec.pods():
        ns = spec.namespace(m.name)
        entry: dict[str, object] = {"name": m.name, "role": m.role, "address": m.address,
                                    "namespace": ns, "namespace_present": ns in present}
        if m.role != "pod":
            entry["sshd_pid"] = sshd_pid(spec, m.name)
        machines.append(entry)
    healthy = all(e["namespace_present"] and (e["role"] == "pod" or e["sshd_pid"])
                  for e in machines) and spec.segment in present
    return {"name": spec.name, "directory": str(spec.directory), "healthy": healthy,
            "machines": machines}


def namespace_of(spec: LabSpec, machine: str) -> str:
    names = {m.name for m in spec.machines() + spec.pods()}
    if machine not in names:
        raise LabError(f"lab {spec.name!r} has no machine {machine!r} "
                       f"(machines: {', '.join(sorted(names))})")
    return spec.namespace(machine)


def pods(spec: LabSpec) -> list[Machine]:
    return spec.pods()


