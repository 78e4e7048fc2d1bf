"""Each lab machine's own filesystem view and network manager: a mount namespace.

I/O (root). Lab machines share this machine's filesystem; this module gives each one a
mount namespace of its own, kept alive by a bind mount at ``DIR/mnt/MACHINE`` (on a
private bind of ``DIR/mnt``), in which:

- ``/etc`` is an overlay over the host's ``/etc`` (writes land in ``DIR/fs/MACHINE``),
  and ``/etc/systemd/network``, ``/etc/netplan``, ``/etc/network`` and
  ``/etc/NetworkManager`` and ``/etc/cni/net.d`` are fresh tmpfs: the machine's own
  network and CNI configuration;
- ``/run`` is a fresh tmpfs (``/run/sshd``, ``/run/lock``, ``/run/network``,
  ``/run/systemd``) with the lab's directory bound back in, so ifupdown, networkd and
  netplan state is per machine;
- ``/sys`` is the machine's own sysfs, read-only (networkd then does not wait for udev).

Nothing mounted there propagates to the host (private propagation), so the real
``/etc`` is never written. The machine's sshd, its network manager (systemd-networkd,
which runs here without systemd as PID 1) and ``lab exec`` run inside it. Called by
:mod:`podroutes.lab.netns`; ``lab down`` stops the managers by pid and unmounts exactly the
bind mounts this module made.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from podroutes.core.errors import LabError
from podroutes.lab import commands
from podroutes.lab.seed import Seed, seed
from podroutes.lab.topology import Machine

NETWORKD = next((p for p in ("/lib/systemd/systemd-networkd",
                             "/usr/lib/systemd/systemd-networkd") if os.path.exists(p)),
                "/lib/systemd/systemd-networkd")

#: Runs inside the new mount namespace (constant; ``$1`` the lab directory, ``$2`` the
#: machine's overlay directory, ``$3`` a node's 10-bridge.conf or empty). ``mount -n``:
#: the host's mount table file is not ours.
MOUNT_SCRIPT = r"""
set -e
lab=$1; fs=$2
mkdir -p "$fs/upper" "$fs/work" "$fs/run"
mount -n -t overlay overlay -o "lowerdir=/etc,upperdir=$fs/upper,workdir=$fs/work" /etc
for d in /etc/systemd/network /etc/netplan /etc/network /etc/NetworkManager /etc/cni/net.d; do
  mkdir -p "$d"; mount -n -t tmpfs -o mode=0755 lab-etc "$d"
