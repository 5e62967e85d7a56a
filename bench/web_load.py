"""The web under load: the call list, the ticket list and the live figures at a
fixed request rate, signed in, with 100,000 calls and 100,000 tickets in the
database; beside ``/healthz`` (one database round trip) measured in the same run.

Acceptance point: "with 100,000 calls and tickets in the database, the call
list, the ticket list and the live-figures endpoint at 200 requests per second,
signed in: p50/p99 latency; goal p99 <= 50 ms".

How:

- a private, temporary PostgreSQL (pgserver), migrated, then seeded in a few
  set-based INSERT ... SELECT FROM generate_series statements (not a row at a
  time): ``--rows`` calls spread over the last 90 days (20 agents, the four
  queues, outcomes answered/abandoned/callback/IVR, caller numbers from a pool
  of 20,000, wrap-up dispositions), one QA score per answered call, the agents'
  state changes around each answered call, and ``--rows`` tickets (one per
  answered or call-back call, the rest from other channels without a call;
  categories, urgencies, statuses and VIP values from the schema's CHECK
  constraints; some with values people entered at wrap-up); then VACUUM
  ANALYZE, as autovacuum would have done on a database that grew this large;
- the service as its own process, ``python -m callcenter serve --no-telephony
  --workers 0`` (the load generator never shares its event loop), on a free
  loopback port;
- a supervisor signs in with ``POST /api/session``; every request carries the
  session cookie, so the session lookup runs on each of them, as in real use;
- per endpoint, one after the other: a warm-up (not counted), then an open-loop
  generator: request i is due at start + i / rate, sent on that clock whether
  or not earlier ones were answered (a slow answer never lowers the offered
  rate), over a pool of ``--connections`` keep-alive connections. A request's
  latency runs from when it was DUE to the end of its response body, so time
  spent waiting for a free connection counts too ("generator lag" is how late
  the generator itself sent, to show it kept up).

Endpoints: ``GET /healthz`` (the baseline: a trivial database round trip through
the same server), ``GET /api/calls?limit=100`` (the call list),
``GET /api/tickets?limit=100`` (the ticket list), ``GET /api/queues`` (the live
figures: from the call distributor's memory; without telephony it answers
``{"queues": {}}``, so it measures the server and the session lookup only), and
``GET /api/stats?hours=24`` (period figures computed from the database rows of
the last 24 hours: printed for information, no goal).

Printed per endpoint: offered and achieved rate, errors (anything but 200),
p50/p90/p99/max latency, the generator's lag p99, and the CPU time per request
of the service process and of PostgreSQL (``/proc`` utime + stime over the
measured part), with the machine's busy share, the load generator's own CPU
and what other processes used meanwhile (a machine shared with a test run
shows in the tail latencies); then a verdict line.

    .venv/bin/python bench/web_load.py --quick   # 10,000 rows, 5 s each: < 1 min
    .venv/bin/python bench/web_load.py           # 100,000 rows, 200/s, 20 s each

Needs no root and no Asterisk. Ctrl-C or SIGTERM stop the service and the
database; the temporary folder (database included) is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from procstat import (  # noqa: E402  (bench/, beside this file)
    CLK_TCK,
    log,
    machine_busy,
    pct,
    postmaster_pid,
    private_postgres,
    proc_cpu_s,
    run_interruptible,
    stop_service,
    tree_cpu_s,
)
from yarl import URL  # noqa: E402

from callcenter.auth.model import Role  # noqa: E402
from callcenter.auth.passwords import hash_password  # noqa: E402
from callcenter.auth.store import create_user  # noqa: E402
from callcenter.db.connect import connect, create_pool  # noqa: E402
from callcenter.db.migrate import migrate  # noqa: E402

GOAL_P99_S = 0.050
AGENTS = 20
DAYS = 90
USERNAME = "bench-supervisor"
OVERLOAD_S = 5.0


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    path: str
    goal: bool  # part of the acceptance point


ENDPOINTS = (
    Endpoint("baseline", "baseline: health, 1 DB round trip", "/healthz", False),
    Endpoint("calls", "call list", "/api/calls?limit=100", True),
    Endpoint("tickets", "ticket list", "/api/tickets?limit=100", True),
    Endpoint("queues", "live figures (ACD memory)", "/api/queues", True),
    Endpoint("stats", "period figures (24 h of rows)", "/api/stats?hours=24", False),
)


def ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 1000:.{digits}f}"


# ---- CPU from /proc --------------------------------------------------------------------


# ---- seed --------------------------------------------------------------------------------

# $1 rows, $2 days, $3 agents. Each statement is one INSERT ... SELECT.
SEED_AGENTS = """
INSERT INTO agents (id, name, endpoint, skills, state)
SELECT 'bench' || lpad(a::text, 2, '0'), 'Agent ' || a, 'PJSIP/bench' || a,
       ARRAY['repair', 'complaint', 'consultation', 'general'], 'available'
