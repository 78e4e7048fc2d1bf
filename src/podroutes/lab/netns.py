"""The lab: the Kubernetes-the-Hard-Way topology in network namespaces on this machine.

I/O (root). Builds a jumpbox, a server and node-0..N-1 on one L2 segment (a bridge in a
namespace of its own), a ``cni0`` bridge with pods on every node, Kubernetes the Hard
Way's ``10-bridge.conf`` in each node's own ``/etc/cni/net.d`` and (``ipmasq``, the
default) the nat rules the CNI bridge plugin writes for each pod, and a real ``sshd`` per
machine; with ``dual_stack`` every machine and pod also gets an IPv6 address and every
node an IPv6 pod CIDR. It is both a user feature (``podroutes lab``) and the test bed.
Every namespace is named ``<lab>-<machine>``; links live only inside those namespaces,
so the root namespace is never touched. ``down`` removes exactly what ``lab.json`` lists,
after closing the ssh masters (connection reuse) left running in the lab's namespaces.
The addresses and the inventory texts are values from :mod:`podroutes.lab.topology`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from podroutes.core.errors import LabError
from podroutes.lab import commands, topology
from podroutes.lab import machine as labmachine
from podroutes.lab.seed import MANAGERS, bridge_conf, ipmasq_rules
from podroutes.lab.topology import NODE_NETWORK, NODE_NETWORK6, Machine

DEFAULT_ROOT = Path(os.environ.get("PODROUTES_LAB_ROOT", "/run/podroutes/lab"))
NAME_RE = re.compile(r"\A[a-z][a-z0-9-]{0,23}\Z")
MAX_NODES = 150
#: Seconds an ``ip -batch`` line may take beyond :data:`commands.TIMEOUT` (a ``netns add``
#: takes about 0.5 ms here; links a few ms).
BATCH_LINE_SECONDS = 0.05
SSHD = shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/sshd"


@dataclass(frozen=True, slots=True)
class LabSpec:
    name: str
    nodes: int = 2
    pods_per_node: int = 2
    root: str = str(DEFAULT_ROOT)
    dual_stack: bool = False
    #: The network manager whose base configuration each machine starts with (``None``:
    #: none); networkd and netplan also run systemd-networkd in every machine.
    manager: str | None = None
    #: Each node's CNI config and the nat rules the bridge plugin writes with ``"ipMasq":
    #: true`` (as Kubernetes the Hard Way's 10-bridge.conf has it) for every pod.
    ipmasq: bool = True
    #: (node, IPv4 subnet) pairs: the SUBNET a node's 10-bridge.conf has instead of its
    #: inventory pod CIDR (a wrong sed in KTHW); its cni0 and pods take their addresses from
    #: it, as the bridge plugin would. The inventory (machines.txt) keeps the right CIDR.
    cni_subnets: tuple[tuple[str, str], ...] = ()

    @property
    def families(self) -> tuple[int, ...]:
        return (4, 6) if self.dual_stack else (4,)

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
        return topology.machines(self.nodes, self.dual_stack)

    def pods(self) -> list[Machine]:
        return topology.pods(self.machines(), self.pods_per_node, dict(self.cni_subnets))

    def cni_subnet(self, m: Machine) -> str | None:
        """The IPv4 subnet node ``m``'s CNI config hands out (its cni0's and pods')."""
        return dict(self.cni_subnets).get(m.name, m.pod_cidr)

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
    if spec.manager is not None and spec.manager not in MANAGERS:
        raise LabError(f"--manager {spec.manager}: one of {', '.join(MANAGERS)}")
    nodes = {m.name for m in spec.machines() if m.pod_cidr}
    for node, subnet in spec.cni_subnets:
        if node not in nodes:
            raise LabError(f"--cni-subnet {node}={subnet}: no node {node!r} "
                           f"(nodes: node-0..node-{spec.nodes - 1})")
        try:
            net = IPv4Network(subnet)
        except ValueError as exc:
            raise LabError(f"--cni-subnet {node}={subnet}: not an IPv4 network ({exc})") \
                from None
        if not 8 <= net.prefixlen <= 28 or net.overlaps(NODE_NETWORK):
            raise LabError(f"--cni-subnet {node}={subnet}: use a /8-/28 outside the node "
                           f"network {NODE_NETWORK}")


