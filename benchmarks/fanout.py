"""Fan-out: podroutes apply against sequential ssh, parallel OpenSSH and ansible-core.

Run (root; builds its own 30-node lab and removes it at the end, also on Ctrl-C):

    .venv/bin/python benchmarks/fanout.py --runs 5 [--json] [--noop] [--lab NAME]

Every method runs from the lab's jumpbox namespace against the same 31 hosts (server +
30 nodes) and installs each host's planned routes (``ip route replace DST via GW proto
147``):

1. sequential ssh, one batch per host: ``ssh -F ssh_config HOST ip -batch - < HOST.batch``
   (the host's ``route replace`` lines), one host after the other: what a person who knows
   ``ip -batch`` writes;
2. parallel OpenSSH, one batch per host: the same 31 commands, all at once (``&`` and
   ``wait``): the floor the issue-18 target is measured against (no lock, no read, no
   diff, no conflict safety, no verification);
3. sequential ssh, the seed's way: ``ssh -F ssh_config HOST 'ip -j route show >/dev/null
   && ip route replace ... && ...'``: read the table, then one ``ip`` process per route;
4. parallel OpenSSH, the seed's way: those 31 commands all at once;
5. ansible-core, ``shell`` module, forks=30, pipelining, ``gather_facts: false``, strategy
   ``free``, one task reading the table and one replacing the routes (per-host route
   commands as inventory host vars generated from ``podroutes plan --format json``);
6. ansible-core, ``raw`` module, otherwise the same;
7. ``podroutes apply`` (which also locks, reads, diffs, and reads back to verify).

Each measured run starts cold (every ``proto 147`` route flushed, checked), and after each
run every host's ``ip -j route show proto 147`` must equal its plan exactly, or the run
counts as failed, not fast. Methods are interleaved round by round (rotating the order),
after one untimed warm-up round. ansible-core is a benchmark peer only: it is installed
into its own virtualenv under /var/tmp/podroutes-bench/ on first use (never into .venv).
Its SSH masters (ControlPersist) get a fresh ControlPath directory per run and are closed
after it, so no run inherits another's connections.

``--kex default`` restarts every lab sshd (through the lab's own ``stop_sshd``/``start_sshd``)
without the lab's ``KexAlgorithms curve25519-sha256`` line, so clients and servers agree on
OpenSSH's default (9.2: ``sntrup761x25519-sha512@openssh.com``); ``--kex curve25519`` (the
default) keeps the lab as ``lab up`` made it. The key exchange really negotiated is read
from ``ssh -v`` before the runs and printed with the results.

``--noop`` measures the in-sync case instead: ``podroutes apply`` with nothing to change
against one ``ssh HOST ip -j route show`` per host, sequential and parallel.

``--warm`` measures connection reuse (issue 16): the lab in sync, every command run
while its ssh masters live (one untimed warm-up round opens them; rounds alternate the
methods): ``podroutes status --json``, a no-op ``podroutes apply --json`` and
``podroutes doctor --json`` (reuse on, ``--ssh-persist 60``, the default) against
ansible-core with its default ``ControlPersist=60s`` (one control directory kept for the
whole measurement) reading the same things, one ``shell`` task each: both route tables
(what a no-op apply reads); those plus the rules, the other tables and one ``ip -batch``
of ``route get`` for status's sample addresses (what status reads); every command
doctor reads (``diag.facts.FACT_COMMANDS``). ``status --ssh-persist 0`` alternates
with them, to show what reuse saves on the same machine at the same moment. Targets:
status and apply <= 0.4 s, doctor <= 0.6 s, each >= 15x faster than ansible-core.
Every podroutes method in the cold and no-op modes runs with ``--ssh-persist 0``, so a
"cold" run never rides a master left by the one before.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from podroutes.lab import netns as labmod

PROTO = 147
BENCH_ROOT = Path("/var/tmp/podroutes-bench")
ANSIBLE_VERSION = "2.21.5"
#: The newest ansible-core whose controller still runs on Python 3.11 (2.20+ need 3.12).
ANSIBLE_VERSION_PY311 = "2.19.14"
ANSIBLE_FORKS = 30
#: The issue's targets: podroutes at least this many times faster than the method.
TARGETS = {"ssh-sequential": 6.0, "ansible-shell": 8.0,
           # issue 18: cold apply <= 1.25x the time of 31 parallel `ssh HOST ip -batch -`
           "ssh-parallel-batch": 1 / 1.25}
#: Warm mode: (podroutes method, its ansible-core peer, wall target in s, ratio target).
WARM_PAIRS = (("podroutes-status", "ansible-status", 0.4, 15.0),
              ("podroutes-apply", "ansible-read", 0.4, 15.0),
              ("podroutes-doctor", "ansible-doctor", 0.6, 15.0))
#: Machine busy (other processes) above this fraction of all cores: figures are *shared*.
SHARED_BUSY = 0.20
#: ... or the 1-minute load average before we started above this (others were running).
SHARED_LOAD = 1.0
RUN_TIMEOUT = 300.0
#: The line `lab up` writes into every lab sshd's config (src/podroutes/lab/netns.py).
LAB_KEX_LINE = "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org"

Route = tuple[str, str]  # (destination, gateway), as `ip -j route` prints them
Plan = dict[str, list[Route]]


# --------------------------------------------------------------------------- pure helpers

def parse_plan(data: Mapping[str, object]) -> Plan:
    """``podroutes plan --format json`` -> {host: [(dst, gateway), ...]} in plan order."""
    hosts = data["hosts"]
    assert isinstance(hosts, list)
    return {h["name"]: [(r["dst"], r["gateway"]) for r in h["routes"]] for h in hosts}


def replace_commands(routes: Iterable[Route], proto: int = PROTO) -> list[str]:
    return [f"ip route replace {dst} via {gw} proto {proto}" for dst, gw in routes]


def host_command(routes: Iterable[Route], proto: int = PROTO,
                 read: str = "ip -j route show >/dev/null") -> str:
    """The one remote command a person would type: read the table, then replace each route."""
    return " && ".join([read, *replace_commands(routes, proto)])


def ssh_argv(ssh_config: str, host: str, command: str) -> list[str]:
    return ["ssh", "-n", "-F", ssh_config, host, command]


def sequential_script(ssh_config: str, commands: Mapping[str, str]) -> str:
    """Bash: one ssh after the other; stop at the first failure."""
    lines = ["set -e"]
    lines += [shlex.join(ssh_argv(ssh_config, h, c)) for h, c in commands.items()]
    return "\n".join(lines) + "\n"


def parallel_script(ssh_config: str, commands: Mapping[str, str]) -> str:
    """Bash: every ssh at once, then wait for each and fail if any failed."""
    lines = ["pids=()"]
    for host, command in commands.items():
        lines += [shlex.join(ssh_argv(ssh_config, host, command)) + " &", "pids+=($!)"]
    lines += ["rc=0", 'for p in "${pids[@]}"; do wait "$p" || rc=1; done', "exit $rc"]
    return "\n".join(lines) + "\n"


# The one-batch-per-host peers (issue 18): what a person who knows `ip -batch` writes.

def batch_text(routes: Iterable[Route], proto: int = PROTO) -> str:
    """The host's planned routes as ``ip -batch`` lines (``route replace ...``)."""
    return "".join(f"route replace {dst} via {gw} proto {proto}\n" for dst, gw in routes)


