"""Hostile input: nothing in an inventory reaches a shell or ``ip`` unvalidated, and no
input makes a parser crash (every input parses or yields located problems)."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podroutes.cli import plan_output as render
from podroutes.cli.main import main
from podroutes.core.diff import diff
from podroutes.core.errors import InventoryError
from podroutes.core.outcome import failed_lines as _failed_lines
from podroutes.core.plan import plan
from podroutes.inventory import load, parse_machines
from podroutes.inventory.yamlfile import parse_yaml
from podroutes.remote.transport import explain_ssh_failure

GOOD = ("192.168.10.100 server.kubernetes.local server\n"
        "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n")

HOSTILE = [
    "node-0;reboot", "$(id)", "`id`", "node-0\nreboot", "node-0\x00", "nоde-0",  # Cyrillic о
    "node-0 && rm -rf /", "node-0|sh", "'node-0'", "node-0$IFS", "-oProxyCommand=id",
    "x" * 64, "node-0/../../etc", "NODE-0\u200b",
]


def _outcome(text: str, source: str) -> str:
    """What every input must come to: a parse, or located problems. Never a traceback."""
    try:
        inventory = load(text, source)
    except InventoryError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.source == source and problem.line >= 0 and problem.field
        return "rejected"
    for host, routes in plan(inventory):
        for change in diff(routes, [], 147).changes:
            _assert_canonical(change.batch_line())
        assert host.name.isascii()
    return "parsed"


def _assert_canonical(line: str) -> None:
    allowed = set(string.ascii_letters + string.digits + " .:/-")
    assert set(line) <= allowed, line


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", [0, 1, 2, 3])
def test_hostile_values_in_any_machines_field_are_rejected_with_a_location(
    value: str, field: int
) -> None:
    fields = ["192.168.10.102", "node-1.kubernetes.local", "node-1", "10.200.1.0/24"]
    fields[field] = value
    text = GOOD + " ".join(fields) + "\n"
    if "\n" in value or "\x00" in value or " " in value:
        # a newline or space splits the line: still rejected, still located
        assert _outcome(text, "m.txt") == "rejected"
        return
    with pytest.raises(InventoryError) as caught:
        load(text, "m.txt")
    assert any(p.line == 3 for p in caught.value.problems)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_in_yaml_fields_are_rejected(value: str) -> None:
    for key in ("name", "fqdn", "ipv4", "pod_cidr"):
        host = {"name": "node-1", "ipv4": "192.168.10.102", "pod_cidr": "10.200.1.0/24"}
        host[key] = value
        body = "".join(f"    {k}: {value!r}\n" if k == key else f"    {k}: {v}\n"
                       for k, v in host.items())
        text = "hosts:\n  - name: server\n    ipv4: 192.168.10.100\n  -\n" + body
        with pytest.raises(InventoryError):
            load(text, "h.yaml")


def test_an_inventory_over_the_size_limit_is_refused_without_parsing(tmp_path: Path) -> None:
    big = tmp_path / "huge.txt"
    line = b"192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n"
    with big.open("wb") as handle:
        for _ in range((100 << 20) // (1 << 20)):
            handle.write(line * ((1 << 20) // len(line) + 1))
    assert big.stat().st_size >= 100 << 20
    result = CliRunner().invoke(main, ["plan", "-i", str(big)])
    assert result.exit_code == 2
    assert f"{big}:0: file: larger than 16 MiB" in result.output


def test_an_over_long_line_is_rejected_with_its_line() -> None:
    with pytest.raises(InventoryError) as caught:
        load(GOOD + "1" * 5000 + "\n", "m.txt")
    assert str(caught.value.problems[0]).startswith("m.txt:3: line: is 5000 characters long")


def test_the_ssh_user_of_the_hand_run_script_is_quoted() -> None:
    inventory = load(GOOD, "m.txt")
    script = render.plan_script(plan(inventory), 147, lambda h: h.name, "x;reboot")
    assert "ssh 'x;reboot@server'" in script


# --- fuzzing: bounded, in every CI run ----------------------------------------------------

_FUZZ = settings(max_examples=600, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
_ALPHABET = st.characters(codec="utf-8", exclude_categories=["Cs"])
_TOKENS = st.sampled_from([
    "192.168.10.101", "fd00::1", "10.200.0.0/24", "10.200.1.5/24", "fd00:200::/64", "node-0",
    "node-0.kubernetes.local", "#", " ", "\t", "\n", "hosts:", "- ", "name:", "ipv4:", "ipv6:",
    "pod_cidrs:", "pod_cidr:", "ssh:", "port:", "[", "]", "{", "}", ",", ":", "'", "\"", "&a",
    "*a", "!!python/object", "%", "::ffff:1.2.3.4", "0.0.0.0/0", "-1", "65536", "\x00",
])


@_FUZZ
@given(st.text(_ALPHABET, max_size=400))
def test_fuzz_machines_parser_on_random_text(text: str) -> None:
    _, problems = parse_machines(text, "fuzz.txt")
    assert all(p.source == "fuzz.txt" for p in problems)
    _outcome(text, "fuzz.txt")


@_FUZZ
@given(st.lists(_TOKENS, max_size=60).map("".join))
def test_fuzz_both_parsers_on_token_soup(text: str) -> None:
    _outcome(text, "fuzz.txt")
    _outcome("hosts:\n" + text, "fuzz.yaml")


@_FUZZ
@given(st.text(_ALPHABET, max_size=400))
def test_fuzz_yaml_parser_on_random_text(text: str) -> None:
    _, problems = parse_yaml(text, "fuzz.yaml")
    assert all(p.source == "fuzz.yaml" for p in problems)
    _outcome(text, "fuzz.yaml")


# --- error texts: both iproute2 phrasings, and ssh's -------------------------------------


def test_failed_batch_lines_map_to_their_routes_in_both_iproute2_phrasings() -> None:
    inventory = load(GOOD + "192.168.10.102 node-1.kubernetes.local node-1 10.200.1.0/24\n",
                     "m.txt")
    changes = diff(plan(inventory).routes_for(inventory.host("server")), [], 147).changes
    modern = "Error: Nexthop has invalid gateway.\nCommand failed -:2\n"
    older = "RTNETLINK answers: Network is unreachable\nCommand failed -:1\n" \
            "RTNETLINK answers: Operation not permitted\nCommand failed -:2\n"
    assert _failed_lines(changes, modern) == {1: "Error: Nexthop has invalid gateway."}
    assert _failed_lines(changes, older) == {
        0: "RTNETLINK answers: Network is unreachable",
        1: "RTNETLINK answers: Operation not permitted"}
    assert _failed_lines(changes, "Command failed -:9\n") == {}  # no such line: ignored


@pytest.mark.parametrize(("said", "meaning"), [
    ("ssh: connect to host 192.168.10.102 port 22: Connection refused", "connection refused"),
    ("root@192.168.10.102: Permission denied (publickey).", "authentication failed"),
    ("Host key verification failed.", "host key verification failed"),
    ("@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed.",
     "host key mismatch"),
    ("ssh: connect to host 192.168.10.150 port 22: No route to host", "host unreachable"),
    ("Connection timed out during banner exchange", "host unreachable"),
    ("ssh: Could not resolve hostname node-9: Name or service not known", "name not resolved"),
])
def test_ssh_failures_are_explained(said: str, meaning: str) -> None:
    explained = explain_ssh_failure(said)
    assert explained.startswith(meaning)
    assert said.splitlines()[-1] in explained  # ssh's own words are kept


def test_reading_an_inventory_takes_memory_for_the_file_not_for_the_limit(
        tmp_path: Path) -> None:
    import tracemalloc

    from podroutes.cli.options import MAX_INVENTORY_BYTES, read_inventory

    small = tmp_path / "machines.txt"
    small.write_bytes(GOOD.encode())
    tracemalloc.start()
    try:
        inventory = read_inventory(str(small))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(inventory.hosts) >= 1
    assert peak < MAX_INVENTORY_BYTES // 8  # a 16 MiB buffer for a file of a few lines


def test_an_inventory_exactly_at_the_limit_is_read_whole(tmp_path: Path) -> None:
    from podroutes.cli.options import MAX_INVENTORY_BYTES, _read_limited

    data = (b"# " + b"x" * 97 + b"\n") * (MAX_INVENTORY_BYTES // 100) + b"#" * (
        MAX_INVENTORY_BYTES % 100)
    assert len(data) == MAX_INVENTORY_BYTES
    with (tmp_path / "at.txt").open("wb") as handle:
        handle.write(data)
    with (tmp_path / "at.txt").open("rb") as handle:
        assert _read_limited(handle) == data
    with (tmp_path / "over.txt").open("wb") as handle:
        handle.write(data + b"##")
    with (tmp_path / "over.txt").open("rb") as handle:
        assert len(_read_limited(handle)) == MAX_INVENTORY_BYTES + 1
