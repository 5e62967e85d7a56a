"""People's confirmations and corrections measured against the automatic
judgements, and reviewed calls exported as corpus entries (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import yaml

from callcenter.core import Segment, Ticket
from callcenter.db.store import PgStore
from callcenter.tickets import feedback
from callcenter.tickets.corpus import _example


async def _analysed(store: PgStore, call_id: str, ticket: Ticket, said: str) -> None:
    await store.open_call(call_id, caller_number="13900000001", channel_id=f"ch-{call_id}")
    await store.update_call(call_id, ivr_digits="2")
    await store.save_analysis(call_id, segments=[Segment("caller", 0.5, 3.0, said)],
                              ticket=ticket, qa=None, qa_source="asr")


async def test_figures_and_corrections(db_pool: asyncpg.Pool) -> None:
    store = PgStore(db_pool)
    unsure = Ticket(category="complaint", urgency="P3", complaint_severity="minor",
                    description="", needs_confirmation=["severity"])
    await _analysed(store, "f1", unsure, "东门保安昨天对我大吼大叫")
    await _analysed(store, "f2", Ticket(category="cleaning", urgency="P3", description=""),
                    "楼下垃圾三天没人收了")
    await _analysed(store, "f3", Ticket(category="engineering", urgency="P3", description=""),
                    "没人看过的")
    # People: f1's severity corrected and category confirmed; f2's category corrected.
    await db_pool.execute(
        "UPDATE tickets SET human = $2, human_by = 'wang', human_at = now()"
        " WHERE call_id = $1 AND auto", "f1",
        {"category": "complaint", "complaint_severity": "important"})
    await db_pool.execute(
        "UPDATE tickets SET human = $2, human_by = 'li', human_at = now()"
        " WHERE call_id = $1 AND auto", "f2", {"category": "security"})

    since = datetime.now(UTC) - timedelta(days=1)
    figures = await feedback.judgement_figures(db_pool, since)
    assert figures["tickets"] == 2  # f3 was never reviewed
    category, severity = figures["fields"]["category"], figures["fields"]["complaint_severity"]
    assert (category["reviewed"], category["agreed"], category["accuracy"]) == (2, 1, 0.5)
    assert (severity["reviewed"], severity["flagged"], severity["flagged_agreed"]) == (1, 1, 0)
    assert severity["accuracy_when_sure"] is None

    entries = await feedback.corrections(db_pool, since)
    assert [(e["category"], e.get("severity")) for e in entries] == [
        ("complaint", "important"), ("security", None)]
    assert entries[1]["caller"] == ["楼下垃圾三天没人收了"]
    # The export is valid corpus input (after a person reviews it).
    for entry in yaml.safe_load(yaml.safe_dump(entries, allow_unicode=True)):
        _example(entry, "export")


def test_base_urgency_undoes_the_vip_raise() -> None:
    assert feedback.base_urgency("P2", "elderly") == "P3"
    assert feedback.base_urgency("P1", "disabled") == "P1"
    assert feedback.base_urgency("P2", "none") == "P2"
