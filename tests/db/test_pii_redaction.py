"""Personal numbers through the real worker, Vosk and PostgreSQL: a caller gives
their mobile number; the stored transcript, ticket and QA evidence hold it masked
(the recognised text beside it), and the muted copy of the recording no longer
says it. Read back by a role that may not see originals, nothing shows it."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from callcenter import pii
from callcenter.asr.model import resolve_model
from callcenter.audio import read_mono, write_wav
from callcenter.db.store import PgStore
from callcenter.pipeline import Transcribing
from callcenter.qa.rescore import stored_timelines
from callcenter.settings import Settings
from callcenter.web.queries import call_document
from tests.db.test_worker import drain_queue

pytestmark = pytest.mark.asr

# A dev call whose caller gives a mobile number about 8-13 s into this stretch.
SCENARIO, FROM_S, TO_S = "d021", 80, 100
MOBILE = re.compile(r"1[3-9]\d{9}")


def _digits(text: str) -> str:
    return "".join(pii._digit(ch) for ch in text)


async def test_a_spoken_mobile_number_is_masked_in_storage_and_muted_in_the_copy(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path, shared_dir: Path
) -> None:
    store = PgStore(db_pool)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path,
                        shared_dir=shared_dir)
    (tmp_path / "m1").mkdir()
    for leg in ("caller", "agent"):
        samples, rate = read_mono(shared_dir / "scenarios" / "dev" / SCENARIO / f"{leg}.wav")
        write_wav(tmp_path / "m1" / f"{leg}.wav", samples[FROM_S * rate: TO_S * rate], rate)
    await store.open_call("m1", caller_number="13900000002", channel_id="m")
    await store.update_call("m1", stage="queue", queue="repair", ivr_digits="12")
    await store.add_leg("m1", "caller", channel_id="m", recording_name="m1/caller.wav")
    await store.add_leg("m1", "agent", channel_id="n", recording_name="m1/agent.wav")
    await store.update_call("m1", stage="conversation")
    assert await store.finish_call("m1", stage="conversation", hangup_by="caller")
    transcribing = Transcribing(resolve_model(settings))
    await drain_queue(db_dsn, store, settings, transcribing)
    call = await store.call_row("m1")
    assert call is not None and call["status"] == "processed", call and call["error"]

    # The recording: checked, one number found on the caller's leg, a muted copy.
    caller = await db_pool.fetchrow("SELECT * FROM recordings WHERE call_id = 'm1'"
                                    " AND leg = 'caller'")
    assert caller["pii_findings"] >= 1 and caller["muted_path"] == "m1/caller.muted.wav"
    original, rate = read_mono(tmp_path / "m1" / "caller.wav")
    muted, muted_rate = read_mono(tmp_path / caller["muted_path"])
    assert (muted_rate, len(muted)) == (rate, len(original))

    # The muted copy, decoded again the same two ways, gives no personal number.
    first_pass = transcribing.transcribe(original, rate, "caller")
    heard = transcribing.numbers(original, rate, "caller", first_pass)
    assert pii.number_findings(heard), "the digit pass should find the number in the original"
    again = transcribing.numbers(muted, rate, "caller", first_pass)
    assert not pii.number_findings(again, first_pass), [s.text for s in again]
    assert not MOBILE.search(_digits("".join(s.text for s in again)))
    for finding in pii.number_findings(heard):
        span = muted[int(finding.start * rate): int(finding.end * rate)]
        assert len(span) and not np.any(span)

    # Stored: masked text and words; what was recognised kept beside them.
    rows = await db_pool.fetch("SELECT * FROM transcript_segments WHERE call_id = 'm1'")
    assert all(r["redacted"] for r in rows)
    changed = [r for r in rows if r["original_text"] is not None]
    assert changed and all(pii.MASK in r["text"] for r in changed)
    for r in rows:
        assert not pii.number_findings([_segment(r["text"])])
        assert "".join(w["w"] for w in r["words"]) == r["text"]
    quotes = [e["text"] for r in await db_pool.fetch(
        "SELECT evidence FROM qa_rule_results WHERE call_id = 'm1'") for e in r["evidence"]]
    ticket = await db_pool.fetchrow("SELECT description FROM tickets WHERE call_id = 'm1'")
    for text in [*quotes, ticket["description"]]:
        for r in changed:
            assert r["original_text"] not in text

    # Read back: masked for everyone by default, as recognised only when asked for.
    masked = await call_document(db_pool, "m1")
    assert masked["transcript_masked"]
    assert [s["text"] for s in masked["transcript"]] == [r["text"] for r in sorted(
        rows, key=lambda r: (r["start_s"], r["id"]))]
    originals = await call_document(db_pool, "m1", originals=True)
    assert {r["original_text"] for r in changed} <= {s["text"] for s in originals["transcript"]}
    # QA re-scoring reads what was recognised, as the first scoring did.
    rescored = (await stored_timelines(db_pool, ["m1"]))["m1"]
    assert {r["original_text"] for r in changed} <= {s.text for s in rescored.segments}


def _segment(text: str) -> pii.Segment:
    return pii.Segment(leg="caller", start=0.0, end=0.0, text=text)


async def test_a_mobile_number_in_the_ivr_description_is_masked_in_its_text_and_ticket(
    db_dsn: str, db_pool: asyncpg.Pool, tmp_path: Path, shared_dir: Path
) -> None:
    """The caller leaves the same words as the IVR's problem description and hangs
    up in the queue: the digit pass runs over the description too, so neither its
    stored text nor the ticket quoting it holds the number."""
    store = PgStore(db_pool)
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, recordings_dir=tmp_path,
                        shared_dir=shared_dir)
    samples, rate = read_mono(shared_dir / "scenarios" / "dev" / SCENARIO / "caller.wav")
    spoken = samples[FROM_S * rate: TO_S * rate]
    write_wav(tmp_path / "description.wav", spoken, rate)
    await store.open_call("m2", caller_number="13900000003", channel_id="d")
    await store.update_call("m2", stage="queue", queue="repair", ivr_digits="12",
                            ivr_intent="repair", ivr_description="description.wav")
    assert await store.finish_call("m2", stage="queue", hangup_by="caller")
    transcribing = Transcribing(resolve_model(settings))
    await drain_queue(db_dsn, store, settings, transcribing)
    call = await store.call_row("m2")
    assert call is not None and call["status"] == "processed", call and call["error"]

    # What the recogniser wrote for the number: the stretches masking changes.
    said = transcribing.transcribe(spoken, rate, "caller")
    found = pii.number_findings(transcribing.numbers(spoken, rate, "caller", said), said)
    assert found, "the digit pass should find the number in the description"
    masked = pii.redact(said, found)[0]
    runs = pii.masked_runs((o.text, m.text) for o, m in zip(said, masked, strict=True))
    assert runs
    ticket = await db_pool.fetchrow("SELECT description FROM tickets WHERE call_id = 'm2'")
    assert pii.MASK in call["ivr_description_text"]
    for text in (call["ivr_description_text"], ticket["description"]):
        for recognised, _masked in runs:
            assert recognised not in text, text
