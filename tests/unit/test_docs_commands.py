"""Every ``podroutes`` command line in README.md and docs/*.md parses with the real
command tree: the command exists, every option exists and takes what the docs give it.
A line the docs show after ``lab exec ... --`` is checked too. (The lab walkthrough is
also run for real: tests/lab/test_docs_walkthrough.py.)"""

from __future__ import annotations

import click
import pytest

from podroutes.cli.main import main

from ..docs_commands import DocCommand, argvs, commands

COMMANDS = commands()


def parse(args: list[str]) -> None:
    """Parse ``args`` as ``podroutes`` would, down to the last subcommand, without running
    anything; ``lab exec ... -- podroutes ...`` parses the inner command as well."""
    command: click.Command = main
    ctx = command.make_context("podroutes", list(args))
    while isinstance(command, click.Group):
        # Click 8.2 keeps a group's remaining words in `args` ("protected_args" is
        # deprecated there); older Click split them across both
        rest = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        if not rest:
            return
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    inner = ctx.params.get("command") or ()
    if inner and inner[0] == "podroutes":
        parse(list(inner[1:]))


def test_the_docs_show_commands() -> None:
    assert len([c for c in COMMANDS if c.block]) >= 20
    files = {c.file for c in COMMANDS}
    assert {"README.md", "docs/lab.md", "docs/persist.md", "docs/doctor-and-trace.md"} <= files


def test_a_wrong_line_is_caught() -> None:
    """The check can fail: a flag that does not exist, a removed syntax."""
    with pytest.raises(click.UsageError):
        parse(["status", "--format", "networkd"])
    with pytest.raises(click.UsageError):
        parse(["plan", "-i", "m.txt", "--format", "yaml"])
    with pytest.raises(click.UsageError):
        parse(["lab", "exec", "--name", "x", "jumpbox", "--", "podroutes", "apply", "--nope"])


@pytest.mark.parametrize("doc", [c for c in COMMANDS if not c.text.startswith("podroutes (")],
                         ids=str)
def test_every_documented_command_line_parses(doc: DocCommand) -> None:
    """Command lines in code blocks must be complete; a mention in prose (`podroutes
    apply`) may leave out what every run needs (``-i``)."""
    for args in argvs(doc.text):
        try:
            parse(args)
        except click.exceptions.Exit:  # --version, --help: parsed, and the command is done
            pass
        except click.MissingParameter:
            if doc.block:
                raise
        except click.UsageError as exc:
            pytest.fail(f"{doc}\n  parsed as {args}\n  {exc.format_message()}")
