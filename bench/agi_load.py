"""FastAGI under load: a simulated Asterisk drives N concurrent IVR sessions over
TCP through the real FastAGI server backed by the real PostgreSQL, beside a
minimal asyncio AGI responder that issues the same commands, in the same run.

Acceptance point: "1,000 concurrent sessions with p99 <= 20 ms, >= 0.5x the
minimal responder's sessions per second, <= 512 MB resident, and 0 call rows
lost: the caller never waits on the database, and what the IVR learned is
written durably, also through a 60 s database outage."

How:

- PostgreSQL: the server of ``DATABASE_URL`` when set, else a private embedded
  one (pgserver) in a temporary folder; the bench makes its own database on it
  and drops it at the end;
- the server under test runs in its own process (``--serve service``), wired as
  ``callcenter serve`` wires it: ``create_app``'s database context (the pool,
  ``PgStore``, the ``OrderedWriter`` with its journal in the data folder) and the
  service's own ``agi_context`` (the IVR handler with its caller lookup, menu and
  speech settings, the FastAGI server), with neither ARI nor the web listener.
  A fresh process per concurrency level, so its peak resident memory (VmHWM) is
  that level's;
- the minimal responder (``--serve minimal``, its own process too): reads the
  environment, then sends the command lines the real server sent in the level's
  first session (recorded) one by one, reading one line after each. No
  database, no logging, no IVR;
- the simulated Asterisk (this process): N sessions at a time, each replaced by
  the next when it ends (a closed loop) until ``--sessions`` ran. A session
  connects, sends the ``agi_*`` environment (its own ``agi_uniqueid``,
  ``agi_network_script: ivr``, ``agi_callerid``) and answers every command by its
  verb as Asterisk does, whatever the order: ``200 result=0`` (ANSWER, SET
  CONTEXT...), ``200 result=1`` (SET VARIABLE, VERBOSE), the value set before
  for GET VARIABLE; an input command (STREAM FILE, CONTROL STREAM FILE, WAIT FOR
  DIGIT, GET DATA, GET OPTION, RECORD FILE) takes ``--media-ms`` (+-50 %, the
  prompt playing and the caller thinking) and answers the caller's next key of
  ``--plan`` when that command lets it interrupt (then silence);
- load model: a real IVR spends most of a call in prompts, so each session is
  paced by its input commands; the first N sessions start spread over one media
  time (no thundering herd). ``--media-ms 0`` answers at once: the closed loop
  then saturates the machine, and sessions/s measures raw throughput;
- measured per session and command, as the caller would feel it: per-command
  latency = from the simulated Asterisk sending a response to it receiving the
  next command (the server's processing), time to ANSWER = from connect to the
  ANSWER command; sessions/s = sessions / (last end - first start). Where the
  caller waits is printed too: the command transitions with the highest p99
  (after ``SET VARIABLE CC_CALL_ID`` the IVR looks the caller up), and the
  server process's own event-loop lag and garbage-collector pauses. One
  process drives all sessions (a thousand take it about a third of a core);
  its event-loop lag (p99) is printed beside the figures: a load generator that
  lagged would inflate both sides' latencies alike;
- rows: after the run the bench asks the server process to flush its writer
  (it answers once the writes submitted so far are done: a condition, not a
  sleep), then counts the sessions whose ``calls`` row is missing or incomplete
  (a routed caller: stage ``queue``, ``queue`` and ``priority`` set; any other
  the IVR answered: the row exists);
- ``--outage S``: at a quarter of the run's expected length the bench stops the
  embedded PostgreSQL (``pg_ctl stop -m immediate``: a crash, without a
  shutdown checkpoint, in-flight transactions lost) and starts it again S
  seconds later; the sessions go on throughout (the run lasts until at least
  S + 20 s of sessions). A stopped server rather than a cut proxy: connections
  break the way they do in production and no proxy sits on the measured path.
  With ``DATABASE_URL`` the bench cannot stop the server: refused.
  ``--kill-in-outage`` also SIGKILLs the service half-way through the outage
  and starts it again once the database is back (it needs the database to
  start): what it had not written comes from its write-ahead log;
- ``--what-if``: experiments beside the service's wiring, for changes this bench
  cannot make in the service (labelled as such in the output); ``--profile``:
  cProfile (CPU time) of the service during the measured sessions.

    flock /tmp/cc-e2e.lock .venv/bin/python bench/agi_load.py --quick
    flock /tmp/cc-e2e.lock .venv/bin/python bench/agi_load.py   # 100,1000
    flock /tmp/cc-e2e.lock .venv/bin/python bench/agi_load.py --media-ms 0 --sessions 3000
    flock /tmp/cc-e2e.lock .venv/bin/python bench/agi_load.py --concurrency 1000 --outage 60

Ctrl-C or SIGTERM stop the processes and the database; the temporary folder
(database included) is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import random
import resource
import shutil
import socket
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from procstat import (  # noqa: E402  (bench/, beside this file)
    log,
    pct,
    postmaster_pid,
    private_postgres,
    proc_cpu_s,
    run_interruptible,
    stop_service,
    tree_cpu_s,
)

from callcenter.core import call_id_for_channel  # noqa: E402

GOAL_P99_S = 0.020
GOAL_RATIO = 0.5
GOAL_RSS_MB = 512
VAR_QUEUE = "CC_QUEUE"  # callcenter.constants, as Asterisk sees it: a plain name
VAR_RESULT = "CC_IVR_RESULT"
FALLBACK_CONTEXT = "hotline-fallback"
STARTUP_TIMEOUT_S = 180.0  # the service loads its menu and, with speech on, a model
FLUSH_TIMEOUT_S = 900.0
LAG_TICK_S = 0.01

# Commands that play media or wait for the caller: answered after the media time.
INPUT_COMMANDS = ("STREAM FILE", "CONTROL STREAM FILE", "WAIT FOR DIGIT", "GET DATA",
                  "GET OPTION", "RECORD FILE")
OTHER_MEDIA = ("SAY DIGITS", "SAY NUMBER", "SAY ALPHA", "SAY PHONETIC", "SAY DATE",
               "SAY TIME", "SAY DATETIME", "EXEC")
# "200 result=1" for these, "200 result=0" for the other known commands.
RESULT_ONE = ("SET VARIABLE", "VERBOSE", "HANGUP", "SET MUSIC", "SPEECH CREATE")
KNOWN = (*INPUT_COMMANDS, *OTHER_MEDIA, *RESULT_ONE, "ANSWER", "GET VARIABLE",
         "GET FULL VARIABLE", "CHANNEL STATUS", "SET CONTEXT", "SET EXTENSION",
         "SET PRIORITY", "SET CALLERID", "SET AUTOHANGUP", "DATABASE GET", "DATABASE PUT",
         "DATABASE DEL", "NOOP", "ASYNCAGI BREAK")


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


# ---- the simulated Asterisk ---------------------------------------------------------------


def split_args(line: str) -> list[str]:
    """A command line's words as Asterisk's parse_args() reads them (quotes group,
    a backslash escapes the next character)."""
    words: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
            continue
        elif ch == '"':
            quoted = not quoted
            current = current if current is not None else []
            continue
        elif ch in " \t" and not quoted:
            if current is not None:
                words.append("".join(current))
                current = None
            continue
        current = current if current is not None else []
        current.append(ch)
    if current is not None:
        words.append("".join(current))
    return words


def verb_of(words: list[str]) -> tuple[str, list[str]]:
    """The command's name (one to three words) and its arguments."""
    upper = [w.upper() for w in words]
    for size in (3, 2, 1):
        name = " ".join(upper[:size])
        if name in KNOWN:
            return name, words[size:]
    return " ".join(upper[:2]), words[2:]