done
mount -n -t tmpfs -o mode=0755 lab-run "$fs/run"
mkdir -p "$fs/run/sshd" "$fs/run/network" "$fs/run/systemd" "$fs/run/lock"
chmod 1777 "$fs/run/lock"
case $lab in
  /run/*) mkdir -p "$fs/run/${lab#/run/}"; mount -n --bind "$lab" "$fs/run/${lab#/run/}" ;;
esac
mount -n --move "$fs/run" /run
mount -n -t sysfs -o ro lab-sys /sys
if [ -n "${3:-}" ]; then
  printf '%s' "$3" > /etc/cni/net.d/10-bridge.conf; chmod 644 /etc/cni/net.d/10-bridge.conf
fi
"""


class Spec(Protocol):
    """What this module needs of a :class:`podroutes.lab.netns.LabSpec`."""

    @property
    def name(self) -> str: ...

    @property
    def directory(self) -> Path: ...

    def namespace(self, machine: str) -> str: ...


def mount_file(spec: Spec, machine: str) -> Path:
    return spec.directory / "mnt" / machine


def machine_argv(spec: Spec, machine: str, argv: Sequence[str]) -> list[str]:
    """Run ``argv`` in the machine: its network namespace and its mount namespace."""
    return ["nsenter", f"--net=/run/netns/{spec.namespace(machine)}",
            f"--mount={mount_file(spec, machine)}", *argv]


def prepare(spec: Spec) -> None:
    """``DIR/mnt`` as a private bind mount: namespace files may only be bound there."""
    mnt = spec.directory / "mnt"
    mnt.mkdir(mode=0o700)
    commands.run(["mount", "-n", "--bind", str(mnt), str(mnt)])
    commands.run(["mount", "-n", "--make-private", str(mnt)])


def create(spec: Spec, m: Machine, manager: str | None, cni: str | None = None) -> None:
    """The machine's mount namespace, seeded with its manager's base configuration (and
    ``cni``, a node's 10-bridge.conf)."""
    machine = m.name
    target = mount_file(spec, machine)
    target.touch()
    fs = spec.directory / "fs" / machine
    fs.mkdir(parents=True, mode=0o700)
    commands.run(["nsenter", f"--net=/run/netns/{spec.namespace(machine)}", "unshare",
                  f"--mount={target}", "--propagation", "private", "sh", "-c", MOUNT_SCRIPT,
                  "sh", str(spec.directory), str(fs), cni or ""])
    write_seed(spec, machine, seed(manager, m, spec.name))


def write_seed(spec: Spec, machine: str, files: Seed) -> None:
    """Write seed files inside the machine (one shell); the texts are the lab's own."""
    script = ["set -e"]
    for d in files.directories:
        script.append(f"mkdir -p {shlex.quote(d)}")
    for path, (text, mode) in files.files.items():
        end = "PODROUTES_LAB_SEED_EOF"
        assert end not in text
        quoted = shlex.quote(path)
        script += [f"mkdir -p {shlex.quote(os.path.dirname(path))}",
                   f"cat > {quoted} <<'{end}'\n{text}{end}", f"chmod {mode:o} {quoted}"]
    if len(script) > 1:
        commands.run(machine_argv(spec, machine, ["sh", "-c", "\n".join(script)]))


def run(spec: Spec, machine: str, argv: Sequence[str]) -> str:
    return commands.run(machine_argv(spec, machine, argv))


# --- systemd-networkd inside a machine -------------------------------------------------


def _pid_file(spec: Spec, machine: str, daemon: str = "networkd") -> Path:
    return spec.directory / "managers" / f"{machine}.{daemon}.pid"


def manager_pid(spec: Spec, machine: str, daemon: str = "networkd") -> int | None:
    """The pid of the machine's networkd (or ``dbus``), if it runs and really is that one:
    that program, in the machine's mount namespace."""
    program = b"systemd-networkd" if daemon == "networkd" else b"dbus-daemon"
    try:
        pid = int(_pid_file(spec, machine, daemon).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        ns = os.readlink(f"/proc/{pid}/ns/mnt")
        inode = os.stat(mount_file(spec, machine)).st_ino
    except (OSError, ValueError):
        return None
    alive = program in cmdline and ns == f"mnt:[{inode}]" and not _zombie(pid)
    return pid if alive else None


def start_dbus(spec: Spec, machine: str) -> None:
    """A system bus of the machine's own (in its private /run), so that ``networkctl
    reload|reconfigure`` works there as on a real host."""
    if manager_pid(spec, machine, "dbus") is not None:
        return
    (spec.directory / "managers").mkdir(mode=0o700, exist_ok=True)
    out = run(spec, machine, ["sh", "-c", "mkdir -p /run/dbus && exec dbus-daemon --system "
                                          "--fork --nopidfile --print-pid"])
    _pid_file(spec, machine, "dbus").write_text(out.strip().splitlines()[0])


def start_networkd(spec: Spec, machine: str, generate: bool = False) -> None:
    """Start systemd-networkd in the machine (``generate``: run ``netplan generate``
    first, as netplan's systemd generator does at boot)."""
    if not os.access(NETWORKD, os.X_OK):
        raise LabError(f"{NETWORKD} is missing: install systemd (systemd-networkd)")
    if generate:
        if shutil.which("netplan") is None:
            raise LabError("netplan is missing: apt-get install netplan.io")
        run(spec, machine, ["netplan", "generate"])
    start_dbus(spec, machine)
    logs = spec.directory / "managers"
    with open(logs / f"{machine}.log", "ab") as log:
        proc = subprocess.Popen(machine_argv(spec, machine, [NETWORKD]), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    _pid_file(spec, machine).write_text(str(proc.pid))


def wait_configured(spec: Spec, machines: Sequence[str], timeout: float = 10.0) -> None:
    """Wait until each machine's networkd has configured its ``eth0``."""
    deadline = time.monotonic() + timeout
    for machine in machines:
        while True:
            pid = manager_pid(spec, machine)
            if pid is not None and _configured(pid):
                break
            if time.monotonic() > deadline:
                raise LabError(f"systemd-networkd of {machine} did not configure eth0 in "
                               f"{timeout:g}s; see {spec.directory}/managers/{machine}.log")
            time.sleep(0.02)


def _configured(pid: int) -> bool:
    links = Path(f"/proc/{pid}/root/run/systemd/netif/links")
    try:
        states = [p.read_text() for p in links.iterdir()]
    except OSError:
        return False
    return any("ADMIN_STATE=configured" in s and "NETWORK_FILE=" in s for s in states)


def stop_networkd(spec: Spec, machine: str, daemon: str = "networkd") -> bool:
    """Stop the machine's networkd (or ``dbus``) by pid; whether one ran."""
    return commands.terminate(lambda: manager_pid(spec, machine, daemon), wait=3.0)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def destroy(spec: Spec, machines: Sequence[str]) -> None:
    """Stop the machines' managers and unmount their namespaces and ``DIR/mnt``."""
    for machine in machines:
        stop_networkd(spec, machine)
        stop_networkd(spec, machine, "dbus")
    mnt = spec.directory / "mnt"
    mounted = _mounts()
    for machine in machines:
        if str(mount_file(spec, machine)) in mounted:
            commands.run(["umount", "-n", str(mount_file(spec, machine))])
    if str(mnt) in mounted:
        commands.run(["umount", "-n", str(mnt)])


def _mounts() -> set[str]:
    """Mount points of this (the host's) mount namespace."""
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            out.add(fields[4].encode().decode("unicode_escape"))
    return out
