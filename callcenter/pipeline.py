"""From a finished call to transcript, ticket and QA result.

The worker and ``callcenter analyze`` run exactly these functions in this
order; ``analyze`` only feeds them from files instead of the database.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callcenter import pii
from callcenter.asr.model import cached_vocabulary
from callcenter.asr.numbers import (
    ADDRESS_SHIFTS_S,
    Cues,
    address_windows,
    name_windows,
    number_windows,
)
from callcenter.audio import AudioError, read_mono, read_stereo_legs, speech_level
from callcenter.core import CallFacts, QaResult, Segment, Ticket, Timeline
from callcenter.dialogue import build_timeline, timeline_from_meta
from callcenter.ivr.menu import EMERGENCY, default_menu
from callcenter.qa.engine import score
from callcenter.tickets.classifier import PriorTicket, classify

if TYPE_CHECKING:
    from callcenter.settings import Settings

log = logging.getLogger("callcenter.pipeline")


@dataclass(slots=True)
class LegAudio:
    leg: str
    path: str
    duration_s: float
    sample_rate: int
    size_bytes: int
    speech_dbfs: float | None = None  # audio.speech_level
    snr_db: float | None = None


@dataclass(slots=True)
class Analysis:
    timeline: Timeline
    ticket: Ticket | None
    qa: QaResult | None
    source: str  # "asr" (recognised speech) or "text" (a ground-truth timeline)
    legs: dict[str, LegAudio] = field(default_factory=dict)


class Transcribing:
    """Lazily loaded Vosk transcriber, one per process (loading costs ~1 s).

    It transcribes like the real one, loading the model on first use, so a call
    whose audio is unreadable fails on its audio before any model is loaded."""

    def __init__(self, model_path: Path, *, settings: Settings | None = None) -> None:
        self.model_path = model_path
        self.settings = settings
        self._transcriber: Any = None

    def get(self) -> Any:
        if self._transcriber is None:
            from callcenter.asr.decoder import Transcriber

            self._transcriber = Transcriber(
                self.model_path, settings=self.settings,
                use_vad=bool(self.settings and self.settings.asr_skip_silence),
            )
        return self._transcriber

    def transcribe(self, samples: Any, rate: int, leg: str) -> list[Segment]:
        return list(self.get().transcribe(samples, rate, leg))

    def numbers(self, samples: Any, rate: int, leg: str, segments: list[Segment]
                ) -> list[Segment]:
        """``Transcriber.numbers``; nothing is loaded when no number was given."""
        if not number_windows(segments, leg, len(samples) / rate):
            return []
        return list(self.get().numbers(samples, rate, leg, segments))

    def addresses(self, samples: Any, rate: int, leg: str, segments: list[Segment],
                  cues: Cues, shift_s: float = 0.0) -> list[Segment]:
        """``Transcriber.addresses``; nothing is loaded when no address was given."""
        if not address_windows(segments, leg, len(samples) / rate, cues):
            return []
        return list(self.get().addresses(samples, rate, leg, segments, cues, shift_s))

    def names(self, samples: Any, rate: int, leg: str, segments: list[Segment],
              cues: Cues) -> list[Segment]:
        """``Transcriber.names``; nothing is loaded when no name was given."""
        if not name_windows(segments, leg, len(samples) / rate, cues):
            return []
        return list(self.get().names(samples, rate, leg, segments, cues))


@functools.cache
def number_cues() -> Cues:
    """What marks an address, from the ticket terms (``tickets/terms.yaml``): the
    building and unit markers with their homophones, and 室 (the other room
    markers, 号/是/市, are everyday words: nearly every segment would be decoded
    twice); the agent's address questions; for the name pass, the agent's name
    questions and the surname list."""
    from callcenter.tickets.classifier import load_terms

    terms = load_terms()
    address = terms.address
    return Cues(
        address_words=(*address.building_markers, *address.building_homophones,
                       *address.unit_markers, "室"),
        address_questions=tuple(address.question_markers),
        name_questions=tuple(terms.names.question_markers),
        surnames=tuple(terms.names.surnames),
        surname_readings=tuple(terms.names.surname_readings),
    )


@functools.lru_cache(maxsize=256)
def spelt_building_name(name: str, model_path: Path) -> str | None:
    """A building name as words of the model's vocabulary, separated by spaces (a
    Vosk grammar phrase), or None when the model has no words for it (it is then
    read from the first pass only)."""
    from callcenter.ivr.grammars import GrammarError, segment
    from callcenter.tickets.address import said_name

    try:
        return " ".join(segment(said_name(name), cached_vocabulary(Path(model_path))))
    except GrammarError:
        log.warning("building name %r is not in the speech model's words: "
                    "the address pass cannot hear it", name)
        return None


def building_cues(buildings: Sequence[str], model_path: Path) -> Cues:
    """``number_cues()`` with the estate's building names (the residents directory's
    buildings that are not plain numbers), spelt for the address grammar."""
    spelt = tuple(p for p in (spelt_building_name(b, model_path) for b in buildings) if p)
    return replace(number_cues(), building_names=spelt)


def with_numbers(timeline: Timeline, audio: Mapping[str, tuple[Any, int]], transcriber: Any,
                 buildings: Sequence[str] = ()) -> Timeline:
    """``timeline`` with the second pass's readings (``Timeline.numbers`` and
    ``.addresses``) of each leg in ``audio`` (leg -> samples, rate), the address
    cued by the ticket terms and the estate's ``buildings``."""
    cues = building_cues(buildings, transcriber.model_path) if buildings else number_cues()
    variants: list[list[Segment]] = [[] for _ in ADDRESS_SHIFTS_S]
    for leg, (samples, rate) in audio.items():
        timeline.numbers += transcriber.numbers(samples, rate, leg, timeline.segments)
        heard = transcriber.addresses(samples, rate, leg, timeline.segments, cues)
        timeline.addresses += heard
        if heard:  # read again, the windows shifted, only where an address was heard
            for reading, shift in zip(variants, ADDRESS_SHIFTS_S, strict=True):
                reading += transcriber.addresses(samples, rate, leg, timeline.segments,
                                                 cues, shift)
        timeline.names += transcriber.names(samples, rate, leg, timeline.segments, cues)
    timeline.address_variants = [reading for reading in variants if reading]
    return timeline