@dataclass
class Caller:
    """One simulated channel: its variables and the keys its caller will press."""

    keys: list[str]
    media_s: float
    rng: random.Random
    variables: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    def media_delay(self) -> float:
        return self.media_s * self.rng.uniform(0.5, 1.5) if self.media_s else 0.0

    def key_for(self, allowed: str) -> str:
        """The caller's next key if this prompt lets it interrupt, else ""."""
        if self.keys and self.keys[0] in allowed:
            return self.keys.pop(0)
        return ""

    def answer(self, name: str, args: list[str]) -> str:
        if name in ("STREAM FILE", "CONTROL STREAM FILE"):
            key = self.key_for(args[1] if len(args) > 1 else "")
            return f"200 result={ord(key) if key else 0} endpos=8000"
        if name in ("WAIT FOR DIGIT", "GET OPTION"):
            key = self.key_for("0123456789*#")
            return f"200 result={ord(key) if key else 0}" + (" endpos=8000" if name == "GET OPTION"
                                                            else "")
        if name == "GET DATA":
            key = self.key_for("0123456789*#")
            return f"200 result={key}" if key else "200 result= (timeout)"
        if name == "RECORD FILE":
            key = self.key_for(args[2] if len(args) > 2 else "")
            return (f"200 result={ord(key)} (dtmf) endpos=8000" if key
                    else "200 result=0 (timeout) endpos=8000")
        if name == "SET VARIABLE" and len(args) >= 2:
            self.variables[args[0]] = args[1]
        if name in ("GET VARIABLE", "GET FULL VARIABLE") and args:
            value = self.variables.get(args[0])
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if name == "CHANNEL STATUS":
            return "200 result=6"
        if name not in KNOWN:
            self.unknown.append(name)
            return "510 Invalid or unknown command"
        return "200 result=1" if name in RESULT_ONE else "200 result=0"


@dataclass
class SessionResult:
    unique_id: str
    routed: bool = False
    fallback: bool = False
    error: str = ""
    refused: bool = False  # could not connect: no call reached the server
    answer_s: float | None = None
    latencies: list[float] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # per latency: "previous -> next" command
    at: list[float] = field(default_factory=list)  # per latency: when (perf_counter) it ended
    lines: list[bytes] = field(default_factory=list)  # the first session's, for the replay
    unknown: list[str] = field(default_factory=list)


