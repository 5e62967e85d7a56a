"""The worker: takes ``process_call`` and ``notify_caller`` jobs from PostgreSQL,
and runs the tickets' SLA ticker beside them.

Jobs are queued in the same transaction that finishes a call (or changes a
ticket), so a crash in between loses nothing; a failing job is retried with
back-off and, after the last attempt, held (status 'failed') for a person.

A worker takes at most ``concurrency`` calls at a time (one per recognizer it
runs; by default one per core), so the rest stay queued for other workers,
on this machine or another, against the same database; the most urgent call
first (the job's priority is the call's: safety, VIP, normal), then in hang-up
order. Notices have a consumer of their own: they never wait behind calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.executors import DatabaseRetryEntrypointExecutor, EntrypointExecutorParameters
from pgqueuer.models import Context, Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.types import JobId

from callcenter import pii, residents
from callcenter.asr.muting import write_muted_copy
from callcenter.db.connect import DatabaseUnavailable, connect
from callcenter.db.store import PROCESS_CALL_JOB, LegCheck, PgStore, is_transient
from callcenter.pipeline import (
    Description,
    Transcribing,
    analyze,
    call_facts,
    prior_ticket,
    transcribe_description,
    transcribe_recorded_legs,
    with_acoustics,
)
from callcenter.settings import Settings
from callcenter.tickets import learned
from callcenter.tickets.notify import Notifier, build_notifier
from callcenter.tickets.service import NOTIFY_CALLER_JOB, TicketService, send_notice
from callcenter.tickets.ticker import SlaTicker

log = logging.getLogger("callcenter.worker")
T = TypeVar("T")


POLL_INTERVAL = timedelta(seconds=5)
# The job consumer's connection, as pg_stat_activity names it.
WORKER_APPLICATION = "callcenter-worker"
# Longest wait between two attempts to reach the database again.
MAX_RECONNECT_DELAY_S = 10.0
# A consumer that ran this long was healthy: the next failure starts the back-off over.
HEALTHY_RUN_S = 30.0


class CallNotReady(RuntimeError):
    """The job names a call the database does not have."""


async def process_call(
    store: PgStore, settings: Settings, call_id: str, transcribing: Transcribing
) -> str | None:
    """Transcribe both legs, open the ticket, score QA, store everything;
    return the ticket number."""
    call = await store.call_row(call_id)
    if call is None:
        raise CallNotReady(f"no call {call_id}")
    await store.set_status(call_id, "processing")
    recordings = await store.recordings_of(call_id)
    facts = call_facts(call)
    facts.estate_buildings = await residents.building_names(store.pool)
    paths = {leg: settings.recordings / rec["path"] for leg, rec in recordings.items()}
    recorded, figures = await asyncio.to_thread(
        _timed, transcribe_recorded_legs, paths, transcribing, facts.estate_buildings
    )
    timeline, legs, problems = recorded.timeline, recorded.legs, recorded.problems
    figures["audio_s"] = round(sum(leg.duration_s for leg in legs.values()), 3)
    description = Description()
    quoted_runs: list[pii.MaskedRun] = []
    if call.get("ivr_description"):
        description = await asyncio.to_thread(
            transcribe_description, settings.recordings / call["ivr_description"], transcribing
        )
        described, quoted_runs = description.masked()
        await store.update_call(call_id, ivr_description_text=described)
    for leg in legs.values():
        await store.save_recording_facts(
            call_id, leg.leg, duration_s=leg.duration_s, sample_rate=leg.sample_rate,
            size_bytes=leg.size_bytes, speech_dbfs=leg.speech_dbfs, snr_db=leg.snr_db,
        )
    facts = with_acoustics(facts, legs)
    facts.resident = await residents.find(store.pool, facts.caller_number)
    prior = await store.prior_tickets(facts.caller_number, before_call=call_id)
    # In a thread: the judgements and QA are CPU work, and this process may also be
    # serving calls (serve runs a worker).
    ticket, qa = await asyncio.to_thread(
        analyze, timeline, facts, source="asr", now=call["ended_at"] or datetime.now(UTC),
        prior_tickets=[prior_ticket(p) for p in prior], description=description.segments,
    )
    reason = "; ".join(f"{leg} recording: {why}" for leg, why in sorted(problems.items()))
    if reason:
        # A bad recording is permanent: retrying cannot fix it, so keep the reason
        # and let a call-back recover what the recording lost.
        log.warning("call %s analysed without %s", call_id, reason)
        if ticket:
            ticket.callback_required = True
    # Muted copies first: a stored check never names a copy that is not there.
    spoken_numbers = pii.number_findings(timeline.numbers, timeline.segments)
    checked = await asyncio.to_thread(
        mute_legs, settings.recordings, {leg: recordings[leg]["path"] for leg in legs},
        pii.redact(timeline.segments, spoken_numbers)[1])
    number = await store.save_analysis(
        call_id, segments=timeline.segments, ticket=ticket, qa=qa, qa_source="asr",
        history=[p["id"] for p in prior], error=reason or None, figures=figures,
        legs_checked=checked, spoken_numbers=spoken_numbers,
        quoted_runs=quoted_runs,
    )
    log.info("processed call %s: ticket %s, QA %s", call_id, number, qa.score if qa else None)
    return number


def mute_legs(recordings: Path, paths: Mapping[str, str], findings: Sequence[pii.Finding]
              ) -> dict[str, LegCheck]:
    """Each transcribed leg's check: a muted copy where its transcript held personal
    numbers (a leg without any is served as it is)."""
    checked = {}
    for leg, path in paths.items():
        found = [f for f in findings if f.leg == leg]
        checked[leg] = LegCheck(len(found), write_muted_copy(recordings, path, found)
                                if found else None)
    return checked


def _timed(work: Callable[..., T], *args: Any) -> tuple[T, dict[str, float]]:
    """``work(*args)`` in this thread, with its wall and CPU seconds (the decode's
    figures: real-time factor and throughput in /metrics and the API)."""
    began, cpu = time.perf_counter(), time.thread_time()
    result = work(*args)
    return result, {"decode_s": round(time.perf_counter() - began, 3),
                    "cpu_s": round(time.thread_time() - cpu, 3)}


def notifier_from(settings: Settings) -> Notifier:
    """The notifier the settings name (log, SMS gateway or webhook)."""
    return build_notifier(settings.notifier_kind, settings.notifier_url,
                          settings.notifier_secret, timeout_s=settings.notifier_timeout_s)


JOBS = (PROCESS_CALL_JOB, NOTIFY_CALLER_JOB)


@dataclasses.dataclass
class HoldingQueueManager(QueueManager):
    """A queue manager that picks a job only while fewer than ``holding`` of its own
    jobs run (None: pgqueuer's cap alone).

    pgqueuer caps a worker's picked jobs at no fewer than two (twice its batch), so a
    worker of one recognizer would hold a second call, waiting behind the first,
    while another worker sat idle; and while at its cap with work queued, it re-polls
    the database ten times a second. This one waits, without a query, until one of
    its jobs ends, and leaves the queue to whichever worker frees first.
    """

    holding: int | None = None
    _freed: asyncio.Event = dataclasses.field(init=False, default_factory=asyncio.Event)

    async def fetch_jobs(
        self, batch_size: int, global_concurrency_limit: int | None,
        heartbeat_timeout: timedelta,
    ) -> AsyncGenerator[Job, None]:
        if self.holding is None:
            async for job in super().fetch_jobs(batch_size, global_concurrency_limit,
                                                heartbeat_timeout):
                yield job
            return
        while not self.shutdown.is_set():
            if len(self.job_context) >= self.holding:
                await self._until_freed()
                continue
            # One job a dequeue: the run loop records it before asking for the next.
            picked: Job | None = None
            async with contextlib.aclosing(
                super().fetch_jobs(1, global_concurrency_limit, heartbeat_timeout)
            ) as ready:
                async for job in ready:
                    picked = job
                    break
            if picked is None:
                return  # nothing queued: the run loop waits for a NOTIFY
            yield picked

    async def _until_freed(self) -> None:
        self._freed.clear()
        freed = asyncio.ensure_future(self._freed.wait())
        stopping = asyncio.ensure_future(self.shutdown.wait())
        try:
            await asyncio.wait((freed, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            freed.cancel()
            stopping.cancel()

    def forget_job(self, job_id: JobId, context: Context, task: asyncio.Task[None]) -> None:
        super().forget_job(job_id, context, task)
        self._freed.set()


def build_queue_manager(
    conn: asyncpg.Connection, store: PgStore, settings: Settings, transcribing: Transcribing,
    *, notifier: Notifier | None = None, jobs: Collection[str] = JOBS,
    holding: int | None = None,
) -> QueueManager:
    """A queue manager on ``conn`` for the ``jobs`` named (both kinds by default);
    ``holding``: the most jobs it picks and runs at once (None: no limit of its own)."""
    qm = HoldingQueueManager(Queries(AsyncpgDriver(conn)), holding=holding)
    sender = notifier or notifier_from(settings)

    def retrying(params: EntrypointExecutorParameters) -> DatabaseRetryEntrypointExecutor:
        return DatabaseRetryEntrypointExecutor(
            parameters=params, max_attempts=3, initial_delay=timedelta(seconds=2)
        )

    async def process_call_job(job: Job) -> None:
        call_id = (job.payload or b"").decode()
        try:
            await process_call(store, settings, call_id, transcribing)
        except Exception as exc:
            if is_transient(exc):  # the database is away: not the call's fault
                log.warning("processing call %s interrupted by the database: %r", call_id, exc)
                raise
            log.exception("processing call %s failed", call_id)
            await store.set_status(call_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise

    async def notify_caller_job(job: Job) -> None:
        await send_notice(store.pool, sender, job.payload or b"", attempts=job.attempts,
                          now=store.now)

    if PROCESS_CALL_JOB in jobs:
        qm.entrypoint(PROCESS_CALL_JOB, executor_factory=retrying,
                      on_failure="hold")(process_call_job)
    if NOTIFY_CALLER_JOB in jobs:
        # Retries are the job's own (send_notice): it knows a refusal for good from one
        # for now, and honours the gateway's Retry-After; after the last try: held.
        qm.entrypoint(NOTIFY_CALLER_JOB, on_failure="hold")(notify_caller_job)
    return qm


def default_concurrency() -> int:
    """One call at a time per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def calls_cap(concurrency: int) -> int:
    """pgqueuer's per-worker cap on picked jobs (``max_concurrent_tasks``) must be at
    least twice the batch (one job per dequeue here); ``HoldingQueueManager`` keeps a
    worker of one to one."""
    return max(2, concurrency)


async def run_supervised(
    dsn: str, store: PgStore, settings: Settings, transcribing: Transcribing,
    stopping: asyncio.Event, *, concurrency: int | None = None,
) -> None:
    """Consume jobs until ``stopping`` is set, starting over on a fresh connection
    whenever a queue manager dies (a database restart kills its connection).
    Connecting restarts a dead embedded database (``db/connect.py``). The SLA
    ticker runs beside it for as long. ``concurrency``: calls processed at once
    (default: one per core)."""
    calls_at_once = concurrency or default_concurrency()
    notifier = notifier_from(settings)
    tickets = TicketService(store.pool, policy=store.policy, now=store.now)
    # Train the ticket models before the first job, off the event loop, so that no
    # call waits for it.
    await asyncio.to_thread(learned.trained)
    ticker = asyncio.create_task(SlaTicker(tickets, dsn).run(stopping), name="sla-ticker")

    def manager(jobs: Collection[str], holding: int | None = None,
                ) -> Callable[[asyncpg.Connection], QueueManager]:
        return lambda conn: build_queue_manager(conn, store, settings, transcribing,
                                                notifier=notifier, jobs=jobs, holding=holding)

    log.info("worker: %d calls at a time", calls_at_once)
    try:
        await asyncio.gather(
            _consume(dsn, manager((PROCESS_CALL_JOB,), calls_at_once), stopping, "calls",
                     max_tasks=calls_cap(calls_at_once), heartbeat_s=settings.worker_heartbeat_s),
            _consume(dsn, manager((NOTIFY_CALLER_JOB,)), stopping, "notices",
                     heartbeat_s=settings.worker_heartbeat_s),
        )
    finally:
        if not stopping.is_set():  # the consumer itself failed: the ticker goes too
            ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await notifier.close()


async def _consume(
    dsn: str, build: Callable[[asyncpg.Connection], QueueManager], stopping: asyncio.Event,
    name: str, *, max_tasks: int | None = None, heartbeat_s: float = 30.0,
) -> None:
    """One queue manager (``build``) on a connection of its own, until ``stopping``;
    ``max_tasks``: the most jobs it holds at once (None: no limit); a capped one takes
    one job per dequeue, so that it never picks more than it may run."""
    loop = asyncio.get_running_loop()
    delay = 1.0
    while not stopping.is_set():
        try:
            conn = await connect(dsn, attempts=1, application_name=WORKER_APPLICATION)
        except DatabaseUnavailable as exc:
            log.warning("worker %s: database unavailable (%s); retrying in %.0f s", name, exc,
                        delay)
        else:
            qm = build(conn)
            relay = asyncio.create_task(_set_when(stopping, qm.shutdown))
            started = loop.time()
            try:
                # Poll at least every few seconds: after a database restart the NOTIFY
                # listener is silently dead, and only a poll notices it.
                # A job whose heartbeat is older than heartbeat_s (its worker killed)
                # is picked again by whichever worker dequeues next.
                await qm.run(shutdown_on_listener_failure=True, dequeue_timeout=POLL_INTERVAL,
                             batch_size=1 if max_tasks else 10, max_concurrent_tasks=max_tasks,
                             heartbeat_timeout=timedelta(seconds=heartbeat_s))
                delay = 1.0
            except Exception:
                if loop.time() - started > HEALTHY_RUN_S:
                    delay = 1.0
                log.exception("worker %s: job consumer failed; restarting in %.0f s", name,
                              delay)
            finally:
                relay.cancel()
                with contextlib.suppress(Exception):
                    await conn.close()
        if not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY_S)


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def model_transcribing(settings: Settings) -> Transcribing:
    from callcenter.asr.model import resolve_model

    return Transcribing(Path(resolve_model(settings)), settings=settings)
