"""The one reader of INI-style files: systemd units (``.network``, ``networkd.conf``,
networkd's link state files) and NetworkManager keyfiles.

Pure: text in, values out. Used by doctor (:mod:`podroutes.core.netfiles`) and by
persist's detection, planning and rendering.
"""

from __future__ import annotations

Section = tuple[str, list[tuple[str, str]]]


def ini_sections(text: str) -> list[Section]:
    """Sections in file order, each with its ``key=value`` pairs in order (repeats kept:
    a ``.network`` file may hold several ``[Route]`` sections and several ``Address=``).
    Keys before the first section header belong to the unnamed section ``""``, always
    the first; comment lines (``#``, ``;``) and lines without ``=`` are skipped."""
    out: list[Section] = [("", [])]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            out.append((line[1:-1].strip(), []))
        elif "=" in line:
            key, value = line.split("=", 1)
            out[-1][1].append((key.strip(), value.strip()))
    return out


def ini_values(text: str) -> list[tuple[str, dict[str, str]]]:
    """Sections in order with a later repeat of a key winning, as systemd reads
    single-valued settings (``ManageForeignRoutes=``, ``NETWORK_FILE=``)."""
    return [(name, dict(pairs)) for name, pairs in ini_sections(text)]
