"""Connection reuse: OpenSSH multiplexing (ControlMaster) between podroutes commands.

I/O (reads ssh configuration files, makes and checks one directory). With reuse on, each
``ssh`` podroutes starts carries ``ControlMaster=auto``, ``ControlPersist=N`` and a
``ControlPath`` in a private directory of the invoking user: the first command to a host
opens a master connection (host key checked as always) that stays N seconds after its
last use, and the commands after it open their shell over that connection, with no new
key exchange or authentication.

The rules, in the order they are applied (docs/reliability.md says why):

- The user's own ssh configuration wins: if the configuration ssh reads (the
  ``--ssh-config`` file; without it ``~/.ssh/config`` and ``/etc/ssh/ssh_config``, each
  with the files it ``Include``\\ s) or an ``--ssh-option`` names ``ControlMaster``,
  ``ControlPath`` or ``ControlPersist`` anywhere, podroutes adds none of the three and
  that configuration decides, for every host.
- The directory (``$XDG_RUNTIME_DIR/podroutes/ssh``, else ``/tmp/podroutes-UID/ssh``) is
  made mode 0700; a directory on that path that is not a directory, is owned by another
  user, or is writable by group or others is refused (a :class:`UsageError`, before any
  host is contacted): a socket there could be another user's master.
- The socket name is ``KEY-%C``: ``%C`` is ssh's fixed-length hash of local host, host,
  port and user; ``KEY`` is a hash of everything else that decides what a connection is
  (the ssh binary, the config file and its contents' identity, the ``--ssh-option``\\ s,
  the network namespace, and the identity of every known_hosts file the configuration
  names). A command whose configuration or known_hosts differ never reuses a master
  opened under other ones: it opens its own, and checks the host key itself.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from podroutes.core.errors import UsageError

#: The keywords by which a user's ssh configuration takes connection reuse over.
CONTROL_KEYWORDS = frozenset({"controlmaster", "controlpath", "controlpersist"})
_KNOWN_HOSTS_KEYWORDS = frozenset({"userknownhostsfile", "globalknownhostsfile"})
_DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2",
                        "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
_SYSTEM_CONFIG = "/etc/ssh/ssh_config"
_USER_CONFIG = "~/.ssh/config"
_MAX_INCLUDE_DEPTH = 16
#: sun_path holds 108 bytes; ssh binds ``PATH.`` + 16 random characters before renaming.
_MAX_SOCKET_PATH = 107 - 17
_KEY_LENGTH = 12
_PERCENT_C_LENGTH = 40


@dataclass(frozen=True, slots=True)
class Multiplex:
    """The ssh options for connection reuse, the same for every host of a command."""

    directory: str
    key: str
    persist: int  # seconds a master stays after its last use

    @property
    def control_path(self) -> str:
        return f"{self.directory}/{self.key}-%C"

    def options(self) -> list[str]:
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}",
                "-o", f"ControlPersist={self.persist}"]


@dataclass(frozen=True, slots=True)
class ConfigFacts:
    """What podroutes needs from the ssh configuration ssh will read."""

    files: tuple[str, ...]  # every file read, Includes too, in order
    sets_control: bool  # some file names ControlMaster, ControlPath or ControlPersist
    known_hosts: tuple[str, ...]  # the known_hosts files named (and ssh's defaults)


def plan(config_file: str | None, options: Sequence[str], persist: int,
         ssh_binary: str = "ssh", base: str | None = None) -> Multiplex | None:
    """The reuse options for a command, or ``None`` (``persist`` 0, or the user's ssh
    configuration decides). Makes and checks the control directory; raises
    :class:`UsageError` if it cannot be trusted."""
    if persist <= 0:
        return None
    if any(_keyword(o) in CONTROL_KEYWORDS for o in options):
        return None
    facts = read_config(config_file)
    if facts.sets_control:
        return None
    known = [*facts.known_hosts, *(_values(o) for o in options
                                   if _keyword(o) in _KNOWN_HOSTS_KEYWORDS)]
    directory = control_directory(base)
    return Multiplex(str(directory), key(ssh_binary, config_file, options, facts.files,
                                         _flatten(known)), persist)


def key(ssh_binary: str, config_file: str | None, options: Sequence[str],
        files: Iterable[str], known_hosts: Iterable[str]) -> str:
    """The part of a socket's name that ties a master to the configuration it was opened
    under (see the module's docstring)."""
    parts: list[object] = [ssh_binary, os.path.realpath(config_file) if config_file else None,
                           list(options), _netns()]
    parts += [[f, _identity(f)] for f in files]
    parts += [[f, _identity(f)] for f in sorted(set(known_hosts))]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:_KEY_LENGTH]


