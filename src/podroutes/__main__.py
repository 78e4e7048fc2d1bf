"""``python -m podroutes``: the same as the ``podroutes`` command."""

from podroutes.cli.main import run

run()
