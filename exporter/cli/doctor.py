"""`prime-tofu-exporter doctor --store S`: first contact with one PI server, step by step.

It runs what `check` runs for that one store (exporter.service.service: the SSH read, the parser,
the probes, the verdicts) with a Trace on the store's session (exporter.sources.prime.ssh), and
prints what each step saw: the host key and the known_hosts line it matched, the login
method, exec or shell, the prompt, paging, the listing line by line, what did not parse, one
probe per entry with its TLS version and certificate, the verdicts. The exit code is
`check`'s.

It is made to be pasted into a bug report: the configured password and passphrase are never
printed (and blanked should a server echo one back), no key material is shown (public
fingerprints only), and every piece of text a server or peer sent goes through
exporter.core.text.visible, so a control character shows as an escape and a line stays a line.

Nothing is written: the baselines live in a private in-memory database, so the verdicts are
those of a first read (every entry adopted), whatever --storage.path holds.
"""

from __future__ import annotations

import dataclasses
import platform
import ssl
import sys
import time
from collections.abc import Iterable
from typing import TextIO

import asyncssh

from exporter.cli.loop import run_async
from exporter.config.model import KNOWN_HOSTS, Config, StoreConfig
from exporter.core import exitcodes
from exporter.core.model import EntryView, ProbeResult, StoreRead
from exporter.core.subject import format_subject
from exporter.core.text import visible
from exporter.fleet.report import exit_code
from exporter.fleet.snapshot import Snapshot
from exporter.service.service import Service
from exporter.sources.known_hosts.source import KnownHostsSource
from exporter.sources.prime.listing import cli_error, numbered, parse_numbered
from exporter.sources.prime.source import PiSource
from exporter.sources.prime.ssh import PiSession
from exporter.version import __version__

_MEANING = {
    exitcodes.OK: "every entry matches",
    exitcodes.MISMATCH: "a mismatch is proven",
    exitcodes.ERROR: "the store could not be read",
    exitcodes.UNKNOWN: "entries are left unknown (normal at first contact: pin or accept them)",
}
# A known_hosts file holds the exact key, so an unknown there is never first contact: it is a
# line of a key type the host no longer offers, which nobody pins or accepts. remediate removes
# only proven mismatches; this line is harmless to OpenSSH while another line matches.
_MEANING_KNOWN_HOSTS = {
    **_MEANING,
    exitcodes.UNKNOWN: "entries are left unknown (lines of a key type the host no longer offers, "
                       "harmless while another line of the host matches: delete the line shown "
                       "above once you know why the type went)",
}


def _q(text: str) -> str:
    """Server-sent text, quoted, every control character escaped."""
    return f"'{visible(text)}'"


class _Out:
    """Numbered steps to `out` as they happen, with every secret blanked."""

    def __init__(self, out: TextIO, secrets: Iterable[str]) -> None:
        self.out = out
        # A secret with a backslash or control character is printed escaped, if ever.
        self.secrets = {v for s in secrets if s for v in (s, visible(s))}
        self.step = 0
        self.start = time.monotonic()

    def line(self, text: str = "") -> None:
        for s in self.secrets:
            text = text.replace(s, "<redacted>")
        print(text, file=self.out, flush=True)

    def numbered(self, text: str) -> None:
        self.step += 1
        self.line(f"{self.step:2d}. [{time.monotonic() - self.start:6.2f}s] {text}")


