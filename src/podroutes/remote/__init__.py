"""The only way to a host: sessions, transports and the apply/status engine."""
