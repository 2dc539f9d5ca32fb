"""Host-key entry views for the known_hosts remediation and page tests: a store, a file, two
Ed25519 keys (the stored and the live one) made from fixed seeds, and one view builder."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exporter.core.model import EntryView, Evidence, LiveCert, ProbeResult, State, StoredEntry, Verdict

STORE, FILE = "automation", "/home/ansible/.ssh/known_hosts"


def ed25519_blob(seed: int) -> bytes:
    raw = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key().public_bytes(
        Encoding.OpenSSH, PublicFormat.OpenSSH)
    return base64.b64decode(raw.split()[1])


OLD, NEW = ed25519_blob(1), ed25519_blob(2)


def hk_view(host: str, key_type: str = "ssh-ed25519", state: State = State.MISMATCH,
            evidence: Evidence = Evidence.STORED, *, line: int = 3, port: int = 22,
            stored: bytes = OLD, live: bytes | None = NEW, store: str = STORE,
            reason: str = "the host presents another ssh-ed25519 key") -> EntryView:
    shown = host if port == 22 else f"[{host}]:{port}"
    e = StoredEntry(f"{shown} {key_type}", host, port, "", (),
                    stored_fingerprint=hashlib.sha256(stored).hexdigest(), key_type=key_type,
                    line=line)
    cert = None
    if live is not None:
        cert = LiveCert(hashlib.sha256(live).hexdigest(), "", (), "", "", "", 0.0, 0.0, key_type)
    probe = ProbeResult(f"{host}:{port}", cert, None if cert else "connection refused", 0.1, 5.0)
    return EntryView(store, e, f"{host}:{port}", Verdict(state, evidence, reason), probe, None)