def _ip_batch(namespace: str | None, lines: Iterable[str]) -> None:
    """``ip -batch`` in ``namespace`` (``None``: this one). It may take
    :data:`BATCH_LINE_SECONDS` a line beyond the usual timeout: a lab of many pods adds
    and deletes thousands of namespaces in one batch."""
    batch = [line + "\n" for line in lines]
    argv = ["ip"] + (["-n", namespace] if namespace else []) + ["-batch", "-"]
    commands.run(argv, "".join(batch),
                 timeout=commands.TIMEOUT + BATCH_LINE_SECONDS * len(batch))


def existing_namespaces() -> set[str]:
    out = commands.run(["ip", "-j", "netns", "list"]).strip()
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
                   root=data["root"], dual_stack=bool(data.get("dual_stack", False)),
                   manager=data.get("manager"), ipmasq=bool(data.get("ipmasq", False)),
                   cni_subnets=tuple((str(n), str(c)) for n, c in data.get("cni_subnets", ())))


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
    for m in machines + pods:  # before any link exists, so every link inherits them
        if settings := _sysctls(spec, m):
            commands.run(["ip", "netns", "exec", spec.namespace(m.name), "sh", "-c",
                          " && ".join(f"echo {value} > /proc/sys/{key}"
                                      for key, value in settings.items())])
    # The node network: a bridge in its own namespace, one veth pair per machine. Without
    # multicast snooping the bridge floods IPv6 neighbour discovery like IPv4's ARP, so it
    # never depends on MLD reports sent while a port was still coming up.
    segment = ["link set lo up", "link add br0 type bridge mcast_snooping 0", "link set br0 up"]
    for m in machines:
        port = f"v-{m.name}"
        segment += [f"link add {port} type veth peer name eth0 netns {spec.namespace(m.name)}",
                    f"link set {port} master br0", f"link set {port} up"]
    _ip_batch(spec.segment, segment)
    for m in machines:
        lines = ["link set lo up", "link set eth0 up",
                 f"addr add {m.address}/{NODE_NETWORK.prefixlen} brd + dev eth0"]
        if m.address6 is not None:  # nodad: usable at once, no 1-2 s of "tentative"
            lines.append(f"addr add {m.address6}/{NODE_NETWORK6.prefixlen} dev eth0 nodad")
        if (subnet := spec.cni_subnet(m)) is not None:
            cidr = IPv4Network(subnet)
            lines += ["link add cni0 type bridge mcast_snooping 0",
                      f"addr add {cidr.network_address + 1}/{cidr.prefixlen} dev cni0",
                      "link set cni0 up"]
            if m.pod_cidr6 is not None:
                cidr6 = IPv6Network(m.pod_cidr6)
                lines.append(f"addr add {cidr6.network_address + 1}/{cidr6.prefixlen} dev cni0 "
                             "nodad")
            for p in (p for p in pods if p.node == m.name):
                port = "veth" + p.name.rsplit("-", 1)[1]
                lines += [f"link add {port} type veth peer name eth0 netns "
                          f"{spec.namespace(p.name)}",
                          f"link set {port} master cni0", f"link set {port} up"]
        _ip_batch(spec.namespace(m.name), lines)
    for p in pods:
        node = next(m for m in machines if m.name == p.node)
        cidr = IPv4Network(spec.cni_subnet(node) or "")
        lines = ["link set lo up", "link set eth0 up",
                 f"addr add {p.address}/{cidr.prefixlen} dev eth0",
                 f"route add default via {cidr.network_address + 1}"]
        if p.address6 is not None and node.pod_cidr6 is not None:
            cidr6 = IPv6Network(node.pod_cidr6)
            lines += [f"addr add {p.address6}/{cidr6.prefixlen} dev eth0 nodad",
                      f"route add ::/0 via {cidr6.network_address + 1}"]
        _ip_batch(spec.namespace(p.name), lines)
    labmachine.prepare(spec)
    for m in machines:  # each machine's own /etc and /run (a mount namespace)
        subnet = spec.cni_subnet(m)
        labmachine.create(spec, m, spec.manager,
                          bridge_conf(subnet, m.pod_cidr6) if subnet else None)
    if spec.ipmasq:
        _ipmasq(spec, machines, pods)
    _write_files(spec, machines)
    for m in machines:
        _start_sshd(spec, m)
    if spec.manager in ("networkd", "netplan"):
        for m in machines:
            labmachine.start_networkd(spec, m.name, generate=spec.manager == "netplan")
        labmachine.wait_configured(spec, [m.name for m in machines])


