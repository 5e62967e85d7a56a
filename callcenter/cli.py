"""The ``callcenter`` command.

serve        run the service: web/API, FastAGI (IVR), ARI routing, worker
worker       run only transcription workers
db migrate   apply database migrations
analyze      transcribe, ticket and score one call from files; print JSON
demo         place scenario calls through the sandboxed Asterisk
agents       list, add or remove agents; login, logout, pause, unpause, ready
sandbox      build/start/stop the Asterisk sandbox
config       print the effective settings
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callcenter import logs
from callcenter.errors import CliError
from callcenter.settings import Settings, describe, listening

log = logging.getLogger("callcenter.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message is precise but long; keep its first lines
        print(f"callcenter: invalid settings: {exc}", file=sys.stderr)
        return 2
    logs.configure(
        "DEBUG" if getattr(args, "verbose", False) else settings.log_level,
        json_lines=settings.log_json,
    )
    try:
        result = args.func(args, settings)
        return int(result or 0)
    except CliError as exc:
        print(f"callcenter: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"callcenter: {exc.strerror or exc} (is another callcenter already running? "
              "see CALLCENTER_WEB_PORT / CALLCENTER_AGI_PORT)", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcenter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers()

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--no-telephony", action="store_true",
                       help="web, database and worker only (no FastAGI/ARI)")
    serve.add_argument("--workers", type=int, default=None, help="in-process workers")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run transcription workers only")
    worker.set_defaults(func=_worker)

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers()
    migrate = db_sub.add_parser("migrate", help="apply migrations")
    migrate.set_defaults(func=_db_migrate)

    analyze = sub.add_parser("analyze", help="analyze one call from files, print JSON")
    mode = analyze.add_mutually_exclusive_group(required=True)
    mode.add_argument("--caller", type=Path, help="caller leg, mono WAV (with --agent)")
    mode.add_argument("--stereo", type=Path, help="stereo WAV: left caller, right agent")
    mode.add_argument("--timeline", type=Path, help="meta.json with a ground-truth timeline")
    analyze.add_argument("--agent", type=Path, help="agent leg, mono WAV (with --caller)")
    analyze.add_argument("--phone", default="", help="caller's number (caller ID)")
    analyze.add_argument("--ivr-digits", default="", help="key pressed in the IVR menu")
    analyze.add_argument("--no-store", action="store_true", help="do not write to the database")
    analyze.set_defaults(func=_analyze)

    demo = sub.add_parser("demo", help="place scenario calls through the sandboxed Asterisk")
    demo.add_argument("--calls", type=int, default=3, help="how many scenario calls")
    demo.add_argument("--scenario", action="append", default=[], help="scenario id, repeatable")
    demo.add_argument("--keep-running", action="store_true",
                      help="keep the service running after the calls")
    demo.set_defaults(func=_demo)

    agents = sub.add_parser("agents", help="list or add agents")
    agents_sub = agents.add_subparsers()
    agents_list = agents_sub.add_parser("list")
    agents_list.set_defaults(func=_agents_list)
    agents_add = agents_sub.add_parser("add")
    agents_add.add_argument("id")
    agents_add.add_argument("--name", required=True)
    agents_add.add_argument(
        "--endpoint",
        help="dial an existing endpoint instead of creating a SIP account"
        " (e.g. Local/1001@sim-agents/n for a simulated agent)",
    )
    agents_add.add_argument("--sip-user", help="SIP user name (default: the agent id)")
    agents_add.add_argument("--skills", default="repair,complaint,consultation,general")
    agents_add.set_defaults(func=_agents_add)
    agents_remove = agents_sub.add_parser(
        "remove", help="log an agent out and delete their SIP account (calls are kept)"
    )
    agents_remove.add_argument("id")
    agents_remove.set_defaults(func=_agents_remove)
    for action, text in AGENT_ACTIONS.items():
        request = agents_sub.add_parser(action, help=text)
        request.add_argument("id")
        if action == "pause":
            request.add_argument("--reason", default="break", help="e.g. lunch, training")
        request.set_defaults(func=_agents_request, action=action)

    sandbox = sub.add_parser("sandbox", help="the Asterisk sandbox (root required)")
    sandbox.add_argument("action", choices=["build", "start", "stop", "status"])
    sandbox.set_defaults(func=_sandbox)

    config = sub.add_parser("config", help="print effective settings")
    config.set_defaults(func=_config)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from callcenter.web.app import create_app

    telephony = not args.no_telephony
    if telephony:
        from callcenter.acd.queues import QueueConfigError, load_queues

        try:  # a bad queues file is one line here, not a traceback at start-up
            load_queues(settings.queues_file) if settings.queues_file else load_queues()
        except QueueConfigError as exc:
            raise CliError(str(exc)) from None
    app = create_app(settings, telephony=telephony, workers=args.workers)
    print(listening(settings, telephony=telephony), flush=True)
    web.run_app(app, host=settings.web_host, port=settings.web_port, print=None,
                access_log=None)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.service import run_worker

    asyncio.run(run_worker(settings))
    return 0


def _db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.db.connect import connect, database_dsn
    from callcenter.db.migrate import migrate

    async def run() -> list[str]:
        conn = await connect(await asyncio.to_thread(database_dsn, settings))
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    print(json.dumps({"applied": applied}))
    return 0


def _analyze(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.analyze import AnalyzeRequest, run_analyze

    if args.caller and not args.agent:
        raise CliError("--caller needs --agent (two mono legs)")
    if args.agent and not args.caller:
        raise CliError("--agent needs --caller (two mono legs)")
    request = AnalyzeRequest(
        caller=args.caller, agent=args.agent, stereo=args.stereo, timeline=args.timeline,
        phone=args.phone, ivr_digits=args.ivr_digits, store=not args.no_store,
    )
    doc = asyncio.run(run_analyze(request, settings))
    json.dump(doc, sys.stdout, ensure_ascii=False, indent=1, default=str)
    sys.stdout.write("\n")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.demo import run_demo

    summary = asyncio.run(run_demo(settings, calls=args.calls, scenarios=args.scenario,
                                   keep_running=args.keep_running))
    print(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return 0 if summary.get("ok") else 1


def _with_store(settings: Settings, action: Any) -> Any:
    from callcenter.db.connect import create_pool
    from callcenter.db.migrate import prepare_database
    from callcenter.db.store import PgStore

    async def run() -> Any:
        pool = await create_pool(await prepare_database(settings), max_size=2)
        try:
            return await action(PgStore(pool))
        finally:
            await pool.close()

    return asyncio.run(run())


def _agents_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = _with_store(settings, lambda store: store.agent_rows())
    print(json.dumps(rows, ensure_ascii=False, indent=1, default=str))
    return 0


def _agents_add(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.sip.accounts import AccountError
    from callcenter.sip.provision import add_agent

    skills = [s for s in args.skills.split(",") if s]

    async def add(store: Any) -> Any:
        return await add_agent(store, settings, args.id, name=args.name, skills=skills,
                               endpoint=args.endpoint, sip_user=args.sip_user)

    try:
        added = _with_store(settings, add)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    # The password is shown here once and stored nowhere (only its digest).
    print(json.dumps(added.as_dict(), ensure_ascii=False))
    if added.credentials is not None:
        print("SIP account created; the running service pushes it to Asterisk. "
              "Note the password now: it cannot be shown again.", file=sys.stderr)
    return 0


def _agents_remove(args: argparse.Namespace, settings: Settings) -> int:
    if not _with_store(settings, lambda store: store.remove_agent(args.id)):
        raise CliError(f"no agent {args.id!r}")
    print(json.dumps({"removed": args.id}))
    return 0


# Requests the call distributor applies (it owns agent states): at once when the
# service runs, else when it starts.
AGENT_ACTIONS = {
    "login": "log an agent in (available for calls)",
    "logout": "log an agent out (after the current call, if any)",
    "pause": "pause an agent with a reason (after the current call, if any)",
    "unpause": "end an agent's pause",
    "ready": "end an agent's wrap-up now",
}


def _agents_request(args: argparse.Namespace, settings: Settings) -> int:
    reason = getattr(args, "reason", None)

    async def ask(store: Any) -> int:
        return int(await store.request_agent(args.id, args.action, reason, by="cli"))

    try:
        request_id = _with_store(settings, ask)
    except KeyError:
        raise CliError(f"no agent {args.id!r}") from None
    print(json.dumps({"request_id": request_id, "agent_id": args.id, "action": args.action}))
    return 0


def _sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.sandbox.asterisk import sandbox_from_settings

    box = sandbox_from_settings(settings)
    if args.action == "build":
        box.build()
    elif args.action == "start":
        box.start()
        print(f"Asterisk sandbox running; ARI at {settings.ari_url}")
    elif args.action == "stop":
        box.stop()
    else:
        print(json.dumps(box.status(), default=str))
    return 0


def _config(args: argparse.Namespace, settings: Settings) -> int:
    for row in describe(settings):
        print(f"{row['name']:18} = {row['value']}\n{'':21}{row['description']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