def batch_script(ssh_config: str, batches: Mapping[str, str], parallel: bool) -> str:
    """Bash: ``ssh HOST ip -batch - < FILE`` per host (``batches``: host -> batch file),
    one after the other (stop at the first failure) or all at once (fail if any failed)."""
    def line(host: str, path: str) -> str:
        return f"{shlex.join(['ssh', '-F', ssh_config, host, 'ip', '-batch', '-'])} " \
               f"< {shlex.quote(path)}"
    if not parallel:
        return "\n".join(["set -e", *(line(h, p) for h, p in batches.items())]) + "\n"
    lines = ["pids=()"]
    for host, path in batches.items():
        lines += [line(host, path) + " &", "pids+=($!)"]
    lines += ["rc=0", 'for p in "${pids[@]}"; do wait "$p" || rc=1; done', "exit $rc"]
    return "\n".join(lines) + "\n"


#: podroutes' remote work on a cold host, as one shell script fed to ``ssh HOST /bin/sh``:
#: the lock (``flock`` on the netns), both tables read, the batch of ``route add`` lines,
#: the IPv4 table read back. What ``podroutes apply`` makes the host do, minus Python.
SAME_WORK = """\
exec 9</proc/self/ns/net && flock -w 10 9 || exit 1
ip -j -4 route show table main >/dev/null
ip -j -6 route show table main >/dev/null
ip -force -batch - <<'__END__'
{batch}__END__
ip -j -4 route show table main >/dev/null
"""
#: The same in the order of a one-round-trip apply (the batch sent with the read, and the
#: read being the verification): one ``ip`` process fewer per host.
ONE_TRIP_WORK = """\
exec 9</proc/self/ns/net && flock -w 10 9 || exit 1
ip -force -batch - <<'__END__'
{batch}__END__
ip -j -4 route show table main >/dev/null
ip -j -6 route show table main >/dev/null
"""


def add_text(routes: Iterable[Route], proto: int = PROTO) -> str:
    """``route add`` lines, as podroutes sends them to a cold host."""
    return "".join(f"route add {dst} via {gw} proto {proto}\n" for dst, gw in routes)


def shell_script(ssh_config: str, scripts: Mapping[str, str]) -> str:
    """Bash: ``ssh -T HOST /bin/sh < FILE`` for every host at once (``scripts``: host ->
    script file), as podroutes starts its sessions; fail if any failed."""
    lines = ["pids=()"]
    for host, path in scripts.items():
        argv = ["ssh", "-T", "-o", "BatchMode=yes", "-F", ssh_config, host, "/bin/sh"]
        lines += [f"{shlex.join(argv)} < {shlex.quote(path)} &", "pids+=($!)"]
    lines += ["rc=0", 'for p in "${pids[@]}"; do wait "$p" || rc=1; done', "exit $rc"]
    return "\n".join(lines) + "\n"


def kex_config(text: str, kex: str) -> str:
    """A lab sshd config with the key exchange ``kex`` asks for: ``curve25519`` (the
    lab's own line), or ``default`` (no KexAlgorithms line: OpenSSH's default list)."""
    lines = [ln for ln in text.splitlines() if not ln.startswith("KexAlgorithms ")]
    if kex == "curve25519":
        at = next((i for i, ln in enumerate(lines) if ln.startswith("LogLevel ")), len(lines))
        lines.insert(at, LAB_KEX_LINE)
    return "\n".join(lines) + "\n"


def parse_table(text: str) -> set[Route]:
    """``ip -j route show proto N`` -> {(dst, gateway)} (a route without gateway: '')."""
    entries = json.loads(text) if text.strip() else []
    return {(e["dst"], e.get("gateway", "")) for e in entries}


def table_mismatch(host: str, expected: Iterable[Route], actual: set[Route]) -> str | None:
    want = set(expected)
    if want == actual:
        return None
    missing, extra = sorted(want - actual), sorted(actual - want)
    return (f"{host}: {len(missing)} planned route(s) missing {missing[:3]}, "
            f"{len(extra)} unexpected {extra[:3]}")


