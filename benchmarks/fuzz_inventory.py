"""Mutation fuzzer for both inventory parsers, for a bounded time.

Run: .venv/bin/python benchmarks/fuzz_inventory.py --seconds 60

Starts from valid machines.txt and YAML inventories and applies random byte-level and
token-level mutations. Every input must either parse (and then plan into canonical
``ip`` lines) or be rejected with located problems; anything else (a traceback) is a
crash, printed with its input. Prints the count of inputs per parser and of crashes.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
import traceback

from podroutes.core.diff import diff
from podroutes.core.errors import InventoryError
from podroutes.core.plan import plan
from podroutes.inventory import load

SEEDS = {
    "machines.txt": (
        "# KTHW\n192.168.10.100 server.kubernetes.local server\n"
        "192.168.10.101 node-0.kubernetes.local node-0 10.200.0.0/24\n"
        "192.168.10.102,fd00:10::102\tnode-1.kubernetes.local node-1 "
        "10.200.1.0/24,fd00:200:1::/64\n"),
    "inventory.yaml": (
        "hosts:\n  - name: server\n    ipv4: 192.168.10.100\n"
        "  - name: node-0\n    fqdn: node-0.kubernetes.local\n    ipv4: 192.168.10.101\n"
        "    ipv6: fd00:10::101\n    pod_cidrs: [10.200.0.0/24, fd00:200::/64]\n"
        "    ssh: {target: k8s-node-0, user: root, port: 22}\n"),
}
TOKENS = ["/", ":", ".", ",", "%", "#", "\n", "\t", " ", "-", "'", '"', "[", "]", "{", "}",
          "\x00", "$(id)", ";", "`", "::", "/0", "/33", "/129", "::ffff:", "fe80::1%eth0",
          "hosts:", "- ", "name:", "&a", "*a", "!!python/object:os.system", "\u200b", "о"]
ALLOWED = set(string.ascii_letters + string.digits + " .:/-")


def mutate(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        pos = rng.randrange(len(chars) + 1)
        if op < 0.3 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op < 0.6:
            chars[pos:pos] = list(rng.choice(TOKENS))
        elif op < 0.8:
            chars[pos:pos] = [chr(rng.randrange(0, 0x3000))]
        elif chars:
            a = rng.randrange(len(chars))
            chars[pos:pos] = chars[a:a + rng.randint(1, 40)]
    return "".join(chars)


def check(text: str, source: str) -> str:
    try:
        inventory = load(text, source)
    except InventoryError as exc:
        if not exc.problems or any(p.source != source for p in exc.problems):
            raise AssertionError("rejection without a located problem") from exc
        return "rejected"
    for _, routes in plan(inventory):
        for change in diff(routes, [], 147).changes:
            if not set(change.batch_line()) <= ALLOWED:
                raise AssertionError(f"non-canonical ip line {change.batch_line()!r}")
    return "parsed"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts = {name: {"inputs": 0, "parsed": 0, "rejected": 0, "crashes": 0} for name in SEEDS}
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for name, seed in SEEDS.items():
            text = mutate(seed, rng)
            counts[name]["inputs"] += 1
            try:
                counts[name][check(text, name)] += 1
            except Exception:  # a crash is what we are counting
                counts[name]["crashes"] += 1
                print(f"CRASH on {text!r}", file=sys.stderr)
                traceback.print_exc()
    for name, c in counts.items():
        print(f"{name}: {c['inputs']} inputs, {c['parsed']} parsed, {c['rejected']} rejected "
              f"with a location, {c['crashes']} crashes")
    return 1 if any(c["crashes"] for c in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