def transcribe_two_legs(
    caller_path: Path, agent_path: Path, transcriber: Any
) -> tuple[Timeline, dict[str, LegAudio]]:
    """Both legs are read (and validated) before either is transcribed."""
    audio = {leg: (path, *read_mono(path)) for leg, path in
             (("caller", caller_path), ("agent", agent_path))}
    legs = {leg: _leg_audio(leg, path, samples, rate)
            for leg, (path, samples, rate) in audio.items()}
    segments = {leg: transcriber.transcribe(samples, rate, leg)
                for leg, (_path, samples, rate) in audio.items()}
    duration = max(leg.duration_s for leg in legs.values())
    timeline = build_timeline(segments["caller"], segments["agent"], duration)
    return with_numbers(timeline, {leg: (x, r) for leg, (_p, x, r) in audio.items()},
                        transcriber), legs


@dataclass(slots=True)
class RecordedLegs:
    """What the worker gets from a call's recordings."""

    timeline: Timeline  # with the second pass's readings
    legs: dict[str, LegAudio]
    problems: dict[str, str]  # leg -> why its recording could not be used


def transcribe_recorded_legs(paths: dict[str, Path], transcriber: Any,
                             buildings: Sequence[str] = ()) -> RecordedLegs:
    """The worker's variant: a leg whose file is missing or corrupt is reported in
    ``problems`` instead of failing the call, so the rest is still analysed.
    ``buildings``: the estate's building names, for the address pass."""
    audio: dict[str, tuple[Path, Any, int]] = {}
    problems: dict[str, str] = {}
    for leg, path in paths.items():
        try:
            audio[leg] = (path, *read_mono(path))
        except AudioError as exc:
            problems[leg] = str(exc)
    legs = {leg: _leg_audio(leg, path, samples, rate)
            for leg, (path, samples, rate) in audio.items()}
    segments = {leg: transcriber.transcribe(samples, rate, leg)
                for leg, (_path, samples, rate) in audio.items()}
    duration = max((leg.duration_s for leg in legs.values()), default=0.0)
    timeline = build_timeline(segments.get("caller", []), segments.get("agent", []), duration)
    with_numbers(timeline, {leg: (x, r) for leg, (_p, x, r) in audio.items()}, transcriber,
                 buildings)
    return RecordedLegs(timeline, legs, problems)


def transcribe_stereo(path: Path, transcriber: Any) -> tuple[Timeline, dict[str, LegAudio]]:
    left, right, rate = read_stereo_legs(path)
    legs = {
        "caller": _leg_audio("caller", path, left, rate),
        "agent": _leg_audio("agent", path, right, rate),
    }
    caller = transcriber.transcribe(left, rate, "caller")
    agent = transcriber.transcribe(right, rate, "agent")
    timeline = build_timeline(caller, agent, len(left) / rate)
    return with_numbers(timeline, {"caller": (left, rate), "agent": (right, rate)},
                        transcriber), legs


def timeline_from_file_meta(meta: dict[str, Any]) -> tuple[Timeline, CallFacts]:
    """A ground-truth timeline plus the facts an evaluation may hand us (no labels)."""
    facts = CallFacts(
        call_id=str(meta.get("id") or "") or None,
        caller_number=str((meta.get("caller") or {}).get("phone") or ""),
        ivr_digits=str(meta.get("ivr_digits") or ""),
    )
    return timeline_from_meta(meta), facts