def environment(unique_id: str, caller_number: str) -> bytes:
    env = {
        "agi_network": "yes", "agi_network_script": "ivr",
        "agi_request": "agi://127.0.0.1/ivr", "agi_channel": f"PJSIP/trunk-{unique_id}",
        "agi_language": "zh", "agi_type": "PJSIP", "agi_uniqueid": unique_id,
        "agi_version": "22.0.0", "agi_callerid": caller_number, "agi_calleridname": "bench",
        "agi_callingpres": "0", "agi_dnid": "12345", "agi_context": "hotline",
        "agi_extension": "s", "agi_priority": "2", "agi_enhanced": "0.0",
        "agi_accountcode": "", "agi_threadid": "1",
    }  # fmt: skip
    return ("".join(f"{k}: {v}\n" for k, v in env.items()) + "\n").encode()


async def run_session(port: int, unique_id: str, caller: Caller, *, record: bool = False
                      ) -> SessionResult:
    """One call from connect to the server's hang-up, answering as Asterisk does."""
    result = SessionResult(unique_id)
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        result.error, result.refused = f"connect: {exc}", True
        return result
    try:
        writer.write(environment(unique_id, caller_number_for(unique_id)))
        sent_at: float | None = None
        previous = ""
        while line := await reader.readline():
            arrived = time.perf_counter()
            if record:
                result.lines.append(line)
            name, args = verb_of(split_args(line.decode("utf-8", "replace").rstrip("\r\n")))
            if sent_at is not None:
                result.latencies.append(arrived - sent_at)
                result.at.append(arrived)
                result.steps.append(f"{previous} -> {name}")
            previous = f"{name} {args[0]}" if name == "SET VARIABLE" and args else name
            if name == "ANSWER" and result.answer_s is None:
                result.answer_s = arrived - began
            note_outcome(result, name, args)
            if name in INPUT_COMMANDS or name in OTHER_MEDIA:
                await asyncio.sleep(caller.media_delay())
            writer.write((caller.answer(name, args) + "\n").encode())
            sent_at = time.perf_counter()
    except (OSError, asyncio.IncompleteReadError) as exc:
        result.error = repr(exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    result.unknown = caller.unknown
    return result


def note_outcome(result: SessionResult, name: str, args: list[str]) -> None:
    if name == "SET VARIABLE" and args and args[0] == VAR_QUEUE:
        result.routed = True
    if name == "SET CONTEXT" and args and args[0] == FALLBACK_CONTEXT:
        result.fallback = True


def caller_number_for(unique_id: str) -> str:
    """A stable, plausible mobile number per session (most are not residents)."""
    return "139" + str(zlib.crc32(unique_id.encode()) % 10**8).zfill(8)


# ---- one measured run ---------------------------------------------------------------------


@dataclass
class Phase:
    target: str  # "service" or "minimal"
    concurrency: int
    sessions: int = 0
    results: list[SessionResult] = field(default_factory=list)
    wall_s: float = 0.0
    lag: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    rss_mb: float | None = None
    rows_lost: int | None = None
    writer: str = ""
    drain_s: float = 0.0  # from the last session's end until the writer was flushed
    outage: str = ""
    outage_span: tuple[float, float] | None = None  # perf_counter: stopped, running again

    @property
    def latencies(self) -> list[float]:
        return [v for r in self.results for v in r.latencies]

    @property
    def answers(self) -> list[float]:
        return [r.answer_s for r in self.results if r.answer_s is not None]

    @property
    def rate(self) -> float:
        done = sum(1 for r in self.results if not r.error)
        return done / self.wall_s if self.wall_s else 0.0

    def count(self, what: str) -> int:
        return sum(1 for r in self.results if getattr(r, what))


async def measure_lag(samples: list[float], stop: asyncio.Event) -> None:
    """How late this process's event loop runs a 10 ms timer (the generator's lag)."""
    while not stop.is_set():
        due = time.perf_counter() + LAG_TICK_S
        await asyncio.sleep(LAG_TICK_S)
        samples.append(max(0.0, time.perf_counter() - due))


async def drive(port: int, phase: Phase, args: argparse.Namespace, run_id: str,
                until: float | None = None) -> None:
    """``phase.concurrency`` sessions at a time until ``args.sessions`` ran (or, with
    ``until``, until that time)."""
    rng = random.Random(f"{run_id}-{phase.target}-{phase.concurrency}")
    next_number = 0
    media_s = args.media_ms / 1000

    def more() -> bool:
        if until is not None:
            return time.perf_counter() < until
        return next_number < args.sessions

    async def worker(index: int) -> None:
        nonlocal next_number
        await asyncio.sleep(media_s * index / phase.concurrency)  # spread the first calls
        while more():
            number, next_number = next_number, next_number + 1
            unique_id = f"{run_id}.{phase.target[0]}{phase.concurrency}.{number}"
            caller = Caller(list(args.plan), media_s, random.Random(rng.random()))
            result = await run_session(port, unique_id, caller)
            phase.results.append(result)
            if result.refused:  # nobody listens (the service restarts): the next call later
                await asyncio.sleep(max(media_s, 0.1))

    stop = asyncio.Event()
    lag = asyncio.create_task(measure_lag(phase.lag, stop))
    began = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker(i) for i in range(phase.concurrency)))
    phase.wall_s = time.perf_counter() - began
    phase.client_cpu_s = time.process_time() - cpu0
    phase.sessions = len(phase.results)
    stop.set()
    await lag


