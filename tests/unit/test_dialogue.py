"""Merging legs into a timeline, ground-truth timelines, overlaps, turns and gaps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callcenter.core import Segment, Timeline
from callcenter.dialogue import (
    build_timeline,
    merge_turns,
    overlaps,
    plain_text,
    silence_gaps,
    speech_intervals,
    spread_words,
    talk_time,
    timeline_from_meta,
    turn_boundaries,
    words_between,
)
from callcenter.settings import SHARED_DIR


def seg(leg: Any, start: float, end: float, text: str = "x") -> Segment:
    return Segment(leg=leg, start=start, end=end, text=text)


META: dict[str, Any] = {
    "id": "t001",
    "duration_s": 20.0,
    "timeline": [
        {"who": "agent", "start": 0.5, "end": 3.5, "text": "您好，请问？"},
        {"who": "caller", "start": 4.0, "end": 8.0, "text": "我家漏水了。"},
        {"who": "agent", "start": 7.0, "end": 9.0, "text": "好的"},
        {"who": "agent", "start": 9.5, "end": 10.0, "text": "请稍等"},
        {"who": "caller", "start": 13.0, "end": 14.0, "text": "嗯"},
    ],
}


def test_build_timeline_orders_by_start() -> None:
    caller = [seg("caller", 2.0, 3.0, "b"), seg("caller", 6.0, 7.0, "d")]
    agent = [seg("agent", 0.0, 1.5, "a"), seg("agent", 4.0, 5.0, "c"), seg("agent", 6.0, 6.5, "e")]
    tl = build_timeline(caller, agent, 10.0)
    assert [s.text for s in tl.segments] == ["a", "b", "c", "d", "e"]  # caller first on ties
    assert tl.duration == 10.0
    assert tl.text_of("agent") == "ace"
    assert build_timeline(caller, [], 5.0).duration == 7.0  # raised to the last end
    assert build_timeline([], [], 3.0).segments == []


def test_spread_words_even_and_skips_punctuation() -> None:
    words = spread_words("您好，物业。", 1.0, 3.0)
    assert [w.w for w in words] == ["您", "好", "物", "业"]
    assert words[0].start == 1.0 and words[-1].end == 3.0
    assert all(w.end - w.start == pytest.approx(0.5) for w in words)
    assert all(w.conf == 1.0 for w in words)
    assert spread_words("。", 0, 1) == []
    assert plain_text("您好， 物业？OK") == "您好物业OK"


def test_timeline_from_meta() -> None:
    tl = timeline_from_meta(META)
    assert tl.duration == 20.0
    assert [s.leg for s in tl.segments] == ["agent", "caller", "agent", "agent", "caller"]
    first = tl.segments[0]
    assert first.text == "您好，请问？"
    assert "".join(w.w for w in first.words) == "您好请问"
    assert first.words[0].start == 0.5 and first.words[-1].end == 3.5


def test_timeline_from_meta_rejects_bad_turns() -> None:
    with pytest.raises(ValueError, match="unknown speaker"):
        timeline_from_meta({"timeline": [{"who": "bot", "start": 0, "end": 1, "text": "x"}]})
    with pytest.raises(ValueError, match="before start"):
        timeline_from_meta({"timeline": [{"who": "agent", "start": 2, "end": 1, "text": "x"}]})


def test_timeline_from_real_meta() -> None:
    path = SHARED_DIR / "scenarios" / "dev" / "d007" / "meta.json"
    if not path.is_file():
        pytest.skip("shared scenarios not available")
    meta = json.loads(path.read_text(encoding="utf-8"))
    tl = timeline_from_meta(meta)
    assert len(tl.segments) == len(meta["timeline"])
    assert tl.segments[0].text.startswith("您好")
    for s in tl.segments:
        assert s.words and s.start <= s.words[0].start and s.words[-1].end <= s.end + 1e-6


def test_overlaps() -> None:
    tl = timeline_from_meta(META)
    found = overlaps(tl)
    assert len(found) == 1
    o = found[0]
    assert o.earlier.leg == "caller" and o.later.leg == "agent" and o.interrupter == "agent"
    assert (o.start, o.end, o.duration) == (7.0, 8.0, 1.0)
    assert overlaps(tl, min_overlap_s=1.5) == []
    # touching segments do not overlap; a segment inside another does
    tl2 = Timeline([seg("agent", 0, 1), seg("caller", 1, 2), seg("agent", 1.2, 1.4)], 3)
    (inner,) = overlaps(tl2)
    assert (inner.start, inner.end) == (1.2, 1.4)


def test_merge_turns_and_boundaries() -> None:
    tl = timeline_from_meta(META)
    turns = merge_turns(tl)
    assert [(t.leg, t.start, t.end) for t in turns] == [
        ("agent", 0.5, 3.5),
        ("caller", 4.0, 8.0),
        ("agent", 7.0, 10.0),
        ("caller", 13.0, 14.0),
    ]
    assert turns[2].text == "好的请稍等"
    assert len(turns[2].words) == 5
    assert turn_boundaries(tl)[2] == ("agent", 7.0, 10.0)
    assert len(merge_turns(tl, max_gap_s=0.2)) == 5
    assert len(tl.segments) == 5  # input untouched
    assert tl.segments[2].text == "好的"


def test_silence_gaps_both_legs_and_per_leg() -> None:
    tl = timeline_from_meta(META)
    both = silence_gaps(tl)
    assert [(g.start, g.end) for g in both] == [(3.5, 4.0), (9.0, 9.5), (10.0, 13.0)]
    hold = silence_gaps(tl, min_gap_s=2.0)
    assert len(hold) == 1 and hold[0].before is not None and hold[0].before.text == "请稍等"
    assert hold[0].after is not None and hold[0].after.leg == "caller"
    edges = silence_gaps(tl, include_edges=True)
    assert (edges[0].start, edges[0].end, edges[0].before) == (0.0, 0.5, None)
    assert (edges[-1].start, edges[-1].end, edges[-1].after) == (14.0, 20.0, None)
    agent = silence_gaps(tl, "agent")
    assert [(g.start, g.end) for g in agent] == [(3.5, 7.0), (9.0, 9.5)]
    empty = Timeline([], 5.0)
    assert silence_gaps(empty) == []
    assert [(g.start, g.end) for g in silence_gaps(empty, include_edges=True)] == [(0.0, 5.0)]


def test_speech_intervals_talk_time_and_words() -> None:
    tl = timeline_from_meta(META)
    assert speech_intervals(tl) == [(0.5, 3.5), (4.0, 9.0), (9.5, 10.0), (13.0, 14.0)]
    assert speech_intervals(tl, "agent") == [(0.5, 3.5), (7.0, 9.0), (9.5, 10.0)]
    assert talk_time(tl, "agent") == pytest.approx(5.5)
    found = words_between(tl, 7.5, 8.5)
    assert {leg for leg, _ in found} == {"agent", "caller"}
    assert [w.start for _, w in found] == sorted(w.start for _, w in found)
    assert [w.w for _, w in words_between(tl, 0.0, 1.3, "agent")] == ["您", "好"]
