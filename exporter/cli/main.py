"""Command line: argument parsing and the commands. Nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from exporter.cli.logsetup import RedactingHandler, setup
from exporter.cli.loop import run_async
from exporter.cli.serve import WebOptions, parse_listen, serve
from exporter.config.load import load_config
from exporter.config.model import Config, ConfigError
from exporter.core import exitcodes
from exporter.core.model import Evidence
from exporter.core.text import visible
from exporter.fleet.report import exit_code, rows, table
from exporter.fleet.shard import Shard, owns_none
from exporter.fleet.snapshot import Snapshot
from exporter.service.service import Service
from exporter.store.database import StorageError, storage_problem
from exporter.version import __version__
from exporter.web.options import web_paths

if TYPE_CHECKING:
    from exporter.web.config import WebConfig

log = logging.getLogger("exporter")

DEFAULT_LISTEN = ":9877"

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = exitcodes.OK, exitcodes.MISMATCH, exitcodes.ERROR
EXIT_UNKNOWN = exitcodes.UNKNOWN

# The flags that may stand before or after the subcommand, with their defaults. argparse
# would let a subcommand's defaults overwrite what the top level read (`--storage.path X
# serve` ran on ./data), so both levels parse them with no default (argparse.SUPPRESS) and
# _resolve applies these once, for the flags the command takes.
DEFAULTS: dict[str, Any] = {
    "config_file": "prime-tofu-exporter.yml", "storage_path": "data", "log_level": "info",
    "log_format": "logfmt", "listen": None, "systemd_socket": False, "web_config": None,
    "telemetry_path": "/metrics", "health_listen": None, "max_connections": 512,
    "idle_timeout": 15.0, "shard": 0, "total_shards": 1, "config_check": False,
    "route_prefix": None, "external_url": None,
}
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "demo": {"storage_path": None},  # None: the demo keeps its baselines in its --demo.dir
}
_BEFORE = "before_"  # dest prefix of a flag read before the subcommand

_Add = Callable[..., Any]


def _adder(p: argparse.ArgumentParser, prefix: str) -> _Add:
    """add_argument for a shared flag: no argparse default (see DEFAULTS), help showing ours."""
    def add(*names: str, dest: str, help: str | None = None, **kw: Any) -> None:
        if help is not None:
            help = help.replace("%(default)s", str(DEFAULTS[dest]))
        if kw.get("action") != "store_true" and "choices" not in kw:
            kw.setdefault("metavar", dest.upper())
        p.add_argument(*names, dest=prefix + dest, default=argparse.SUPPRESS, help=help, **kw)
    return add


def _config_flags(add: _Add) -> None:
    add("--config.file", dest="config_file", help="YAML configuration (default: %(default)s)")


def _storage_flags(add: _Add) -> None:
    add("--storage.path", dest="storage_path",
        help="directory for the baseline database (default: %(default)s)")


def _log_flags(add: _Add) -> None:
    add("--log.level", dest="log_level", choices=["debug", "info", "warn", "warning", "error"])
    add("--log.format", dest="log_format", choices=["logfmt", "json"])


def _web_flags(add: _Add) -> None:
    add("--web.listen-address", dest="listen", action="append",
        help=f"host:port to serve on, repeatable (default: {DEFAULT_LISTEN})")
    add("--web.systemd-socket", dest="systemd_socket", action="store_true",
        help="serve on the sockets systemd passes (socket activation) instead")
    add("--web.config.file", dest="web_config",
        help="TLS, basic auth, headers, rate limit (exporter-toolkit format)")
    add("--web.telemetry-path", dest="telemetry_path",
        help="path of the metrics (default: %(default)s)")
    add("--web.health-address", dest="health_listen",
        help="host:port of a plain HTTP port with only /-/healthy and /-/ready, "
             "no TLS or auth, for orchestrator probes (default: off)")
    add("--web.max-connections", dest="max_connections", type=int,
        help="open client connections at most; the longest silent or idle one "
             "makes room (default: %(default)s, lowered to fit RLIMIT_NOFILE)")
    add("--web.idle-timeout", dest="idle_timeout", type=float,
        help="seconds a connection may stay idle or half-sent (default: %(default)s)")
    add("--web.external-url", dest="external_url",
        help="the URL users reach the exporter at, e.g. behind a reverse proxy "
             "(https://proxy.example.net/tofu/): the landing page's links start with its path "
             "(default: none)")
    add("--web.route-prefix", dest="route_prefix",
        help="path prefix of every route, /metrics, /probe, /-/healthy, /api/v1/... and the "
             "page (default: the path of --web.external-url, else /)")


def _shard_flags(add: _Add) -> None:
    add("--shard", dest="shard", type=int,
        help="this replica's shard, 0 <= N < --total-shards (default: %(default)s)")
    add("--total-shards", dest="total_shards", type=int,
        help="replicas the stores are spread over; each reads, probes and "
             "exports only the stores that hash to its shard (default: %(default)s)")


def _check_flag(add: _Add) -> None:
    add("--config.check", dest="config_check", action="store_true",
        help="serve: validate the configuration (and --web.config.file) and exit "
             "(0 valid, 2 invalid)")


_FlagGroup = Callable[[_Add], None]
_SERVE: tuple[_FlagGroup, ...] = (
    _config_flags, _storage_flags, _log_flags, _web_flags, _shard_flags, _check_flag)
_EPILOG = """\
The flags above may also follow the subcommand; a flag the subcommand does not take is an
error on either side. A flag given on both sides reads as if the subcommand's name were not
there: the later value wins, and the addresses of --web.listen-address add up."""


def _sub(sub: Any, name: str, groups: tuple[_FlagGroup, ...], help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help)
    for group in groups:
        group(_adder(p, ""))
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prime-tofu-exporter",
        description="Prometheus exporter for TOFU certificate drift in Cisco Prime Infrastructure",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for group in _SERVE:  # every flag a subcommand shares (the union); _resolve checks them
        group(_adder(p, _BEFORE))
    p.add_argument("--version", action="version", version=f"prime-tofu-exporter {__version__}")
    sub = p.add_subparsers(dest="command")
    _sub(sub, "serve", _SERVE, "run the exporter (default)")
    check = _sub(sub, "check", (_config_flags, _storage_flags, _log_flags, _shard_flags),
                 "one pass, print verdicts, exit code")
    check.add_argument("--output", choices=["table", "json"], default="table")
    rem = _sub(sub, "remediate", (_config_flags, _storage_flags, _log_flags),
               "print (or --apply) the deletecert fix for proven mismatches")
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
    acc = _sub(sub, "accept", (_config_flags, _storage_flags, _log_flags),
               "record the live certificate of unknown entries as attested, once "
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
    # The database only: no --config.file (it reads none).
    hist = _sub(sub, "history", (_storage_flags, _log_flags),
                "the recorded changes of entries' state, evidence and certificate")
    hist.add_argument("--store", default=None, help="only this PI server")
    hist.add_argument("--entry", default=None, help="only this entry key")
    hist.add_argument("--since", default=None, metavar="DURATION",
                      help="only changes within this long, e.g. 24h or 7d")
    hist.add_argument("--output", choices=["table", "json"], default="table")
    # No --config.file: the demo writes its own, for the lab it starts.
    demo = _sub(sub, "demo", (_storage_flags, _log_flags, _web_flags),
                "start a simulated PI lab on loopback and serve against it")
    doctor = _sub(sub, "doctor", (_config_flags, _log_flags),
                  "first contact with one PI server: connect as configured and print each step, "
                  "safe to paste into a bug report")
    doctor.add_argument("--store", required=True, help="the PI server to try")
    demo.add_argument("--demo.dir", dest="demo_dir", default=None,
                      help="where the lab writes keys, config and baselines (default: a temp dir)")
    demo.add_argument("--demo.regenerate-after", dest="regen_after", type=float, default=15.0,
                      help="seconds until prime-sec's certificate is regenerated (default: 15)")
    demo.add_argument("--demo.duration", dest="demo_duration", type=float, default=0.0,
                      help="stop after this many seconds (default: run until interrupted)")
    return p


def _resolve(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The flags read before the subcommand, moved to their place: an error for a flag the
    command does not take; on both sides, the later wins (repeatable ones add up). Then the
    defaults of the flags the command takes and nobody gave."""
    command = args.command = args.command or "serve"
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    takes = {a.dest for a in sub.choices[command]._actions}
    given = vars(args)
    for key in [k for k in given if k.startswith(_BEFORE)]:
        dest, value = key.removeprefix(_BEFORE), given.pop(key)
        if dest not in takes:
            flag = next(a.option_strings[0] for a in p._actions if a.dest == key)
            p.error(f"{flag} does not apply to `{command}`")
        if dest not in given:
            given[dest] = value
        elif isinstance(value, list):
            given[dest] = value + given[dest]
    for dest, default in {**DEFAULTS, **COMMAND_DEFAULTS.get(command, {})}.items():
        if dest in takes:
            given.setdefault(dest, default)
    return args


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Arguments, with --shard checked against --total-shards (argparse's exit code 2)."""
    p = _parser()
    args = _resolve(p, p.parse_args(argv))
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
    from exporter.web.config import load_web_config

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
    command = args.command
    if command == "history":  # the database only: no config, no SSH
        return _history(args)
    try:
        web_opts = _web_options(args) if command in ("serve", "demo") else None
    except ValueError as e:
        print(e, file=sys.stderr)
        return EXIT_ERROR
    if command == "demo":
        return _demo(args, web_opts)
    config = _load(args.config_file)
    if config is None:
        return EXIT_ERROR
    if not _web_settings(args):
        return EXIT_ERROR
    if getattr(args, "config_check", False):
        return _config_check(args, config)
    if command == "check" and (empty := owns_none(config, args.shard)):
        print(f"check: {empty}; nothing to check", file=sys.stderr)  # never "all match"
        return EXIT_ERROR
    if command == "doctor":  # baselines in memory: --storage.path is not touched
        from exporter.cli.doctor import run as run_doctor

        setup(args.log_level, args.log_format, config.secrets)
        return run_doctor(config, args.store)
    if (problem := storage_problem(args.storage_path)) is not None:
        print(problem, file=sys.stderr)  # a configuration error (2), never "mismatch" (1)
        return EXIT_ERROR
    handler = setup(args.log_level, args.log_format, config.secrets)
    for warning in config.warnings:
        log.warning(warning)
    _web_warnings(args, to_stderr=False)
    if command == "serve":
        assert web_opts is not None
        return run_server(config, args, web_opts, handler)
    return _one_shot(command, config, args)


def _one_shot(command: str, config: Config, args: argparse.Namespace) -> int:
    if command == "remediate":
        from exporter.cli.remediate import Options, run

        return run(config, Options(
            storage_path=args.storage_path, store=args.store, entry=args.entry,
            output=args.output, min_evidence=args.min_evidence, apply=args.apply, yes=args.yes,
            reason=args.reason, audit_file=args.audit_file,
        ))
    if command == "accept":
        from exporter.cli.accept import Options as AcceptOptions
        from exporter.cli.accept import run as run_accept

        return run_accept(config, AcceptOptions(
            storage_path=args.storage_path, store=args.store, entries=tuple(args.entry),
            all_unknown=args.all_unknown, reason=args.reason, yes=args.yes, output=args.output,
            audit_file=args.audit_file,
        ))
    return run_async(check(config, args.storage_path, args.output, args.shard))


def _web_settings(args: argparse.Namespace) -> bool:
    """Load --web.config.file into args.web_settings; False (reported) when it is bad. Like
    the main config: a bad web config stops us before anything listens."""
    if getattr(args, "web_config", None):
        args.web_settings = _load_web(args.web_config)
        return args.web_settings is not None
    return True


def _demo(args: argparse.Namespace, web_opts: WebOptions | None) -> int:
    from exporter.cli.demo import run_demo  # the only way into the lab (pilab)

    if web_opts is None or not _web_settings(args):
        return EXIT_ERROR
    _web_warnings(args, to_stderr=True)
    return run_demo(
        demo_dir=args.demo_dir, regen_after=args.regen_after, duration=args.demo_duration,
        web_opts=web_opts, web_cfg=getattr(args, "web_settings", None),
        storage_path=args.storage_path, log_level=args.log_level, log_format=args.log_format,
    )


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
    prefix, base = web_paths(getattr(args, "route_prefix", None), getattr(args, "external_url", None))
    return WebOptions(
        route_prefix=prefix, link_base=base,
        listen=listen, systemd_socket=getattr(args, "systemd_socket", False),
        telemetry_path=path, health_listen=health,
        max_connections=getattr(args, "max_connections", 512),
        idle_timeout=getattr(args, "idle_timeout", 15.0),
        config_file=getattr(args, "web_config", None),
    )


def _history(args: argparse.Namespace) -> int:
    from exporter.cli.history import run as run_history
    from exporter.config.load import parse_duration

    since = None
    if args.since is not None:
        try:
            since = parse_duration(args.since)
        except ValueError as e:
            print(f"--since {args.since!r}: {e}", file=sys.stderr)
            return EXIT_ERROR
    setup(args.log_level, args.log_format)  # what the database layer logs (a reset, a repair)
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
    _known_hosts_lines(snap)
    return exit_code(snap)


def _known_hosts_lines(snap: Snapshot, limit: int = 50) -> None:
    """A known_hosts store's lines that no verdict covers, with their line numbers, on stderr:
    those that do not parse and those that name no host to probe (unresolved)."""
    for name, st in snap.stores.items():
        listing = st.last_success.listing if st.last_success is not None else None
        if snap.kinds.get(name) != "known_hosts" or listing is None:
            continue
        for what, lines in (("line does not parse", listing.bad_lines),
                            ("unresolved, not probed", listing.unresolved)):
            for text in lines[:limit]:
                print(f"store {name}: {what}: {visible(text)}", file=sys.stderr)
            if len(lines) > limit:
                print(f"store {name}: {len(lines) - limit} more ({what})", file=sys.stderr)


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
