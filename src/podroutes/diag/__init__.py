"""``podroutes doctor`` and ``trace``: pure facts, checks and the trace model.

``wire`` is the one module that opens sessions.
"""
