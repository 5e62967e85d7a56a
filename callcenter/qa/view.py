"""What the QA call page draws, computed without I/O: the transcript with the
violating words marked, and the timeline of both legs with the violations on it.

Evidence texts are the rule engine's characters without punctuation; transcript
lines keep theirs, so a piece of evidence is found in its line through the
line's characters with punctuation skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.qa.engine import PUNCTUATION

DETAILS_ZH = Path(__file__).with_name("details_zh.yaml")
_PLACEHOLDER = re.compile(r"\{(\*?)(\w+)\}")

# A rule's evidence is drawn as a violation when the rule's final verdict fails,
# or when it waits for a person.
_SLACK_S = 0.05


@dataclass(slots=True)
class Piece:
    text: str
    rules: list[str] = field(default_factory=list)  # the rules whose evidence this is


@dataclass(slots=True)
class Line:
    leg: str
    start: float
    end: float
    pieces: list[Piece]

    @property
    def flagged(self) -> bool:
        return any(p.rules for p in self.pieces)


def flagged_rules(rules: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules to point out: failing in their final verdict, or waiting for review."""
    return [r for r in rules if r.get("final") is False or
            (r.get("needs_review") and r.get("human") is None)]


def marked_transcript(transcript: Sequence[dict[str, Any]],
                      rules: Sequence[dict[str, Any]]) -> list[Line]:
    flagged = flagged_rules(rules)
    lines = []
    for seg in transcript:
        marks: list[set[str]] = [set() for _ in seg["text"]]
        for rule in flagged:
            for ev in rule.get("evidence") or []:
                if ev.get("leg") == seg["leg"] and _overlaps(ev, seg):
                    _mark(seg["text"], str(ev.get("text") or ""), rule["id"], marks)
        lines.append(Line(seg["leg"], seg["start"], seg["end"], _pieces(seg["text"], marks)))
    return lines


def _overlaps(ev: dict[str, Any], seg: dict[str, Any]) -> bool:
    return (float(ev["start"]) <= float(seg["end"]) + _SLACK_S
            and float(ev["end"]) >= float(seg["start"]) - _SLACK_S)


def _mark(text: str, wanted: str, rule_id: str, marks: list[set[str]]) -> None:
    """Mark the characters of ``text`` that spell ``wanted`` (punctuation of
    ``text`` skipped); nothing when the words are not in this line."""
    positions = [i for i, ch in enumerate(text) if ch not in PUNCTUATION]
    letters = "".join(text[i] for i in positions)
    target = "".join(ch for ch in wanted if ch not in PUNCTUATION)
    if not target:
        return
    at = letters.find(target)
    while at >= 0:
        for k in range(at, at + len(target)):
            marks[positions[k]].add(rule_id)
        at = letters.find(target, at + len(target))


def _pieces(text: str, marks: list[set[str]]) -> list[Piece]:
    pieces: list[Piece] = []
    for ch, rules in zip(text, marks, strict=True):
        key = sorted(rules)
        if pieces and pieces[-1].rules == key:
            pieces[-1].text += ch
        else:
            pieces.append(Piece(ch, key))
    return pieces


@dataclass(frozen=True, slots=True)
class Span:
    leg: str
    left: float  # percent of the call
    width: float
    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Marker:
    rule_id: str
    leg: str
    left: float
    start: float
    end: float
    text: str
    review: bool  # waiting for a person rather than failed


def timeline(transcript: Sequence[dict[str, Any]], rules: Sequence[dict[str, Any]],
             duration: float) -> tuple[list[Span], list[Marker]]:
    """Both legs' speech as spans, and each violation's evidence as a marker, placed
    in percent of the call's length."""
    length = max([duration, *(float(s["end"]) for s in transcript)], default=0.0) or 1.0

    def pct(t: float) -> float:
        return round(100.0 * max(0.0, min(t, length)) / length, 3)

    spans = [Span(s["leg"], pct(s["start"]), max(0.2, pct(s["end"]) - pct(s["start"])),
                  s["start"], s["end"], s["text"]) for s in transcript]
    markers = [Marker(r["id"], str(ev.get("leg") or "agent"), pct(float(ev["start"])),
                      float(ev["start"]), float(ev["end"]), str(ev.get("text") or ""),
                      r.get("final") is not False)
               for r in flagged_rules(rules) for ev in (r.get("evidence") or [])]
    return spans, markers


# ---- the checks' details in Chinese ------------------------------------------------


@lru_cache(maxsize=1)
def _catalogue() -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
    """English templates as patterns, most specific first, with their zh-CN text
    and the placeholders whose values are translated too."""
    entries = []
    data = yaml.safe_load(DETAILS_ZH.read_text(encoding="utf-8"))
    for template, chinese in data.items():
        pieces, nested, last = [], set(), 0
        for m in _PLACEHOLDER.finditer(template):
            pieces.append(re.escape(template[last:m.start()]))
            pieces.append(f"(?P<{m.group(2)}>.+?)")
            if m.group(1):
                nested.add(m.group(2))
            last = m.end()
        pieces.append(re.escape(template[last:]))
        entries.append((re.compile("^" + "".join(pieces) + "$"), str(chinese),
                        frozenset(nested)))
    return sorted(entries, key=lambda e: -len(e[0].pattern))


def formatters(t: Callable[..., str], language: str) -> dict[str, Callable[..., str]]:
    """How the pages name QA rules and word a check's detail, for their templates."""
    return {
        "rule_name": lambda rule_id: t(f"qa.rule.{rule_id}"),
        "rule_names": lambda ids: "、".join(t(f"qa.rule.{r}") for r in ids),
        "detail": lambda text: translate_detail(text or "", language),
    }


def translate_detail(detail: str, language: str) -> str:
    """A check's detail as the page's language reads it (English as written)."""
    if language != "zh-CN" or not detail:
        return detail
    return "；".join(_translate_part(part) for part in detail.split("; "))


def _translate_part(part: str) -> str:
    for pattern, chinese, nested in _catalogue():
        m = pattern.match(part)
        if m:
            values = {k: "、".join(_translate_part(x) for x in v.split(", ")) if k in nested
                      else v for k, v in m.groupdict().items()}
            return chinese.format(**values)
    return part