def _ipmasq(spec: LabSpec, machines: list[Machine], pods: list[Machine]) -> None:
    """The nat rules the bridge plugin writes with ``"ipMasq": true`` for each pod, in each
    node's namespace, with one ``iptables-restore --noflush`` per node and family, all
    nodes at once."""
    jobs = []
    for m in machines:
        mine = [p for p in pods if p.node == m.name]
        subnet = spec.cni_subnet(m)
        if not mine or subnet is None:
            continue
        ns = spec.namespace(m.name)
        jobs.append((["ip", "netns", "exec", ns, "iptables-restore", "--noflush"],
                     ipmasq_rules(spec.name, [(p.name, p.address) for p in mine], subnet, 4)))
        if m.pod_cidr6 is not None:
            jobs.append((["ip", "netns", "exec", ns, "ip6tables-restore", "--noflush"],
                         ipmasq_rules(spec.name, [(p.name, p.address6 or "") for p in mine],
                                      m.pod_cidr6, 6)))
    commands.run_all(jobs)


def _sysctls(spec: LabSpec, m: Machine) -> dict[str, int]:
    """Sysctls of a machine's or pod's own namespace (never the root namespace's)."""
    out = {}
    if m.role == "node":  # nodes forward pod traffic, as KTHW's nodes do
        out["net/ipv4/ip_forward"] = 1
        if spec.dual_stack:
            out["net/ipv6/conf/all/forwarding"] = 1
    if spec.dual_stack:
        # No duplicate address detection on the lab's links: while a link's fe80 address
        # is tentative (1-2 s after link up) the kernel sends no neighbour solicitation for
        # forwarded packets, so the first ping after apply would wait for a 1 s retransmit.
        out["net/ipv6/conf/all/accept_dad"] = 0
        out["net/ipv6/conf/default/accept_dad"] = 0
    return out


def _keygen(path: Path, comment: str) -> str:
    commands.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                  str(path)])
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
    for m in machines:
        host_key = _keygen(d / "hostkeys" / m.name, f"{m.name}@{spec.name}")
        names = ",".join(x for x in (m.name, m.fqdn, m.address, m.address6) if x)
        known.append(f"{names} {' '.join(host_key.split()[:2])}")
        config += [f"Host {m.name} {m.fqdn}", f"  HostName {m.address}", ""]
        listen = [f"ListenAddress {a}" for a in (m.address, m.address6) if a]
        (d / "sshd" / f"{m.name}.conf").write_text("\n".join([
            f"# sshd of lab machine {m.name} (netns {spec.namespace(m.name)})",
            *listen, "Port 22",
            f"HostKey {d}/hostkeys/{m.name}",
            f"PidFile {d}/sshd/{m.name}.pid",
            f"AuthorizedKeysFile {d}/authorized_keys",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "PrintMotd no",
            "AcceptEnv LANG LC_*", "MaxStartups 200:30:400", "MaxSessions 50",
            # Lab machines share this machine's CPU, so per-connection costs of the host
            # it runs on would swamp every figure: SHLVL=1 makes bash skip ~/.bashrc
            # (here it runs `pyenv init`, ~135 ms a connection), and the lab's sshd
            # offers only X25519 key exchange (sntrup761 costs ~90 ms of CPU on each
            # side). Every tool compared on the lab gets the same server.
            "SetEnv SHLVL=1",
            "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
            "LogLevel VERBOSE", "",
        ]))
    config += ["Host *", "  User root", f"  IdentityFile {d}/id_ed25519", "  IdentitiesOnly yes",
               f"  UserKnownHostsFile {d}/known_hosts", "  GlobalKnownHostsFile /dev/null",
               "  StrictHostKeyChecking yes", "  LogLevel ERROR", ""]
    (d / "known_hosts").write_text("\n".join(known) + "\n")
    (d / "ssh_config").write_text("\n".join(config))
    (d / "machines.txt").write_text(topology.machines_txt(spec.name, machines, spec.dual_stack))
    (d / "inventory.yaml").write_text(topology.inventory_yaml(spec.name, machines))


