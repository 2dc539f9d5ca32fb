"""Command line: argument parsing and the commands. Nothing else lives here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from exporter import __version__, exitcodes
from exporter.baseline import StorageError, storage_problem
from exporter.config import Config, ConfigError, load_config
from exporter.logs import RedactingHandler, setup
from exporter.model import Evidence
from exporter.report import exit_code, rows, table
from exporter.server import WebOptions, parse_listen, serve
from exporter.service import Service
from exporter.shard import Shard
from exporter.text import visible

if TYPE_CHECKING:
    from exporter.webconfig import WebConfig

log = logging.getLogger("exporter")

DEFAULT_LISTEN = ":9877"

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = exitcodes.OK, exitcodes.MISMATCH, exitcodes.ERROR
EXIT_UNKNOWN = exitcodes.UNKNOWN

_T = TypeVar("_T")


def run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """asyncio.run, on uvloop when installed (the `fast` extra): its TLS transport costs
    about a fifth less CPU per probe than asyncio's (bench/run.py)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config.file", dest="config_file", default="prime-tofu-exporter.yml",
                        help="YAML configuration (default: %(default)s)")
    common.add_argument("--storage.path", dest="storage_path", default="data",
                        help="directory for the baseline database (default: %(default)s)")
    common.add_argument("--log.level", dest="log_level", default="info",
                        choices=["debug", "info", "warn", "warning", "error"])
    common.add_argument("--log.format", dest="log_format", default="logfmt",
                        choices=["logfmt", "json"])
    web = argparse.ArgumentParser(add_help=False)
    web.add_argument("--web.listen-address", dest="listen", action="append", default=None,
                     help=f"host:port to serve on, repeatable (default: {DEFAULT_LISTEN})")
    web.add_argument("--web.systemd-socket", dest="systemd_socket", action="store_true",
                     help="serve on the sockets systemd passes (socket activation) instead")
    web.add_argument("--web.config.file", dest="web_config", default=None,
                     help="TLS, basic auth, headers, rate limit (exporter-toolkit format)")
    web.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics",
                     help="path of the metrics (default: %(default)s)")
    web.add_argument("--web.health-address", dest="health_listen", default=None,
                     help="host:port of a plain HTTP port with only /-/healthy and /-/ready, "
                          "no TLS or auth, for orchestrator probes (default: off)")
    web.add_argument("--web.max-connections", dest="max_connections", type=int, default=512,
                     help="open client connections at most; the longest silent or idle one "
                          "makes room (default: %(default)s, lowered to fit RLIMIT_NOFILE)")
    web.add_argument("--web.idle-timeout", dest="idle_timeout", type=float, default=15.0,
                     help="seconds a connection may stay idle or half-sent (default: %(default)s)")
    shard = argparse.ArgumentParser(add_help=False)
    shard.add_argument("--shard", type=int, default=0,
                       help="this replica's shard, 0 <= N < --total-shards (default: %(default)s)")
    shard.add_argument("--total-shards", dest="total_shards", type=int, default=1,
                       help="replicas the stores are spread over; each reads, probes and "
                            "exports only the stores that hash to its shard (default: %(default)s)")

    p = argparse.ArgumentParser(
        prog="prime-tofu-exporter",
        description="Prometheus exporter for TOFU certificate drift in Cisco Prime Infrastructure",
        parents=[common, web, shard],
    )
    p.add_argument("--version", action="version", version=f"prime-tofu-exporter {__version__}")
    p.add_argument("--config.check", dest="config_check", action="store_true",
                   help="validate the configuration and exit (0 valid, 2 invalid)")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("serve", parents=[common, web, shard], help="run the exporter (default)")
    check = sub.add_parser("check", parents=[common, shard], help="one pass, print verdicts, exit code")
    check.add_argument("--output", choices=["table", "json"], default="table")
    rem = sub.add_parser("remediate", parents=[common],
                         help="print (or --apply) the deletecert fix for proven mismatches")
    rem.add_argument("--store", default=None, help="only this PI server")
    rem.add_argument("--entry", default=None, help="only this entry key, e.g. 10.0.0.2_8082")
    rem.add_argument("--output", choices=["table", "json"], default="table")
    rem.add_argument("--min-evidence", dest="min_evidence", default="subject",
                     choices=[e.value for e in Evidence if e is not Evidence.NONE],  # strongest first
                     help="leave out mismatches proven only by weaker evidence (default: %(default)s)")
    rem.add_argument("--apply", action="store_true", help="run the deletecert commands over SSH")
    rem.add_argument("--yes", action="store_true", help="with --apply: do not ask for confirmation")
    rem.add_argument("--reason", default=None, help="with --apply: why, for the audit log")
    rem.add_argument("--audit.file", dest="audit_file", default=None,
                     help="append-only JSON lines audit log "
                          "(default: <storage.path>/remediation-audit.jsonl)")
    acc = sub.add_parser("accept", parents=[common],
                         help="record the live certificate of unknown entries as attested, once "
                              "you have seen PI's connection to the peer work")
    acc.add_argument("--store", required=True, help="the PI server holding the entries")
    which = acc.add_mutually_exclusive_group(required=True)
    which.add_argument("--entry", action="append", default=[], metavar="KEY",
                       help="an entry key, e.g. 10.0.0.2_8082 (repeat for more)")
    which.add_argument("--all-unknown", dest="all_unknown", action="store_true",
                       help="every entry of the store that is unknown now")
    acc.add_argument("--reason", required=True, help="what you checked, for the record")
    acc.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    acc.add_argument("--output", choices=["table", "json"], default="table")
    acc.add_argument("--audit.file", dest="audit_file", default=None,
                     help="append-only JSON lines audit log "
                          "(default: <storage.path>/remediation-audit.jsonl)")
    hist = sub.add_parser("history", parents=[common],
                          help="the recorded changes of entries' state, evidence and certificate")
    hist.add_argument("--store", default=None, help="only this PI server")
    hist.add_argument("--entry", default=None, help="only this entry key")
    hist.add_argument("--since", default=None, metavar="DURATION",
                      help="only changes within this long, e.g. 24h or 7d")
    hist.add_argument("--output", choices=["table", "json"], default="table")
    doctor = sub.add_parser("doctor", parents=[common],
                            help="first contact with one PI server: connect as configured and "
                                 "print each step, safe to paste into a bug report")
    doctor.add_argument("--store", required=True, help="the PI server to try")
    demo = sub.add_parser("demo", parents=[common, web],
                          help="start a simulated PI lab on loopback and serve against it")
    demo.add_argument("--demo.dir", dest="demo_dir", default=None,
                      help="where the lab writes keys, config and baselines (default: a temp dir)")
    demo.add_argument("--demo.regenerate-after", dest="regen_after", type=float, default=15.0,
                      help="seconds until prime-sec's certificate is regenerated (default: 15)")
    demo.add_argument("--demo.duration", dest="demo_duration", type=float, default=0.0,
                      help="stop after this many seconds (default: run until interrupted)")
    return p


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Arguments, with --shard checked against --total-shards (argparse's exit code 2)."""
    p = _parser()
    args = p.parse_args(argv)
    try:
        args.shard = Shard(getattr(args, "shard", 0), getattr(args, "total_shards", 1))
    except ValueError as e:
        p.error(str(e))
    return args


def _report(what: str, e: ConfigError) -> None:
    print(f"{what} invalid ({len(e.problems)} problems):", file=sys.stderr)
    for p in e.problems:
        print(f"  {e.source}: {p}", file=sys.stderr)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as e:
        _report("configuration", e)
        return None


def _load_web(path: str) -> WebConfig | None:
    from exporter.webconfig import load_web_config

    try:
        return load_web_config(path)
    except ConfigError as e:
        _report("web configuration", e)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _main(args)
    except StorageError as e:
        return _storage_failed(args.storage_path, e)


def _storage_failed(storage_path: str, e: StorageError) -> int:
    """What storage_problem() could not see before the database opened (another process
    holds a lock on it, the volume turned read-only since): one line, the configuration
    code (2, never 1, which means "mismatch"), no traceback."""
    why = str(e)
    with contextlib.suppress(OSError):
        if os.statvfs(storage_path).f_flag & os.ST_RDONLY:
            why += "; the file system is read-only"
    print(f"--storage.path {storage_path!r}: {why}", file=sys.stderr)
    return EXIT_ERROR


def _main(args: argparse.Namespace) -> int:
    command = args.command or "serve"
    if command == "demo":
        from exporter.demo import run_demo  # the only way into the lab (pilab)

        return run_demo(
            demo_dir=args.demo_dir, regen_after=args.regen_after, duration=args.demo_duration,
            listen_text=_listen_texts(args)[0], storage_path=args.storage_path,
            log_level=args.log_level, log_format=args.log_format, web_config=args.web_config,
        )
    if command == "history":  # the database only: no config, no SSH
        return _history(args)
    try:
        web_opts = _web_options(args)
    except ValueError as e:
        print(e, file=sys.stderr)
        return EXIT_ERROR
    config = _load(args.config_file)
    if config is None:
        return EXIT_ERROR
    if getattr(args, "web_config", None):
        # Like the main config: a bad web config stops us before anything listens.
        args.web_settings = _load_web(args.web_config)
        if args.web_settings is None:
            return EXIT_ERROR
    if args.config_check:
        return _config_check(args, config)
    if command == "doctor":  # baselines in memory: --storage.path is not touched
        from exporter.doctor import run as run_doctor

        setup(args.log_level, args.log_format, config.secrets)
        return run_doctor(config, args.store)
    if (problem := storage_problem(args.storage_path)) is not None:
        print(problem, file=sys.stderr)  # a configuration error (2), never "mismatch" (1)
        return EXIT_ERROR
    handler = setup(args.log_level, args.log_format, config.secrets)
    for warning in config.warnings:
        log.warning(warning)
    _web_warnings(args, to_stderr=False)
    if command == "remediate":
        from exporter.remediate.command import Options, run

        return run(config, Options(
            storage_path=args.storage_path, store=args.store, entry=args.entry,
            output=args.output, min_evidence=args.min_evidence, apply=args.apply, yes=args.yes,
            reason=args.reason, audit_file=args.audit_file,
        ))
    if command == "accept":
        from exporter.accept.command import Options as AcceptOptions
        from exporter.accept.command import run as run_accept

        return run_accept(config, AcceptOptions(
            storage_path=args.storage_path, store=args.store, entries=tuple(args.entry),
            all_unknown=args.all_unknown, reason=args.reason, yes=args.yes, output=args.output,
            audit_file=args.audit_file,
        ))
    if command == "check":
        return run_async(check(config, args.storage_path, args.output, args.shard))
    return run_server(config, args, web_opts, handler)


def _config_check(args: argparse.Namespace, config: Config) -> int:
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _web_warnings(args, to_stderr=True)
    print(f"{args.config_file}: valid, {len(config.stores)} stores")
    return EXIT_OK


def _web_warnings(args: argparse.Namespace, to_stderr: bool) -> None:
    """The web config's warnings (low bcrypt cost, a key file others can read)."""
    for w in getattr(getattr(args, "web_settings", None), "warnings", ()):
        if to_stderr:
            print(f"warning: {args.web_config}: {w}", file=sys.stderr)
        else:
            log.warning("web config", extra={"file": args.web_config, "problem": w})


def _listen_texts(args: argparse.Namespace) -> list[str]:
    return getattr(args, "listen", None) or [DEFAULT_LISTEN]


def _web_options(args: argparse.Namespace) -> WebOptions:
    """The --web.* flags, checked (ValueError names the bad one)."""
    listen = tuple(parse_listen(a) for a in _listen_texts(args))
    health = getattr(args, "health_listen", None)
    if health:
        parse_listen(health)
    path = getattr(args, "telemetry_path", "/metrics")
    if not path.startswith("/"):
        raise ValueError(f"--web.telemetry-path {path!r}: must start with /")
    return WebOptions(
        listen=listen, systemd_socket=getattr(args, "systemd_socket", False),
        telemetry_path=path, health_listen=health,
        max_connections=getattr(args, "max_connections", 512),
        idle_timeout=getattr(args, "idle_timeout", 15.0),
        config_file=getattr(args, "web_config", None),
    )


def _history(args: argparse.Namespace) -> int:
    from exporter.config import parse_duration
    from exporter.history_command import run as run_history

    since = None
    if args.since is not None:
        try:
            since = parse_duration(args.since)
        except ValueError as e:
            print(f"--since {args.since!r}: {e}", file=sys.stderr)
            return EXIT_ERROR
    return run_history(args.storage_path, args.store, args.entry, since, args.output)


async def check(config: Config, storage: str, output: str, shard: Shard | None = None) -> int:
    service = Service(config, storage, shard or Shard())
    try:
        snap = await service.run_once()
    finally:
        await service.stop()
    items = rows(snap.views)
    if output == "json":
        print(json.dumps([asdict(r) for r in items], indent=2, ensure_ascii=True))  # no raw U+2028
    else:
        print(table(items))
        for name, st in snap.stores.items():
            if st.last is not None and not st.last.ok:
                print(f"store {name} unreadable: {visible(st.last.error or '')}", file=sys.stderr)
    return exit_code(snap)


def run_server(
    config: Config, args: argparse.Namespace, web_opts: WebOptions, handler: RedactingHandler,
) -> int:
    web_cfg: WebConfig | None = getattr(args, "web_settings", None)
    try:
        run_async(serve(config, args.config_file, args.storage_path, web_opts.listen[0], handler,
                        web_cfg, web_opts=web_opts, shard=args.shard))
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as e:
        log.error("cannot serve", extra={"error": str(e)})
        return EXIT_ERROR
    return EXIT_OK
