"""The command line: one module per command, one event-loop entry point."""