FROM generate_series(1, $1::int) AS a
"""

SEED_CALLS = """
WITH g AS (
    SELECT n, now() - random() * make_interval(days => $2::int) AS started,
           random() AS kind, random() AS wait, random() AS talk,
           1 + (n * 7) % 4 AS q, 1 + (n * 13) % $3::int AS agent_no
    FROM generate_series(1, $1::int) AS n
), o AS (
    SELECT *, CASE WHEN kind < 0.85 THEN 'answered' WHEN kind < 0.95 THEN 'abandoned'
                   WHEN kind < 0.97 THEN 'callback' ELSE 'ivr' END AS outcome,
           started + interval '12 seconds' AS queued,
           started + interval '12 seconds' + wait * interval '40 seconds' AS ringing
    FROM g
), t AS (
    SELECT *, CASE WHEN outcome = 'answered' THEN ringing + interval '4 seconds' END AS answered,
           CASE outcome
               WHEN 'answered' THEN ringing + interval '4 seconds'
                                    + (60 + talk * 420) * interval '1 second'
               WHEN 'abandoned' THEN queued + wait * interval '120 seconds'
               WHEN 'callback' THEN queued + interval '180 seconds'
               ELSE started + interval '20 seconds' END AS ended
    FROM o
)
INSERT INTO calls (id, source, caller_number, channel_id, stage, status, ivr_digits,
                   ivr_intent, queue, priority, agent_id, started_at, queued_at, ringing_at,
                   answered_at, ended_at, hangup_by, duration_s, outcome, disposition,
                   disposition_by, disposition_at)
SELECT 'bench-' || lpad(n::text, 8, '0'), 'asterisk',
       '138' || lpad(((n * 7919) % 20000)::text, 8, '0'), 'bench.' || n,
       CASE outcome WHEN 'answered' THEN 'conversation' WHEN 'ivr' THEN 'menu'
                    ELSE 'queue' END,
       CASE outcome WHEN 'answered' THEN 'processed' ELSE 'ended' END,
       CASE outcome WHEN 'ivr' THEN '' ELSE (ARRAY['1', '2', '3', '0'])[q] END,
       CASE outcome WHEN 'ivr' THEN NULL
                    ELSE (ARRAY['repair', 'complaint', 'consultation', 'general'])[q] END,
       CASE outcome WHEN 'ivr' THEN NULL
                    ELSE (ARRAY['repair', 'complaint', 'consultation', 'general'])[q] END,
       CASE WHEN n % 40 = 0 THEN 10 ELSE 0 END,
       CASE outcome WHEN 'answered' THEN 'bench' || lpad(agent_no::text, 2, '0') END,
       started,
       CASE WHEN outcome <> 'ivr' THEN queued END,
       CASE WHEN outcome = 'answered' THEN ringing END,
       answered, ended,
       CASE WHEN outcome = 'answered' THEN (ARRAY['caller', 'agent'])[1 + n % 2]
            WHEN outcome IN ('abandoned', 'ivr') THEN 'caller' END,
       extract(epoch FROM ended - started),
       outcome,
       CASE WHEN outcome = 'answered' AND talk < 0.4
            THEN (ARRAY['resolved', 'ticket', 'callback', 'transferred', 'no_issue',
                        'wrong_number'])[1 + n % 6] END,
       CASE WHEN outcome = 'answered' AND talk < 0.4
            THEN 'bench' || lpad(agent_no::text, 2, '0') END,
       CASE WHEN outcome = 'answered' AND talk < 0.4 THEN ended + interval '30 seconds' END