class _Tracer:
    """The session's Trace: each step of the SSH dialogue, told as it happens."""

    def __init__(self, out: _Out, cfg: StoreConfig) -> None:
        self.out = out
        self.cfg = cfg
        self.outputs: list[tuple[str, str]] = []  # (command, text) as the session returned it
        self.failed = False

    def __call__(self, step: str, /, **facts: object) -> None:
        say = getattr(self, f"_{step}", None)
        if say is not None:
            say(**facts)

    def _connected(self, host: str, port: int, server_version: str, cipher: str) -> None:
        self.out.numbered(f"connected to {host} port {port}: server {_q(server_version)}, "
                          f"cipher {visible(cipher)}")

    def _hostkey(self, algorithm: str, fingerprint: str, known_hosts: str | None) -> None:
        where = _known_hosts_line(known_hosts, fingerprint)
        self.out.numbered(f"host key verified: {algorithm} {fingerprint}, "
                          f"in {known_hosts or 'the default known_hosts'}{where}")

    def _auth(self, username: str, method: str, key: str | None) -> None:
        how = f"{method} ({key})" if key else method
        self.out.numbered(f"logged in as {_q(username)} by {how}")

    def _shell(self, term_type: str, term_size: tuple[int, int]) -> None:
        self.out.numbered(f"cli_mode shell: opened an interactive shell on a PTY "
                          f"({term_type}, {term_size[0]} columns, {term_size[1]} rows)")

    def _prompt(self, prompt: str, pattern: str, banner_size: int) -> None:
        self.out.numbered(f"prompt detected: {_q(prompt)} (matched the pattern {pattern}) "
                          f"after {banner_size} bytes of banner")

    def _sent(self, line: str, size: int) -> None:
        self.out.numbered(f"sent {_q(line)}: {size} bytes back up to the prompt")

    def _exec(self, command: str, exit_status: int | None, size: int) -> None:
        self.out.numbered(f"cli_mode exec: ran {_q(command)}: exit status {exit_status}, "
                          f"{size} bytes")

    def _paging(self, command: str, answered: int, removed: int) -> None:
        if not answered and not removed:
            seen = "none seen"
        else:
            seen = (f"{answered} --More-- prompts answered with a space, "
                    f"{removed} pager lines removed from the output")
        self.out.numbered(f"paging: {seen}")

    def _reused(self, mode: str) -> None:
        self.out.numbered(f"reused the open SSH connection ({mode})")

    def _failed(self, reason: str, error: str) -> None:
        self.failed = True
        self.out.numbered(f"FAILED ({reason}): {visible(error)}")

    def _output(self, command: str, text: str) -> None:
        self.outputs.append((command, text))


