"""Probers: what a peer presents right now (a TLS leaf, an SSH host key)."""
