"""How the lab runs a command on this machine: one place for its timeout and its errors.

I/O (root). :func:`run` runs one program (``ip``, ``mount``, ``umount``, ``nsenter``,
``ssh-keygen``, ``sshd``, ``dbus-daemon``, ``netplan``, ...) to completion, its output
captured, and turns a program that is missing, fails or does not finish within its
timeout into a :class:`LabError` naming the command. Called by
:mod:`podroutes.lab.netns` (namespaces, links, host keys, sshd) and
:mod:`podroutes.lab.machine` (mounts, seed files, the machines' daemons).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

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
