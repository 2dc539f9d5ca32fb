"""SQLite: the evidence the exporter keeps across restarts."""
