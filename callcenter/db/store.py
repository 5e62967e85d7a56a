"""The PostgreSQL adapter: every state change of a call is a row, written before
the next step, so a restart of the service resumes from the database.

``PgStore`` implements the IVR's ``CallSink``, the routing app's
``RoutingStore`` and the worker's persistence in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from callcenter import pii
from callcenter.core import QaResult, Segment, Ticket
from callcenter.qa.engine import load_rules
from callcenter.qa.store import save_result as save_qa_result
from callcenter.sip.accounts import Account
from callcenter.tickets.lifecycle import Policy, default_policy
from callcenter.tickets.service import save_automatic

log = logging.getLogger("callcenter.db")

PROCESS_CALL_JOB = "process_call"
# Stages of an unfinished call: in the IVR, then the ACD's (reconcile reads them).
ACTIVE_STAGES = ("greeting", "menu", "queue", "ringing", "conversation")
# NOTIFY channel of agent changes: {"agent_id": ..., "change": "account"}.
AGENTS_CHANNEL = "cc_agents"
# NOTIFY channel of people's requests for an agent's state (payload: the request id).
AGENT_REQUESTS_CHANNEL = "cc_agent_requests"

# Columns a caller of update_call may set; anything else is a programming error.
_CALL_FIELDS = {
    "stage",
    "status",
    "ivr_digits",
    "ivr_intent",
    "queue",
    "priority",
    "agent_id",
    "queued_at",
    "ringing_at",
    "answered_at",
    "ended_at",
    "hangup_by",
    "duration_s",
    "error",
    "channel_id",
    "outcome",
    "ivr_node",
    "end_reason",
    "ivr_description",
    "ivr_description_text",
}


def _now() -> datetime:
    return datetime.now(UTC)


# Errors of a database that is away or restarting (restart, failover, killed
# backends, network blip): the same write succeeds once it is back. Use
# ``is_transient``: a few subclasses of these are real errors (see below).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, socket file gone, timeouts (TimeoutError is an OSError)
    # Class 08: the connection broke, including ConnectionDoesNotExistError (a
    # pooled connection whose backend was killed fails its next use this way).
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed" on a connection closed under us
    # Class 57: admin shutdown, crash shutdown, cannot connect now (starting up).
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    # Retrying the whole (idempotent) transaction is the documented answer to these.
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    # A pooled connection broken mid-protocol can surface this way; the pool
    # drops it, so the retry gets a fresh one.
    asyncpg.exceptions.InternalClientError,
)
# Subclasses of the above that repeat forever: bad arguments, a client/server
# mismatch, a cancelled statement, a dropped database.
_NOT_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,  # asyncpg refused an argument (InterfaceError + ValueError)
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
    asyncpg.exceptions.ProtocolViolationError,
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout or a cancel: not an outage
    asyncpg.exceptions.DatabaseDroppedError,
)


def is_transient(exc: BaseException) -> bool:
    """True for an error of a database that is away or restarting, where the same
    write succeeds later; False for a real error (constraint, syntax, bad data)."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, _NOT_TRANSIENT)

_T = TypeVar("_T")
_P = ParamSpec("_P")
_Write = Callable[_P, Coroutine[Any, Any, _T]]