def ansible_inventory(plan: Plan, proto: int = PROTO) -> dict[str, object]:
    """A YAML inventory (written as JSON, which YAML reads): one host var per host."""
    hosts = {host: {"route_commands": " && ".join(replace_commands(routes, proto))}
             for host, routes in plan.items()}
    return {"all": {"hosts": hosts}}


def ansible_playbook(module: str, strategy: str) -> list[dict[str, object]]:
    """One task reading the table, one replacing this host's planned routes."""
    return [{
        "name": f"podroutes fan-out benchmark ({module})",
        "hosts": "all",
        "gather_facts": False,
        "strategy": strategy,
        "tasks": [
            {"name": "read the routing table", module: "ip -j route show",
             "changed_when": False},
            {"name": "replace the planned routes", module: "{{ route_commands }}"},
        ],
    }]


def ansible_read_playbook(command: str, name: str) -> list[dict[str, object]]:
    """One ``shell`` task running ``command`` on every host (warm mode's reads)."""
    return [{
        "name": f"podroutes warm benchmark ({name})",
        "hosts": "all",
        "gather_facts": False,
        "strategy": "free",
        "tasks": [{"name": name, "shell": command, "changed_when": False}],
    }]


def table_reads() -> str:
    """What a no-op ``podroutes apply`` reads on each host (both tables), as one line."""
    return "ip -j -4 route show table main; ip -j -6 route show table main"


def status_reads() -> str:
    """What ``podroutes status`` reads on each host: both tables, the rules and other
    tables (``core.paths.TABLES_SCRIPT``) and the kernel's path for a sample address of
    each destination (one ``ip -batch`` of ``route get``; the host var ``route_gets``)."""
    from podroutes.core.paths import TABLES_SCRIPT

    return (table_reads() + "; sh -c " + shlex.quote(TABLES_SCRIPT) +
            "; printf 'route get %s\\n' {{ route_gets | join(' ') }}"
            " | ip -j -force -batch -")


def route_gets(inventory_path: str) -> dict[str, list[str]]:
    """Per host, the addresses ``status`` asks the kernel about (``core.paths.samples``)."""
    from podroutes.core.paths import destinations, samples
    from podroutes.core.plan import plan
    from podroutes.inventory import load

    inventory = load(Path(inventory_path).read_text(), inventory_path)
    route_plan = plan(inventory)
    return {h.name: [str(a) for a in samples(destinations(h, route_plan.routes_for(h)))]
            for h in inventory}


def doctor_reads() -> str:
    """Every command ``podroutes doctor`` reads on each host, as one shell line."""
    from podroutes.diag.facts import FACT_COMMANDS

    return "; ".join(shlex.join(argv) + " 2>&1" for argv in FACT_COMMANDS.values()) + "; true"


def warm_table(summaries: Mapping[str, Summary], labels: Mapping[str, str],
               shared: bool) -> str:
    """podroutes' warm commands next to their ansible-core peer, with the targets."""
    mark = " (*shared*)" if shared else ""
    out = ["| command (warm) | runs ok | median | min | max | target | ansible-core warm, "
           "same reads (median) | podroutes faster by | target | controller CPU, podroutes "
           "/ ansible (median) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for key, peer, wall, ratio in WARM_PAIRS:
        s, a = summaries.get(key), summaries.get(peer)
        if s is None:
            continue
        n = f"{len(s.times)}/{len(s.times) + len(s.failures)}"
        if not s.times:
            out.append(f"| {labels[key]} | {n} | failed | | | | | | | |")
            continue
        met = "met" if s.median <= wall else "not met"
        peer_cell = times = verdict = ""
        cpu = f"{statistics.median(s.cpu):.2f} s" if s.cpu else ""
        if a is not None and a.cpu:
            cpu += f" / {statistics.median(a.cpu):.2f} s"
        if a is not None and a.times:
            peer_cell = f"{a.median:.2f} s ({labels[peer]})"
            x = speedup(a.median, s.median)
            times = f"{x:.1f}x"
            verdict = f"≥ {ratio:g}x: {'met' if x >= ratio else 'not met'}"
        out.append(f"| {labels[key]} | {n} | **{s.median:.3f} s**{mark} | {min(s.times):.3f} s "
                   f"| {max(s.times):.3f} s | ≤ {wall:g} s: {met} | {peer_cell} | {times} | "
                   f"{verdict} | {cpu} |")
    return "\n".join(out)


def ansible_cfg(workdir: Path, ssh_config: str, forks: int = ANSIBLE_FORKS) -> str:
    # ssh_args: ansible's default (-C, ControlMaster=auto, ControlPersist=60s) plus the
    # lab's ssh_config; control_path_dir is set per run through the environment.
    return "\n".join([
        "[defaults]",
        f"forks = {forks}",
        "interpreter_python = /usr/bin/python3",
        "gathering = explicit",
        "retry_files_enabled = False",
        "host_key_checking = True",
        f"local_tmp = {workdir / 'tmp'}",
        "",
        "[ssh_connection]",
        "pipelining = True",
        "ssh_args = -C -o ControlMaster=auto -o ControlPersist=60s -F " + ssh_config,
        "",
    ])


@dataclass
class Summary:
    times: list[float]
    failures: list[str] = field(default_factory=list)
    #: CPU seconds (user + sys) of the controller's process tree per ok run: the command
    #: and the children it waited for (its ssh clients; not ssh masters, not sshd).
    cpu: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.times) and not self.failures

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def speedup(method_median: float, podroutes_median: float) -> float:
    """How many times faster podroutes was (> 1: podroutes faster)."""
    return method_median / podroutes_median


