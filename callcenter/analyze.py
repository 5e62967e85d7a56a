"""``callcenter analyze``: the worker's pipeline fed from files.

Three inputs: two mono legs, one stereo file (left caller, right agent), or a
ground-truth timeline (no ASR). Unless told not to, the call and its results
are stored like any other call (source 'analyze').
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callcenter.audio import AudioError
from callcenter.core import CallFacts
from callcenter.pipeline import (
    Analysis,
    LegAudio,
    analysis_document,
    analyze,
    timeline_from_file_meta,
    transcribe_stereo,
    transcribe_two_legs,
)
from callcenter.settings import Settings


class AnalyzeInputError(Exception):
    """Bad input: a one-line reason for the user."""


@dataclass(slots=True)
class AnalyzeRequest:
    caller: Path | None = None
    agent: Path | None = None
    stereo: Path | None = None
    timeline: Path | None = None
    phone: str = ""
    ivr_digits: str = ""
    store: bool = True


async def run_analyze(request: AnalyzeRequest, settings: Settings) -> dict[str, Any]:
    from callcenter.cli import CliError

    try:
        analysis, facts = await asyncio.to_thread(_run_pipeline, request, settings)
    except (AudioError, AnalyzeInputError) as exc:
        raise CliError(str(exc)) from exc
    call = _call_json(facts, analysis)
    if request.store:
        call["ticket_number"] = await _store(settings, facts, analysis)
    return analysis_document(call, analysis)


def _run_pipeline(request: AnalyzeRequest, settings: Settings) -> tuple[Analysis, CallFacts]:
    facts = CallFacts(call_id=uuid.uuid4().hex, caller_number=request.phone,
                      ivr_digits=request.ivr_digits, started_at=datetime.now(UTC))
    if request.timeline:
        meta = _read_meta(request.timeline)
        timeline, meta_facts = timeline_from_file_meta(meta)
        facts.caller_number = request.phone or meta_facts.caller_number
        facts.ivr_digits = request.ivr_digits or meta_facts.ivr_digits
        legs: dict[str, LegAudio] = {}
        source = "text"
    else:
        from callcenter.worker import model_transcribing

        transcriber = model_transcribing(settings).get()
        if request.stereo:
            timeline, legs = transcribe_stereo(request.stereo, transcriber)
        else:
            assert request.caller and request.agent
            timeline, legs = transcribe_two_legs(request.caller, request.agent, transcriber)
        source = "asr"
    ticket, qa = analyze(timeline, facts, source=source, now=facts.started_at)
    return Analysis(timeline, ticket, qa, source, legs), facts


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AnalyzeInputError(f"{path}: no such file") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnalyzeInputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("timeline"), list):
        raise AnalyzeInputError(f"{path}: no 'timeline' list (see the meta.json format)")
    for i, turn in enumerate(meta["timeline"]):
        if not isinstance(turn, dict) or turn.get("who") not in ("agent", "caller") or not all(
            isinstance(turn.get(k), int | float) for k in ("start", "end")
        ):
            raise AnalyzeInputError(f"{path}: timeline[{i}] needs who/start/end/text")
    if not meta["timeline"]:
        raise AnalyzeInputError(f"{path}: the timeline is empty")
    return meta


def _call_json(facts: CallFacts, analysis: Analysis) -> dict[str, Any]:
    return {
        "id": facts.call_id,
        "source": "analyze",
        "input": analysis.source,
        "caller_number": facts.caller_number,
        "ivr_digits": facts.ivr_digits,
        "duration_s": round(analysis.timeline.duration, 3),
        "legs": {
            leg.leg: {"path": leg.path, "duration_s": leg.duration_s,
                      "sample_rate": leg.sample_rate}
            for leg in analysis.legs.values()
        },
        "ticket_number": None,
    }


async def _store(settings: Settings, facts: CallFacts, analysis: Analysis) -> str | None:
    from callcenter.db.connect import connect, create_pool, database_dsn
    from callcenter.db.migrate import migrate
    from callcenter.db.store import PgStore

    dsn = await asyncio.to_thread(database_dsn, settings)
    conn = await connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await create_pool(dsn, max_size=2)
    try:
        store = PgStore(pool)
        assert facts.call_id
        await store.open_call(facts.call_id, caller_number=facts.caller_number,
                              channel_id="", source="analyze")
        await store.update_call(facts.call_id, ivr_digits=facts.ivr_digits,
                                duration_s=analysis.timeline.duration)
        for leg in analysis.legs.values():
            await store.add_leg(facts.call_id, leg.leg, channel_id=None,
                                recording_name=str(Path(leg.path).resolve()))
            await store.save_recording_facts(
                facts.call_id, leg.leg, duration_s=leg.duration_s,
                sample_rate=leg.sample_rate, size_bytes=leg.size_bytes)
        await store.update_call(facts.call_id, status="ended", stage="conversation",
                                ended_at=datetime.now(UTC))
        return await store.save_analysis(
            facts.call_id, segments=analysis.timeline.segments, ticket=analysis.ticket,
            qa=analysis.qa, qa_source=analysis.source,
        )
    finally:
        await pool.close()
