"""Command line: ``searchd serve | validate | plan | apply | import | backup | schema-from-json``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

from searchd import __version__
from searchd.errors import ConfigError, SearchdError

if TYPE_CHECKING:
    from searchd.config.spec import Spec
    from searchd.importer import ObjectFile, Snapshot, Summary
    from searchd.server import Services
    from searchd.server.readiness import Readiness


def _validate(args: argparse.Namespace) -> int:
    from searchd.catalog import compile_catalog
    from searchd.config import load_spec
    from searchd.modules.registry import default_registry
    from searchd.query.served import build_catalog_graphql

    try:
        registry = default_registry()
        spec = load_spec(args.config, registry)
        build_catalog_graphql(compile_catalog(spec, registry))  # what a server would build before serving it
    except ConfigError as exc:
        if args.format == "json":
            print(json.dumps({"valid": False, "errors": [i.as_dict() for i in exc.issues]}, indent=2))
        else:
            for issue in exc.issues:
                print(issue.render())
            sys.stdout.flush()  # the errors (stdout, buffered) before the count (stderr), where both reach one terminal or file
            print(f"{len(exc.issues)} error(s) in {args.config}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"valid": True, "errors": []}))
    else:
        names = ", ".join(c.name for c in spec.collections)
        print(f"{args.config}: valid ({len(spec.collections)} collection(s): {names})")
    return 0


def _print_error(exc: SearchdError, outcome: str, config: str) -> None:
    """A config's every issue with its line, or the error; then what did not happen ("not starting")."""
    if isinstance(exc, ConfigError):
        for issue in exc.issues:
            print(issue.render(), file=sys.stderr)
        print(f"{outcome}: {len(exc.issues)} error(s) in {config}", file=sys.stderr)
    else:
        print(f"{outcome}: {exc}", file=sys.stderr)


def _import_files(
    services: Services, files: Sequence[ObjectFile], rejects: IO[bytes] | None = None, terminal: TextIO | None = None, listener: Callable[[Snapshot], None] | None = None, stop: threading.Event | None = None
) -> Summary:
    """Import files of Weaviate objects through the engine (upserts; objects stored unchanged are skipped)."""
    from searchd.importer import EngineTarget, Importer

    async def run() -> Summary:
        try:
            return await Importer(EngineTarget(services.engine), rejects, terminal, listener, stop=stop).run(files)
        finally:
            await services.runtime.pool.aclose()  # this loop's provider connections

    return _logged(files, asyncio.run(run()))


def _import_over_http(url: str, files: Sequence[ObjectFile], rejects: IO[bytes] | None, terminal: TextIO | None) -> Summary:
    """Import files into a running server through its batch API."""
    import httpx

    from searchd.importer import Importer
    from searchd.importer.remote import HttpTarget

    async def run() -> Summary:
        async with httpx.AsyncClient() as client:
            target = HttpTarget(url, os.environ.get("SEARCHD_API_KEY"), client)
            await target.check_ready()
            return await Importer(target, rejects, terminal).run(files)

    return _logged(files, asyncio.run(run()))


def _logged(files: Sequence[ObjectFile], summary: Summary) -> Summary:
    names = ", ".join(f.name for f in files)
    log = logging.getLogger("searchd.import")
    (log.warning if summary.failed else log.info)("imported %s: %s", names, summary.describe())
    return summary


def _load_then_serve(paths: Sequence[str]) -> Callable[[Services, Readiness, threading.Event], None]:
    """What a start does after opening the indexes: import the --load files, reporting to readiness."""
    from searchd.importer import open_files

    files = open_files(paths)  # a missing file stops the start before the port opens

    def load(services: Services, readiness: Readiness, stop: threading.Event) -> None:
        for file in files:
            if stop.is_set():  # the server is shutting down
                return
            phase = f"loading {file.name}"

            def report(snapshot: Snapshot, phase: str = phase) -> None:
                readiness.report(phase, snapshot.done, None, snapshot.fraction)

            readiness.report(phase, 0, None, 0.0)
            _import_files(services, [file], listener=report, stop=stop)

    return load