def markdown_table(rows: Sequence[tuple[str, str, Summary]], reference: str,
                   shared: bool, targets: Mapping[str, float] = TARGETS) -> str:
    ref = dict((key, s) for key, _, s in rows)[reference]
    mark = " (*shared*)" if shared else ""
    out = ["| method | runs ok | median | min | max | podroutes faster by | target |",
           "|---|---|---|---|---|---|---|"]
    for key, label, s in rows:
        n = f"{len(s.times)}/{len(s.times) + len(s.failures)}"
        if not s.times:
            out.append(f"| {label} | {n} | failed | | | | |")
            continue
        ratio = (f"{speedup(s.median, ref.median):.2f}x" if ref.times and key != reference
                 else "" if key != reference else "1x")
        target = targets.get(key)
        verdict = ""
        if target is not None and ref.times:
            met = speedup(s.median, ref.median) >= target
            verdict = f"≥ {target:g}x: {'met' if met else 'not met'}"
        out.append(f"| {label} | {n} | **{s.median:.2f} s**{mark} | {min(s.times):.2f} s | "
                   f"{max(s.times):.2f} s | {ratio} | {verdict} |")
    return "\n".join(out)


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all cores from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_fraction(seconds: float = 2.0) -> float:
    """Fraction of all cores busy (with anything) over `seconds` while we sleep."""
    b0, t0 = cpu_jiffies()
    time.sleep(seconds)
    b1, t1 = cpu_jiffies()
    return (b1 - b0) / max(1, t1 - t0)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --------------------------------------------------------------------------- I/O

class Interrupted(Exception):
    pass


_children: set[int] = set()  # process groups we started, killed by id if we stop early


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


