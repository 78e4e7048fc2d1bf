"""The lab's smoke matrix: every pod pings every other pod, all pairs in parallel.

I/O (root): runs ``ping`` inside the pods' namespaces, which only reach addresses of
namespaces the lab made. Returns values; the CLI prints the matrix.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from podroutes.lab import LabSpec, Machine


@dataclass(frozen=True, slots=True)
class Ping:
    src: Machine
    dst: Machine
    ok: bool
    detail: str


async def _ping(spec: LabSpec, src: Machine, dst: Machine, gate: asyncio.Semaphore,
                wait: float) -> Ping:
    async with gate:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", spec.namespace(src.name),
            "ping", "-n", "-c", "1", "-W", str(max(1, round(wait))), dst.address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    detail = next((ln.strip() for ln in text.splitlines()
                   if "unreachable" in ln.lower() or "packet loss" in ln), text.strip())
    return Ping(src, dst, proc.returncode == 0, detail)


async def matrix(spec: LabSpec, parallel: int = 32, wait: float = 1.0) -> list[Ping]:
    pods = spec.pods()
    gate = asyncio.Semaphore(parallel)
    return list(await asyncio.gather(*(
        _ping(spec, a, b, gate, wait) for a in pods for b in pods if a is not b)))