# ---- the processes under test -------------------------------------------------------------


class Target:
    """A server process (the service or the minimal responder) and its control pipe."""

    def __init__(self, kind: str, work: Path, env: dict[str, str], extra: Sequence[str] = ()):
        self.kind = kind
        self.work = work
        self.env = env
        self.extra = list(extra)
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.log_path = work / f"{kind}.log"
        self.killed_cpu_s = 0.0  # of processes killed before this one
        self.killed_rss_mb = 0.0

    async def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean-up at all."""
        assert self.proc is not None
        self.killed_cpu_s += self.cpu_s()
        self.killed_rss_mb = max(self.killed_rss_mb, self.rss_mb() or 0.0)
        self.proc.kill()
        await self.proc.wait()

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--serve", self.kind,
                *self.extra, cwd=str(ROOT), env=self.env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=out, start_new_session=True,
            )  # fmt: skip
        reply = await self.ask(None, STARTUP_TIMEOUT_S)
        if not reply.startswith("ready "):
            raise RuntimeError(f"{self.kind} did not start: {reply!r}\n" + self.tail())
        self.port = int(reply.split()[1])

    async def ask(self, command: str | None, timeout_s: float) -> str:
        """Send a control line (or none) and read the process's one-line answer."""
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        if command is not None:
            self.proc.stdin.write(f"{command}\n".encode())
            await self.proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            return "timeout"
        return line.decode().strip() or f"exited ({self.proc.returncode})"

    def rss_mb(self) -> float | None:
        """Peak resident memory of the process so far (VmHWM; the largest of a killed
        predecessor's too)."""
        assert self.proc is not None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(int(line.split()[1]) / 1024, self.killed_rss_mb)
        return self.killed_rss_mb or None

    def cpu_s(self) -> float:
        """CPU time of the process (and of those killed before it)."""
        alive = proc_cpu_s(self.proc.pid) if self.proc and self.proc.returncode is None else 0.0
        return self.killed_cpu_s + alive

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    async def stop(self) -> None:
        """Ask the process to stop (it closes its writer and pool), then end it if it
        does not exit by itself."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                await self.ask("stop", 60)
                await asyncio.wait_for(self.proc.wait(), 30)
        await stop_service(self.proc, grace_s=30)


class Database:
    """The PostgreSQL the service writes to: DATABASE_URL's server or a private
    embedded one, with a database of the bench's own."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pg: Any = None
        self.server_dsn = ""
        self.name = f"agi_load_{uuid.uuid4().hex[:8]}"
        self.dsn = ""

    async def start(self) -> None:
        self.server_dsn = os.environ.get("DATABASE_URL") or await asyncio.to_thread(
            self._start_embedded)
        admin = await asyncpg.connect(self.server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()
        base, _, query = self.server_dsn.partition("?")
        self.dsn = base.rsplit("/", 1)[0] + "/" + self.name + (f"?{query}" if query else "")

    def _start_embedded(self) -> str:
        self.pg = private_postgres(self.work)
        return str(self.pg.get_uri())

    def postmaster_pid(self) -> int | None:
        return postmaster_pid(self.work)

    def crash(self) -> None:
        """Stop PostgreSQL as a crash would (no shutdown checkpoint)."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=self.pg.pgdata,
               user=self.pg.system_user)

    def restart(self) -> None:
        with self.pg._lock:
            self.pg.ensure_postgres_running()

    async def rows_lost(self, phase: Phase) -> int:
        """Sessions whose call row is missing or incomplete: a routed caller's must say
        stage ``queue`` with the queue and the priority; an answered one's must exist."""
        routed = [call_id_for_channel(r.unique_id) for r in phase.results if r.routed]
        # A call the IVR answered was opened first: its row must exist, routed or not.
        others = [call_id_for_channel(r.unique_id) for r in phase.results
                  if not r.routed and r.answer_s is not None]
        conn = await asyncpg.connect(self.dsn)
        try:
            complete = await conn.fetchval(
                "SELECT count(*) FROM calls WHERE id = ANY($1::text[]) AND stage = 'queue'"
                " AND queue IS NOT NULL AND priority IS NOT NULL", routed)
            present = await conn.fetchval(
                "SELECT count(*) FROM calls WHERE id = ANY($1::text[])", others)
        finally:
            await conn.close()
        return len(routed) - int(complete) + len(others) - int(present)

    async def missing_examples(self, phase: Phase, limit: int = 5) -> list[str]:
        """A few sessions whose row is missing or incomplete, for the report."""
        routed = {call_id_for_channel(r.unique_id): r.unique_id for r in phase.results
                  if r.routed}
        conn = await asyncpg.connect(self.dsn)
        try:
            good = {r["id"] for r in await conn.fetch(
                "SELECT id FROM calls WHERE id = ANY($1::text[]) AND stage = 'queue'"
                " AND queue IS NOT NULL AND priority IS NOT NULL", list(routed))}
            bad = [c for c in routed if c not in good][:limit]
            rows = {r["id"]: dict(r) for r in await conn.fetch(
                "SELECT id, stage, queue, priority, (SELECT array_agg(kind || ':' ||"
                " data::text ORDER BY e.id) FROM call_events e WHERE e.call_id = calls.id)"
                " AS events FROM calls WHERE id = ANY($1::text[])", bad)}
        finally:
            await conn.close()
        return [f"{routed[c]} -> {rows.get(c, 'no row')}" for c in bad]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            admin = await asyncpg.connect(self.server_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await admin.close()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.pg.cleanup)


# ---- the bench ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.db = Database(work)
        self.run_id = uuid.uuid4().hex[:6]
        self.targets: list[Target] = []

    def service_env(self, level: int) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": self.db.dsn,
               "CALLCENTER_DATA_DIR": str(self.work / f"data-{level}"),
               "CALLCENTER_AGI_HOST": "127.0.0.1", "CALLCENTER_AGI_PORT": str(free_port()),
               "CALLCENTER_LOG_JSON": "true"}
        if not self.args.speech:
            env["CALLCENTER_IVR_SPEECH"] = "false"
        env.pop("CALLCENTER_CONFIG_FILE", None)
        return env

    async def level(self, concurrency: int) -> tuple[Phase, Phase]:
        extra = (["--profile", f"{self.args.profile}.{concurrency}"] if self.args.profile
                 else [])
        extra += ["--what-if", ",".join(self.args.what_if)] if self.args.what_if else []
        service = await self.start(Target("service", self.work, self.service_env(concurrency),
                                          extra))
        first = await run_session(service.port, f"{self.run_id}.first{concurrency}",
                                  Caller(list(self.args.plan), 0.0, random.Random(1)),
                                  record=True)
        if first.error or not first.lines:
            raise RuntimeError(f"the first session failed: {first.error}\n" + service.tail())
        if self.args.profile:
            await service.ask("profile", 10)
        served = await self.measure(service, concurrency, self.args.outage)
        await service.stop()
        commands = self.work / f"commands-{concurrency}.json"
        commands.write_text(json.dumps([line.decode() for line in first.lines]))
        minimal = await self.start(Target("minimal", self.work, dict(os.environ),
                                          ["--commands", str(commands)]))
        baseline = await self.measure(minimal, concurrency, 0)
        await minimal.stop()
        return served, baseline

    async def start(self, target: Target) -> Target:
        self.targets.append(target)
        await target.start()
        return target

    async def measure(self, target: Target, concurrency: int, outage_s: float) -> Phase:
        phase = Phase(target.kind, concurrency)
        log(f"{target.kind}: {concurrency} concurrent sessions")
        server0, pg0 = target.cpu_s(), self.pg_cpu()
        until = None
        outage = None
        if outage_s:
            expected_s = self.expected_run_s(concurrency)
            run_s = max(expected_s, outage_s + 20.0)
            until = time.perf_counter() + run_s
            outage = asyncio.create_task(self.outage(phase, target, run_s / 4, outage_s))
        await drive(target.port, phase, self.args, self.run_id, until)
        if outage is not None:
            await outage
        if target.kind == "service":
            began = time.perf_counter()
            phase.writer = await target.ask("flush", FLUSH_TIMEOUT_S)
            phase.drain_s = time.perf_counter() - began
            log(f"writer flushed {phase.drain_s:.1f} s after the last session: {phase.writer}")
        # The writes' CPU counts too, also when they land after the last session.
        phase.server_cpu_s = target.cpu_s() - server0
        phase.pg_cpu_s = self.pg_cpu() - pg0
        if target.kind == "service":
            phase.rows_lost = await self.db.rows_lost(phase)
            if phase.rows_lost:
                log(f"rows missing or incomplete, e.g. {await self.db.missing_examples(phase)}")
        phase.rss_mb = target.rss_mb()
        return phase

    def expected_run_s(self, concurrency: int) -> float:
        """A session's length is about its input commands' media time."""
        per_session_s = max(self.args.media_ms / 1000, 0.01) * 2
        return self.args.sessions / concurrency * per_session_s

    async def outage(self, phase: Phase, target: Target, after_s: float, outage_s: float
                     ) -> None:
        """Stop the database for ``outage_s``; with ``--kill-in-outage`` also kill the
        service half-way through, and start it again once the database is back (it
        needs the database to start): what it had not written must come from its log."""
        await asyncio.sleep(after_s)
        log(f"database outage: stopping PostgreSQL for {outage_s:g} s")
        began = time.perf_counter()
        await asyncio.to_thread(self.db.crash)
        killed = ""
        if self.args.kill_in_outage:
            await asyncio.sleep(outage_s / 2)
            await target.kill()
            log("database outage: the service killed (SIGKILL)")
            killed = f"; the service killed (SIGKILL) after {outage_s / 2:.0f} s of it"
            await asyncio.sleep(outage_s / 2)
        else:
            await asyncio.sleep(outage_s)
        await asyncio.to_thread(self.db.restart)
        phase.outage_span = (began, time.perf_counter())
        log("database outage: PostgreSQL running again")
        if killed:
            await target.start()
            log("database outage: the service started again (same data folder, same port)")
            killed += f", started again {time.perf_counter() - began - outage_s:.0f} s after it"
        phase.outage = (f"PostgreSQL stopped (immediate) for {outage_s:.0f} s after "
                        f"{after_s:.0f} s{killed}")

    def pg_cpu(self) -> float:
        pid = self.db.postmaster_pid()
        return tree_cpu_s(pid) if pid else 0.0

    async def close(self) -> None:
        for target in self.targets:
            await target.stop()
        await self.db.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---- report -------------------------------------------------------------------------------

