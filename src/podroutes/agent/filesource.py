"""Inventory-file mode: the desired state is a machines.txt or YAML file, watched for changes.

I/O (reads one file). Used by :mod:`podroutes.agent.runner` when the agent runs without
Kubernetes (a systemd service). The file is polled: a ``stat`` every ``poll`` seconds,
re-read when its inode, size or modification time changed (a ConfigMap volume swaps a
symlink; an editor renames a new file over the old: both change the inode). An invalid
or unreadable file is reported and the last valid inventory stays in force: a typo never
prunes the cluster's routes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from podroutes.agent.nodes import ClusterView, Sink
from podroutes.core.errors import InventoryError
from podroutes.inventory import load

MAX_BYTES = 16 << 20


def read_view(path: Path) -> ClusterView:
    """Read and validate the inventory: :class:`InventoryError` with the problems,
    ``OSError`` when it cannot be read, ``ValueError`` when it is too large."""
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path}: larger than {MAX_BYTES >> 20} MiB")
    return ClusterView(load(data.decode("utf-8", errors="replace"), str(path)),
                       from_nodes=False)


class InventoryFileSource:
    """Publishes the file's inventory at start and after every change."""

    def __init__(self, path: Path, *, poll: float = 1.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.path = path
        self.poll = poll
        self._sleep = sleep

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self, sink: Sink) -> None:
        try:
            view = read_view(self.path)
        except InventoryError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            sink.error("inventory", f"invalid inventory, keeping the last valid one: {problems}")
        except (ValueError, OSError) as exc:
            sink.error("inventory", f"cannot read {self.path}, keeping the last valid "
                       f"inventory: {exc}")
        else:
            sink.publish(view, f"read {self.path} ({len(view.inventory)} hosts)")

    async def run(self, sink: Sink) -> None:
        seen: tuple[int, int, int] | None = None
        first = True
        while True:
            stamp = self._stamp()
            if first or stamp != seen:
                seen = stamp
                first = False
                if stamp is None:
                    sink.error("inventory", f"cannot read {self.path}: no such file; keeping "
                               "the last valid inventory")
                else:
                    self._read(sink)
            await self._sleep(self.poll)