def run(argv: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run in a new process group (ours alone), killed by its id on timeout or interrupt."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input is not None else
                            subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(env) if env is not None else None,
                            start_new_session=True)
    _children.add(proc.pid)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        _children.discard(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _descendants(pid: int) -> list[int]:
    """pid and every process under it (ansible's workers leave our process group)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, p in parents.items() if p in frontier]
        tree += frontier
    return tree


def _kill_group(pgid: int) -> None:
    """Stop a child we started: its process group and its descendants, each by its id."""
    pids = _descendants(pgid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM:
            time.sleep(0.5)


class Bench:
    def __init__(self, spec: labmod.LabSpec, plan: Plan, podroutes: list[str],
                 workdir: Path) -> None:
        self.spec = spec
        self.plan = plan
        self.podroutes = podroutes
        self.workdir = workdir
        self.ssh_config = str(spec.directory / "ssh_config")
        self.inventory = str(spec.directory / "machines.txt")
        self.jumpbox = ["ip", "netns", "exec", spec.namespace("jumpbox")]
        self.control_dirs: list[Path] = []
        self.podroutes_env: dict[str, str] | None = None

    def use_bytecode_cache(self, directory: Path) -> None:
        """Let podroutes' own imports use compiled bytecode kept outside the tree.

        ansible-core is pip-installed with its .pyc files; this checkout runs from src/
        with PYTHONDONTWRITEBYTECODE set, so without this every podroutes start would
        compile its modules from source, which no installed copy does.
        """
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.podroutes_env = {**env, "PYTHONPYCACHEPREFIX": str(directory)}

    # state of the hosts, read and reset from the root namespace (`ip -n`)
    def table(self, host: str) -> set[Route]:
        done = run(["ip", "-n", self.spec.namespace(host), "-j", "route", "show", "proto",
                    str(PROTO)])
        if done.returncode != 0:
            raise RuntimeError(f"reading {host}'s table: {done.stderr.strip()}")
        return parse_table(done.stdout)

    def make_cold(self) -> None:
        for host in self.plan:
            run(["ip", "-n", self.spec.namespace(host), "route", "flush", "proto", str(PROTO)])
        left = {h: t for h in self.plan if (t := self.table(h))}
        if left:
            raise RuntimeError(f"could not restore the cold state: {left}")

    def verify(self) -> list[str]:
        return [m for h, routes in self.plan.items()
                if (m := table_mismatch(h, routes, self.table(h)))]

    # the methods: each returns an error message, or None when it says it succeeded
    def timed(self, argv: Sequence[str],
              env: Mapping[str, str] | None = None) -> tuple[float, str | None]:
        started = time.monotonic()
        done = run(argv, env=env)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip())[-400:]
            return elapsed, f"exit {done.returncode}: {tail}"
        return elapsed, None

    def ssh_script(self, parallel: bool, commands: Mapping[str, str]) -> tuple[float, str | None]:
        make = parallel_script if parallel else sequential_script
        path = self.workdir / ("parallel.sh" if parallel else "sequential.sh")
        path.write_text(make(self.ssh_config, commands))
        return self.timed([*self.jumpbox, "bash", str(path)])

    def ssh_batches(self, parallel: bool) -> tuple[float, str | None]:
        """One ``ssh HOST ip -batch - < FILE`` per host (files written once, untimed)."""
        batches = {}
        for host, routes in self.plan.items():
            path = self.workdir / f"{host}.batch"
            if not path.exists():
                path.write_text(batch_text(routes))
            batches[host] = str(path)
        path = self.workdir / ("parallel-batch.sh" if parallel else "sequential-batch.sh")
        path.write_text(batch_script(self.ssh_config, batches, parallel))
        return self.timed([*self.jumpbox, "bash", str(path)])

    def ssh_same_work(self, template: str, name: str) -> tuple[float, str | None]:
        """podroutes' remote work from bash, 31 shells at once (no Python): the difference
        to ``podroutes apply`` is what podroutes' own process costs."""
        scripts = {}
        for host, routes in self.plan.items():
            path = self.workdir / f"{host}.{name}"
            if not path.exists():
                path.write_text(template.format(batch=add_text(routes)))
            scripts[host] = str(path)
        path = self.workdir / f"{name}.sh"
        path.write_text(shell_script(self.ssh_config, scripts))
        return self.timed([*self.jumpbox, "bash", str(path)])

    def set_kex(self, kex: str) -> None:
        """Every lab sshd restarted with the key exchange ``kex`` asks for, through the
        lab's own stop/start (the same daemons, the same config otherwise)."""
        for m in self.spec.machines():
            conf = self.spec.directory / "sshd" / f"{m.name}.conf"
            text = conf.read_text()
            wanted = kex_config(text, kex)
            if wanted != text:
                conf.write_text(wanted)
                labmod.stop_sshd(self.spec, m.name)
                labmod.start_sshd(self.spec, m.name)

    def negotiated_kex(self, host: str) -> str:
        """The key exchange one ssh connection to ``host`` really agrees on (ssh -v)."""
        done = run([*self.jumpbox, "ssh", "-v", "-n", "-F", self.ssh_config, host, "true"],
                   timeout=30)
        for line in done.stderr.splitlines():
            if "kex: algorithm:" in line:
                return line.split("kex: algorithm:", 1)[1].strip()
        raise RuntimeError(f"no key exchange in ssh -v to {host}: {done.stderr[-400:]}")

    def podroutes_apply(self, noop: bool, persist: int = 0) -> tuple[float, str | None]:
        argv = [*self.jumpbox, *self.podroutes, "apply", "-i", self.inventory, "--ssh-config",
                self.ssh_config, "--ssh-target", "hostname", "--json",
                "--ssh-persist", str(persist)]
        started = time.monotonic()
        done = run(argv, env=self.podroutes_env)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            return elapsed, f"exit {done.returncode}: {done.stderr.strip()[-400:]}"
        hosts = json.loads(done.stdout)["hosts"]
        bad = [h["host"] for h in hosts if not h["converged"]]
        if bad or len(hosts) != len(self.plan):
            return elapsed, f"not converged: {bad} ({len(hosts)} hosts reported)"
        if noop:
            changed = [h["host"] for h in hosts if h.get("applied")]
            if changed:
                return elapsed, f"no-op apply changed {changed}"
        return elapsed, None

    def podroutes_read(self, command: str, persist: int = 60) -> tuple[float, str | None]:
        """A warm ``podroutes status|doctor --json`` (reuse on, the default persistence;
        ``persist`` 0: a cold one): exit 0 and every host answered, or the run failed."""
        argv = [*self.jumpbox, *self.podroutes, command, "-i", self.inventory, "--ssh-config",
                self.ssh_config, "--ssh-target", "hostname", "--json", "--ssh-persist",
                str(persist)]
        started = time.monotonic()
        done = run(argv, env=self.podroutes_env)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            return elapsed, f"exit {done.returncode}: {(done.stderr or done.stdout)[-400:]}"
        hosts = json.loads(done.stdout)["hosts"]
        bad = [h["host"] for h in hosts if h.get("error")]
        if bad or len(hosts) != len(self.plan):
            return elapsed, f"hosts not read: {bad} ({len(hosts)} hosts reported)"
        return elapsed, None

    def warm_control(self) -> Path:
        """ansible-core's control directory for the whole warm measurement (its masters
        live across runs, as they do for a person running playbooks one after another)."""
        if not self.control_dirs:
            self.control_dirs.append(Path(tempfile.mkdtemp(prefix="cp-", dir=self.workdir)))
        return self.control_dirs[0]

    def ansible_warm(self, venv: Path, play: str) -> tuple[float, str | None]:
        env = {**os.environ, "ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg"),
               "ANSIBLE_HOME": str(self.workdir / "ansible-home"),
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.warm_control()),
               "ANSIBLE_NOCOLOR": "1"}
        argv = [*self.jumpbox, str(venv / "bin" / "ansible-playbook"), "-i",
                str(self.workdir / "inventory.json"), str(self.workdir / f"play-{play}.yml")]
        return self.timed(argv, env=env)

    def ansible(self, venv: Path, module: str) -> tuple[float, str | None]:
        control = Path(tempfile.mkdtemp(prefix="cp-", dir=self.workdir))
        self.control_dirs.append(control)
        env = {**os.environ, "ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg"),
               "ANSIBLE_HOME": str(self.workdir / "ansible-home"),
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control), "ANSIBLE_NOCOLOR": "1"}
        argv = [*self.jumpbox, str(venv / "bin" / "ansible-playbook"), "-i",
                str(self.workdir / "inventory.json"), str(self.workdir / f"play-{module}.yml")]
        try:
            return self.timed(argv, env=env)
        finally:
            self.close_masters(control)

    def close_masters(self, control: Path) -> None:
        """Close the run's ControlPersist masters (ssh -O exit on each socket)."""
        for sock in sorted(control.iterdir()) if control.exists() else []:
            run([*self.jumpbox, "ssh", "-F", self.ssh_config, "-S", str(sock), "-O", "exit",
                 "x"], timeout=10)
        shutil.rmtree(control, ignore_errors=True)