def _identity(path: str) -> list[int] | None:
    """A file's device, inode, size and modification time: any edit changes it."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def _netns() -> int | None:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


def default_base() -> Path:
    """``$XDG_RUNTIME_DIR/podroutes/ssh`` when that is usable, else
    ``/tmp/podroutes-UID/ssh``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/") and os.path.isdir(runtime) and _owned_private(runtime):
        path = Path(runtime) / "podroutes" / "ssh"
        if _fits(path):
            return path
    return Path(f"/tmp/podroutes-{os.getuid()}") / "ssh"


def _owned_private(path: str) -> bool:
    info = os.lstat(path)
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _fits(directory: Path) -> bool:
    return len(str(directory)) + 1 + _KEY_LENGTH + 1 + _PERCENT_C_LENGTH <= _MAX_SOCKET_PATH


def control_directory(base: str | None = None) -> Path:
    """Make (mode 0700) and check the directory for the control sockets and its parent.

    Each of the two is refused if it is a symlink or not a directory, is owned by another
    user, or is writable by group or others."""
    directory = Path(base) if base else default_base()
    if not _fits(directory):
        raise UsageError(f"ssh control directory {directory}: path too long for a socket "
                         "name; use --ssh-persist 0")
    for path in (directory.parent, directory):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UsageError(f"ssh control directory {path}: cannot create it: "
                             f"{exc.strerror}; use --ssh-persist 0 to connect without "
                             "reuse") from exc
        check_private(path)
    return directory


def check_private(path: Path) -> None:
    """Raise :class:`UsageError` unless ``path`` is a real directory of this user that
    no one else can write."""
    info = os.lstat(path)
    problem = None
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory (a symlink or a file)"
    elif info.st_uid != os.getuid():
        problem = f"is owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
    elif info.st_mode & 0o022:
        problem = f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    if problem:
        raise UsageError(f"ssh control directory {path} {problem}: refusing to share ssh "
                         "connections through it; fix it (mode 0700, owned by you) or use "
                         "--ssh-persist 0")


def read_config(config_file: str | None) -> ConfigFacts:
    """The files ssh reads for this configuration, whether they name a Control*
    keyword, and the known_hosts files they name (plus ssh's defaults)."""
    files: list[str] = []
    known: list[str] = []
    sets_control = False

    def read(path: str, relative_to: str, depth: int) -> None:
        nonlocal sets_control
        if depth > _MAX_INCLUDE_DEPTH:
            return
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return
        files.append(path)
        for line in text.splitlines():
            keyword = _keyword(line.strip())
            if keyword in CONTROL_KEYWORDS:
                sets_control = True
            elif keyword in _KNOWN_HOSTS_KEYWORDS:
                known.extend(_expand(v, relative_to) for v in _values(line).split())
            elif keyword == "include":
                for pattern in _values(line).split():
                    for included in sorted(glob.glob(_expand(pattern, relative_to))):
                        read(included, relative_to, depth + 1)

    if config_file:
        read(config_file, os.path.expanduser("~/.ssh"), 0)
    else:
        read(os.path.expanduser(_USER_CONFIG), os.path.expanduser("~/.ssh"), 0)
        read(_SYSTEM_CONFIG, "/etc/ssh", 0)
    known.extend(os.path.expanduser(p) for p in _DEFAULT_KNOWN_HOSTS)
    return ConfigFacts(tuple(files), sets_control,
                       tuple(k for k in known if k and "%" not in k and k != "none"))


def _keyword(line: str) -> str:
    """The keyword of a config line or ``-o`` option, lower case ('' for a comment)."""
    if not line or line.startswith("#"):
        return ""
    head = line.replace("=", " ", 1).split(None, 1)
    return head[0].lower() if head else ""


def _values(line: str) -> str:
    head = line.strip().replace("=", " ", 1).split(None, 1)
    return head[1].strip().strip('"') if len(head) > 1 else ""


def _expand(path: str, relative_to: str) -> str:
    path = os.path.expanduser(path.strip('"'))
    return path if path.startswith("/") else os.path.join(relative_to, path)


def _flatten(values: Iterable[str]) -> list[str]:
    return [os.path.expanduser(v) for value in values for v in value.split()]
