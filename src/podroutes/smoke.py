"""The lab's smoke matrix: every pod pings every other pod, all pairs in parallel.

I/O (root): runs ``ping`` inside the pods' namespaces, which only reach addresses of
namespaces the lab made. In a dual-stack lab every pair is pinged once per family
(``ping -4`` to the IPv4 address, ``ping -6`` to the IPv6 one). Returns values; the CLI
prints the matrices.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from podroutes.lab import LabSpec
from podroutes.labtopology import Machine


@dataclass(frozen=True, slots=True)
class Ping:
    src: Machine
    dst: Machine
    ok: bool
    detail: str
    family: int = 4

    @property
    def dst_address(self) -> str:
        return self.dst.address_of(self.family) or ""


async def _ping(spec: LabSpec, src: Machine, dst: Machine, family: int,
                gate: asyncio.Semaphore, wait: float) -> Ping:
    address = dst.address_of(family)
    assert address is not None
    async with gate:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", spec.namespace(src.name),
            "ping", f"-{family}", "-n", "-c", "1", "-W", str(max(1, round(wait))), address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    detail = next((ln.strip() for ln in text.splitlines()
                   if "unreachable" in ln.lower() or "packet loss" in ln), text.strip())
    return Ping(src, dst, proc.returncode == 0, detail, family)


async def matrix(spec: LabSpec, parallel: int = 32, wait: float = 1.0) -> list[Ping]:
    """Every ordered pair of distinct pods, per family of the lab (IPv4 pairs first)."""
    pods = spec.pods()
    gate = asyncio.Semaphore(parallel)
    return list(await asyncio.gather(*(
        _ping(spec, a, b, family, gate, wait)
        for family in spec.families for a in pods for b in pods if a is not b)))
