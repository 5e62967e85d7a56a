"""The project's own labelled QA calls (tests/data/qa/*.yaml, written from the rule
definitions without the dev calls): well-formed, and the text-mode checks agree
with their labels (per rule and file, measured when written; the floors leave
room for one or two calls, not for a wording family to go missing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from callcenter.core import CATEGORIES, CallFacts, Segment, Timeline, Word
from callcenter.qa.engine import SPEC_RULE_IDS, score

DATA = Path(__file__).resolve().parents[1] / "data" / "qa"
FILES = sorted(DATA.glob("*.yaml"))
LABELLED = [r for r in SPEC_RULE_IDS if r not in ("speech_rate", "dead_air", "answer_speed",
                                                  "hangup_order")]


def _calls(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text(encoding="utf-8")))


def _timeline(turns: list[list[Any]]) -> Timeline:
    segments = []
    for who, start, end, text in turns:
        chars = [c for c in text if c.strip() and c not in "，。！？、；：,.!?;:…“”\"'（）()"]
        step = (end - start) / max(1, len(chars))
        words = [Word(c, start + i * step, start + (i + 1) * step) for i, c in enumerate(chars)]
        segments.append(Segment(who, float(start), float(end), text, words))
    return Timeline(segments, max(s.end for s in segments))


def test_the_own_calls_are_well_formed() -> None:
    assert FILES, f"no labelled calls in {DATA}"
    ids: set[str] = set()
    for path in FILES:
        for call in _calls(path):
            assert call["id"] not in ids, call["id"]
            ids.add(call["id"])
            assert call["category"] in CATEGORIES, call["id"]
            fail, passed = set(call["qa_fail"]), set(call["qa_pass"])
            assert not fail & passed and fail | passed <= set(LABELLED), call["id"]
            starts = [t[1] for t in call["turns"]]
            assert starts == sorted(starts), call["id"]
            assert all(t[0] in ("agent", "caller") and t[1] < t[2] for t in call["turns"])


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_text_mode_agrees_with_the_labels(path: Path) -> None:
    agree = dict.fromkeys(LABELLED, 0)
    total = dict.fromkeys(LABELLED, 0)
    for call in _calls(path):
        result = score(_timeline(call["turns"]), CallFacts(call_id=call["id"]), source="text",
                       category=call["category"])
        got = {r.id: r.passed for r in result.rules}
        for rule in LABELLED:
            want = False if rule in call["qa_fail"] else True if rule in call["qa_pass"] else None
            if want is None:
                continue
            total[rule] += 1
            agree[rule] += got[rule] is want
    low = {r: f"{agree[r]}/{total[r]}" for r in LABELLED
           if total[r] and agree[r] / total[r] < 0.95}
    assert not low, low
