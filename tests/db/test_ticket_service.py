"""The ticket lifecycle wired to a real PostgreSQL: the analysis never overwrites
people, the executor's writes (history, notices, alerts, wake-ups), rejections,
notices sent by the job queue, and attachments. Time is a controllable clock."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from callcenter.console import store as console
from callcenter.core import Ticket
from callcenter.db.connect import connect
from callcenter.db.store import PgStore
from callcenter.errors import ServiceError
from callcenter.pipeline import Transcribing
from callcenter.settings import Settings
from callcenter.tickets.lifecycle import (
    AddNote,
    Close,
    Dispatch,
    Resolve,
    Start,
)
from callcenter.tickets.notify import Notice, PermanentNotifyError, TransientNotifyError
from callcenter.tickets.service import (
    NOTIFY_CALLER_JOB,
    AttachmentRules,
    TicketRejected,
    TicketService,
)
from callcenter.tickets.store import ALERTS_CHANNEL
from callcenter.worker import build_queue_manager
from tests.db.test_worker import until
from tests.web_support import add_user

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
PHONE = "13800001234"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


class Clock:
    """The one clock of the store and the service; tests move it."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


async def answered_call(store: PgStore, call_id: str, agent: str = "1001") -> None:
    await store.upsert_agent(agent, name=agent, endpoint=f"PJSIP/{agent}", skills=["repair"])
    await store.open_call(call_id, caller_number=PHONE, channel_id=call_id)
    await store.update_call(call_id, stage="conversation", agent_id=agent, queue="repair")
    assert await store.finish_call(call_id, stage="conversation", hangup_by="caller")


async def ticket_row(pool: asyncpg.Pool, number: str) -> dict[str, Any]:
    return dict(await pool.fetchrow("SELECT * FROM tickets WHERE number = $1", number))


async def history(pool: asyncpg.Pool, number: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT h.what, h.by, h.role FROM ticket_history h JOIN tickets t ON t.id = h.ticket_id"
        " WHERE t.number = $1 ORDER BY h.id", number)
    return [(r["what"], r["by"], r["role"]) for r in rows]


async def notices(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT payload FROM pgqueuer WHERE entrypoint = $1 ORDER BY id",
                            NOTIFY_CALLER_JOB)
    return [json.loads(bytes(r["payload"]))["kind"] for r in rows]


async def alerts(pool: asyncpg.Pool) -> list[tuple[str, str, int, str]]:
    rows = await pool.fetch("SELECT kind, recipient, level, reason FROM ticket_alerts ORDER BY id")
    return [(r["kind"], r["recipient"], r["level"], r["reason"]) for r in rows]


def analysed(category: str = "engineering", urgency: str = "P3", **fields: Any) -> Ticket:
    fields.setdefault("phone", PHONE)
    fields.setdefault("description", "厨房水管漏水")
    return Ticket(category, urgency, **fields)