def _import(args: argparse.Namespace) -> int:
    """Import files into a stopped server's data directory (--config), or through a running server (--url)."""
    from searchd.importer import open_files
    from searchd.server import open_services

    if bool(args.config) == bool(args.url) or (args.url and args.data):
        print("nothing imported: give --config (and --data) to write into a stopped server's data directory, or --url to import through a running server", file=sys.stderr)
        return 2
    try:
        files = open_files(args.files)
    except SearchdError as exc:
        print(f"nothing imported: {exc}", file=sys.stderr)
        return 2
    terminal = sys.stderr if sys.stderr.isatty() and not args.no_progress else None
    with contextlib.ExitStack() as stack:
        rejects = stack.enter_context(open(args.rejects, "wb")) if args.rejects else None
        if args.url:
            try:
                summary = _import_over_http(args.url, files, rejects, terminal)
            except SearchdError as exc:
                print(f"import stopped: {exc}", file=sys.stderr)
                return 2
        else:
            try:
                services = open_services(args.config, args.data, watch=False)
            except SearchdError as exc:
                _print_error(exc, "nothing imported", args.config)
                return 2
            try:
                summary = _import_files(services, files, rejects, terminal)
            finally:
                services.close()
    print(f"{summary.describe()}{f'; failed objects written to {args.rejects}' if args.rejects and summary.failed else ''}")
    return 1 if summary.failed else 0


class _UnsetAsPlaceholder(dict[str, str]):
    """The environment, with an unset ``${NAME}`` read as itself: planning compares configs, it needs no secret."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return f"${{{name}}}"


def _load_or_report(path: str, environ: Mapping[str, str] | None = None, what: str = "") -> Spec | None:
    from searchd.config import load_spec
    from searchd.modules.registry import default_registry

    try:
        return load_spec(path, default_registry(), environ)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue.render(), file=sys.stderr)
        print(f"{len(exc.issues)} error(s) in {what}{path}", file=sys.stderr)
        return None


def _show_plan(args: argparse.Namespace) -> int | None:
    """Print the plan for args.config against its data directory (or another config); an exit code when it cannot go ahead."""
    from searchd.config.revision import redacted, revision
    from searchd.engine import effective_storage, peek
    from searchd.reload.applied import plan_against_applied
    from searchd.reload.plan import classify
    from searchd.server.app import resolve_data_dir

    against = getattr(args, "against", None)
    environ = _UnsetAsPlaceholder(os.environ) if against else None
    spec = _load_or_report(args.config, environ)
    if spec is None:
        return 1
    if against:  # a pull request's check: the config of the branch it merges into, no data directory
        base = _load_or_report(against, environ, "the --against config ")
        if base is None:
            return 1
        # The --against config is this config on another branch (copied out by `git show`): its relative dataDir means
        # what it means beside the config under review, not beside the copy.
        base = dataclasses.replace(base, base_dir=spec.base_dir)
        base_revision: str | None = revision(base)
        where = f"Config {against}: revision {base_revision}"
        plan = classify(redacted(base), redacted(spec))
    else:
        directory = resolve_data_dir(spec, args.data)
        try:
            found = peek(effective_storage(spec.server.storage), directory)
        except SearchdError as exc:
            _print_error(exc, "cannot plan", args.config)
            return 1
        applied, plan = plan_against_applied(found.applied, spec, found.count, found.property_count)
        base_revision = applied.revision if applied else None
        where = f"{found.where}: applied revision {applied.revision if applied else '(none: a first start)'}"
    allowed = args.allow_destructive or spec.server.reload.allow_destructive
    if getattr(args, "format", "text") == "json":
        print(json.dumps({"appliedRevision": base_revision, "refused": plan.refused(allowed), **plan.to_json()}, indent=2))
    else:
        print(where)
        print(plan.render(allow_destructive=allowed))
        if plan.refused(allowed):
            sys.stdout.flush()  # the plan before its refusal, where both reach one terminal or file
            print(plan.refusal_message(), file=sys.stderr)
    return 2 if plan.refused(allowed) else None


def _plan(args: argparse.Namespace) -> int:
    """Print what applying the config to a data directory would change, like ``terraform plan``."""
    return _show_plan(args) or 0


def _apply(args: argparse.Namespace) -> int:
    """Apply the config to a stopped server's data directory, re-vectorizing in the foreground."""
    from searchd.server import open_services

    refused = _show_plan(args)
    if refused is not None:
        return refused
    try:
        services = open_services(args.config, args.data, allow_destructive=args.allow_destructive, watch=False)
    except SearchdError as exc:
        _print_error(exc, "not applied", args.config)
        return 2 if exc.code == "config_refused" else 1
    try:
        services.config.wait_for_rebuilds()
        status = services.config.status()
    finally:
        services.close()
    failed = [r for r in status["rebuilds"] if r["state"] == "failed"]
    for rebuild in status["rebuilds"]:
        print(f"{rebuild['kind']} {rebuild['collection']}.{rebuild['target']}: {rebuild['state']} ({rebuild['done']}/{rebuild['total']}){' — ' + rebuild['error'] if rebuild['error'] else ''}")
    print(f"applied revision {status['revision']}")
    return 1 if failed else 0