COLUMNS = ("sessions", "sess/s", "ratio", "cmd p50", "cmd p99", "ANSWER p50", "ANSWER p99",
           "failed", "peak RSS", "rows lost")


def _row(label: str, cells: Sequence[str]) -> str:
    return f"  {label:22}" + "".join(f" {c:>10}" for c in cells)


def report(levels: list[tuple[Phase, Phase]]) -> str:
    lines = [_row("", COLUMNS), _row("", ("", "", "", "ms", "ms", "ms", "ms", "", "MB", ""))]
    for served, baseline in levels:
        for phase in (served, baseline):
            ratio = served.rate / baseline.rate if phase is served and baseline.rate else None
            failed = sum(1 for r in phase.results if r.error or r.fallback)
            lines.append(_row(
                f"{phase.concurrency:>5} {phase.target}",
                (str(phase.sessions), f"{phase.rate:.1f}", f"{ratio:.2f}x" if ratio else "",
                 ms(pct(phase.latencies, 0.5)), ms(pct(phase.latencies, 0.99)),
                 ms(pct(phase.answers, 0.5)), ms(pct(phase.answers, 0.99)), str(failed),
                 f"{phase.rss_mb:.0f}" if phase.rss_mb else "-",
                 "-" if phase.rows_lost is None else str(phase.rows_lost))))
    lines.append("")
    for served, baseline in levels:
        for phase in (served, baseline):
            per = phase.sessions or 1
            lines.append(
                f"  {phase.concurrency:>5} {phase.target:8} CPU per session: server "
                f"{phase.server_cpu_s / per * 1000:.2f} ms, PostgreSQL "
                f"{phase.pg_cpu_s / per * 1000:.2f} ms, load generator "
                f"{phase.client_cpu_s / per * 1000:.2f} ms; generator loop lag p99 "
                f"{ms(pct(phase.lag, 0.99))} ms; routed {phase.count('routed')}, "
                f"fallback {phase.count('fallback')}, errors "
                f"{sum(1 for r in phase.results if r.error)} (of them refused "
                f"{phase.count('refused')})")
        lines.append(f"        slowest steps (p99, response sent -> next command): "
                     f"{slowest_steps(served)}")
        if served.writer:
            lines.append(f"        writer flushed {served.drain_s:.1f} s after the last "
                         f"session: {served.writer}")
        if served.outage:
            lines.append(f"        outage: {served.outage}; {by_outage_window(served)}")
        unknown = sorted({u for r in served.results for u in r.unknown})
        if unknown:
            lines.append(f"        commands the simulated Asterisk did not know: {unknown}")
    return "\n".join(lines)


