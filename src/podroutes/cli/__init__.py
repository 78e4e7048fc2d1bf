"""The ``podroutes`` command: the only code that prints or picks an exit status."""