def call_facts(call: Mapping[str, Any]) -> CallFacts:
    """What a stored call row gives the analysis besides speech."""
    # Rings are counted from the offer to the agent who answered, not from queue entry.
    answered_after = None
    offered_at = call.get("ringing_at") or call.get("queued_at")
    if call.get("answered_at") and offered_at:
        answered_after = max(0.0, (call["answered_at"] - offered_at).total_seconds())
    return CallFacts(
        call_id=call["id"], caller_number=call["caller_number"] or "",
        ivr_digits=_ivr_keys(call), started_at=call["started_at"],
        answered_after_s=answered_after, hangup_by=call.get("hangup_by"),
        caller_speech_dbfs=call.get("caller_speech_dbfs"), caller_snr_db=call.get("caller_snr_db"),
    )


def _ivr_keys(call: Mapping[str, Any]) -> str:
    """The IVR keys; an emergency the caller named aloud counts as its key sequence,
    so the ticket sees the same safety choice either way."""
    keys = str(call.get("ivr_digits") or "")
    if not keys and call.get("ivr_intent") in (*default_menu().emergencies, EMERGENCY):
        return min(default_menu().safety_key_paths())
    return keys


def prior_ticket(row: dict[str, Any]) -> PriorTicket:
    """An earlier ticket of the same caller (a database row) as the classifier sees it."""
    return PriorTicket(
        category=row["category"], description=row["description"], created_at=row["created_at"],
        phone=row.get("phone") or "",
    )


def analyze(
    timeline: Timeline, facts: CallFacts, *, source: str, now: datetime | None = None,
    prior_tickets: list[PriorTicket] | tuple[PriorTicket, ...] = (),
    description: list[Segment] | tuple[Segment, ...] = (),
) -> tuple[Ticket | None, QaResult | None]:
    """Ticket and QA result for one call. No agent speech means no QA result;
    a call that never reached an agent still gets a call-back ticket.

    ``description``: what the caller said after the IVR's tone (times from the
    start of that recording). The ticket reads it before the conversation; QA
    never does (the agent was not there)."""
    now = now or datetime.now(UTC)
    ticket = classify(with_description(timeline, description), facts, now=now,
                      prior_tickets=prior_tickets)
    has_agent = any(s.leg == "agent" for s in timeline.segments)
    if not has_agent:
        ticket.callback_required = True
    qa = score(timeline, facts, source=source, category=ticket.category) if has_agent else None
    return ticket, qa


def with_description(
    timeline: Timeline, description: list[Segment] | tuple[Segment, ...]
) -> Timeline:
    """The description's segments moved before the conversation (negative times)."""
    if not description:
        return timeline
    shift = max(s.end for s in description) + 1.0
    moved = [Segment(leg="caller", start=s.start - shift, end=s.end - shift, text=s.text,
                     words=s.words) for s in description]
    return Timeline(segments=[*moved, *timeline.segments], duration=timeline.duration)


@dataclass(slots=True)
class Description:
    """What the caller said after the IVR's tone, and the personal numbers in it."""

    segments: list[Segment] = field(default_factory=list)
    numbers: list[pii.Finding] = field(default_factory=list)

    def masked(self) -> tuple[str, list[pii.MaskedRun]]:
        """Its text with the personal numbers masked, and the stretches masking
        changed (to mask the ticket's quotes of it the same way)."""
        masked, runs = pii.redacted_with_runs(self.segments, self.numbers)
        return pii.mask_text("".join(s.text for s in masked))[0], runs


def transcribe_description(path: Path, transcriber: Any) -> Description:
    """The IVR's problem description, with the digit pass over it (a number said
    there is written as homophones as anywhere); unreadable audio is none."""
    try:
        samples, rate = read_mono(path)
    except AudioError as exc:
        log.warning("problem description %s unreadable: %s", path, exc)
        return Description()
    segments = list(transcriber.transcribe(samples, rate, "caller"))
    digits = transcriber.numbers(samples, rate, "caller", segments)
    return Description(segments, pii.number_findings(digits, segments))


def analysis_document(call: dict[str, Any], analysis: Analysis) -> dict[str, Any]:
    """The JSON document printed by ``callcenter analyze`` and served by the API."""
    return {
        "call": call,
        "transcript": [
            {
                "leg": s.leg,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "words": [
                    {"w": w.w, "start": round(w.start, 3), "end": round(w.end, 3),
                     "conf": round(w.conf, 3)}
                    for w in s.words
                ],
            }
            for s in analysis.timeline.segments
        ],
        "ticket": analysis.ticket.to_json() if analysis.ticket else None,
        "qa": analysis.qa.to_json() if analysis.qa else None,
    }


def _leg_audio(leg: str, path: Path, samples: Any, rate: int) -> LegAudio:
    level = speech_level(samples, rate)
    return LegAudio(
        leg=leg, path=str(path), duration_s=round(len(samples) / rate, 3), sample_rate=rate,
        size_bytes=path.stat().st_size, speech_dbfs=level[0] if level else None,
        snr_db=level[1] if level else None,
    )


def with_acoustics(facts: CallFacts, legs: Mapping[str, LegAudio]) -> CallFacts:
    """The facts with the caller leg's measured level and signal-to-noise ratio."""
    caller = legs.get("caller")
    if caller is not None:
        facts.caller_speech_dbfs, facts.caller_snr_db = caller.speech_dbfs, caller.snr_db
    return facts