async def test_reprocessing_a_call_never_overwrites_what_people_did(
    db_pool: asyncpg.Pool,
) -> None:
    clock = Clock()
    store = PgStore(db_pool, now=clock)
    tickets = TicketService(db_pool, now=clock)
    await answered_call(store, "c1")
    await add_user(db_pool, "wang", "agent", agent_id="1001")
    number = await store.save_analysis("c1", segments=[], qa=None, qa_source="asr",
                                       ticket=analysed(needs_confirmation=["urgency"],
                                                       evidence={"urgency": ["漏水: P3"]}))
    assert number is not None
    row = await ticket_row(db_pool, number)
    # Whoever answered the call received the ticket; the classifier's reasons are kept.
    assert (row["status"], row["owner"], row["auto"]) == ("new", "wang", True)
    assert row["judgement"]["needs_confirmation"] == ["urgency"]
    assert row["deadline"] == T0 + timedelta(hours=24)

    clock.advance(minutes=1)  # the agent corrects it at wrap-up, a supervisor dispatches
    assert await console.save_wrap_up(
        db_pool, "c1", by="wang", disposition="ticket", phone=PHONE, tickets=tickets,
        suggested={}, fields={"category": "engineering", "urgency": "P2", "building": "3",
                              "description": "厨房水管爆裂"}) == number
    clock.advance(minutes=2)
    await tickets.apply(number, Dispatch("boss", clock()), role="supervisor")

    clock.advance(minutes=1)  # the job runs again and the analysis changed its mind
    again = await store.save_analysis(
        "c1", segments=[], qa=None, qa_source="asr",
        ticket=analysed("cleaning", "P4", building="9", caller_name="赵阿姨",
                        description="漏水", needs_confirmation=["category"]))
    assert again == number
    assert await db_pool.fetchval("SELECT count(*) FROM tickets") == 1
    row = await ticket_row(db_pool, number)
    # Automatic columns and judgement updated...
    assert (row["category"], row["urgency"], row["building"], row["caller_name"]) == (
        "cleaning", "P4", "9", "赵阿姨")
    assert row["judgement"]["needs_confirmation"] == ["category"]
    # ...people's values, the status, the owner and the lifecycle kept.
    assert row["human"] == {"category": "engineering", "urgency": "P2", "building": "3",
                            "description": "厨房水管爆裂"}
    assert (row["human_by"], row["status"], row["owner"]) == ("wang", "dispatched", "wang")
    assert (row["department"], row["dispatched_at"]) == ("engineering", T0 + timedelta(minutes=3))
    assert row["deadline"] == T0 + timedelta(hours=2)  # the agent's P2 governs the clock
    # The one new value people see (the caller's name) went through the machine.
    assert await history(db_pool, number) == [
        ("opened", "system", "system"), ("edited", "wang", "agent"),
        ("dispatched", "boss", "supervisor"), ("edited", "system", "system")]
    assert await notices(db_pool) == ["receipt", "dispatched"]  # once each


async def test_a_wrap_up_before_the_analysis_opens_the_row_the_analysis_fills(
    db_pool: asyncpg.Pool,
) -> None:
    clock = Clock()
    store = PgStore(db_pool, now=clock)
    tickets = TicketService(db_pool, now=clock)
    await answered_call(store, "c2")
    number = await console.save_wrap_up(
        db_pool, "c2", by="wang", disposition="ticket", phone=PHONE, tickets=tickets,
        suggested={"category": "engineering", "urgency": "P3", "vip": "elderly"},
        fields={"category": "engineering", "urgency": "P1", "description": "电梯困人"})
    row = await ticket_row(db_pool, number or "")
    assert (row["auto"], row["owner"], row["status"], row["urgency"]) == (
        True, "wang", "new", "P3")
    assert row["human"]["urgency"] == "P1"
    # The agent's P1 counts at once: management is told on opening.
    assert await alerts(db_pool) == [("escalate", "management", 0, "safety")]
    assert await store.save_analysis("c2", segments=[], qa=None, qa_source="asr",
                                     ticket=analysed(description="电梯停了")) == number
    row = await ticket_row(db_pool, number or "")
    assert (row["description"], row["human"]["description"]) == ("电梯停了", "电梯困人")
    assert await db_pool.fetchval("SELECT count(*) FROM tickets") == 1
    assert await notices(db_pool) == ["receipt"]


async def test_a_survey_answered_before_the_analysis_reaches_its_ticket(
    db_pool: asyncpg.Pool,
) -> None:
    store = PgStore(db_pool, now=Clock())
    await answered_call(store, "c-survey")
    await store.save_survey("c-survey", 4)  # the caller pressed 4 after the conversation
    number = await store.save_analysis("c-survey", segments=[], qa=None, qa_source="asr",
                                       ticket=analysed())
    assert (await ticket_row(db_pool, number or ""))["satisfaction_ivr"] == 4
    await store.save_survey("c-survey", 2)  # answered again: the tickets follow
    assert (await ticket_row(db_pool, number or ""))["satisfaction_ivr"] == 2


async def test_several_tickets_per_call_and_walk_ins(db_pool: asyncpg.Pool) -> None:
    clock = Clock()
    store = PgStore(db_pool, now=clock)
    tickets = TicketService(db_pool, now=clock)
    await answered_call(store, "c3")
    auto = await store.save_analysis("c3", segments=[], qa=None, qa_source="asr",
                                     ticket=analysed())
    second = await tickets.create(analysed("cleaning", "P4", description="楼道垃圾"),
                                  by="wang", role="agent", call_id="c3")
    walk_in = await tickets.create(analysed("consultation", "P4", channel="walk_in",
                                            description="物业费怎么交"), by="li", role="agent")
    rows = {r["number"]: r for r in await db_pool.fetch("SELECT * FROM tickets")}
    assert (rows[second]["call_id"], rows[second]["auto"], rows[second]["owner"]) == (
        "c3", False, "wang")
    assert (rows[walk_in]["call_id"], rows[walk_in]["channel"]) == (None, "walk_in")
    again = await store.save_analysis("c3", segments=[], qa=None, qa_source="asr",
                                      ticket=analysed(urgency="P2"))
    assert again == auto
    assert rows[second]["urgency"] == (await ticket_row(db_pool, second))["urgency"] == "P4"
    with pytest.raises(ServiceError) as unknown:
        await tickets.create(analysed(), by="wang", role="agent", call_id="no-such-call")
    assert unknown.value.status == 400


