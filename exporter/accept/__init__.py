"""`accept`: record an operator's attestation that PI's connection to a peer works, so the
certificate the peer presents now is the one PI stored. plan (pure): which entries, which
refused and why, the check to make; command: the CLI (I/O)."""