CATCH_UP_WINDOW_S = 30.0


def by_outage_window(phase: Phase) -> str:
    """p99 per command before, during and after the outage: where the tail comes from
    (the journal while the database is away, or the catch-up once it is back)."""
    if phase.outage_span is None:
        return ""
    down, up = phase.outage_span
    windows: dict[str, list[float]] = {
        "before": [], "during": [], f"first {CATCH_UP_WINDOW_S:.0f} s after": [], "later": []}
    names = list(windows)
    for result in phase.results:
        for at, latency in zip(result.at, result.latencies, strict=True):
            index = (0 if at < down else 1 if at < up
                     else 2 if at < up + CATCH_UP_WINDOW_S else 3)
            windows[names[index]].append(latency)
    return "p99 per command " + ", ".join(
        f"{name} {ms(pct(values, 0.99))} ms (n={len(values)})"
        for name, values in windows.items() if values)


def slowest_steps(phase: Phase, count: int = 3) -> str:
    """The command transitions whose latency p99 is highest: where the caller waits."""
    by_step: dict[str, list[float]] = {}
    for result in phase.results:
        for step, latency in zip(result.steps, result.latencies, strict=True):
            by_step.setdefault(step, []).append(latency)
    ranked = sorted(((pct(v, 0.99) or 0.0, k, len(v)) for k, v in by_step.items()), reverse=True)
    return "; ".join(f"{k} {ms(p)} ms (n={n})" for p, k, n in ranked[:count])