async def test_dispatch_time_is_measured_against_the_5_minute_goal(
    db_pool: asyncpg.Pool,
) -> None:
    clock = Clock()
    tickets = TicketService(db_pool, now=clock)
    quick = await tickets.create(analysed(), by="wang", role="agent")
    slow = await tickets.create(analysed(), by="wang", role="agent")
    await tickets.apply(quick, Dispatch("wang", T0 + timedelta(minutes=3)), role="agent")
    await tickets.apply(slow, Dispatch("wang", T0 + timedelta(minutes=7)), role="agent")
    details = {r["number"]: r["details"] for r in await db_pool.fetch(
        "SELECT t.number, h.details FROM ticket_history h JOIN tickets t ON t.id = h.ticket_id"
        " WHERE h.what = 'dispatched'")}
    assert (details[quick]["time_to_dispatch_s"], details[quick]["on_time"]) == (180.0, True)
    assert (details[slow]["time_to_dispatch_s"], details[slow]["on_time"]) == (420.0, False)


async def test_rejected_events_change_nothing_and_carry_the_error_id(
    db_pool: asyncpg.Pool,
) -> None:
    clock = Clock()
    tickets = TicketService(db_pool, now=clock)
    number = await tickets.create(analysed(), by="wang", role="agent")
    before = await ticket_row(db_pool, number)
    with pytest.raises(TicketRejected) as wrong:
        await tickets.apply(number, Start("wang", T0), role="agent")
    assert (wrong.value.status, wrong.value.error_id) == (409, "ticket.invalid_transition")
    assert wrong.value.details["allowed_from"] == ["dispatched"]
    for event in (Dispatch("wang", T0), Start("eng", T0),
                  Resolve("eng", T0, "换了接头")):
        await tickets.apply(number, event, role="agent")
    with pytest.raises(TicketRejected) as reason:
        await tickets.apply(number, Close("wang", T0), role="agent")
    assert (reason.value.status, reason.value.error_id) == (422, "ticket.reason_required")
    with pytest.raises(TicketRejected) as note:
        await tickets.apply(number, AddNote("wang", T0, "  "), role="agent")
    assert note.value.error_id == "ticket.note_required"
    after = await ticket_row(db_pool, number)
    assert after["status"] == "resolved" and before["status"] == "new"
    assert [w for w, _, _ in await history(db_pool, number)] == [
        "opened", "dispatched", "started", "resolved"]


async def test_a_repeated_complaint_goes_to_a_supervisor_at_once(
    db_dsn: str, db_pool: asyncpg.Pool,
) -> None:
    listener = await connect(db_dsn)
    heard: list[dict[str, Any]] = []
    await listener.add_listener(ALERTS_CHANNEL, lambda *args: heard.append(json.loads(args[3])))
    try:
        tickets = TicketService(db_pool, now=Clock())
        number = await tickets.create(
            analysed("complaint", description="第三次投诉保安态度", repeat_complaint=True),
            by="wang", role="agent")
        assert await alerts(db_pool) == [("escalate", "supervisor", 1, "repeat_complaint")]
        row = await ticket_row(db_pool, number)
        assert row["escalation_level"] == 1 and row["sent"] == ["immediate:repeat_complaint"]
        await listener.execute("SELECT 1")  # notifications arrive with the next round trip
        assert [(h["number"], h["recipient"]) for h in heard] == [(number, "supervisor")]
    finally:
        await listener.close()