FROM t
"""

SEED_QA = """
INSERT INTO qa_results (call_id, score, final_score, source, created_at)
SELECT id, score, score, 'asr', ended_at + interval '2 minutes'
FROM (SELECT id, ended_at, round((55 + random() * 45)::numeric, 1)::float8 AS score
      FROM calls WHERE outcome = 'answered') scored
"""

SEED_HISTORY = """
INSERT INTO agent_state_history (agent_id, from_state, to_state, reason, call_id, at)
SELECT agent_id, s.from_state, s.to_state, NULL, id, s.at
FROM calls,
     LATERAL (VALUES ('available', 'ringing', ringing_at),
                     ('ringing', 'on_call', answered_at),
                     ('on_call', 'wrap_up', ended_at),
                     ('wrap_up', 'available', ended_at + interval '5 seconds'))
             AS s (from_state, to_state, at)
WHERE outcome = 'answered'
ON CONFLICT DO NOTHING
"""

# One ticket per answered or call-back call; the rest, up to $1, come from other
# channels (no call). Numbers as db/store.py makes them: T<yyyymmdd>-<sequence>.
SEED_TICKETS = """
WITH linked AS (
    SELECT id AS call_id, caller_number AS phone, ended_at + interval '5 seconds' AS created,
           queue, row_number() OVER (ORDER BY id) AS n
    FROM calls WHERE outcome IN ('answered', 'callback')
), extra AS (
    SELECT NULL::text AS call_id, '139' || lpad(((n * 104729) % 30000)::text, 8, '0') AS phone,
           now() - random() * make_interval(days => $2::int) AS created, NULL::text AS queue,
           (SELECT count(*) FROM linked) + n AS n
    FROM generate_series(1, greatest(0, $1::int - (SELECT count(*) FROM linked)::int)) AS n
), base AS (
    SELECT *, random() AS r, nextval('ticket_number_seq') AS seq,
           CASE queue WHEN 'complaint' THEN 'complaint' WHEN 'consultation' THEN 'consultation'
               ELSE (ARRAY['engineering', 'engineering', 'engineering', 'cleaning', 'security',
                           'landscaping', 'complaint', 'consultation'])[1 + n % 8] END AS category
    FROM (SELECT * FROM linked UNION ALL SELECT * FROM extra) AS u
), u AS (
    SELECT *, CASE WHEN r < 0.03 THEN 'P1' WHEN r < 0.20 THEN 'P2' WHEN r < 0.75 THEN 'P3'
                   ELSE 'P4' END AS urgency
    FROM base
)
INSERT INTO tickets (number, call_id, category, urgency, complaint_severity, repeat_complaint,
                     vip, caller_name, phone, building, unit, room, description, channel, status,
                     deadline, escalate_to, incomplete, callback_required, details, human,
                     human_by, human_at, created_at, auto)
