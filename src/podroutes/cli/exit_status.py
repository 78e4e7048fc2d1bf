"""The exit statuses of every ``podroutes`` command: the CLI contract of the README.

CLI layer: only the command modules pick an exit status, always one of these.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """What a ``podroutes`` command's exit status means.

    - ``OK`` (0): done; every host converged, in sync, persisted or healthy, the trace
      delivered.
    - ``FAILED`` (1): some host failed or could not be reached or read (apply also when a
      host kept a conflict).
    - ``INVALID`` (2): the input was rejected (inventory, flags); nothing was sent to any
      host.
    - ``DRIFT`` (3): the hosts were read but are not as planned: status drift (routes or,
      with ``--check-persist``, their persistence), doctor findings that remain, a trace
      dropped, looped, left the cluster or the kernel disagreed.
    - ``INTERRUPTED`` (130): Ctrl-C; every connection was closed.
    """

    OK = 0
    FAILED = 1
    INVALID = 2
    DRIFT = 3
    INTERRUPTED = 130
