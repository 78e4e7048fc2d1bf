"""Screenshots at 80 columns: apply, status, doctor and trace --live run in a real
terminal (a tmux pane 80 columns wide, in the lab's jumpbox namespace), and the screen
is read back with ``tmux capture-pane``. Checked: the terminal never had to wrap a line
itself (the capture with wrapped lines joined, ``-J``, equals the one without: podroutes
laid everything out within 80 columns), no cell was cut to "…", boxes close on the
right, and results read whole ("converged", "conflict left alone").
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .conftest import Lab

pytestmark = pytest.mark.lab


class Pane:
    """A tmux server of its own (its own socket), one 80-column pane in the jumpbox."""

    def __init__(self, lab: Lab) -> None:
        self.socket = "prt" + secrets.token_hex(3) + "-tmux"
        self.lab = lab
        self.tmux("new-session", "-d", "-x", "80", "-y", "50", "-s", "podroutes",
                  f"ip netns exec {lab.ns('jumpbox')} env -u COLUMNS -u LINES "
                  "TERM=xterm-256color bash --norc --noprofile")
        self.tmux("set-option", "-g", "history-limit", "5000")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def run(self, *podroutes_args: str) -> tuple[str, str]:
        """Run a podroutes command in the pane; the screen (history included) without
        and with wrapped lines joined."""
        # no `clear`: text typed while it runs is echoed, then wiped by it (seen under
        # load); the output is found between the last typed command and its mark instead
        mark = "done-" + secrets.token_hex(4)
        d = self.lab.dir
        argv = [sys.executable, "-m", "podroutes", *podroutes_args, "-i", f"{d}/machines.txt",
                "--ssh-config", f"{d}/ssh_config", "--ssh-target", "hostname"]
        self.tmux("send-keys", "-l", shlex.join(argv) + f" ; echo {mark[:5]}''{mark[5:]}")
        self.tmux("send-keys", "Enter")
        deadline = time.monotonic() + 60
        while mark not in (screen := self.tmux("capture-pane", "-p", "-S", "-")):
            assert time.monotonic() < deadline, screen
            time.sleep(0.1)
        joined = self.tmux("capture-pane", "-p", "-J", "-S", "-")
        return _between(screen, mark), _between(joined, mark)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30, check=False)


def _between(screen: str, mark: str) -> str:
    """The command's output: after the line that typed it, up to the mark."""
    lines = screen.splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip() == mark)
    # the last command typed before the mark (an earlier screen can reach the history
    # when `clear` pushes it there); the typed command may wrap over several lines
    start = max(i for i in range(end) if "-m podroutes" in lines[i])
    while "; echo" not in lines[start]:
        start += 1
    return "\n".join(line.rstrip() for line in lines[start + 1:end])


@pytest.fixture
def pane(lab: Lab) -> Iterator[Pane]:
    p = Pane(lab)
    try:
        yield p
    finally:
        p.close()


def _laid_out_within_80(screen: str, joined: str) -> None:
    assert screen == joined, "the terminal wrapped a line podroutes printed:\n" + screen
    assert "…" not in screen, screen
    assert all(len(line) <= 80 for line in screen.splitlines())


def test_apply_status_doctor_trace_fit_80_columns(lab: Lab, pane: Pane) -> None:
    # a conflict (a long explanation), a host without forwarding (doctor's "why:" prose)
    lab.sh("node-0", "ip", "route", "add", "10.200.1.0/24", "via", "192.168.10.100",
           "proto", "static")
    screen, joined = pane.run("apply")
    _laid_out_within_80(screen, joined)
    assert "conflict left alone" in screen and "converged" in screen, screen
    assert "node-0: 10.200.1.0/24 should go via 192.168.10.102 (node-1)" in screen

    screen, joined = pane.run("status")
    _laid_out_within_80(screen, joined)
    assert "conflicting" in screen and "in sync: 2 hosts" in screen, screen

    lab.sh("node-0", "ip", "route", "del", "10.200.1.0/24")
    assert lab.podroutes("apply").returncode == 0
    lab.sh("node-1", "sysctl", "-qw", "net.ipv4.ip_forward=0")
    screen, joined = pane.run("doctor")
    _laid_out_within_80(screen, joined)
    assert "forwarding-off" in screen and "why: " in screen, screen

    screen, joined = pane.run("trace", "--live", "10.200.1.2", "10.200.0.2")
    _laid_out_within_80(screen, joined)
    box = [line for line in screen.splitlines() if line.startswith(("┌", "│", "└"))]
    assert box, screen
    assert all(line.endswith(("┐", "│", "┘")) for line in box), screen
    assert len({len(line) for line in box}) == 1, screen  # every frame line as wide