SELECT 'T' || to_char(created AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
           || lpad(seq::text, greatest(6, length(seq::text)), '0'),
       call_id, category, urgency,
       CASE WHEN category = 'complaint'
            THEN (ARRAY['minor', 'important', 'major'])[1 + n % 3] END,
       category = 'complaint' AND n % 5 = 0,
       CASE WHEN n % 25 = 0 THEN 'elderly' WHEN n % 60 = 0 THEN 'disabled' ELSE 'none' END,
       (ARRAY['张', '王', '李', '赵', '刘', '陈'])[1 + n % 6] || (ARRAY['先生', '女士'])[1 + n % 2],
       phone, (1 + n % 24)::text || '号楼', (1 + n % 4)::text || '单元',
       (100 * (1 + n % 28) + 1 + n % 4)::text,
       (ARRAY['厨房水管漏水，楼下已经渗水了，请尽快派人来修。',
              '楼道灯坏了好几天，晚上很黑，老人上下楼不安全。',
              '电梯又停了，家里有老人，请尽快处理。',
              '垃圾好几天没人清理，味道很大。',
              '小区门口有陌生人徘徊，请保安注意一下。',
              '物业费怎么交？想问一下缴费方式和时间。',
              '对上次维修的服务不满意，师傅迟到还没修好。',
              '绿化带的树枝太长挡住窗户，请修剪一下。'])[1 + n % 8],
       CASE WHEN call_id IS NULL THEN (ARRAY['online', 'walk_in'])[1 + n % 2]
            ELSE 'phone' END,
       CASE WHEN created < now() - interval '7 days'
                THEN (ARRAY['closed', 'closed', 'resolved'])[1 + n % 3]
            ELSE (ARRAY['new', 'dispatched', 'in_progress', 'resolved'])[1 + n % 4] END,
       created + CASE urgency WHEN 'P1' THEN interval '30 minutes' WHEN 'P2' THEN interval '4 hours'
                              WHEN 'P3' THEN interval '24 hours' ELSE interval '72 hours' END,
       CASE urgency WHEN 'P1' THEN 'duty_manager' END,
       CASE WHEN n % 9 = 0 THEN ARRAY['room'] ELSE '{}'::text[] END,
       call_id IS NOT NULL AND n % 11 = 0,
       jsonb_build_object('source', 'bench', 'terms', jsonb_build_array(category)),
       CASE WHEN n % 5 = 0
            THEN jsonb_build_object('urgency', (ARRAY['P2', 'P3'])[1 + n % 2],
                                    'caller_name', '业主')
            ELSE '{}'::jsonb END,
       CASE WHEN n % 5 = 0 THEN 'bench' || lpad((1 + n % 20)::text, 2, '0') END,
       CASE WHEN n % 5 = 0 THEN created + interval '1 minute' END,
       created,
       call_id IS NOT NULL
FROM u
"""


async def seed(conn: asyncpg.Connection, rows: int) -> dict[str, int]:
    await conn.execute(SEED_AGENTS, AGENTS)
    await conn.execute(SEED_CALLS, rows, DAYS, AGENTS)
    await conn.execute(SEED_QA)
    await conn.execute(SEED_HISTORY)
    await conn.execute(SEED_TICKETS, rows, DAYS)
    await conn.execute("VACUUM ANALYZE")
    counts = {}
    for table in ("calls", "tickets", "qa_results", "agent_state_history"):
        counts[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    return counts


# ---- load ----------------------------------------------------------------------------------


@dataclass
class Phase:
    endpoint: Endpoint
    rate: float
    seconds: float
    latency: list[float] = field(default_factory=list)  # due -> body read, 200s only
    lag: list[float] = field(default_factory=list)  # due -> sent by the generator
    errors: dict[str, int] = field(default_factory=dict)
    span_s: float = 0.0  # first due -> last answer
    server_cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    busy: float = 0.0  # share of all CPUs busy over the measured part
    others_cpu_s: float = 0.0  # CPU of everything else on the machine meanwhile
    generator_cpu_s: float = 0.0
    overloaded_at: float | None = None  # the generator stopped sending (see drive)

    @property
    def sent(self) -> int:
        return len(self.lag)

    @property
    def ok(self) -> int:
        return len(self.latency)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def achieved(self) -> float:
        return self.ok / self.span_s if self.span_s else 0.0


async def drive(http: aiohttp.ClientSession, url: str, phase: Phase) -> None:
    """Open loop: request i is due at start + i / rate and sent then, answered or not."""
    loop = asyncio.get_running_loop()
    count = max(1, round(phase.rate * phase.seconds))
    start = loop.time() + 0.01
    last_done = start
    outstanding = 0

    async def one(due: float) -> None:
        nonlocal last_done, outstanding
        try:
            async with http.get(url) as resp:
                await resp.read()
                status = str(resp.status)
        except TimeoutError:
            status = "timeout"
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        done = loop.time()
        outstanding -= 1
        last_done = max(last_done, done)
        if status == "200":
            phase.latency.append(done - due)
        else:
            phase.errors[status] = phase.errors.get(status, 0) + 1

    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        due = start + i / phase.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if outstanding > phase.rate * OVERLOAD_S:
            # More than OVERLOAD_S seconds of requests unanswered: the server cannot keep
            # up, and what it has queued would run on into the next endpoint's turn.
            phase.errors["unsent"] = count - i
            phase.overloaded_at = loop.time() - start
            break
        phase.lag.append(max(0.0, loop.time() - due))
        outstanding += 1
        tasks.append(asyncio.create_task(one(due)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    phase.span_s = max(last_done - start, count / phase.rate)


# ---- the bench -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.pg: Any = None
        self.pool: asyncpg.Pool | None = None
        self.service: asyncio.subprocess.Process | None = None
        self.service_log = work / "service.log"
        self.port = 0
        self.seed_s = 0.0
        self.counts: dict[str, int] = {}

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def setup(self) -> str:
        log("starting a private PostgreSQL")
        dsn = await asyncio.to_thread(self._start_pg)
        conn = await connect(dsn)
        try:
            await migrate(conn)
            log(f"seeding {self.args.rows:,} calls and tickets")
            began = time.monotonic()
            self.counts = await seed(conn, self.args.rows)
            self.seed_s = time.monotonic() - began
        finally:
            await conn.close()
        self.pool = await create_pool(dsn, max_size=2)
        password = secrets.token_urlsafe(18)
        await create_user(self.pool, username=USERNAME, role=Role.SUPERVISOR,
                          password_hash=hash_password(password), created_by="bench")
        log(f"seeded in {self.seed_s:.1f} s: {self.counts}; starting the service")
        await self._start_service(dsn)
        return password

    def _start_pg(self) -> str:
        self.pg = private_postgres(self.work)
        return str(self.pg.get_uri())

    def postmaster_pid(self) -> int | None:
        return postmaster_pid(self.work)

    async def _start_service(self, dsn: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "CALLCENTER_DATA_DIR": str(self.work / "data"),
            "CALLCENTER_WEB_HOST": "127.0.0.1",
            "CALLCENTER_WEB_PORT": str(self.port),
            "CALLCENTER_LOG_JSON": "true",
        }
        env.pop("CALLCENTER_CONFIG_FILE", None)
        with self.service_log.open("wb") as out:
            self.service = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callcenter", "serve", "--no-telephony", "--workers", "0",
                cwd=str(ROOT), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                if self.service.returncode is not None:
                    raise RuntimeError(f"the service exited ({self.service.returncode}):\n"
                                       + self.service_log.read_text(errors="replace")[-3000:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.origin}/healthz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not answer /healthz within 60 s")
                await asyncio.sleep(0.2)

    async def sign_in(self, http: aiohttp.ClientSession, password: str) -> None:
        async with http.post(f"{self.origin}/api/session",
                             json={"username": USERNAME, "password": password}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"sign-in failed: {resp.status} {await resp.text()}")
        async with http.get(f"{self.origin}/api/me") as resp:
            if resp.status != 200:
                raise RuntimeError(f"not signed in after POST /api/session: {resp.status}")

    async def measure(self, http: aiohttp.ClientSession, endpoint: Endpoint) -> Phase:
        args = self.args
        url = self.origin + endpoint.path
        async with http.get(url) as resp:  # a wrong answer stops the run, not 4,000 of them
            if resp.status != 200:
                raise RuntimeError(f"{endpoint.path}: {resp.status} {await resp.text()}")
        await drive(http, url, Phase(endpoint, args.rate, args.warmup))
        await self.quiet(http)
        phase = Phase(endpoint, args.rate, args.seconds)
        assert self.service is not None
        pg_pid = self.postmaster_pid()
        server0 = proc_cpu_s(self.service.pid)
        pg0 = tree_cpu_s(pg_pid) if pg_pid else 0.0
        busy0 = machine_busy()
        own0 = time.process_time()
        await drive(http, url, phase)
        phase.generator_cpu_s = time.process_time() - own0
        busy1 = machine_busy()
        phase.server_cpu_s = proc_cpu_s(self.service.pid) - server0
        phase.pg_cpu_s = (tree_cpu_s(pg_pid) - pg0) if pg_pid else 0.0
        span = busy1[1] - busy0[1]
        phase.busy = (busy1[0] - busy0[0]) / span if span else 0.0
        phase.others_cpu_s = max(0.0, (busy1[0] - busy0[0]) / CLK_TCK - phase.server_cpu_s
                                 - phase.pg_cpu_s - phase.generator_cpu_s)
        await self.quiet(http)
        return phase

    async def quiet(self, http: aiohttp.ClientSession, within_s: float = 600) -> None:
        """Wait until the server answers /healthz fast again: a backlog left by one
        endpoint (requests the generator gave up on still run there) must not be
        measured against the next."""
        began = time.monotonic()
        while time.monotonic() < began + within_s:
            sent = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{self.origin}/healthz") as resp:
                    await resp.read()
            if time.monotonic() - sent < 0.02:
                break
            await asyncio.sleep(0.5)
        waited = time.monotonic() - began
        if waited > 2:
            log(f"the service was busy for {waited:.0f} s after the load (its backlog)")

    async def close(self) -> None:
        await stop_service(self.service)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await self.pool.close()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.pg.cleanup)


# ---- report --------------------------------------------------------------------------------

COLUMNS = ("offered/s", "achieved/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms",
           "gen lag p99", "service CPU", "PG CPU")


def _row(label: str, cells: Sequence[str]) -> str:
    return f"  {label:34}" + "".join(f" {c:>11}" for c in cells)


def report(phases: list[Phase], args: argparse.Namespace) -> str:
    lines = [_row("", COLUMNS), _row("", ("", "", "", "", "", "", "", "ms", "ms/req", "ms/req"))]
    for p in phases:
        errors = str(p.failed) if not p.errors else ",".join(
            f"{n}x{code}" for code, n in sorted(p.errors.items()))
        lines.append(_row(p.endpoint.label, (
            f"{p.rate:g}", f"{p.achieved:.1f}", errors,
            ms(pct(p.latency, .5)), ms(pct(p.latency, .9)), ms(pct(p.latency, .99)),
            ms(max(p.latency, default=None)), ms(pct(p.lag, .99)),
            f"{p.server_cpu_s * 1000 / p.sent:.2f}" if p.sent else "-",
            f"{p.pg_cpu_s * 1000 / p.sent:.2f}" if p.sent else "-")))
        generator = f"{p.generator_cpu_s * 1000 / p.sent:.2f}" if p.sent else "-"
        lines.append(f"  {'':34}   GET {p.endpoint.path}; machine busy "
                     f"{p.busy * 100:.0f} % of {os.cpu_count()} CPUs; load generator "
                     f"{generator} ms/req; other processes {p.others_cpu_s:.1f} CPU s")
        if p.overloaded_at is not None:
            lines.append(f"  {'':34}   OVERLOADED: sending stopped after {p.overloaded_at:.1f} s "
                         f"with more than {OVERLOAD_S:g} s of requests unanswered")
    return "\n".join(lines)


def verdict(phases: list[Phase], args: argparse.Namespace) -> str:
    base = next((p for p in phases if p.endpoint.key == "baseline"), None)
    parts = []
    passed = True
    for p in phases:
        if not p.endpoint.goal:
            continue
        p99 = pct(p.latency, .99)
        ok = p99 is not None and p99 <= GOAL_P99_S and not p.failed
        passed = passed and ok
        parts.append(f"{p.endpoint.label} {'PASS' if ok else 'FAIL'} (p50 {ms(pct(p.latency, .5))}"
                     f", p99 {ms(p99)} ms, {p.failed} errors)")
    baseline = (f"; baseline /healthz p50 {ms(pct(base.latency, .5))}, p99 "
                f"{ms(pct(base.latency, .99))} ms" if base else "")
    return (f"verdict: p99 <= {GOAL_P99_S * 1000:.0f} ms at {args.rate:g} requests/s with "
            f"{args.rows:,} calls and tickets, signed in: {'PASS' if passed else 'FAIL'}\n  "
            + "\n  ".join(parts) + baseline)


# ---- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0,
                        help="requests per second, per endpoint (200)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measured seconds per endpoint (20)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds at the same rate before each measurement, not counted (3)")
    parser.add_argument("--rows", type=int, default=100_000,
                        help="calls, and tickets, in the database (100000)")
    parser.add_argument("--connections", type=int, default=32,
                        help="keep-alive connections of the load generator (32)")
    parser.add_argument("--only", metavar="KEYS",
                        help="a comma-separated subset of " + ",".join(e.key for e in ENDPOINTS))
    parser.add_argument("--quick", action="store_true",
                        help="10,000 rows, 5 s per endpoint, 1 s warm-up: under a minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.seconds, args.warmup = 10_000, 5.0, 1.0
    if args.rate <= 0 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--rate and --seconds must be positive, --warmup not negative")
    if args.rows < 1 or args.connections < 1:
        parser.error("--rows and --connections must be at least 1")
    keys = {e.key for e in ENDPOINTS}
    args.keys = [k.strip() for k in args.only.split(",")] if args.only else [
        e.key for e in ENDPOINTS]
    if not set(args.keys) <= keys:
        parser.error(f"--only: some of {', '.join(sorted(keys))}")
    return args


async def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="cc-web-load-"))
    bench = Bench(args, work)
    began = time.monotonic()
    try:
        password = await bench.setup()
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[URL(bench.origin)])
        connector = aiohttp.TCPConnector(limit=args.connections)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(cookie_jar=jar, connector=connector,
                                         timeout=timeout) as http:
            await bench.sign_in(http, password)
            print(f"web load: {bench.counts['calls']:,} calls and {bench.counts['tickets']:,} "
                  f"tickets ({bench.counts['qa_results']:,} QA results, "
                  f"{bench.counts['agent_state_history']:,} agent state changes; seeded in "
                  f"{bench.seed_s:.1f} s); {args.rate:g} requests/s for {args.seconds:g} s per "
                  f"endpoint after {args.warmup:g} s of warm-up, {args.connections} connections, "
                  "signed in as a supervisor; service: callcenter serve --no-telephony "
                  "--workers 0; latency = due time -> response read", flush=True)
            phases = []
            for endpoint in ENDPOINTS:
                if endpoint.key not in args.keys:
                    continue
                log(f"{endpoint.label}: GET {endpoint.path}")
                phases.append(await bench.measure(http, endpoint))
        print(report(phases, args))
        print("  (live figures without telephony: the distributor is not running and "
              "/api/queues answers {\"queues\": {}}:\n   the cost of the server, the "
              "session lookup and the JSON; with the ACD it is a snapshot of its memory)")
        print(verdict(phases, args))
        print(f"measured in {time.monotonic() - began:.0f} s")
        return 0
    finally:
        await bench.close()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_interruptible(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
