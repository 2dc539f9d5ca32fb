"""Builders for the `unit` tests: the exporter's data (entries, probes, views, snapshots) made
in memory, the way exporter.service.service makes them, for the pure modules' decisions; and
hypothesis strategies for the text PI prints (`entry_lines`). No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hypothesis import strategies as st

from exporter.config.model import Config, PairConfig, StoreConfig
from exporter.core.model import (
    Attested,
    Baseline,
    BaselineKind,
    EntryView,
    Evidence,
    Listing,
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


NASTY = 'a"b\\c\nd ü ' + "x" * 300  # quotes, backslash, newline, non-ASCII, over LABEL_MAX


def exposition_snapshot() -> Snapshot:
    """40 entries over every state, evidence and label hazard (NASTY), for the writers."""
    views = []
    probes = {}
    states = list(State)
    for i in range(40):
        ep = f"10.0.{i}.1:{8000 + i}" if i % 7 else f"[2001:db8::{i}]:443"
        subject = (("C", "US"), ("O", NASTY if i % 5 == 0 else "Cisco"), ("CN", f"peer-{i}"))
        entry = StoredEntry(f"{ep.replace(':', '_')}", ep.rsplit(":", 1)[0].strip("[]"),
                            int(ep.rsplit(":", 1)[1]), "", subject,
                            line=i * 1000 + 1 if i % 5 == 1 else 0)  # a known_hosts line
        cert = None if i % 9 == 0 else LiveCert(
            f"{i:064x}", f"{i + 1:064x}", subject, NASTY if i % 4 == 0 else f"/CN=peer-{i}",
            "/CN=issuer\\x", f"{i:x}" * (30 if i == 3 else 1), 1.7e9 + i, 1.8e9 + i / 3)
        probe = ProbeResult(ep, cert, None if cert else "timeout", 0.001 * i + 1e-7, 1.7e9)
        probes[ep] = probe
        verdict = Verdict(states[i % 4], list(Evidence)[i % 6], "why")
        views.append(EntryView(NASTY if i == 11 else f"pi-{i % 3}", entry, ep, verdict, probe,
                               Baseline(BaselineKind.ADOPTED, None, 1.0), None,
                               state_since=None if i % 6 == 0 else 1.7e9 + i / 7,
                               previous_fingerprint=f"{i + 9:064x}" if i % 3 == 0 else None))
    # A known_hosts entry: the store holds the key; `subject_text` is its SHA256: fingerprint.
    hk = StoredEntry("[10.0.9.9]:2222 ssh-ed25519", "10.0.9.9", 2222, "SHA256:AbC+/9", (),
                     stored_fingerprint="ab" * 32, key_type="ssh-ed25519", line=7)
    views.append(EntryView("automation", hk, "10.0.9.9:2222 ssh-ed25519",
                           Verdict(State.MISMATCH, Evidence.STORED, "changed"), None, None))
    read = StoreRead("pi-0", True, Listing(()), 0.25, 1.7e9)
    failed = StoreRead("pi-1", False, None, 3.5, 1.7e9)
    stores = {"pi-0": StoreStatus("pi-0", read, read, {"timeout": 2}),
              "pi-1": StoreStatus("pi-1", failed, None, {})}
    changed = {ep: 1.7e9 + n for n, ep in enumerate(probes)}
    return Snapshot(stores, tuple(views), probes, changed, {"pi-0": 3}, {"pi-0": 1}, False, True)


# ---- hypothesis strategies ------------------------------------------------------------

_IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_IPV6 = st.ip_addresses(v=6).map(str)
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9_-]{0,10}[a-z0-9])?", fullmatch=True)
_HOSTNAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_HOSTS = st.one_of(_IPV4, _IPV6, _HOSTNAME)
_VALUE = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 .,/_@-]{0,15}[A-Za-z0-9]", fullmatch=True)
_SUBJECT = st.lists(
    st.tuples(st.sampled_from(["C", "ST", "L", "O", "OU", "CN", "emailAddress"]), _VALUE),
    min_size=1,
    max_size=6,
).map(tuple)


@st.composite
def entry_lines(draw: st.DrawFn) -> tuple[str, StoredEntry]:
    host = draw(_HOSTS)
    port = draw(st.integers(1, 65535))
    subject = draw(_SUBJECT)
    if draw(st.booleans()):
        subject_text = format_subject(subject)
    else:
        subject_text = ", ".join(
            f'{k} = "{v}"' if "," in v else f"{k} = {v}" for k, v in subject
        )
    key = f"{host}_{port}"
    sep = draw(st.sampled_from([";", "; ", ";  ", ";   "]))
    lead = draw(st.sampled_from(["", " "]))
    trail = draw(st.sampled_from(["", " ", "   ", "\x1b[0m"]))
    line = f"{lead}host={key}{sep}subject={lead}{subject_text}{trail}"
    return line, StoredEntry(key, host, port, subject_text, subject)