def _known_hosts_line(path: str | None, fingerprint: str) -> str:
    """", line N" of the known_hosts entry holding the key with `fingerprint`, if found."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                fields = line.split()
                if fields and fields[0].startswith("@"):
                    fields = fields[1:]  # @cert-authority, @revoked
                if len(fields) < 3 or fields[0].startswith("#"):
                    continue
                try:
                    key = asyncssh.import_public_key(f"{fields[1]} {fields[2]}")
                except (asyncssh.KeyImportError, ValueError):
                    continue
                if key.get_fingerprint("sha256") == fingerprint:
                    return f", line {number}"
    except OSError:
        pass
    return ""


def _header(out: _Out, config: Config, cfg: StoreConfig) -> None:
    out.line(f"prime-tofu-exporter {__version__} doctor, "
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    out.line(f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
             f"asyncssh {asyncssh.__version__}")
    login = [f"password {'configured (not shown)' if cfg.password else 'none'}"]
    if cfg.private_key_file:
        secret = ", passphrase configured (not shown)" if cfg.private_key_passphrase else ""
        login.append(f"private key {cfg.private_key_file}{secret}")
    if cfg.kind == KNOWN_HOSTS:
        where = (f"on {visible(cfg.username)}@{cfg.host} port {cfg.port}, known_hosts "
                 f"{cfg.known_hosts}, {'; '.join(login)}" if cfg.remote else "local")
        out.line(f"store {cfg.name}: known_hosts file {cfg.path} ({where}), "
                 f"{len(cfg.resolve)} resolve names, probe timeout {cfg.probe_timeout:g}s")
    else:
        out.line(f"store {cfg.name}: {visible(cfg.username)}@{cfg.host} port {cfg.port}, cli_mode "
                 f"{cfg.cli_mode}, known_hosts {cfg.known_hosts}, {'; '.join(login)}")
        out.line(f"command {cfg.listcerts_command!r}, connect timeout {cfg.connect_timeout:g}s, "
                 f"command timeout {cfg.command_timeout:g}s, probe timeout {cfg.probe_timeout:g}s")
    for warning in config.warnings:
        out.line(f"warning: {visible(warning)}")
    out.line()


def _listing(out: _Out, cfg: StoreConfig, tracer: _Tracer) -> None:
    for command, text in tracer.outputs:
        if command != cfg.listcerts_command:
            out.numbered(f"output of {_q(command)}: {len(text.splitlines())} lines "
                         "(not shown)")
            continue
        lines = list(numbered(text))
        out.numbered(f"the listing as the parser reads it ({len(lines)} lines; echo, prompt "
                     "and pager prompts already removed; control characters escaped):")
        width = len(str(len(lines)))
        for number, line in lines:
            out.line(f"    {number:{width}d} | {visible(line)}")
        listing, bad = parse_numbered(text)
        out.numbered(f"parsed {len(listing.entries)} entries; "
                     f"{len(bad) or 'no'} line{'' if len(bad) == 1 else 's'} not parsed"
                     f"{':' if bad else ''}")
        for number, line in zip(bad, listing.bad_lines, strict=True):
            out.line(f"    line {number}: {visible(line)}")
        if listing.entries:
            continue
        if cli_error(text) is not None:
            out.line("    the CLI answered with an error, not a listing: the login's role may "
                     "not run the command, or the command is wrong (`listcerts_command`)")
        elif not listing.bad_lines:
            out.line("    no entries: an empty TOFU store prints only its header")


def _probe_lines(probe: ProbeResult | None) -> list[str]:
    if probe is None:
        return ["not probed"]
    ms = f"{probe.duration_seconds * 1000:.1f} ms"
    cert = probe.cert
    if cert is None:
        return [f"probe {probe.endpoint}: failed after {ms}: {visible(probe.error or '')}"]
    if cert.blob:  # an SSH host key (known_hosts store)
        issuer = f", {visible(cert.issuer_text)}" if cert.issuer_text else ""
        return [f"probe {probe.endpoint}: SSH key exchange, {ms}",
                f"host key {cert.key_type} {cert.subject_text}{issuer}"]
    expires = time.strftime("%Y-%m-%d", time.gmtime(cert.not_after))
    return [
        f"probe {probe.endpoint}: {probe.tls_version or 'unknown TLS version'}, {ms}",
        f"certificate chosen: {visible(cert.subject_text)}",
        f"  sha256 {cert.fingerprint_sha256}, key {cert.key_type or 'unknown'}, "
        f"expires {expires}, issuer {visible(cert.issuer_text)}",
    ]


def _entries(out: _Out, views: list[EntryView]) -> None:
    out.numbered(f"probes and verdicts ({len(views)} entries):")
    for v in views:
        stored = (f"stored key {v.entry.subject_text} (line {v.entry.line})"
                  if v.entry.stored_fingerprint is not None
                  else f"stored subject {visible(format_subject(v.entry.subject))}")
        out.line(f"    entry {visible(v.entry.key)}, {stored}")
        for line in _probe_lines(v.probe):
            out.line(f"      {line}")
        out.line(f"      verdict: {v.verdict.state.value} (evidence {v.verdict.evidence.value}): "
                 f"{visible(v.verdict.reason)}")


async def _run_once(config: Config, cfg: StoreConfig, tracer: _Tracer) -> Snapshot:
    # This store only (HA pairs need both of theirs), baselines in memory: nothing written.
    service = Service(dataclasses.replace(config, stores=(cfg,), pairs=()), ":memory:")
    session = PiSession(cfg, trace=tracer)
    service.state(cfg.name).source = (
        KnownHostsSource(cfg, service.workers.run, session) if cfg.kind == KNOWN_HOSTS
        else PiSource(cfg, service.workers.run, session))
    try:
        return await service.run_once()
    finally:
        await service.stop()


def _not_covered(out: _Out, read: StoreRead | None) -> None:
    """A known_hosts file's lines that no verdict covers, with their line numbers."""
    listing = read.listing if read is not None else None
    if listing is None:
        return
    for what, lines in (("not parsed", listing.bad_lines), ("unresolved", listing.unresolved)):
        if lines:
            out.numbered(f"{len(lines)} line{'' if len(lines) == 1 else 's'} {what}:")
            for text in lines:
                out.line(f"    {visible(text)}")


def run(config: Config, store: str, out: TextIO = sys.stdout) -> int:
    cfg = config.store(store)
    if cfg is None:
        names = ", ".join(s.name for s in config.stores)
        print(f"--store {store!r}: no such store in the configuration (stores: {names})",
              file=sys.stderr)
        return exitcodes.ERROR
    o = _Out(out, config.secrets)
    _header(o, config, cfg)
    tracer = _Tracer(o, cfg)
    snap = run_async(_run_once(config, cfg, tracer))
    _listing(o, cfg, tracer)
    status = snap.stores.get(cfg.name)
    if status is not None and status.last is not None and not status.last.ok and not tracer.failed:
        o.numbered(f"store read failed ({status.last.error_reason}): "
                   f"{visible(status.last.error or '')}")
    if status is not None and cfg.kind == KNOWN_HOSTS:
        _not_covered(o, status.last)
    views = [v for v in snap.views if v.store == cfg.name]
    if views:
        _entries(o, views)
    code = exit_code(snap)
    o.line()
    meaning = _MEANING_KNOWN_HOSTS if cfg.kind == KNOWN_HOSTS else _MEANING
    o.line(f"exit {code}: {meaning.get(code, '')}")
    return code
