"""What the agent's Kubernetes reflector publishes, recorded for the unit tests that drive
it against the API server test double (kmock)."""

from __future__ import annotations

import asyncio

from podroutes.agent.nodes import ClusterView


class Recorder:
    """The reflector's sink: every view published (with its reason) and every error."""

    def __init__(self) -> None:
        self.views: list[tuple[ClusterView, str]] = []
        self.errors: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def publish(self, view: ClusterView, reason: str) -> None:
        self.views.append((view, reason))
        self.changed.set()

    def error(self, stage: str, message: str) -> None:
        self.errors.append((stage, message))
        self.changed.set()

    async def next(self) -> None:
        await asyncio.wait_for(self.changed.wait(), timeout=10)
        self.changed.clear()

    def reasons(self) -> list[str]:
        return [r for _, r in self.views]

    def hosts(self) -> list[str]:
        return [h.name for h in self.views[-1][0].inventory]
