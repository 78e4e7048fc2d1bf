"""``podroutes persist``: pure facts, detection, rendering and planning; ``wire`` opens sessions."""