def _start_sshd(spec: LabSpec, m: Machine) -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd refuses to start without it
    d = spec.directory
    commands.run(labmachine.machine_argv(spec, m.name, [SSHD, "-f", f"{d}/sshd/{m.name}.conf",
                                                        "-E", f"{d}/sshd/{m.name}.log"]))
    # sshd creates the pid file before it writes the pid: wait for a pid that is this sshd
    deadline = time.monotonic() + 10
    while sshd_pid(spec, m.name) is None:
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
    """Stop a lab machine's sshd by pid; whether one ran."""
    return commands.terminate(lambda: sshd_pid(spec, machine), wait=2.0)


def start_sshd(spec: LabSpec, machine: str) -> None:
    m = next(x for x in spec.machines() if x.name == machine)
    _start_sshd(spec, m)


def namespace_inodes(spec: LabSpec) -> set[int]:
    """The inode numbers of the lab's network namespaces that exist now."""
    inodes = set()
    for ns in spec.all_namespaces():
        try:
            inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
        except OSError:
            continue
    return inodes


def ssh_masters(inodes: set[int]) -> dict[int, str]:
    """The ssh connection masters (``ControlPersist``) running in one of the network
    namespaces ``inodes``, by pid: their control socket. A backgrounded master names its
    socket in its process title, ``ssh: SOCKET [mux]``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().rstrip(b"\0")
            inode = os.stat(entry / "ns" / "net").st_ino
        except OSError:
            continue
        if title.startswith(b"ssh: ") and title.endswith(b" [mux]") and inode in inodes:
            found[int(entry.name)] = title[5:-6].decode(errors="replace")
    return found


def close_ssh_masters(spec: LabSpec, wait: float = 2.0) -> list[int]:
    """Close the ssh masters that commands run in the lab left (podroutes' connection
    reuse): each by its socket (``ssh -O exit -S SOCKET``), then by pid (SIGKILL) any
    that did not go (a stopped or hung one). The pids found."""
    inodes = namespace_inodes(spec)
    masters = ssh_masters(inodes)
    for socket in masters.values():
        with contextlib.suppress(LabError):
            commands.run(["ssh", "-O", "exit", "-S", socket, "lab-master"], timeout=wait)
    deadline = time.monotonic() + wait
    while (left := ssh_masters(inodes).keys() & masters.keys()) and time.monotonic() < deadline:
        time.sleep(0.01)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for socket in masters.values():
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(socket).st_mode):
                os.unlink(socket)
    return sorted(masters)


def down(spec: LabSpec) -> list[str]:
    """Close the ssh masters left in the lab's namespaces, stop the lab's sshds (by pid)
    and delete exactly its namespaces and directory."""
    require_root()
    close_ssh_masters(spec)
    for m in spec.machines():
        stop_sshd(spec, m.name)
    labmachine.destroy(spec, [m.name for m in spec.machines()])
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
        if m.address6 is not None:
            entry["address6"] = m.address6
        if m.role != "pod":
            entry["sshd_pid"] = sshd_pid(spec, m.name)
            if spec.manager in ("networkd", "netplan"):
                entry["networkd_pid"] = labmachine.manager_pid(spec, m.name)
        machines.append(entry)
    healthy = all(e["namespace_present"] and (e["role"] == "pod" or e["sshd_pid"])
                  for e in machines) and spec.segment in present
    return {"name": spec.name, "directory": str(spec.directory), "healthy": healthy,
            "dual_stack": spec.dual_stack, "manager": spec.manager, "machines": machines}


def namespace_of(spec: LabSpec, machine: str) -> str:
    names = {m.name for m in spec.machines() + spec.pods()}
    if machine not in names:
        raise LabError(f"lab {spec.name!r} has no machine {machine!r} "
                       f"(machines: {', '.join(sorted(names))})")
    return spec.namespace(machine)


def exec_argv(spec: LabSpec, machine: str, command: Sequence[str],
              cwd: str | None = None) -> list[str]:
    """Run ``command`` in a lab machine as its sshd's sessions do (its network and mount
    namespaces: its own /etc and /run), or in a pod's network namespace. ``cwd`` is kept
    as the working directory where the machine sees it (not in its private /run)."""
    ns = namespace_of(spec, machine)
    if machine in {m.name for m in spec.machines()} and \
            labmachine.mount_file(spec, machine).exists():
        argv = labmachine.machine_argv(spec, machine, command)
        if cwd is not None and (not cwd.startswith("/run/") or
                                cwd.startswith(str(spec.directory))):
            argv.insert(1, f"--wd={cwd}")
        return argv
    return ["ip", "netns", "exec", ns, *command]


def pods(spec: LabSpec) -> list[Machine]:
    return spec.pods()


