"""`accept`: record an operator's attestation. plan (pure); the command is exporter.cli.main.accept."""
