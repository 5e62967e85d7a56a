"""``callcenter analyze``: the worker's pipeline fed from files.

Three inputs: two mono legs, one stereo file (left caller, right agent), or a
ground-truth timeline (no ASR). Unless told not to, the call and its results
are stored like any other call (source 'analyze').
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callcenter.audio import AudioError, read_wav, write_wav
from callcenter.core import CallFacts, Timeline
from callcenter.db.store import PgStore
from callcenter.pipeline import (
    Analysis,
    LegAudio,
    analysis_document,
    analyze,
    prior_ticket,
    timeline_from_file_meta,
    transcribe_stereo,
    transcribe_two_legs,
    with_acoustics,
)
from callcenter.settings import Settings
from callcenter.tickets.lifecycle import make_policy


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
    from callcenter.db.connect import DatabaseUnavailable
    from callcenter.errors import CliError

    try:
        timeline, facts, legs, source = await asyncio.to_thread(_read_call, request, settings)
    except (AudioError, AnalyzeInputError) as exc:
        raise CliError(str(exc)) from exc
    if not request.store:
        return analysis_document(*_analyzed(timeline, facts, legs, source, prior=[]))
    try:
        async with _database(settings) as store:
            prior = await store.prior_tickets(facts.caller_number, before_call=facts.call_id or "")
            call, analysis = _analyzed(timeline, facts, legs, source, prior=prior)
            call["ticket_number"] = await _store(
                store, settings, facts, analysis, history=[p["id"] for p in prior]
            )
    except AnalyzeInputError as exc:
        raise CliError(str(exc)) from exc
    except DatabaseUnavailable as exc:
        raise CliError(f"cannot store the call ({exc}); use --no-store") from exc
    return analysis_document(call, analysis)


def _analyzed(
    timeline: Timeline, facts: CallFacts, legs: dict[str, LegAudio], source: str,
    prior: list[dict[str, Any]],
) -> tuple[dict[str, Any], Analysis]:
    ticket, qa = analyze(timeline, facts, source=source, now=facts.started_at,
                         prior_tickets=[prior_ticket(p) for p in prior])
    analysis = Analysis(timeline, ticket, qa, source, legs)
    return _call_json(facts, analysis), analysis


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[PgStore]:
    from callcenter.db.connect import create_pool
    from callcenter.db.migrate import prepare_database

    pool = await create_pool(await prepare_database(settings), max_size=2,
                             attempts=settings.database_connect_attempts)
    try:
        yield PgStore(pool, policy=make_policy(settings.timezone))
    finally:
        await pool.close()


def _read_call(
    request: AnalyzeRequest, settings: Settings
) -> tuple[Timeline, CallFacts, dict[str, LegAudio], str]:
    """The call's timeline (recognised or given), its facts, legs and source."""
    facts = CallFacts(call_id=uuid.uuid4().hex, caller_number=request.phone,
                      ivr_digits=request.ivr_digits, started_at=datetime.now(UTC))
    if request.timeline:
        meta = _read_meta(request.timeline)
        try:
            timeline, meta_facts = timeline_from_file_meta(meta)
        except (ValueError, TypeError) as exc:
            raise AnalyzeInputError(f"{request.timeline}: {exc}") from exc
        facts.caller_number = request.phone or meta_facts.caller_number
        facts.ivr_digits = request.ivr_digits or meta_facts.ivr_digits
        legs: dict[str, LegAudio] = {}
        source = "text"
    else:
        from callcenter.worker import model_transcribing

        transcriber = model_transcribing(settings)  # loads the model only once audio is read
        if request.stereo:
            timeline, legs = transcribe_stereo(request.stereo, transcriber)
        else:
            assert request.caller and request.agent
            for path in (request.caller, request.agent):
                _require_mono(path)
            timeline, legs = transcribe_two_legs(request.caller, request.agent, transcriber)
        source = "asr"
        facts = with_acoustics(facts, legs)
    return timeline, facts, legs, source


def _require_mono(path: Path) -> None:
    """A leg given with --caller/--agent must be one channel, not a whole call."""
    frames, _rate = read_wav(path)
    if frames.shape[1] != 1:
        raise AnalyzeInputError(
            f"{path}: expected a mono leg, got {frames.shape[1]} channels (use --stereo)"
        )


def _is_time(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AnalyzeInputError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise AnalyzeInputError(f"{path}: not a regular file") from exc
    except OSError as exc:
        raise AnalyzeInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnalyzeInputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("timeline"), list):
        raise AnalyzeInputError(f"{path}: no 'timeline' list (see the meta.json format)")
    for i, turn in enumerate(meta["timeline"]):
        if (
            not isinstance(turn, dict)
            or turn.get("who") not in ("agent", "caller")
            or not all(_is_time(turn.get(k)) for k in ("start", "end"))
            or not isinstance(turn.get("text", ""), str)
        ):
            raise AnalyzeInputError(f"{path}: timeline[{i}] needs who/start/end/text")
        if turn["end"] < turn["start"]:
            raise AnalyzeInputError(f"{path}: timeline[{i}] ends before it starts")
    if not meta["timeline"]:
        raise AnalyzeInputError(f"{path}: the timeline is empty")
    if meta.get("duration_s") is not None and not _is_time(meta["duration_s"]):
        raise AnalyzeInputError(f"{path}: duration_s must be a number of seconds")
    if meta.get("caller") is not None and not isinstance(meta["caller"], dict):
        raise AnalyzeInputError(f"{path}: 'caller' must be an object")
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


async def _store(
    store: PgStore, settings: Settings, facts: CallFacts, analysis: Analysis,
    history: list[int],
) -> str | None:
    assert facts.call_id
    await store.open_call(facts.call_id, caller_number=facts.caller_number,
                          channel_id="", source="analyze")
    await store.update_call(facts.call_id, ivr_digits=facts.ivr_digits,
                            duration_s=analysis.timeline.duration)
    for leg in analysis.legs.values():
        name, size = await asyncio.to_thread(_keep_recording, settings, facts.call_id, leg)
        await store.add_leg(facts.call_id, leg.leg, channel_id=None, recording_name=name)
        await store.save_recording_facts(
            facts.call_id, leg.leg, duration_s=leg.duration_s,
            sample_rate=leg.sample_rate, size_bytes=size, speech_dbfs=leg.speech_dbfs,
            snr_db=leg.snr_db)
    await store.update_call(facts.call_id, status="ended", stage="conversation",
                            ended_at=datetime.now(UTC))
    return await store.save_analysis(
        facts.call_id, segments=analysis.timeline.segments, ticket=analysis.ticket,
        qa=analysis.qa, qa_source=analysis.source, history=history,
    )


def _keep_recording(settings: Settings, call_id: str, leg: LegAudio) -> tuple[str, int]:
    """Copy one leg into the recordings folder as ``<call_id>/<leg>.wav``, the name
    Asterisk's recordings get, so the stored path is relative to that folder (as the
    schema says) and the web UI can play the evidence. A stereo call is split."""
    name = f"{call_id}/{leg.leg}.wav"
    dest = settings.recordings / name
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        frames, rate = read_wav(leg.path)
        if frames.shape[1] == 1:
            shutil.copyfile(leg.path, dest)
        else:  # left caller, right agent
            write_wav(dest, frames[:, 0 if leg.leg == "caller" else 1], rate)
        return name, dest.stat().st_size
    except OSError as exc:
        raise AnalyzeInputError(f"{dest}: cannot store the recording ({exc})") from exc
