"""The ``callcenter`` command.

serve        run the service: web/API, FastAGI (IVR), ARI routing, worker
worker       run only transcription workers
db migrate   apply database migrations
analyze      transcribe, ticket and score one call from files; print JSON
transcribe   recordings to text (mono legs or stereo calls), with word times as JSON
demo         place scenario calls through the sandboxed Asterisk
agents       list, add or remove agents; login, logout, pause, unpause, ready
users        people who sign in to the web: add (the first admin too), list, set
residents    the residents directory: import a CSV, show one
sandbox      build/start/stop the Asterisk sandbox
ivr          recognize: spoken menu choices in WAV files, one JSON object per line
prompts      build the prompts' audio (8 kHz WAV and u-law for Asterisk), list them
config       print the effective settings
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callcenter import logs
from callcenter.errors import CliError
from callcenter.prompts import add_arguments as add_prompt_arguments
from callcenter.settings import Settings, describe, listening
from callcenter.startup import check_ports_free, failure_message, prepare_process

log = logging.getLogger("callcenter.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message is precise but long: one line of it
        invalid = failure_message(exc, None) or f"invalid settings: {' '.join(str(exc).split())}"
        print(f"callcenter: {invalid}", file=sys.stderr)
        return 2
    logs.configure(
        "DEBUG" if getattr(args, "verbose", False) else settings.log_level,
        json_lines=settings.log_json,
    )
    try:
        result = args.func(args, settings)
        return int(result or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # start-up failures surface here, through run_app/asyncio.run
        reason = failure_message(exc, settings)  # the one place that knows them
        if reason is None:
            raise  # a bug: its traceback
        log.debug("the command failed", exc_info=True)  # -v: the traceback too
        print(f"callcenter: {reason}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcenter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers()

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--no-telephony", action="store_true",
                       help="web, database and worker only (no FastAGI/ARI)")
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="calls the in-process worker transcribes at once (0: no worker)")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run a transcription worker only (any number, "
                                           "on any machine, against one database)")
    worker.add_argument("--concurrency", type=int, default=None, metavar="N",
                        help="calls transcribed at once (default: one per core)")
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

    transcribe = sub.add_parser(
        "transcribe", help="recordings to text: WAV (PCM or G.711), .ulaw/.alaw/.sln; a "
                           "stereo file is a call (caller left, agent right)")
    transcribe.add_argument("files", type=Path, nargs="+", metavar="FILE")
    transcribe.add_argument("--json", action="store_true",
                            help="one JSON object per file and line, with word times")
    transcribe.add_argument("--skip-silence", action=argparse.BooleanOptionalAction,
                            default=None,
                            help="decode only the stretches with speech (default: the "
                                 "asr_skip_silence setting, off); --no-skip-silence: "
                                 "whole legs")
    transcribe.set_defaults(func=_transcribe)

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
        if action in ("join", "leave"):
            request.add_argument("reason", metavar="queue", help="e.g. complaint")
        request.set_defaults(func=_agents_request, action=action)

    _users_parser(sub)

    residents = sub.add_parser("residents", help="the residents directory (name, address, VIP)")
    residents_sub = residents.add_subparsers()
    residents_import = residents_sub.add_parser(
        "import", help="add or update residents from a UTF-8 CSV with a header "
                       "(phone, name, building, unit, room, vip, notes)")
    residents_import.add_argument("file", type=Path)
    residents_import.set_defaults(func=_residents_import)
    residents_show = residents_sub.add_parser("show", help="one resident by phone number")
    residents_show.add_argument("phone")
    residents_show.set_defaults(func=_residents_show)

    tickets = sub.add_parser("tickets", help="what people's reviews say about the judgements")
    tickets_sub = tickets.add_subparsers()
    for name, text in (
        ("judgements", "accuracy of the automatic category, urgency and severity against "
                       "what people confirmed or corrected (JSON)"),
        ("corrections", "reviewed calls as corpus entries (YAML), for a person to check "
                        "and add to callcenter/tickets/corpus/"),
    ):
        cmd = tickets_sub.add_parser(name, help=text)
        cmd.add_argument("--since", type=_date, default=None,
                         help="YYYY-MM-DD (default: 30 days ago)")
        cmd.set_defaults(func=_tickets_feedback, what=name)

    _qa_parser(sub)
    _calls_parser(sub)
    _ivr_parser(sub)

    sandbox = sub.add_parser("sandbox", help="the Asterisk sandbox (root required)")
    sandbox.add_argument("action", choices=["build", "start", "stop", "status"])
    sandbox.set_defaults(func=_sandbox)

    prompts = sub.add_parser("prompts", help="the prompts' audio: build, list")
    add_prompt_arguments(prompts, out_help=(
        "output folder; default: the Asterisk sandbox's sounds folder (and its music "
        "on hold) when the sandbox is built, otherwise --out is required"))
    prompts.set_defaults(func=_prompts)

    config = sub.add_parser("config", help="print effective settings")
    config.set_defaults(func=_config)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from callcenter.web.app import create_app

    telephony = not args.no_telephony
    prepare_process(settings)
    if telephony:
        from callcenter.acd.queues import QueueConfigError, load_queues

        try:  # a bad queues file is one line here, not a traceback at start-up
            load_queues(settings.queues_file) if settings.queues_file else load_queues()
        except QueueConfigError as exc:
            raise CliError(str(exc)) from None
    # A taken port is one line at once, not after the database and the model started.
    check_ports_free((settings.web_host, settings.web_port),
                     *([(settings.agi_host, settings.agi_port)] if telephony else []))
    app = create_app(settings, telephony=telephony, workers=args.workers)
    print(listening(settings, telephony=telephony), flush=True)
    web.run_app(app, host=settings.web_host, port=settings.web_port, print=None,
                access_log=None)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.service import run_worker

    if args.concurrency is not None:
        if args.concurrency < 1:
            raise CliError("--concurrency must be at least 1")
        settings = settings.model_copy(update={"worker_concurrency": args.concurrency})
    prepare_process(settings)
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


def _transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.asr.decoder import Transcriber
    from callcenter.asr.model import ModelNotFound
    from callcenter.transcribe import run

    try:
        transcriber = Transcriber(settings=settings, allow_network=False,
                                  use_vad=settings.asr_skip_silence if args.skip_silence is None
                                  else args.skip_silence)
    except ModelNotFound as exc:
        raise CliError(str(exc)) from None
    return run(args.files, transcriber, as_json=args.json)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.demo import run_demo

    prepare_process(settings)
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


def _users_parser(sub: Any) -> None:
    users = sub.add_parser("users", help="people who sign in to the web")
    users_sub = users.add_subparsers()
    users_list = users_sub.add_parser("list")
    users_list.set_defaults(func=_users_list)
    for name, text in (("add", "add a user (the first admin, for one)"),
                       ("set", "change a user's role, agent, name, password or state")):
        cmd = users_sub.add_parser(name, help=text)
        cmd.add_argument("username")
        cmd.add_argument("--role", choices=["agent", "qa", "supervisor", "admin"],
                         required=name == "add")
        cmd.add_argument("--agent", help="the agent id of an agent user (callcenter agents add)")
        cmd.add_argument("--name", help="display name")
        cmd.add_argument("--language", choices=["zh-CN", "en"])
        cmd.add_argument("--password-stdin", action="store_true",
                         help="read the password from standard input (else one is made "
                              "and printed once)")
        if name == "set":
            cmd.add_argument("--new-password", action="store_true",
                             help="make a new password and print it once")
            state = cmd.add_mutually_exclusive_group()
            state.add_argument("--disable", action="store_true")
            state.add_argument("--enable", action="store_true")
        cmd.set_defaults(func=_users_add if name == "add" else _users_set)


def _residents_import(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter import residents

    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    rows, problems = residents.parse_csv(text)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if not rows:
        raise CliError(f"no residents to import from {args.file}")
    count = _with_store(settings, lambda store: residents.upsert(store.pool, rows, by="cli"))
    print(json.dumps({"imported": count, "skipped": len(problems)}))
    return 0


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _qa_parser(sub: Any) -> None:
    qa = sub.add_parser("qa", help="QA scores: score a call, re-score stored calls")
    qa_sub = qa.add_subparsers()
    score = qa_sub.add_parser(
        "score", help="score a stored call (its id) or a transcript file (a meta.json-style "
                      "timeline), print JSON; stores nothing")
    score.add_argument("target", help="call id or transcript file")
    score.add_argument("--rules", type=Path, default=None, help="rule file (default: shipped)")
    score.set_defaults(func=_qa_score)
    rescore = qa_sub.add_parser(
        "rescore", help="score stored calls again with a rule file and report what changed; "
                        "earlier results and human verdicts are kept")
    rescore.add_argument("--since", type=_date, required=True, help="YYYY-MM-DD")
    rescore.add_argument("--rules", type=Path, default=None, help="rule file (default: shipped)")
    rescore.add_argument("--call", action="append", default=[], help="only this call (repeat)")
    rescore.add_argument("--dry-run", action="store_true", help="report, store nothing")
    rescore.add_argument("--details", action="store_true", help="list every changed call")
    rescore.set_defaults(func=_qa_rescore)


def _calls_parser(sub: Any) -> None:
    calls = sub.add_parser("calls", help="stored calls: analyse again")
    calls_sub = calls.add_subparsers()
    again = calls_sub.add_parser(
        "reanalyze", help="queue the analysis again (the workers do it): by default the calls "
                          "whose recordings were never searched for personal numbers")
    again.add_argument("--since", type=_date, required=True, help="ended since YYYY-MM-DD")
    again.add_argument("--call", action="append", default=[], help="only this call (repeat)")
    again.add_argument("--all", action="store_true",
                       help="every analysed call, not only the unchecked ones")
    again.add_argument("--dry-run", action="store_true", help="list them, queue nothing")
    again.set_defaults(func=_calls_reanalyze)


def _calls_reanalyze(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.db.store import requeue_analysis

    ids = _with_store(settings, lambda store: requeue_analysis(
        store.pool, since=args.since, call_ids=args.call, unchecked_only=not args.all,
        dry_run=args.dry_run))
    print(json.dumps({"queued": 0 if args.dry_run else len(ids), "calls": ids}))
    return 0


def _rules_arg(path: Path | None) -> Any:
    from callcenter.qa.engine import RulesFileError, load_rules

    try:
        return load_rules(path) if path else load_rules()
    except RulesFileError as exc:
        raise CliError(str(exc)) from None


def _ivr_parser(sub: Any) -> None:
    ivr = sub.add_parser("ivr", help="the IVR's spoken menu choices")
    ivr_sub = ivr.add_subparsers()
    recognize = ivr_sub.add_parser(
        "recognize", help="recognise WAV files against a menu's grammar; print one JSON "
                          "object per file and line (file, choice, confidence, text, decode_ms, "
                          "audio_ms; or file and error). Exit status 1 when a file failed")
    recognize.add_argument("--menu", required=True, help="the grammar, e.g. main or repair")
    recognize.add_argument("--min-confidence", type=float, default=None,
                           help="below this a choice is none (default: menu.yaml's timing)")
    recognize.add_argument("files", nargs="+", type=Path, metavar="FILE.wav")
    recognize.set_defaults(func=_ivr_recognize)


def _ivr_recognize(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.asr.model import ModelNotFound
    from callcenter.ivr.grammars import GrammarError
    from callcenter.ivr.speech import MenuRecognizer, recognition_entries

    try:
        recognizer = MenuRecognizer(settings=settings, min_confidence=args.min_confidence,
                                    workers=1)
    except GrammarError as exc:
        raise CliError(str(exc)) from None
    if args.menu not in recognizer.grammars:
        raise CliError(f"unknown menu {args.menu!r} (menus with a grammar: "
                       f"{', '.join(recognizer.grammars)})")
    try:
        recognizer.model_path  # noqa: B018 (loads the model: fail once, not per file)
    except ModelNotFound as exc:
        raise CliError(str(exc)) from None
    failed = 0
    with recognizer:
        for entry in recognition_entries(recognizer, args.menu, args.files):
            failed += "error" in entry
            print(json.dumps(entry, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def _qa_score(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.qa import rescore

    rules = _rules_arg(args.rules)
    target = Path(args.target)
    if target.is_file():
        from callcenter.pipeline import timeline_from_file_meta
        from callcenter.qa.engine import score

        try:
            meta = json.loads(target.read_text(encoding="utf-8"))
            timeline, facts = timeline_from_file_meta(meta)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CliError(f"{target}: not a transcript file ({exc})") from None
        result = score(timeline, facts, rules=rules, source="text")
    else:
        from callcenter.qa.store import calls_to_rescore

        async def stored(store: Any) -> Any:
            rows = await calls_to_rescore(store.pool, datetime(1970, 1, 1, tzinfo=UTC),
                                          [args.target])
            if not rows:
                raise CliError(f"no scored call {args.target!r} (and no such file)")
            return await rescore.score_stored(store.pool, rows[0], rules)

        result = _with_store(settings, stored)
    print(json.dumps(result.to_json(), ensure_ascii=False, indent=1))
    return 0


def _qa_rescore(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.qa import rescore

    rules = _rules_arg(args.rules)
    report = _with_store(settings, lambda store: rescore.rescore(
        store.pool, rules, since=args.since, call_ids=args.call, dry_run=args.dry_run))
    doc = report.as_dict()
    if not args.details:
        doc.pop("details")
    print(json.dumps(doc, ensure_ascii=False, indent=1))
    return 0


def _tickets_feedback(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from callcenter.tickets import feedback

    since = args.since or datetime.now(UTC) - timedelta(days=30)
    if args.what == "judgements":
        figures = _with_store(settings, lambda s: feedback.judgement_figures(s.pool, since))
        print(json.dumps(figures, ensure_ascii=False, indent=1))
    else:
        entries = _with_store(settings, lambda s: feedback.corrections(s.pool, since))
        print(yaml.safe_dump(entries, allow_unicode=True, sort_keys=False, width=120), end="")
    return 0


def _residents_show(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter import residents

    found = _with_store(settings, lambda store: residents.find(store.pool, args.phone))
    if found is None:
        raise CliError(f"no resident with number {args.phone}")
    print(json.dumps(found, ensure_ascii=False))
    return 0


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.auth import store as users

    rows = _with_store(settings, lambda store: users.list_users(store.pool))
    print(json.dumps(rows, ensure_ascii=False, indent=1, default=str))
    return 0


def _password_from(args: argparse.Namespace, username: str) -> tuple[str, bool]:
    """(password, made here) from stdin or a new one; refused if too weak."""
    from callcenter.auth.model import password_problem
    from callcenter.auth.passwords import new_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        problem = password_problem(password, username)
        if problem:
            raise CliError(f"password refused: {problem}")
        return password, False
    return new_password(), True


def _users_add(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.auth import store as users
    from callcenter.auth.model import USERNAME, Role
    from callcenter.auth.passwords import hash_password

    username = args.username.strip().lower()
    if not USERNAME.match(username):
        raise CliError("user name: 2-64 of a-z 0-9 . _ -, starting with a letter or digit")
    password, made = _password_from(args, username)
    if args.role == "agent" and not args.agent:
        raise CliError("an agent user needs --agent (see `callcenter agents add`)")

    async def add(store: Any) -> Any:
        user = await users.create_user(
            store.pool, username=username, role=Role(args.role), created_by="cli",
            password_hash=hash_password(password), display_name=args.name or "",
            agent_id=args.agent, language=args.language or "zh-CN")
        await users.audit(store.pool, action="user_created", username="cli", target_kind="user",
                          target_id=str(user["id"]), details={"username": username,
                                                              "role": args.role})
        return user

    try:
        user = _with_store(settings, add)
    except users.UserExists as exc:
        raise CliError(f"already taken: {exc}") from None
    except users.UnknownAgent as exc:
        raise CliError(f"no agent {exc} (add it first: callcenter agents add)") from None
    print(json.dumps({"user": user, **({"password": password} if made else {})},
                     ensure_ascii=False, default=str))
    if made:
        print("Note the password now: it cannot be shown again.", file=sys.stderr)
    return 0


def _users_set(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.auth import store as users
    from callcenter.auth.passwords import hash_password

    changes: dict[str, Any] = {}
    if args.role:
        changes["role"] = args.role
    if args.agent is not None:
        changes["agent_id"] = args.agent or None
    if args.name is not None:
        changes["display_name"] = args.name
    if args.language:
        changes["language"] = args.language
    if args.disable or args.enable:
        changes["disabled"] = bool(args.disable)
    password, made = None, False
    if args.password_stdin or args.new_password:
        password, made = _password_from(args, args.username)
        changes["password_hash"] = hash_password(password)
    if not changes:
        raise CliError("nothing to change (see callcenter users set --help)")

    async def change(store: Any) -> Any:
        user_id = await store.pool.fetchval("SELECT id FROM users WHERE username = $1",
                                            args.username.strip().lower())
        if user_id is None:
            return None
        user = await users.update_user(store.pool, user_id, changes)
        shown = {k: v for k, v in changes.items() if k != "password_hash"}
        await users.audit(store.pool, action="user_changed", username="cli", target_kind="user",
                          target_id=str(user_id), details=shown)
        return user

    try:
        user = _with_store(settings, change)
    except users.UnknownAgent as exc:
        raise CliError(f"no agent {exc}") from None
    except users.UserExists as exc:
        raise CliError(f"already taken: {exc}") from None
    if user is None:
        raise CliError(f"no user {args.username!r}")
    print(json.dumps({"user": user, **({"password": password} if made else {})},
                     ensure_ascii=False, default=str))
    return 0


# Requests the call distributor applies (it owns agent states): at once when the
# service runs, else when it starts.
AGENT_ACTIONS = {
    "login": "log an agent in (available for calls)",
    "logout": "log an agent out (after the current call, if any)",
    "pause": "pause an agent with a reason (after the current call, if any)",
    "unpause": "end an agent's pause",
    "ready": "end an agent's wrap-up now",
    "join": "put an agent back into one queue they have the skill for",
    "leave": "take an agent out of one queue (they keep serving the others)",
    "survey": "send the caller on the agent's call to the satisfaction survey",
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


def _prompts(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter import prompts
    from callcenter.sandbox.asterisk import sandbox_from_settings

    if args.prompts_action == "list":
        print("\n".join(prompts.list_lines(prompts.collect_prompts())))
        return 0
    box = sandbox_from_settings(settings)
    engine = prompts.make_engine(args.engine, args.command,
                                 box.root if box.is_built() else None)
    recorded = prompts.recorded_dir_of(args)
    if args.out is not None:
        report = prompts.build(prompts.collect_prompts(), args.out, engine,
                               recorded_dir=recorded, force=args.force)
    elif box.is_built():
        report = box.render_prompts(engine, recorded_dir=recorded, force=args.force)
    else:
        raise CliError(f"no Asterisk sandbox built in {box.root}: give --out DIR")
    print("\n".join(report.lines()))
    return 0


def _config(args: argparse.Namespace, settings: Settings) -> int:
    from zoneinfo import ZoneInfo

    from callcenter.ivr.hours import calendar_warning

    for row in describe(settings):
        print(f"{row['name']:18} = {row['value']}\n{'':21}{row['description']}")
    warning = calendar_warning(datetime.now(ZoneInfo(settings.timezone)).date())
    if warning:
        print(f"callcenter: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