async def test_photos_must_be_attachments_and_files_are_checked(
    db_pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    rules = AttachmentRules(tmp_path / "files", max_bytes=1024)
    tickets = TicketService(db_pool, now=Clock(), attachments=rules)
    number = await tickets.create(analysed(), by="wang", role="agent")

    async def upload(data: bytes, content_type: str = "image/png",
                     name: str = "../../etc/厨房.png") -> dict[str, Any]:
        async def chunks() -> Any:
            yield data
        return await tickets.add_attachment(number, filename=name, content_type=content_type,
                                            chunks=chunks(), by="eng1", role="agent", viewer=None)

    saved = await upload(PNG)
    assert saved["filename"] == "厨房.png" and len(saved["sha256"]) == 64
    _found, path = await tickets.attachment_file(number, saved["id"], None)
    assert path.read_bytes() == PNG and path.is_relative_to((tmp_path / "files").resolve())
    assert "厨房" not in str(path)  # never the client's name in the path
    for data, kind, status in ((b"GIF89a" + b"\0" * 10, "image/png", 415),
                               (PNG, "image/svg+xml", 415), (PNG * 20, "image/png", 413),
                               (b"", "application/pdf", 400)):
        with pytest.raises(ServiceError) as refused:
            await upload(data, kind)
        assert refused.value.status == status
    assert len(list((tmp_path / "files").rglob("*.*"))) == 1  # nothing left behind

    for event in (Dispatch("wang", T0), Start("eng1", T0)):
        await tickets.apply(number, event, role="agent")
    with pytest.raises(ServiceError) as unknown:
        await tickets.apply(number, Resolve("eng1", T0, "修好了", ("f" * 32,)), role="agent")
    assert (unknown.value.status, unknown.value.error_id) == (422, "ticket.unknown_photo")
    await tickets.apply(number, Resolve("eng1", T0, "修好了", (saved["id"],)), role="agent")
    assert (await ticket_row(db_pool, number))["photos"] == [saved["id"]]
    assert "attached" in [w for w, _, _ in await history(db_pool, number)]


class FakeNotifier:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[Notice] = []

    async def send(self, notice: Notice) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(notice)

    async def close(self) -> None:
        return None


async def _run_notices(db_dsn: str, store: PgStore, tmp_path: Path,
                       notifier: FakeNotifier) -> None:
    """Consume until no notice is ready to run (a retried one waits for later)."""
    conn = await connect(db_dsn)
    try:
        settings = Settings(database_url=db_dsn, data_dir=tmp_path)
        qm = build_queue_manager(conn, store, settings, Transcribing(Path("/nonexistent")),
                                 notifier=notifier)
        consumer = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=1)))
        await until("no notice ready", lambda: nothing_ready(store.pool))
        qm.shutdown.set()
        await asyncio.wait_for(consumer, 10)
    finally:
        await conn.close()


async def nothing_ready(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1 AND (status = 'picked'"
        " OR (status = 'queued' AND execute_after <= now()))", NOTIFY_CALLER_JOB)


@pytest.mark.parametrize(("error", "outcome", "kept"), [
    (None, "notice_sent", 0),
    (PermanentNotifyError("HTTP 400: bad number", status=400), "notice_failed", 0),
    (TransientNotifyError("HTTP 503", status=503, retry_after_s=120), None, 1),
])
async def test_notices_are_sent_by_the_job_queue_and_never_lost(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path, error: Exception | None,
    outcome: str | None, kept: int,
) -> None:
    clock = Clock()
    store = PgStore(db_pool, now=clock)
    number = await TicketService(db_pool, now=clock).create(analysed(), by="wang", role="agent")
    notifier = FakeNotifier(error)
    await _run_notices(db_dsn, store, tmp_path, notifier)
    if error is None:
        assert [(n.number, n.kind, n.phone) for n in notifier.sent] == [
            (number, "receipt", PHONE)]
        assert number in notifier.sent[0].text
    whats = [w for w, _, _ in await history(db_pool, number)]
    assert whats == ["opened", outcome] if outcome else whats == ["opened"]
    # A refusal for now is retried later (the gateway's Retry-After respected).
    queued = await db_pool.fetch(
        "SELECT status, attempts, execute_after FROM pgqueuer WHERE entrypoint = $1",
        NOTIFY_CALLER_JOB)
    assert len(queued) == kept
    if kept:
        assert (queued[0]["status"], queued[0]["attempts"]) == ("queued", 1)
        assert queued[0]["execute_after"] > datetime.now(UTC) + timedelta(seconds=100)
