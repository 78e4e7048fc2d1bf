"""How the lab runs a command on this machine and stops a daemon it started.

I/O (root). :func:`run` runs one program (``ip``, ``mount``, ``umount``, ``nsenter``,
``ssh-keygen``, ``sshd``, ``dbus-daemon``, ``netplan``, ...) to completion, its output
captured, and turns a program that is missing, fails or does not finish within its
timeout into a :class:`LabError` naming the command; :func:`run_all` runs several at once
(``iptables-restore`` in every node). :func:`terminate` sends SIGTERM to
a daemon found by its caller's check (which proves the pid is that daemon) and waits a
while for it to go. Called by :mod:`podroutes.lab.netns` (namespaces, links, host keys,
sshd) and :mod:`podroutes.lab.machine` (mounts, seed files, networkd and D-Bus).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

from podroutes.core.errors import LabError

#: Seconds a lab command may take unless its caller allows more (a batch that grows with
#: the lab's size does).
TIMEOUT = 60.0


def run(argv: Sequence[str], input: str | None = None, timeout: float = TIMEOUT) -> str:
    """Run ``argv`` (``input`` on its stdin); its stdout, or :class:`LabError`."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{shlex.join(argv)}` did not finish in {timeout:g} s") from exc
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed ({done.returncode}): "
                       f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def run_all(jobs: Sequence[tuple[Sequence[str], str | None]], at_once: int = 16,
            timeout: float = TIMEOUT) -> None:
    """Run every ``(argv, input)`` job, up to ``at_once`` at a time; the first failure
    becomes a :class:`LabError` naming its command (after every started job ended)."""
    failure: LabError | None = None
    for start in range(0, len(jobs), at_once):
        running = []
        for argv, text in jobs[start:start + at_once]:
            try:
                running.append((argv, text, subprocess.Popen(
                    list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)))
            except OSError as exc:
                failure = failure or LabError(f"cannot run {argv[0]}: {exc}")
        for argv, text, proc in running:
            try:
                out, err = proc.communicate(text, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                failure = failure or LabError(f"`{shlex.join(argv)}` did not finish in "
                                              f"{timeout:g} s")
                continue
            if proc.returncode != 0:
                failure = failure or LabError(f"`{shlex.join(argv)}` failed "
                                              f"({proc.returncode}): {err.strip() or out.strip()}")
    if failure is not None:
        raise failure


def terminate(pid_of: Callable[[], int | None], wait: float) -> bool:
    """SIGTERM the process ``pid_of`` finds (``None``: none runs) and poll ``pid_of``
    every 10 ms, for up to about ``wait`` seconds, until it finds none. Whether there
    was one to stop."""
    pid = pid_of()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(round(wait / 0.01)):
        if pid_of() is None:
            break
        time.sleep(0.01)
    return True