def find_python312() -> str | None:
    """An interpreter >= 3.12 for the ansible-core controller (2.20+ need it), if any."""
    candidates = [shutil.which(n) for n in ("python3.13", "python3.12", "python3.14")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")),
                         reverse=True)
    for path in filter(None, candidates):
        done = run([path, "-c", "import sys; print(sys.version_info >= (3, 12))"], timeout=20)
        if done.returncode == 0 and done.stdout.strip() == "True":
            return path
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def ensure_ansible(version: str | None, python: str | None) -> tuple[Path, str, str]:
    """The benchmark's own ansible-core virtualenv (made on first use): (venv, version, py)."""
    if python is None and (version is None or version_tuple(version) >= (2, 20)):
        python = find_python312()
    if python is None:
        python = sys.executable
        version = version or ANSIBLE_VERSION_PY311
    version = version or ANSIBLE_VERSION
    venv = BENCH_ROOT / f"ansible-core-{version}-{Path(python).resolve().name}"
    playbook = venv / "bin" / "ansible-playbook"
    if not playbook.exists():
        print(f"installing ansible-core=={version} into {venv} (benchmark only)",
              file=sys.stderr)
        BENCH_ROOT.mkdir(parents=True, exist_ok=True)
        for argv in ([python, "-m", "venv", "--clear", str(venv)],
                     [str(venv / "bin" / "pip"), "install", "-q", f"ansible-core=={version}"]):
            done = run(argv, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed: {done.stderr[-800:]}")
    done = run([str(venv / "bin" / "python"), "-c",
                "import sys, ansible.release as r; print(r.__version__, sys.version.split()[0])"])
    got, pyver = done.stdout.split()
    if got != version:
        raise RuntimeError(f"{venv} has ansible-core {got}, not {version}")
    return venv, version, pyver


def source_tree() -> str:
    """The commit podroutes ran from, '+src changes' if src/ differed from it."""
    repo = Path(__file__).resolve().parents[1]
    head = run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], timeout=20)
    dirty = run(["git", "-C", str(repo), "status", "--porcelain", "src"], timeout=20)
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" +src changes" if dirty.stdout.strip() else "")


def podroutes_argv() -> list[str]:
    script = Path(sys.executable).parent / "podroutes"
    return [str(script)] if script.exists() else [sys.executable, "-m", "podroutes"]


