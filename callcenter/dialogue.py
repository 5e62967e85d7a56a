"""A call's two legs as one dialogue: merging, turns, overlaps and silences.

Pure functions over ``callcenter.core`` types (no I/O). Times are seconds from the
start of the call; both legs of a call share the same clock.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from callcenter.core import LEGS, LegName, Segment, Timeline, Word

_LEG_ORDER = {leg: i for i, leg in enumerate(LEGS)}


@dataclass(slots=True, frozen=True)
class Overlap:
    """Two segments of different legs sounding at once.

    ``earlier`` was speaking first; ``later`` started while it was still speaking
    (an interruption when ``later.leg`` is the agent and the overlap is long).
    """

    earlier: Segment
    later: Segment
    start: float
    end: float

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def interrupter(self) -> LegName:
        return self.later.leg


@dataclass(slots=True, frozen=True)
class Gap:
    """A stretch where nobody (or one leg, when asked per leg) is speaking.

    ``before`` is the segment that ended last before the gap (None at the start of
    the call), ``after`` the one that starts the next speech (None at the end).
    """

    start: float
    end: float
    before: Segment | None
    after: Segment | None

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def is_text_char(ch: str) -> bool:
    """True for characters that are spoken: not whitespace, punctuation or symbols."""
    return not ch.isspace() and unicodedata.category(ch)[0] not in "PSZ"


def plain_text(text: str) -> str:
    """Text without whitespace and punctuation, as the recognizer writes it."""
    return "".join(ch for ch in text if is_text_char(ch))


def _sort_key(seg: Segment) -> tuple[float, int, float]:
    return (seg.start, _LEG_ORDER.get(seg.leg, len(LEGS)), seg.end)


def build_timeline(
    caller: Iterable[Segment], agent: Iterable[Segment], duration: float
) -> Timeline:
    """Both legs merged by start time (caller first on ties).

    ``duration`` is the call length; it is raised to the last segment end if shorter.
    """
    segments = sorted([*caller, *agent], key=_sort_key)
    end = max((s.end for s in segments), default=0.0)
    return Timeline(segments=segments, duration=max(float(duration), end))


def spread_words(text: str, start: float, end: float) -> list[Word]:
    """One Word per spoken character, the span shared out evenly (conf 1.0).

    Punctuation and spaces get no Word (the recognizer never outputs them).
    """
    chars = [ch for ch in text if is_text_char(ch)]
    if not chars:
        return []
    step = max(0.0, end - start) / len(chars)
    return [
        Word(w=ch, start=round(start + i * step, 3), end=round(start + (i + 1) * step, 3))
        for i, ch in enumerate(chars)
    ]


def timeline_from_meta(meta: Mapping[str, Any]) -> Timeline:
    """The ground-truth timeline of a scenario ``meta.json`` (text mode).

    Each turn becomes one Segment with the turn's text (punctuation kept) and one
    Word per spoken character, so evidence can always point to a time.
    """
    segments: list[Segment] = []
    for i, turn in enumerate(meta.get("timeline") or []):
        leg = turn.get("who")
        if leg not in LEGS:
            raise ValueError(f"timeline turn {i}: unknown speaker {leg!r}")
        start, end = float(turn["start"]), float(turn["end"])
        if end < start:
            raise ValueError(f"timeline turn {i}: end {end} before start {start}")
        text = str(turn.get("text", ""))
        segments.append(
            Segment(
                leg=cast(LegName, leg),
                start=start,
                end=end,
                text=text,
                words=spread_words(text, start, end),
            )
        )
    caller = [s for s in segments if s.leg == "caller"]
    agent = [s for s in segments if s.leg == "agent"]
    return build_timeline(caller, agent, float(meta.get("duration_s") or 0.0))


def overlaps(timeline: Timeline, min_overlap_s: float = 0.0) -> list[Overlap]:
    """Every pair of segments of different legs that overlap, in time order."""
    found: list[Overlap] = []
    segs = sorted(timeline.segments, key=_sort_key)
    for i, a in enumerate(segs):
        for b in segs[i + 1 :]:
            if b.start >= a.end:
                break
            if b.leg == a.leg:
                continue
            start, end = b.start, min(a.end, b.end)
            if end > start and end - start >= min_overlap_s:
                found.append(Overlap(earlier=a, later=b, start=start, end=end))
    found.sort(key=lambda o: (o.start, o.end))
    return found


def merge_turns(timeline: Timeline, max_gap_s: float | None = None) -> list[Segment]:
    """Speaker turns: consecutive segments of one leg merged until the other leg speaks.

    A segment of the other leg that starts inside the current turn (a backchannel,
    an interruption) also ends it. With ``max_gap_s``, a pause longer than that
    inside one leg's speech starts a new turn too.
    """
    turns: list[Segment] = []
    for seg in sorted(timeline.segments, key=_sort_key):
        last = turns[-1] if turns else None
        if (
            last is not None
            and last.leg == seg.leg
            and (max_gap_s is None or seg.start - last.end <= max_gap_s)
        ):
            turns[-1] = Segment(
                leg=last.leg,
                start=last.start,
                end=max(last.end, seg.end),
                text=last.text + seg.text,
                words=[*last.words, *seg.words],
            )
        else:
            turns.append(Segment(seg.leg, seg.start, seg.end, seg.text, list(seg.words)))
    return turns


def turn_boundaries(timeline: Timeline) -> list[tuple[LegName, float, float]]:
    """(leg, start, end) of every speaker turn (see merge_turns)."""
    return [(t.leg, t.start, t.end) for t in merge_turns(timeline)]


def speech_intervals(timeline: Timeline, leg: LegName | None = None) -> list[tuple[float, float]]:
    """Sorted, merged (start, end) spans where ``leg`` (or either leg, if None) speaks."""
    spans = sorted((s.start, s.end) for s in timeline.segments if leg is None or s.leg == leg)
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def silence_gaps(
    timeline: Timeline,
    leg: LegName | None = None,
    *,
    min_gap_s: float = 0.0,
    include_edges: bool = False,
) -> list[Gap]:
    """Stretches of at least ``min_gap_s`` with no speech on ``leg`` (None: on both legs).

    With ``include_edges`` the silence before the first and after the last segment
    (up to ``timeline.duration``) are included, with ``before``/``after`` None.
    """
    segs = sorted((s for s in timeline.segments if leg is None or s.leg == leg), key=_sort_key)
    gaps: list[Gap] = []
    if not segs:
        if include_edges and timeline.duration >= min_gap_s and timeline.duration > 0:
            gaps.append(Gap(0.0, timeline.duration, None, None))
        return gaps
    if include_edges and segs[0].start > 0 and segs[0].start >= min_gap_s:
        gaps.append(Gap(0.0, segs[0].start, None, segs[0]))
    last = segs[0]
    for seg in segs[1:]:
        if seg.start > last.end and seg.start - last.end >= min_gap_s:
            gaps.append(Gap(last.end, seg.start, last, seg))
        if seg.end > last.end:
            last = seg
    if include_edges and timeline.duration > last.end:
        if timeline.duration - last.end >= min_gap_s:
            gaps.append(Gap(last.end, timeline.duration, last, None))
    return gaps


def talk_time(timeline: Timeline, leg: LegName) -> float:
    """Sum of the spans of ``leg``'s segments (pauses inside a segment count as talk)."""
    return sum(s.duration for s in timeline.by_leg(leg))


def words_between(
    timeline: Timeline, start: float, end: float, leg: LegName | None = None
) -> list[tuple[LegName, Word]]:
    """(leg, word) for every word that overlaps [start, end), in time order."""
    found = [
        (s.leg, w)
        for s in timeline.segments
        if leg is None or s.leg == leg
        for w in s.words
        if w.end > start and w.start < end
    ]
    found.sort(key=lambda lw: lw[1].start)
    return found
