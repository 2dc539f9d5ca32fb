"""The configuration: the YAML schema and the files that hold secrets."""
