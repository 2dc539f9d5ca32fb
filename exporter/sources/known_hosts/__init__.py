"""OpenSSH `known_hosts` as a trust-on-first-use store: the pure core.

`keys` reads SSH public-key and certificate blobs, `parse` reads the file, `match` finds the
lines that apply to a host as OpenSSH's client looks it up, `entries` groups them into one entry
per (host, key type), `verdict` decides each entry as OpenSSH's batch client pinned to its type
would, `client` whether a default client connects at all, `rewrite` removes lines as
`ssh-keygen -R` does. No module here does I/O; the caller reads, probes and writes.
"""
