"""Connection reuse (remote.multiplex): the ssh options, the user's config winning, the
private control directory refused when another user could reach it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from podroutes.cli.main import main
from podroutes.core.errors import UsageError
from podroutes.core.model import Host, SshTargetKind
from podroutes.inventory import load
from podroutes.remote import multiplex
from podroutes.remote.transport import SshTransport, timeout_message

from .samples import MACHINES


def host() -> Host:
    return load(MACHINES, "m").hosts[0]


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short temporary directory: a socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="prtm", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(f"Host *\n  User root\n  UserKnownHostsFile {tmp_path}/known_hosts\n")
    (tmp_path / "known_hosts").write_text("server ssh-ed25519 AAAA\n")
    return path


def test_reuse_adds_master_path_and_persist_after_the_users_options(
        config: Path, tmp_path: Path) -> None:
    reuse = multiplex.plan(str(config), ("Port=2222",), 60, base=str(tmp_path / "c" / "ssh"))
    assert reuse is not None
    argv = SshTransport(config_file=str(config), options=("Port=2222",),
                        multiplex=reuse).argv(host())
    tail = argv[argv.index("Port=2222") + 1:]
    assert tail == ["-o", "ControlMaster=auto", "-o",
                    f"ControlPath={tmp_path}/c/ssh/{reuse.key}-%C", "-o", "ControlPersist=60",
                    "--", "192.168.10.100", "/bin/sh"]
    for made in (tmp_path / "c", tmp_path / "c" / "ssh"):
        info = made.stat()
        assert (info.st_mode & 0o777, info.st_uid) == (0o700, os.getuid())


def test_persist_zero_means_no_reuse(config: Path, tmp_path: Path) -> None:
    assert multiplex.plan(str(config), (), 0, base=str(tmp_path / "c" / "ssh")) is None
    assert not (tmp_path / "c").exists()
    assert "ControlMaster=auto" not in SshTransport().argv(host())


@pytest.mark.parametrize("line", ["ControlMaster no", "controlpath=none",
                                  "  ControlPersist 5", "ControlPath ~/.ssh/cm-%C"])
def test_the_users_config_wins_when_it_names_a_control_keyword(
        config: Path, tmp_path: Path, line: str) -> None:
    config.write_text(config.read_text() + f"Host node-9\n  {line}\n")
    assert multiplex.plan(str(config), (), 60, base=str(tmp_path / "c" / "ssh")) is None


def test_a_control_keyword_in_an_included_file_also_wins(config: Path, tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "mux.conf").write_text("ControlMaster auto\n")
    config.write_text(f"Include {tmp_path}/conf.d/*.conf\n" + config.read_text())
    assert multiplex.read_config(str(config)).sets_control
    assert multiplex.plan(str(config), (), 60, base=str(tmp_path / "c" / "ssh")) is None


def test_a_control_keyword_in_ssh_option_wins(config: Path, tmp_path: Path) -> None:
    assert multiplex.plan(str(config), ("ControlPath=/x/%C",), 60,
                          base=str(tmp_path / "c" / "ssh")) is None


def test_the_key_changes_with_the_config_the_options_and_known_hosts(
        config: Path, tmp_path: Path) -> None:
    """A master is reused only under the configuration and known_hosts it was opened
    with: editing known_hosts (ssh-keygen -R) means a new connection, a new key check."""
    base = str(tmp_path / "c" / "ssh")

    def key(*options: str) -> str:
        reuse = multiplex.plan(str(config), options, 60, base=base)
        assert reuse is not None
        return reuse.key

    first = key()
    assert key() == first
    assert key("Port=2222") != first
    known = tmp_path / "known_hosts"
    known.write_text(known.read_text() + "node-0 ssh-ed25519 BBBB\n")
    assert key() != first
    assert len(key()) == 12


@pytest.mark.parametrize("spoil", ["mode", "owner", "symlink", "file"])
def test_a_control_directory_another_user_could_reach_is_refused(
        tmp_path: Path, spoil: str) -> None:
    parent = tmp_path / "p"
    directory = parent / "ssh"
    parent.mkdir(mode=0o700)
    if spoil == "mode":
        directory.mkdir()
        directory.chmod(0o777)
    elif spoil == "owner":
        if os.getuid() != 0:
            pytest.skip("chown to another user needs root")
        directory.mkdir(mode=0o700)
        os.chown(directory, 65534, 65534)
    elif spoil == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        directory.symlink_to(tmp_path / "elsewhere")
    else:
        directory.write_text("")
    with pytest.raises(UsageError, match=r"refusing to share ssh connections.*--ssh-persist 0"):
        multiplex.control_directory(str(directory))


def test_a_shared_parent_is_refused_too(tmp_path: Path) -> None:
    parent = tmp_path / "p"
    parent.mkdir()
    parent.chmod(0o1777)
    with pytest.raises(UsageError, match="writable by group or others"):
        multiplex.control_directory(str(parent / "ssh"))


def test_a_refused_directory_fails_the_command_before_any_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 2 naming the directory, before any host is reached (ssh would be the
    next thing to start: it is made to fail loudly if it were)."""
    bad = tmp_path / "p" / "ssh"
    bad.mkdir(parents=True)
    bad.chmod(0o757)
    monkeypatch.setattr(multiplex, "default_base", lambda: bad)
    machines = tmp_path / "machines.txt"
    machines.write_text(MACHINES)
    monkeypatch.setattr("podroutes.remote.transport.SshTransport.session", _no_session)
    result = CliRunner().invoke(main, ["status", "-i", str(machines), "--timeout", "0.5"])
    assert result.exit_code == 2, result.output
    assert f"ssh control directory {bad} is writable by group or others" in result.output
    assert "unreachable" not in result.output


def _no_session(self: SshTransport, host: Host) -> None:
    raise AssertionError(f"a session to {host.name} was opened")


def test_the_default_directory_is_the_users_runtime_dir_or_tmp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "r"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert multiplex.default_base() == runtime / "podroutes" / "ssh"
    runtime.chmod(0o777)  # not private: not used
    assert multiplex.default_base() == Path(f"/tmp/podroutes-{os.getuid()}/ssh")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert multiplex.default_base() == Path(f"/tmp/podroutes-{os.getuid()}/ssh")


def test_a_timeout_names_the_shared_connection_as_a_suspect(
        config: Path, tmp_path: Path) -> None:
    reuse = multiplex.plan(str(config), (), 60, base=str(tmp_path / "c" / "ssh"))
    assert reuse is not None
    said = timeout_message(SshTransport(multiplex=reuse), 3)
    assert said.startswith("timed out after 3s (--timeout)")
    assert f"shared ssh connection to it does (a master in {tmp_path}/c/ssh" in said
    assert "--ssh-persist 0" in said
    assert "shared" not in timeout_message(SshTransport(target_kind=SshTargetKind.ADDRESS), 3)
