"""Builders for the `unit` tests: the exporter's data (entries, probes, views, snapshots) made
in memory, the way exporter.service.service makes them, for the pure modules' decisions. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exporter.config.model import Config, PairConfig, StoreConfig
from exporter.core.model import (
    Attested,
    Baseline,
    EntryView,
    Evidence,
    LiveCert,
    ProbeResult,
    State,
    StoredEntry,
    StoreRead,
    StoreStatus,
    Subject,
    Verdict,
)
from exporter.core.subject import format_subject
from exporter.fleet.pairs import PairView
from exporter.fleet.snapshot import Snapshot

FP_A, FP_B, FP_C = "a" * 64, "b" * 64, "c" * 64


def subj(cn: str, org: str = "Cisco Systems") -> Subject:
    return (("C", "US"), ("O", org), ("CN", cn))


def entry(key: str, subject: Subject | None = None) -> StoredEntry:
    host, _, port = key.rpartition("_")
    subject = subject if subject is not None else subj(host)
    return StoredEntry(key, host.strip("[]"), int(port), format_subject(subject), subject)


def cert(fp: str, subject: Subject, spki: str | None = None) -> LiveCert:
    return LiveCert(fp, spki or fp[::-1], subject, format_subject(subject), "/CN=issuer", "1f",
                    1_700_000_000.0, 1_900_000_000.0)


def view(store: str, key: str, state: State = State.MISMATCH, evidence: Evidence = Evidence.SUBJECT,
         reason: str | None = None, *, endpoint: str | None = None, fp: str | None = FP_A,
         stored: Subject | None = None, live: Subject | None = None, error: str | None = None,
         baseline: Baseline | None = None, attestation: Attested | None = None) -> EntryView:
    """One entry view; `fp=None` is an endpoint that gave no certificate (`error`)."""
    e = entry(key, stored)
    ep = endpoint or f"{e.host}:{e.port}"
    live_cert = cert(fp, live if live is not None else e.subject) if fp is not None else None
    probe = ProbeResult(ep, live_cert, None if live_cert else (error or "connection refused"), 0.1, 5.0)
    verdict = Verdict(state, evidence, reason if reason is not None else f"{state} by {evidence}")
    return EntryView(store, e, ep, verdict, probe, baseline, attestation=attestation)


def read(store: str, ok: bool = True, error: str | None = None) -> StoreRead:
    return StoreRead(store, ok, None, 0.5, 100.0, error=error)


def status(name: str, ok: bool | None = True, error: str | None = None,
           ever: bool = True) -> StoreStatus:
    """A store read fine (ok), failed now (ok=False, with `error`), or never tried (None).
    `ever`: an earlier read succeeded."""
    last = None if ok is None else read(name, ok, error)
    last_success = last if ok else (read(name) if ever else None)
    return StoreStatus(name, last, last_success)


def snapshot(views: Iterable[EntryView], stores: Iterable[str] | Mapping[str, StoreStatus],
             pairs: Iterable[PairView] = ()) -> Snapshot:
    """`stores` in configuration order: names (read fine) or ready-made statuses."""
    st = dict(stores) if isinstance(stores, Mapping) else {n: status(n) for n in stores}
    return Snapshot(st, tuple(views), {}, {}, pairs=tuple(pairs), ready=True)


def store_config(name: str, self_address: str = "192.0.2.1") -> StoreConfig:
    return StoreConfig(name=name, host=self_address, port=22, username="admin", password="pw",
                       private_key_file=None, private_key_passphrase=None, known_hosts="kh",
                       cli_mode="shell", connect_timeout=1.0, command_timeout=1.0,
                       probe_timeout=1.0, store_interval=60.0, probe_interval=60.0,
                       self_address=self_address)


def config(stores: Mapping[str, str] | Iterable[str],
           pairs: Iterable[tuple[str, str, str]] = ()) -> Config:
    """`stores`: name -> self address (or names, all at 192.0.2.1); pairs: (name, primary,
    secondary)."""
    named = dict(stores) if isinstance(stores, Mapping) else dict.fromkeys(stores, "192.0.2.1")
    return Config(tuple(store_config(n, a) for n, a in named.items()), {}, {},
                  tuple(PairConfig(*p) for p in pairs))