def measure(methods: Sequence[tuple[str, str, Callable[[], tuple[float, str | None]]]],
            bench: Bench, runs: int, warmup: int, cold: bool) -> dict[str, Summary]:
    results = {key: Summary([]) for key, _, _ in methods}
    for round_no in range(-warmup, runs):
        shift = round_no % len(methods)
        order = list(methods[shift:]) + list(methods[:shift])
        for key, label, method in order:
            if cold:
                bench.make_cold()
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            elapsed, error = method()
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
            wrong = bench.verify()
            if wrong and error is None:
                error = f"routes wrong after the run: {wrong[0]} (+{len(wrong) - 1} hosts)"
            tag = "warm-up" if round_no < 0 else f"run {round_no + 1}/{runs}"
            print(f"  {tag:12s} {label:52s} {elapsed:6.2f} s"
                  f"{'  FAILED: ' + error if error else ''}", file=sys.stderr)
            if round_no < 0:
                continue
            if error:
                results[key].failures.append(error)
            else:
                results[key].times.append(elapsed)
                results[key].cpu.append(cpu)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--lab", help="reuse this existing lab (not removed at the end)")
    parser.add_argument("--noop", action="store_true",
                        help="measure the in-sync case: podroutes apply vs one read per host")
    parser.add_argument("--warm", action="store_true",
                        help="measure connection reuse: warm status, no-op apply and doctor "
                             "against ansible-core warm doing the same reads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--methods", default="all",
                        help="comma list of ssh-sequential-batch,ssh-parallel-batch,"
                             "ssh-sequential,ssh-parallel,ansible-shell,ansible-raw,podroutes"
                             " (default: all of these); also ssh-same-work (podroutes' remote "
                             "commands from bash, no Python) and ssh-one-trip-work (the same "
                             "in one round trip's order)")
    parser.add_argument("--ansible-version", help=f"default {ANSIBLE_VERSION} (needs Python "
                        f">= 3.12), or {ANSIBLE_VERSION_PY311} on this Python")
    parser.add_argument("--ansible-python", help="interpreter for ansible-core's own venv")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run podroutes as this environment does (PYTHONDONTWRITEBYTECODE"
                             " kept: its modules compiled from source at every start)")
    parser.add_argument("--ansible-strategy", choices=("free", "linear"), default="free")
    parser.add_argument("--kex", choices=("curve25519", "default"), default="curve25519",
                        help="the lab sshd's key exchange: the lab's X25519 only, or "
                             "OpenSSH's default list (9.2: sntrup761x25519 first)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root (the lab is network namespaces)")

    signal.signal(signal.SIGTERM, _on_sigterm)
    wanted = {"ssh-sequential-batch", "ssh-parallel-batch", "ssh-sequential", "ssh-parallel",
              "ansible-shell", "ansible-raw", "podroutes"}
    extra = {"ssh-same-work", "ssh-one-trip-work"}  # the gap's parts: only when asked
    if args.methods != "all":
        wanted = set(args.methods.split(","))
    unknown = wanted - extra - {"ssh-sequential-batch", "ssh-parallel-batch", "ssh-sequential",
                                "ssh-parallel", "ansible-shell", "ansible-raw", "podroutes",
                                "podroutes-status", "podroutes-apply", "podroutes-doctor",
                                "ansible-read", "ansible-status", "ansible-doctor",
                                "podroutes-status-cold"}
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")
    if args.noop:
        wanted -= {"ansible-shell", "ansible-raw", "ssh-sequential-batch", "ssh-parallel-batch"}
    if args.warm:
        wanted = {"podroutes-status", "podroutes-apply", "podroutes-doctor", "ansible-read",
                  "ansible-status", "ansible-doctor", "podroutes-status-cold",
                  } if args.methods == "all" else wanted
    started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load_before, busy_before = loadavg(), busy_fraction()
    print(f"load average {load_before}, CPU busy {busy_before:.0%} before", file=sys.stderr)

    ansible: tuple[Path, str, str] | None = None
    if wanted & {"ansible-shell", "ansible-raw", "ansible-read", "ansible-status",
                  "ansible-doctor"}:
        ansible = ensure_ansible(args.ansible_version, args.ansible_python)

    own_lab = args.lab is None
    # no ipMasq rules: doctor must find the lab healthy (exit 0) for its runs to count
    spec = (labmod.LabSpec(name="prt" + secrets.token_hex(3), nodes=args.nodes, pods_per_node=1,
                           ipmasq=False)
            if own_lab else labmod.load_spec(args.lab))
    workdir = Path(tempfile.mkdtemp(prefix=f"fanout-{spec.name}-", dir="/var/tmp"))
    bench: Bench | None = None
    kex = "?"
    try:
        if own_lab:
            print(f"building lab {spec.name} ({spec.nodes} nodes)", file=sys.stderr)
            labmod.up(spec)
        podroutes = podroutes_argv()
        done = run([*podroutes, "plan", "-i", str(spec.directory / "machines.txt"),
                    "--format", "json"])
        if done.returncode != 0:
            raise RuntimeError(f"podroutes plan failed: {done.stderr}")
        plan = parse_plan(json.loads(done.stdout))
        b = bench = Bench(spec, plan, podroutes, workdir)
        nroutes = sum(len(r) for r in plan.values())
        if not args.no_bytecode_cache:
            b.use_bytecode_cache(BENCH_ROOT / "pycache")
        print(f"{len(plan)} hosts, {nroutes} routes; work dir {workdir}", file=sys.stderr)
        b.set_kex(args.kex)
        kex = b.negotiated_kex(next(iter(plan)))
        print(f"sshd key exchange: {args.kex} (negotiated: {kex})", file=sys.stderr)

        if args.warm:
            hosts_inventory = ansible_inventory(plan)
            gets = route_gets(b.inventory)
            for name, hostvars in hosts_inventory["all"]["hosts"].items():  # type: ignore[index]
                hostvars["route_gets"] = gets[name]
            (workdir / "inventory.json").write_text(json.dumps(hosts_inventory, indent=1))
            (workdir / "ansible.cfg").write_text(ansible_cfg(workdir, b.ssh_config))
            (workdir / "tmp").mkdir()
            for play, command in (("read", table_reads()), ("status", status_reads()),
                                  ("doctor", doctor_reads())):
                (workdir / f"play-{play}.yml").write_text(
                    json.dumps(ansible_read_playbook(command, play), indent=1))
            aversion = ansible[1] if ansible else "?"
            venv = ansible[0] if ansible else Path("/nonexistent")
            catalogue = [
                ("podroutes-status", "`podroutes status --json`",
                 lambda: b.podroutes_read("status")),
                ("podroutes-apply", "`podroutes apply --json`, no-op",
                 lambda: b.podroutes_apply(noop=True, persist=60)),
                ("podroutes-doctor", "`podroutes doctor --json`",
                 lambda: b.podroutes_read("doctor")),
                ("podroutes-status-cold", "`podroutes status --json --ssh-persist 0`",
                 lambda: b.podroutes_read("status", persist=0)),
                ("ansible-read", f"ansible-core {aversion} `shell`: both route tables",
                 lambda: b.ansible_warm(venv, "read")),
                ("ansible-status", f"ansible-core {aversion} `shell`: status's reads",
                 lambda: b.ansible_warm(venv, "status")),
                ("ansible-doctor", f"ansible-core {aversion} `shell`: doctor's reads",
                 lambda: b.ansible_warm(venv, "doctor")),
            ]
            b.make_cold()
            _, error = b.podroutes_apply(noop=False)
            if error or b.verify():
                raise RuntimeError(f"the initial apply failed: {error or b.verify()}")
        elif args.noop:
            reads = {h: "ip -j route show" for h in plan}
            catalogue = [
                ("ssh-sequential", "sequential ssh, one `ip -j route show` per host",
                 lambda: b.ssh_script(False, reads)),
                ("ssh-parallel", "parallel OpenSSH, one `ip -j route show` per host",
                 lambda: b.ssh_script(True, reads)),
                ("podroutes", "`podroutes apply`, no-op (all in sync)",
                 lambda: b.podroutes_apply(noop=True)),
            ]
            b.make_cold()
            _, error = b.podroutes_apply(noop=False)
            if error or b.verify():
                raise RuntimeError(f"the initial apply failed: {error or b.verify()}")
        else:
            commands = {h: host_command(routes) for h, routes in plan.items()}
            (workdir / "inventory.json").write_text(json.dumps(ansible_inventory(plan),
                                                               indent=1))
            (workdir / "ansible.cfg").write_text(ansible_cfg(workdir, b.ssh_config))
            (workdir / "tmp").mkdir()
            for module in ("shell", "raw"):
                (workdir / f"play-{module}.yml").write_text(
                    json.dumps(ansible_playbook(module, args.ansible_strategy), indent=1))
            aversion = ansible[1] if ansible else "?"
            venv = ansible[0] if ansible else Path("/nonexistent")
            catalogue = [
                ("ssh-sequential-batch", "sequential ssh, one `ip -batch -` per host",
                 lambda: b.ssh_batches(False)),
                ("ssh-parallel-batch", f"parallel OpenSSH, one `ip -batch -` per host "
                 f"({len(plan)} at once)", lambda: b.ssh_batches(True)),
                ("ssh-sequential", "sequential ssh, the seed's way (read + one `ip route "
                 "replace` per route)", lambda: b.ssh_script(False, commands)),
                ("ssh-parallel", f"parallel OpenSSH, the seed's way ({len(plan)} at once)",
                 lambda: b.ssh_script(True, commands)),
                ("ansible-shell", f"ansible-core {aversion} `shell`, forks={ANSIBLE_FORKS}",
                 lambda: b.ansible(venv, "shell")),
                ("ansible-raw", f"ansible-core {aversion} `raw`, forks={ANSIBLE_FORKS}",
                 lambda: b.ansible(venv, "raw")),
                ("ssh-same-work", "parallel OpenSSH, podroutes' remote commands (lock, 2 "
                 "reads, batch, read-back), no Python", lambda: b.ssh_same_work(SAME_WORK,
                                                                             "same")),
                ("ssh-one-trip-work", "parallel OpenSSH, the same in one trip's order (no "
                 "read-back)", lambda: b.ssh_same_work(ONE_TRIP_WORK, "onetrip")),
                ("podroutes", "`podroutes apply`, cold",
                 lambda: b.podroutes_apply(noop=False)),
            ]
        methods = [m for m in catalogue if m[0] in wanted]
        results = measure(methods, b, args.runs, args.warmup,
                          cold=not (args.noop or args.warm))
    finally:
        if bench is not None:
            for control in bench.control_dirs:
                bench.close_masters(control)
            if not own_lab and args.kex != "curve25519":
                bench.set_kex("curve25519")  # leave a reused lab as `lab up` made it
        labmod.close_ssh_masters(spec)  # podroutes' own (warm mode), by socket then pid
        if own_lab:
            print(f"removing lab {spec.name}", file=sys.stderr)
            labmod.down(spec)
        for pgid in list(_children):
            _kill_group(pgid)
        shutil.rmtree(workdir, ignore_errors=True)

    load_after, busy_after = loadavg(), busy_fraction()
    tree = source_tree()
    shared = (max(busy_before, busy_after) > SHARED_BUSY
              or float(load_before.split()[0]) > SHARED_LOAD)
    rows = [(key, label, results[key]) for key, label, _ in methods]
    report = {
        "date": started_at,
        "mode": "warm" if args.warm else "noop" if args.noop else "cold",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "hosts": len(plan), "routes": nroutes, "runs": args.runs, "warmup": args.warmup,
        "ansible": {"version": ansible[1], "python": ansible[2], "forks": ANSIBLE_FORKS,
                    "strategy": args.ansible_strategy, "pipelining": True}
        if ansible else None,
        "load_before": load_before, "load_after": load_after,
        "cpu_busy_before": round(busy_before, 3), "cpu_busy_after": round(busy_after, 3),
        "podroutes_tree": tree, "shared": shared, "kex": args.kex, "kex_negotiated": kex,
        "podroutes_bytecode_cache": not args.no_bytecode_cache,
        "methods": {key: {"label": label, "times": [round(t, 4) for t in s.times],
                          "failures": s.failures,
                          "cpu": [round(c, 4) for c in s.cpu],
                          "median": round(s.median, 4) if s.times else None,
                          "min": round(min(s.times), 4) if s.times else None,
                          "max": round(max(s.times), 4) if s.times else None}
                    for key, label, s in rows},
    }
    if args.warm:
        report["podroutes_faster_by"] = {
            key: round(speedup(results[peer].median, results[key].median), 3)
            for key, peer, _, _ in WARM_PAIRS
            if key in results and peer in results and results[key].times
            and results[peer].times}
    ref = results.get("podroutes")
    if ref is not None and ref.times:
        report["podroutes_faster_by"] = {key: round(speedup(s.median, ref.median), 3)
                                         for key, _, s in rows if key != "podroutes" and s.times}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        what = ("warm (connection reuse)" if args.warm else
                "no-op (in sync)" if args.noop else "cold")
        print(f"{what}, {len(plan)} hosts, {nroutes} routes, median of {args.runs} "
              f"(+{args.warmup} warm-up), {os.cpu_count()} cores, {started_at}")
        print(f"podroutes from {tree}"
              f"{'' if args.no_bytecode_cache else ' (bytecode cached outside the tree)'}")
        if ansible:
            print(f"ansible-core {ansible[1]} (Python {ansible[2]}), forks={ANSIBLE_FORKS}, "
                  f"pipelining, strategy {args.ansible_strategy}, gather_facts false")
        print(f"lab sshd key exchange: {args.kex} (negotiated: {kex})")
        print(f"load average before {load_before}, after {load_after}; CPU busy (other "
              f"work, 2 s sample) before {busy_before:.0%}, after {busy_after:.0%}"
              f"{' -> *shared*' if shared else ''}\n")
        if args.warm:
            print(warm_table(results, {key: label for key, label, _ in methods}, shared))
            cold, warm = results.get("podroutes-status-cold"), results.get("podroutes-status")
            if cold and warm and cold.times and warm.times:
                print(f"\nThe same status without reuse (`--ssh-persist 0`, a new connection "
                      f"per host each run), alternating with the above: median "
                      f"{cold.median:.3f} s, controller CPU "
                      f"{statistics.median(cold.cpu):.2f} s: reuse makes it "
                      f"{speedup(cold.median, warm.median):.1f}x faster.")
        elif "podroutes" in results:
            print(markdown_table(rows, "podroutes", shared, {} if args.noop else TARGETS))
        else:
            for key, label, s in rows:
                print(f"{key}: {label}: median {s.median:.2f} s, {s.failures or ''}")
    return 0 if all(s.ok for _, _, s in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, Interrupted):
        print("interrupted (a lab made by this run was removed)", file=sys.stderr)
        sys.exit(130)