def _backup(args: argparse.Namespace) -> int:
    """Copy a data directory (or the config's PostgreSQL store) consistently, while a server may be using it."""
    from searchd.config.spec import StorageBackend
    from searchd.engine import backup, backup_postgres, effective_storage
    from searchd.server.app import resolve_data_dir

    try:
        if args.config is None:
            result = backup(Path(args.data), Path(args.destination))
        else:
            spec = _load_or_report(args.config)
            if spec is None:
                return 1
            storage = effective_storage(spec.server.storage)
            if storage.backend is StorageBackend.POSTGRES:
                result = backup_postgres(storage.url, Path(args.destination))
            else:
                result = backup(resolve_data_dir(spec, args.data), Path(args.destination))
    except SearchdError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {result.objects} object(s) to {result.destination} ({result.bytes / 1e6:.1f} MB); start a server with --data {result.destination} to restore")
    return 0


def _schema_from_json(args: argparse.Namespace) -> int:
    """Print the YAML collection(s) for a Weaviate class JSON (what a client sends to POST /v1/schema)."""
    from searchd.config.fromjson import convert, validate_text
    from searchd.modules.registry import default_registry

    dimensions: dict[str, int] = {}
    for item in args.dimensions or []:
        name, _, width = item.partition("=")
        if not name or not width.isdigit() or int(width) < 1:
            print(f"--dimensions takes NAME=N (a vector name and its width), got {item!r}", file=sys.stderr)
            return 2
        dimensions[name] = int(width)
    source = "standard input" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        body = json.loads(text)
    except OSError as exc:
        print(f"cannot read {source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"{source} is not JSON ({exc}); give the class JSON a client sends to POST /v1/schema", file=sys.stderr)
        return 1
    conversion = convert(body, dimensions)
    for warning in conversion.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in conversion.errors:
        print(f"error: {error}", file=sys.stderr)
    if conversion.errors:
        return 1
    rendered = conversion.yaml()
    print(rendered, end="")
    issues = validate_text(rendered, "<schema-from-json>", default_registry())
    for issue in issues:
        print(issue.render(), file=sys.stderr)
    if issues:
        print(f"{len(issues)} error(s): fix them in the YAML above before adding it to the config", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from searchd.server import create_app
    from searchd.server.app import Startup, begin_services
    from searchd.server.connections import serve

    try:
        then = _load_then_serve(args.load) if args.load else None
        opening = begin_services(args.config, args.data)
    except SearchdError as exc:
        _print_error(exc, "not starting", args.config)
        return 1
    # The port opens now; indexes and --load files follow on a thread, with progress in /v1/.well-known/ready.
    startup = Startup(opening, then)
    startup.on_failure = lambda: os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down; the exit code says it failed

    def reload_on_hup(signum: int, frame: object) -> None:
        # SIGHUP re-reads the config, as daemons do; the outcome is logged and in GET /v1/config/status.
        if startup.services is None:
            logging.getLogger("searchd").warning("SIGHUP ignored: the server is still starting")
        else:
            startup.services.config.submit("SIGHUP")

    signal.signal(signal.SIGHUP, reload_on_hup)
    server = opening.catalog.spec.server
    host = args.host if args.host is not None else server.host
    port = args.port if args.port is not None else server.port
    startup.address = (host, port)
    companions = []
    if server.grpc.enabled:
        from searchd.grpc.service import grpc_server

        grpc_port = args.grpc_port if args.grpc_port is not None else server.grpc.port
        companions.append(lambda served: grpc_server(served, host, grpc_port))
    serve(create_app(startup, companions), host, port, server.connections, args.log_level)
    return 1 if startup.error is not None else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="searchd", description="Declarative multimodal vector and hybrid search server.")
    parser.add_argument("--version", action="version", version=f"searchd {__version__}")
    parser.add_argument(
        "--config-max-bytes", type=int, metavar="N", help="refuse a config file larger than N bytes (default 8 MiB, or $SEARCHD_CONFIG_MAX_BYTES); before the command"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve a config over HTTP (Weaviate-compatible REST + GraphQL)")
    serve.add_argument("config", help="a YAML file or a directory of them")
    serve.add_argument("--data", help="data directory (default: server.dataDir, else $SEARCHD_DATA or ./searchd-data)")
    serve.add_argument("--host", help="interface to listen on (default: server.host or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port or 8080)")
    serve.add_argument("--grpc-port", type=int, help="port for Weaviate's gRPC API (default: server.grpc.port or 50051; 0: any free port, logged)")
    serve.add_argument(
        "--load", action="append", metavar="FILE", help="import objects from a JSONL or JSON array file while not ready yet (repeatable; upserts, unchanged objects skipped)"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line, with request ids")
    serve.add_argument("--no-access-log", action="store_true", help="do not log a line per request")
    serve.set_defaults(run=_serve)

    validate = commands.add_parser("validate", help="check a config and print every error with its line")
    validate.add_argument("config", help="a YAML file or a directory of them")
    validate.add_argument("--format", choices=["text", "json"], default="text", help="json for CI annotations")
    validate.set_defaults(run=_validate)

    plan = commands.add_parser("plan", help="show what applying a config to a data directory would change (exit 2 if refused)")
    plan.add_argument("config", help="a YAML file or a directory of them")
    plan.add_argument("--data", help="data directory (default: server.dataDir, else $SEARCHD_DATA or ./searchd-data)")
    plan.add_argument("--against", metavar="CONFIG", help="compare with another config (e.g. the main branch's) instead of a data directory; unset ${ENV} references are fine")
    plan.add_argument("--allow-destructive", action="store_true", help="plan as if destructive changes were allowed")
    plan.add_argument("--format", choices=["text", "json"], default="text")
    plan.set_defaults(run=_plan)

    apply = commands.add_parser("apply", help="apply a config to a data directory with the server stopped (re-vectorizes in the foreground)")
    apply.add_argument("config", help="a YAML file or a directory of them")
    apply.add_argument("--data", help="data directory (default: server.dataDir, else $SEARCHD_DATA or ./searchd-data)")
    apply.add_argument("--allow-destructive", action="store_true", help="apply changes that drop stored data")
    apply.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    apply.set_defaults(run=_apply)

    importing = commands.add_parser("import", help="import JSONL or JSON array files of objects into a data directory (server stopped) or through a running server")
    importing.add_argument("files", nargs="+", metavar="FILE", help="JSONL (one object per line) or a JSON array of objects, in Weaviate's object shape")
    importing.add_argument("--config", help="the config the data directory is served with (a YAML file or a directory of them)")
    importing.add_argument("--data", help="data directory (default: server.dataDir, else $SEARCHD_DATA or ./searchd-data)")
    importing.add_argument(
        "--url", help="import through a running server instead (e.g. http://127.0.0.1:8080): its batch API, with $SEARCHD_API_KEY as the bearer key if set"
    )
    importing.add_argument("--rejects", metavar="FILE", help="write each object that failed to FILE (JSONL), to fix and import again")
    importing.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar, even on a terminal")
    importing.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    importing.set_defaults(run=_import)

    backup = commands.add_parser("backup", help="copy a data directory (or the PostgreSQL store) consistently, even while a server uses it")
    where = backup.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="the data directory to copy")
    where.add_argument("--config", help="copy the store this config uses: its data directory, or its PostgreSQL database (server.storage) into a data directory")
    backup.add_argument("destination", help="a new or empty directory")
    backup.set_defaults(run=_backup)

    from_json = commands.add_parser("schema-from-json", help="turn a Weaviate class JSON (a client's POST /v1/schema body) into the YAML collection to add to the config")
    from_json.add_argument("file", help="a JSON file, or - for standard input; GET /v1/schema's {\"classes\": [...]} works too")
    from_json.add_argument("--dimensions", action="append", metavar="NAME=N", help="width of a vector whose objects bring their own vectors (repeatable; the unnamed one is 'default')")
    from_json.set_defaults(run=_schema_from_json)
    return parser


def one_blas_thread() -> None:
    """numpy's BLAS (OpenBLAS) to one thread: requests run side by side in worker threads, and BLAS threads of
    its own per matrix product spin on a busy machine (an exact scan of 1,500 vectors: 7-8 ms of CPU, 1.4 with one)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    one_blas_thread()
    if args.config_max_bytes is not None:  # read by the loader (and each reload) from the environment, like the other settings
        os.environ["SEARCHD_CONFIG_MAX_BYTES"] = str(args.config_max_bytes)
    logging.basicConfig(level=getattr(args, "log_level", "info").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "log_format", "text") == "json":
        from searchd.server.observe import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    if getattr(args, "no_access_log", False):
        logging.getLogger("searchd.access").setLevel(logging.WARNING)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