def retrying(
    attempts: int = 6, first_delay_s: float = 0.25, max_delay_s: float = 5.0
) -> Callable[[_Write[_P, _T]], _Write[_P, _T]]:
    """Retry a store call through a short database outage (about 8 s by default).
    Every write is idempotent (upserts, guarded updates), so repeating one that did
    commit is harmless. The retries happen inside one await: a caller that orders
    writes (``db/writer.py``) sees one slow call, never two overlapping ones."""

    def wrap(method: _Write[_P, _T]) -> _Write[_P, _T]:
        @functools.wraps(method)
        async def retried(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            delay = first_delay_s
            for attempt in range(1, attempts + 1):
                try:
                    return await method(*args, **kwargs)
                except TRANSIENT_ERRORS as exc:
                    if attempt == attempts or not is_transient(exc):
                        raise
                    log.warning("database write %s failed (%s); retry %d/%d in %.1fs",
                                method.__name__, exc, attempt, attempts - 1, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, max_delay_s)
            raise AssertionError("unreachable")

        return retried

    return wrap


class _InTransaction:
    """One connection with a transaction open, seen as a pool: what a store method
    acquires is that connection, and the method's own transaction joins the open
    one (no savepoint: a batch is all or nothing, see ``PgStore.write_batch``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:  # fetch, fetchrow, execute, executemany...
        return getattr(self._conn, name)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_InTransaction]:
        yield self

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


class PgStore:
    """``policy``: the ticket lifecycle's (the hotline's zone); ``now``: the clock
    tickets are opened by (tests drive it)."""

    def __init__(self, pool: asyncpg.Pool, *, policy: Policy | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.pool = pool
        self.policy = policy or default_policy()
        self.now = now or _now

    async def write_batch(self, writes: Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]]
                          ) -> None:
        """Several writes, ``(method, args, kwargs)``, in ONE transaction on one
        connection: the write-behind's fast path (one commit and one pool round for
        them all). The writes must be of different calls (the writer sends one per
        key), so their order does not matter: those made of independent statements
        (``open_call``, ``update_call``, ``record_ivr_events``) go to the server
        together, one ``executemany`` per statement text, the others one by one.
        All or nothing: on any error nothing is committed, and the caller writes
        them one by one. The methods run without their ``retrying`` wrappers: a
        retry inside a lost transaction cannot help."""
        statements: dict[str, list[tuple[Any, ...]]] = {}  # sent together: executemany
        others = []
        for method, args, kwargs in writes:
            rows = _statement_rows(method, args, kwargs)
            if rows is None:
                others.append((method, args, kwargs))
            for sql, *values in rows or ():
                statements.setdefault(sql, []).append(tuple(values))
        async with self.pool.acquire() as conn, conn.transaction():
            for sql, rows in statements.items():
                await conn.executemany(sql, rows)
            inside = PgStore(_InTransaction(conn), policy=self.policy, now=self.now)
            for method, args, kwargs in others:
                await inspect.unwrap(getattr(PgStore, method))(inside, *args, **kwargs)

    # ---- calls (IVR sink and routing store) ---------------------------------------------

    @retrying()
    async def open_call(
        self,
        call_id: str,
        *,
        caller_number: str,
        channel_id: str,
        source: str = "asterisk",
        started_at: datetime | None = None,
    ) -> None:
        """Insert the call once (a second open changes nothing). ``started_at``:
        when the call started, for a write that lands late (default: now)."""
        await self.pool.execute(*_open_call(call_id, caller_number=caller_number,
                                            channel_id=channel_id, source=source,
                                            started_at=started_at))

    @retrying()
    async def update_call(self, call_id: str, **fields: Any) -> None:
        statement = _update_call(call_id, fields)
        if statement is not None:
            await self.pool.execute(*statement)

    @retrying()
    async def record_ivr_events(
        self, call_id: str, events: list[dict[str, str]], at: datetime | None = None
    ) -> None:
        """Rows for the per-node IVR statistics (node, kind, via, choice), in order."""
        if not events:
            return
        await self.pool.executemany(_IVR_EVENT, _ivr_event_rows(call_id, events, at))

    @retrying()
    async def save_survey(self, call_id: str, score: int, at: datetime | None = None) -> None:
        """The caller's satisfaction key (1-5) on the call and on its tickets."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE calls SET survey_score = $2, survey_at = COALESCE($3, now())"
                " WHERE id = $1", call_id, score, at,
            )
            await conn.execute(
                "UPDATE tickets SET satisfaction_ivr = $2 WHERE call_id = $1", call_id, score
            )
            await _event(conn, call_id, "survey", {"score": score})

    @retrying()
    async def add_leg(
        self,
        call_id: str,
        leg: str,
        *,
        channel_id: str | None,
        recording_name: str | None = None,
        agent_id: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """A leg and its recording; ``started_at``: when its recording began (both
        legs of a call start together, at the agent's answer)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO legs (call_id, leg, channel_id, agent_id, started_at)"
                " VALUES ($1, $2, $3, $4, COALESCE($5, now()))"
                " ON CONFLICT (call_id, leg) DO UPDATE SET channel_id = EXCLUDED.channel_id,"
                " agent_id = COALESCE(EXCLUDED.agent_id, legs.agent_id),"
                " started_at = COALESCE($5, legs.started_at)",
                call_id,
                leg,
                channel_id,
                agent_id,
                started_at,
            )
            if recording_name:
                await conn.execute(
                    "INSERT INTO recordings (call_id, leg, path) VALUES ($1, $2, $3)"
                    " ON CONFLICT (call_id, leg) DO UPDATE SET path = EXCLUDED.path",
                    call_id,
                    leg,
                    recording_name,
                )
            await _event(conn, call_id, "leg", {"leg": leg, "recording": recording_name})

    @retrying()
    async def finish_call(
        self,
        call_id: str,
        *,
        stage: str,
        hangup_by: str | None,
        ended_at: datetime | None = None,
        outcome: str | None = None,
    ) -> bool:
        """Close the call once and queue its processing in the same transaction.

        ``ended_at``: when the call ended, for a write that lands late (default: now).
        Returns False when the call was already finished (a second hang-up event).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "WITH t AS (SELECT COALESCE($4::timestamptz, now()) AS ended)"
                " UPDATE calls SET stage = $2, hangup_by = COALESCE($3, hangup_by),"
                " ended_at = t.ended, status = 'ended', outcome = COALESCE($5, outcome),"
                " duration_s = GREATEST(0,"
                "  EXTRACT(EPOCH FROM t.ended - COALESCE(answered_at, started_at)))"
                " FROM t WHERE id = $1 AND status = 'active' RETURNING id, priority",
                call_id,
                stage,
                hangup_by,
                ended_at,
                outcome,
            )
            if row is None:
                return False
            await _event(conn, call_id, "finished", {"stage": stage, "hangup_by": hangup_by})
            has_recordings = await conn.fetchval(
                "SELECT count(*) FROM recordings WHERE call_id = $1", call_id
            )
            # Every caller who asked for service gets a ticket: one who gave up
            # waiting gets a call-back ticket, a call whose recording failed too.
            if has_recordings or stage in ("queue", "ringing", "conversation"):
                await enqueue_processing(conn, call_id, priority=row["priority"] or 0)
        return True

    @retrying()
    async def active_calls(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT c.*, (SELECT json_object_agg(l.leg, l.channel_id) FROM legs l"
            "  WHERE l.call_id = c.id) AS leg_channels"
            " FROM calls c WHERE status = 'active' AND stage = ANY($1::text[])"
            " ORDER BY started_at",
            list(ACTIVE_STAGES),
        )
        return [dict(r) for r in rows]

    # ---- agents -------------------------------------------------------------------------

    @retrying()
    async def upsert_agent(
        self,
        agent_id: str,
        *,
        name: str,
        endpoint: str,
        skills: Sequence[str],
        state: str = "available",
        sip_account: Account | None = None,
    ) -> None:
        """Add or update an agent; with ``sip_account``, store (replace) its SIP
        account too. An agent moved to another endpoint loses its account.
        Announced on NOTIFY channel ``cc_agents`` in the same transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO agents (id, name, endpoint, skills, state)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
                " endpoint = EXCLUDED.endpoint, skills = EXCLUDED.skills,"
                # The state is the ACD's: a new agent starts logged out, and
                # logging in is a request it applies (never offering a second call).
                " state = agents.state",
                agent_id,
                name,
                endpoint,
                list(skills),
                "logged_out",
            )
            if state == "available":
                await _request_agent(conn, agent_id, "login", None, "upsert")
            if sip_account is not None:
                await conn.execute(
                    "INSERT INTO sip_accounts (agent_id, username, realm, ha1)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id) DO UPDATE SET"
                    " username = EXCLUDED.username, realm = EXCLUDED.realm, ha1 = EXCLUDED.ha1,"
                    " updated_at = now()",
                    agent_id, sip_account.username, sip_account.realm, sip_account.ha1,
                )
            else:
                await conn.execute(
                    "DELETE FROM sip_accounts WHERE agent_id = $1 AND 'PJSIP/' || username <> $2",
                    agent_id, endpoint,
                )
            await _notify_agent(conn, agent_id)

    @retrying()
    async def request_agent(
        self, agent_id: str, action: str, reason: str | None = None, by: str = "system"
    ) -> int:
        """Ask the ACD to change an agent's state (login, logout, pause, unpause,
        ready, or join/leave the queue named by ``reason``). It applies requests
        once, in order; pending ones when it starts."""
        async with self.pool.acquire() as conn, conn.transaction():
            exists = await conn.fetchval("SELECT 1 FROM agents WHERE id = $1", agent_id)
            if not exists:
                raise KeyError(agent_id)
            return await _request_agent(conn, agent_id, action, reason, by)

    @retrying()
    async def pending_agent_requests(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM agent_requests WHERE applied_at IS NULL ORDER BY id")
        return [dict(r) for r in rows]

    async def mark_agent_request_applied(self, request_id: int, at: datetime) -> None:
        await self.pool.execute(
            "UPDATE agent_requests SET applied_at = $2 WHERE id = $1 AND applied_at IS NULL",
            request_id, at)

    async def record_agent_state(
        self,
        agent_id: str,
        *,
        from_state: str,
        to_state: str,
        reason: str | None,
        at: datetime,
        call_id: str | None = None,
    ) -> None:
        """One agent state change (the ACD's): the current state and a history row.
        Idempotent: a change written twice is one row; an older one never wins."""
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO agent_state_history"
                " (agent_id, from_state, to_state, reason, call_id, at)"
                " SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM agents WHERE id = $1)"
                " ON CONFLICT (agent_id, at, to_state) DO NOTHING RETURNING id",
                agent_id, from_state, to_state, reason, call_id, at)
            if inserted is None:
                return
            await conn.execute(
                "UPDATE agents SET state = $2, pause_reason = $3, state_since = $4,"
                " no_answer_count = no_answer_count + CASE WHEN $3 = 'no_answer' THEN 1 ELSE 0 END"
                " WHERE id = $1 AND state_since <= $4",
                agent_id, to_state, reason, at)

    async def set_agent_queues_off(self, agent_id: str, *, queues: list[str]) -> None:
        """The queues an agent left (the ACD's, after join/leave requests)."""
        await self.pool.execute("UPDATE agents SET queues_off = $2 WHERE id = $1",
                                agent_id, queues)

    @retrying()
    async def remove_agent(self, agent_id: str) -> bool:
        """Log an agent out and delete their SIP account (their calls stay);
        False when there is no such agent."""
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval("SELECT 1 FROM agents WHERE id = $1", agent_id)
            if found is None:
                return False
            await _request_agent(conn, agent_id, "logout", None, "remove")
            await conn.execute("DELETE FROM sip_accounts WHERE agent_id = $1", agent_id)
            await _notify_agent(conn, agent_id)
        return True

    @retrying()
    async def sip_accounts(self, agent_id: str | None = None) -> list[Account]:
        """SIP accounts (all, or one agent's), for the provisioner."""
        rows = await self.pool.fetch(
            "SELECT s.agent_id, s.username, s.realm, s.ha1, a.name FROM sip_accounts s"
            " JOIN agents a ON a.id = s.agent_id WHERE $1::text IS NULL OR s.agent_id = $1"
            " ORDER BY s.agent_id", agent_id,
        )
        return [Account(r["agent_id"], r["username"], r["realm"], r["ha1"], r["name"])
                for r in rows]

    @retrying()
    async def agent_rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.pool.fetch("SELECT * FROM agents ORDER BY id")]

    # ---- worker side --------------------------------------------------------------------

    @retrying()
    async def call_row(self, call_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM calls WHERE id = $1", call_id)
        return dict(row) if row else None

    @retrying()
    async def recordings_of(self, call_id: str) -> dict[str, dict[str, Any]]:
        rows = await self.pool.fetch("SELECT * FROM recordings WHERE call_id = $1", call_id)
        return {r["leg"]: dict(r) for r in rows}

    @retrying()
    async def prior_tickets(self, phone: str, *, before_call: str) -> list[dict[str, Any]]:
        if not phone:
            return []
        rows = await self.pool.fetch(
            "SELECT id, number, category, description, phone, created_at, call_id FROM tickets"
            " WHERE phone = $1 AND call_id IS DISTINCT FROM $2 ORDER BY created_at DESC LIMIT 20",
            phone,
            before_call,
        )
        return [dict(r) for r in rows]

    @retrying()
    async def set_status(self, call_id: str, status: str, error: str | None = None) -> None:
        await self.pool.execute(
            "UPDATE calls SET status = $2, error = $3 WHERE id = $1", call_id, status, error
        )

    @retrying()
    async def save_recording_facts(
        self, call_id: str, leg: str, *, duration_s: float, sample_rate: int, size_bytes: int,
        speech_dbfs: float | None = None, snr_db: float | None = None,
    ) -> None:
        await self.pool.execute(
            "UPDATE recordings SET duration_s = $3, sample_rate = $4, size_bytes = $5,"
            " speech_dbfs = $6, snr_db = $7 WHERE call_id = $1 AND leg = $2",
            call_id, leg, duration_s, sample_rate, size_bytes, speech_dbfs, snr_db,
        )

    @retrying()
    async def save_analysis(
        self,
        call_id: str,
        *,
        segments: Iterable[Segment],
        ticket: Ticket | None,
        qa: QaResult | None,
        qa_source: str,
        history: Sequence[int] = (),
        error: str | None = None,
        figures: Mapping[str, float] | None = None,
        legs_checked: Mapping[str, LegCheck] | None = None,
        spoken_numbers: Sequence[pii.Finding] = (),
        quoted_runs: Sequence[pii.MaskedRun] = (),
    ) -> str | None:
        """Replace the call's transcript and QA result, and open or refresh its
        automatic ticket, in one transaction. ``figures`` (audio, decode and CPU
        seconds of the transcription) go on the call's "processed" event.

        Personal numbers are masked in what is stored (``pii.py``): the transcript's
        text and words, the ticket's quotes, the QA evidence; the recognised text
        is kept beside the masked one where they differ. ``spoken_numbers``: those
        the digit pass found (``pii.number_findings``); ``legs_checked``: each
        recording's personal numbers found and its muted copy; ``quoted_runs``:
        what masking changed in other speech the ticket quotes (the IVR's
        description, ``pipeline.Description``).

        Idempotent, so a job retried after a crash leaves one set of results (and
        one ticket: a second run changes only the ticket's automatic values).
        ``error`` notes what the analysis had to do without (a bad recording).
        Returns the ticket number.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            runs = await _save_transcript(conn, call_id, segments, spoken_numbers)
            runs = sorted({*runs, *quoted_runs}, key=lambda r: -len(r[0]))
            for leg, check in (legs_checked or {}).items():
                await conn.execute(
                    "UPDATE recordings SET pii_findings = $3, muted_path = $4"
                    " WHERE call_id = $1 AND leg = $2", call_id, leg, check.findings,
                    check.muted_path)
            number = await _save_ticket(conn, call_id, pii.masked_ticket(ticket, runs), history,
                                        policy=self.policy, at=self.now()) if ticket else None
            if qa is not None:
                # People's verdicts and earlier rule sets' results are kept (qa/store.py).
                rules = load_rules()
                await save_qa_result(conn, call_id, qa, source=qa_source,
                                     rules_text=rules.text
                                     if qa.rules_version == rules.version else "")
            else:
                await conn.execute("DELETE FROM qa_results WHERE call_id = $1", call_id)
            await conn.execute(
                "UPDATE calls SET status = 'processed', error = $2 WHERE id = $1", call_id, error
            )
            await _event(conn, call_id, "processed", {
                "ticket": number, "score": qa.score if qa else None, **(figures or {})})
            return number


@dataclass(frozen=True, slots=True)
class LegCheck:
    """A recording leg after the search for personal numbers: how many its
    transcript held and its muted copy (relative to the recordings folder; None
    when nothing needed muting)."""

    findings: int
    muted_path: str | None = None


async def _save_transcript(conn: asyncpg.Connection, call_id: str,
                           segments: Iterable[Segment], also: Sequence[pii.Finding]
                           ) -> list[pii.MaskedRun]:
    """The call's transcript, masked, with the recognised text and words beside
    each segment where masking changed them; returns what masking changed (to mask
    quotes of it the same way)."""
    originals = list(segments)
    redacted, runs = pii.redacted_with_runs(originals, also)
    rows = []
    for original, masked in zip(originals, redacted, strict=True):
        changed = masked.text != original.text
        rows.append((call_id, original.leg, original.start, original.end, masked.text,
                     _words(masked), original.text if changed else None,
                     _words(original) if changed else None))
    await conn.execute("DELETE FROM transcript_segments WHERE call_id = $1", call_id)
    await conn.executemany(
        "INSERT INTO transcript_segments (call_id, leg, start_s, end_s, text, words,"
        " original_text, original_words, redacted)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)", rows)
    return runs


def _words(segment: Segment) -> list[dict[str, Any]]:
    return [asdict(w) for w in segment.words]


async def requeue_analysis(pool: asyncpg.Pool, *, since: datetime, call_ids: Sequence[str] = (),
                           unchecked_only: bool = True, dry_run: bool = False) -> list[str]:
    """Queue the analysis again for calls that ended since ``since`` (``call_ids``: only
    those) and were analysed or failed; ``unchecked_only``: only those with a
    recording never searched for personal numbers (analysed before masking
    existed: until then only managers may hear them). The analysis is idempotent:
    people's values and verdicts stay, earlier QA results are kept."""
    rows = await pool.fetch(
        "SELECT c.id, c.priority FROM calls c WHERE c.ended_at >= $1"
        " AND c.status IN ('processed', 'failed')"
        " AND (cardinality($2::text[]) = 0 OR c.id = ANY($2::text[]))"
        " AND (NOT $3 OR EXISTS (SELECT 1 FROM recordings r"
        "      WHERE r.call_id = c.id AND r.pii_findings IS NULL))"
        " ORDER BY c.ended_at", since, list(call_ids), unchecked_only)
    if not dry_run:
        async with pool.acquire() as conn, conn.transaction():
            for row in rows:
                await enqueue_processing(conn, row["id"], priority=row["priority"] or 0)
    return [r["id"] for r in rows]


async def enqueue_processing(conn: asyncpg.Connection, call_id: str, *, priority: int = 0
                             ) -> None:
    """Queue the transcription job on this connection (inside the caller's transaction).
    Workers take the highest ``priority`` first (the call's own: a safety call before a
    backlog of ordinary ones), then the oldest."""
    await Queries(AsyncpgDriver(conn)).enqueue(
        PROCESS_CALL_JOB, call_id.encode(), priority=priority,
        dedupe_key=f"process:{call_id}", on_conflict="skip",
    )


async def _save_ticket(
    conn: asyncpg.Connection, call_id: str, ticket: Ticket, history: Sequence[int], *,
    policy: Policy, at: datetime,
) -> str:
    """The call's automatic ticket: opened through the lifecycle the first time;
    re-processing refreshes only its automatic values and judgement, never what
    people did (status, owner, the lifecycle, their ``human`` values)."""
    return await save_automatic(conn, call_id, ticket, history, policy=policy, at=at)


async def _request_agent(
    conn: asyncpg.Connection, agent_id: str, action: str, reason: str | None, by: str
) -> int:
    request_id = int(await conn.fetchval(
        "INSERT INTO agent_requests (agent_id, action, reason, requested_by)"
        " VALUES ($1, $2, $3, $4) RETURNING id", agent_id, action, reason, by))
    await conn.execute("SELECT pg_notify($1, $2)", AGENT_REQUESTS_CHANNEL, str(request_id))
    return request_id


async def _notify_agent(conn: asyncpg.Connection, agent_id: str) -> None:
    payload = json.dumps({"agent_id": agent_id, "change": "account"})
    await conn.execute("SELECT pg_notify($1, $2)", AGENTS_CHANNEL, payload)


# A call's audit event, unless the call's last event is this very one (see _event), as
# the tail of a statement whose $1 is the call id; {data}: the number of the event's
# parameter, {only_if}: a FROM clause that must yield a row for the event to be added.
_EVENT_TAIL = (
    " INSERT INTO call_events (call_id, kind, data) SELECT $1, '{kind}', ${data}::jsonb"
    "{only_if} WHERE NOT EXISTS (SELECT 1 FROM (SELECT kind, data FROM call_events"
    " WHERE call_id = $1 ORDER BY id DESC LIMIT 1) last"
    " WHERE last.kind = '{kind}' AND last.data = ${data}::jsonb)"
)
# The call row and its "opened" event in one statement (one round trip, atomic).
_OPEN_CALL = (
    "WITH opened AS (INSERT INTO calls (id, caller_number, channel_id, source, started_at)"
    " VALUES ($1, $2, $3, $4, COALESCE($5, now())) ON CONFLICT (id) DO NOTHING RETURNING id)"
    + _EVENT_TAIL.format(kind="opened", data=6, only_if=" FROM opened")
)


def _open_call(call_id: str, *, caller_number: str, channel_id: str, source: str = "asterisk",
               started_at: datetime | None = None) -> tuple[Any, ...]:
    """``open_call`` as one statement and its arguments. Opening twice (IVR, then
    routing) is allowed and changes nothing: the event follows only a new row."""
    return (_OPEN_CALL, call_id, caller_number, channel_id, source, started_at,
            {"caller_number": caller_number})


def _update_call(call_id: str, fields: dict[str, Any]) -> tuple[Any, ...] | None:
    """``update_call`` as one statement (the row and its "updated" event) and its
    arguments; None when there is nothing to set."""
    unknown = set(fields) - _CALL_FIELDS
    if unknown:
        raise ValueError(f"update_call: unknown fields {sorted(unknown)}")
    if not fields:
        return None
    if fields.get("stage") == "ringing" and "ringing_at" not in fields:
        fields = {**fields, "ringing_at": _now()}  # each new offer restarts the ring count
    names = list(fields)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    sql = (f"WITH updated AS (UPDATE calls SET {assignments} WHERE id = $1)"
           + _EVENT_TAIL.format(kind="updated", data=len(names) + 2, only_if=""))
    return (sql, call_id, *[fields[n] for n in names], _jsonable(fields))


_IVR_EVENT = ("INSERT INTO ivr_events (call_id, node, kind, via, choice, at)"
              " VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()))")


def _ivr_event_rows(call_id: str, events: list[dict[str, str]], at: datetime | None = None
                    ) -> list[tuple[Any, ...]]:
    return [(call_id, e["node"], e["kind"], e.get("via", ""), e.get("choice", ""), at)
            for e in events]


def _statement_rows(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> list[tuple[Any, ...]] | None:
    """A write made of independent statements, as ``(sql, *arguments)`` rows (none:
    nothing to do); None for a write that is more than that (it runs as itself)."""
    if method == "open_call":
        return [_open_call(*args, **kwargs)]
    if method == "update_call":
        (call_id,) = args
        statement = _update_call(call_id, kwargs)
        return [statement] if statement else []
    if method == "record_ivr_events":
        return [(_IVR_EVENT, *row) for row in _ivr_event_rows(*args, **kwargs)]
    return None


async def _event(conn: asyncpg.Connection, call_id: str, kind: str, data: dict[str, Any]) -> None:
    """Append to the call's audit trail, unless the last event is this very one: a
    write repeated after its commit was lost to a dropped connection is recorded once."""
    await conn.execute(
        "INSERT INTO call_events (call_id, kind, data) SELECT $1, $2, $3"
        " WHERE NOT EXISTS (SELECT 1 FROM (SELECT kind, data FROM call_events"
        "  WHERE call_id = $1 ORDER BY id DESC LIMIT 1) last"
        "  WHERE last.kind = $2 AND last.data = $3::jsonb)",
        call_id,
        kind,
        data,
    )


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))
