"""podroutes: plan, apply, verify and repair the pod network routes of clusters without
an overlay network. See ``podroutes --help`` and docs/architecture.md for the architecture."""

__version__ = "0.1.0"