def verdict(levels: list[tuple[Phase, Phase]]) -> str:
    top_served, top_baseline = max(levels, key=lambda pair: pair[0].concurrency)
    p99 = pct(top_served.latencies, 0.99)
    ratio = top_served.rate / top_baseline.rate if top_baseline.rate else 0.0
    rss = max(s.rss_mb or 0.0 for s, _ in levels)
    lost = sum(s.rows_lost or 0 for s, _ in levels)
    checks = [
        (f"p99 per command at {top_served.concurrency}: {ms(p99)} ms (goal <= "
         f"{GOAL_P99_S * 1000:.0f} ms; minimal {ms(pct(top_baseline.latencies, 0.99))} ms)",
         p99 is not None and p99 <= GOAL_P99_S),
        (f"sessions/s {ratio:.2f}x the minimal responder's (goal >= {GOAL_RATIO}x)",
         ratio >= GOAL_RATIO),
        (f"peak RSS {rss:.0f} MB (goal <= {GOAL_RSS_MB} MB)", rss <= GOAL_RSS_MB),
        (f"call rows lost {lost} (goal 0)", lost == 0),
    ]
    return "verdict: " + "; ".join(f"{text} {'ok' if good else 'MISSED'}"
                                   for text, good in checks)


# ---- the server processes (run by the bench as subprocesses) ------------------------------


class GcPauses:
    """The garbage collector's pauses in this process (they stop the event loop)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._began = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._began))

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def __str__(self) -> str:
        full = [s for g, s in self.pauses if g == 2]
        return (f"GC {len(self.pauses)} collections ({len(full)} full), "
                f"{sum(s for _, s in self.pauses) * 1000:.0f} ms, longest "
                f"{ms(max((s for _, s in self.pauses), default=0.0))} ms")


async def control_lines() -> asyncio.StreamReader:
    """This process's stdin as a stream: the bench's control lines."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def say(text: str) -> None:
    print(text, flush=True)


async def serve_service(profile_to: Path | None, what_if: Sequence[str]) -> int:
    """The FastAGI server as ``callcenter serve`` builds it, without ARI and the web
    listener; answers ``flush`` and ``stop`` on stdin (and ``profile``: cProfile from
    then on, written to ``profile_to`` at the stop). ``what_if``: see WHAT_IF."""
    from aiohttp import web

    from callcenter import logs, service
    from callcenter.keys import WRITER
    from callcenter.settings import Settings
    from callcenter.startup import prepare_process
    from callcenter.web.app import create_app

    settings = Settings()
    logs.configure(settings.log_level, json_lines=settings.log_json)
    prepare_process(settings)
    app = create_app(settings, telephony=False, workers=0)
    app.cleanup_ctx.insert(1, service.agi_context)  # after the database, as with telephony
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    if "gc-threshold" in what_if:
        gc.set_threshold(*WHAT_IF_GC_THRESHOLD)
    commands = await control_lines()
    say(f"ready {settings.agi_port}")
    writer = app[WRITER]
    # CPU time, not wall time: on a shared machine a preempted send() would look costly.
    profile = cProfile.Profile(time.process_time) if profile_to else None
    pauses = GcPauses()
    lag: list[float] = []
    stop_lag = asyncio.Event()
    lag_task = asyncio.create_task(measure_lag(lag, stop_lag))
    try:
        while line := (await commands.readline()).decode().strip():
            if line == "profile" and profile is not None:
                profile.enable()
                say("profiling")
            elif line == "flush":
                flushed = await writer.flush(FLUSH_TIMEOUT_S)
                say(f"flushed={flushed} pending={writer.pending()} written={writer.written} "
                    f"in {writer.batches} batches, retries={writer.retries} "
                    f"dropped={writer.dropped}; server loop lag p99 {ms(pct(lag, 0.99))} ms "
                    f"max {ms(max(lag, default=0.0))} ms; {pauses}")
            elif line == "stop":
                break
    finally:
        stop_lag.set()
        await lag_task
        pauses.close()
        if profile is not None and profile_to is not None:
            profile.disable()
            profile.dump_stats(profile_to)
        await runner.cleanup()
    say("stopped")
    return 0


