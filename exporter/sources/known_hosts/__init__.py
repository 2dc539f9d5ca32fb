"""OpenSSH `known_hosts` as a trust-on-first-use store: the pure core.

`keys` reads SSH public-key and certificate blobs, `parse` reads the file, `match` finds the
lines that apply to a host as OpenSSH's client looks it up, `entries` groups them into one entry
per (host, key type), `verdict` decides each entry as OpenSSH's batch client pinned to its type
would, `client` whether a default client connects at all, `rewrite` removes lines as
`ssh-keygen -R` does, `judge` turns a store's probes into entry views. None of these does I/O
(import-linter holds them to it). `source` is the one that does: the Source seam, reading the
file locally or over SSH.
"""