# Experiments beside the service's own wiring (--what-if), to measure changes this
# bench cannot make in the service: not what `callcenter serve` runs.
WHAT_IF = {
    "gc-threshold": "the garbage collector's young generation collected every 50,000 "
                    "allocations instead of 700",
    "uvloop": "the service's event loop is uvloop's",
}
WHAT_IF_GC_THRESHOLD = (50_000, 20, 100)


async def serve_minimal(commands_file: Path) -> int:
    """The baseline: the recorded command lines, one response line read after each."""
    commands = [line.encode() for line in json.loads(commands_file.read_text())]

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()).strip():
                pass  # the agi_* environment, up to the blank line
            for line in commands:
                writer.write(line)
                await writer.drain()
                if not await reader.readline():
                    break
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0, backlog=1024)
    control = await control_lines()
    say(f"ready {server.sockets[0].getsockname()[1]}")
    while (await control.readline()).decode().strip() not in ("stop", ""):
        say("flushed (no writer)")
    server.close()
    say("stopped")
    return 0


# ---- main ---------------------------------------------------------------------------------


def raise_file_limit(needed: int) -> None:
    """Each session is a socket on both sides: the soft limit of open files must hold them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="100,1000",
                        help="concurrent sessions, comma-separated levels (100,1000)")
    parser.add_argument("--sessions", type=int, default=None,
                        help="sessions per level (default: 3 x the concurrency, at least 300)")
    parser.add_argument("--plan", default="3",
                        help="the keys each caller presses, one per input command (3)")
    parser.add_argument("--media-ms", type=float, default=1000.0,
                        help="how long an input command (a prompt, a wait for a key) takes "
                             "before Asterisk answers, +-50 %% (1000); 0: at once")
    parser.add_argument("--outage", type=float, default=0.0, metavar="S",
                        help="stop the database for S seconds in the middle of each level")
    parser.add_argument("--kill-in-outage", action="store_true",
                        help="with --outage: SIGKILL the service half-way through the outage "
                             "and start it again after (its write-ahead log is replayed)")
    parser.add_argument("--speech", action=argparse.BooleanOptionalAction, default=True,
                        help="the service's spoken choices as configured (default) or keys only")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 20 concurrent, 60 sessions, 100 ms media")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="cProfile the service during the measured sessions (slows it "
                             "down) and write the statistics to FILE.<level>")
    parser.add_argument("--what-if", default="", metavar="NAMES",
                        help="experiments beside the service's wiring, comma-separated: "
                             + "; ".join(f"{k}: {v}" for k, v in WHAT_IF.items()))
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the temporary folder (logs; the database is dropped)")
    parser.add_argument("--serve", choices=("service", "minimal"), help=argparse.SUPPRESS)
    parser.add_argument("--commands", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.what_if = [name for name in args.what_if.split(",") if name]
    if set(args.what_if) - set(WHAT_IF):
        parser.error(f"--what-if: some of {', '.join(WHAT_IF)}")
    if args.quick:
        args.concurrency, args.sessions, args.media_ms = "20", args.sessions or 60, 100.0
    try:
        args.levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.error("--concurrency: comma-separated numbers")
    if any(level < 1 for level in args.levels) or args.media_ms < 0 or args.outage < 0:
        parser.error("levels must be positive, --media-ms and --outage not negative")
    if args.kill_in_outage and not args.outage:
        parser.error("--kill-in-outage needs --outage")
    if args.outage and os.environ.get("DATABASE_URL"):
        parser.error("--outage stops the embedded PostgreSQL; unset DATABASE_URL")
    return args


async def run(args: argparse.Namespace) -> int:
    raise_file_limit(4 * max(args.levels) + 256)
    work = Path(tempfile.mkdtemp(prefix="cc-agi-load-"))
    bench = Bench(args, work)
    began = time.monotonic()
    try:
        await bench.db.start()
        levels = []
        for concurrency in args.levels:
            sessions = args.sessions or max(300, 3 * concurrency)
            level_args = argparse.Namespace(**{**vars(args), "sessions": sessions})
            bench.args = level_args
            levels.append(await bench.level(concurrency))
        print(f"FastAGI load: plan {args.plan!r}, input commands {args.media_ms:g} ms "
              f"(+-50 %), speech {'as configured' if args.speech else 'off'}, "
              f"{os.cpu_count()} CPUs; latency = response sent -> next command received")
        for name in args.what_if:
            print(f"WHAT-IF (not the service's wiring): {WHAT_IF[name]}")
        print(report(levels))
        print(verdict(levels))
        print(f"measured in {time.monotonic() - began:.0f} s")
        return 0
    finally:
        await bench.close()
        if args.keep_work:
            print(f"kept: {work} (the processes' logs, the writer's files)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve == "service":
        raise_file_limit(8192)
        if "uvloop" in args.what_if:
            import uvloop

            return int(uvloop.run(serve_service(args.profile, args.what_if)))
        return asyncio.run(serve_service(args.profile, args.what_if))
    if args.serve == "minimal":
        raise_file_limit(8192)
        return asyncio.run(serve_minimal(args.commands))
    return run_interruptible(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
