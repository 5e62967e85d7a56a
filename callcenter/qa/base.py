"""What every QA check stands on: the rule file (versioned), a leg's words with
their times and confidences, turns, phrase search, and the call as the checks
see it. Pure: no I/O but reading the rule file."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.core import CallFacts, Evidence, RuleResult, Segment, Timeline

RULES_FILE = Path(__file__).with_name("rules.yaml")
# The rules of hotline-standards.md section 4 (their ids are the contract), then
# the checks this product adds (qa/conduct.py; their ids are ours, as stable).
SPEC_RULE_IDS = (
    "greeting", "self_identification", "closing", "forbidden_phrase", "polite_address",
    "filler_words", "speech_rate", "interruption", "confirmation", "hold_etiquette",
    "dead_air", "hangup_order", "polite_vocabulary", "answer_speed",
)  # fmt: skip
EXTRA_RULE_IDS = (
    "surname_address", "response_commitment", "talk_share", "longest_monologue",
    "silent_line_script", "quiet_line_script", "noisy_line_script", "dialect_script",
)  # fmt: skip
RULE_IDS = SPEC_RULE_IDS + EXTRA_RULE_IDS
PUNCTUATION = set("，。！？、；：,.!?;:…—~～“”‘’\"'()（）【】[]《》<>-_ \t\r\n\u3000")


@dataclass(slots=True)
class QaRules:
    """The parsed rule file: per rule its weight and parameters (ASR overrides kept apart)."""

    rules: dict[str, dict[str, Any]]
    backchannels: list[str] = field(default_factory=list)
    asr_min_conf: float = 0.0
    # Recognised speech comes in pause-split pieces: pieces of one leg closer than
    # this (and not separated by the other leg) form one utterance, as a turn would.
    turn_merge_gap_s: dict[str, float] = field(default_factory=dict)
    # Which rule set this is: the file's ``version`` label and a digest of what it
    # says (comments and layout aside), so a changed file is a new version even
    # when nobody bumped the label. Every result records it.
    version: str = ""
    text: str = ""  # the file as written, kept with the results it produced

    def params(self, rule_id: str, source: str) -> dict[str, Any]:
        base = dict(self.rules.get(rule_id, {}))
        overrides = base.pop("asr", None) or {}
        if source == "asr":
            base.update(overrides)
        return base

    def weight(self, rule_id: str) -> float:
        return float(self.rules.get(rule_id, {}).get("weight", 0.0))


def rules_version(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]
    label = str(data.get("version") or "rules")
    return f"{label}+{digest}"


def rules_from_dict(data: dict[str, Any], text: str = "") -> QaRules:
    rules = {str(k): dict(v or {}) for k, v in (data.get("rules") or {}).items()}
    unknown = set(rules) - set(RULE_IDS)
    if unknown:
        raise ValueError(f"unknown QA rule ids: {sorted(unknown)}")
    return QaRules(
        rules=rules,
        backchannels=[str(b) for b in data.get("backchannels", [])],
        asr_min_conf=float(data.get("asr_min_conf", 0.0)),
        turn_merge_gap_s={
            str(k): float(v) for k, v in (data.get("turn_merge_gap_s") or {}).items()
        },
        version=rules_version(data),
        text=text,
    )


class RulesFileError(ValueError):
    """A rule file that cannot be read or breaks the contract."""


@lru_cache(maxsize=4)
def load_rules(path: Path = RULES_FILE) -> QaRules:
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise RulesFileError(f"{path}: not a mapping of rules")
        return rules_from_dict(data, text)
    except (OSError, yaml.YAMLError, ValueError, TypeError) as exc:
        if isinstance(exc, RulesFileError):
            raise
        raise RulesFileError(f"{path}: {exc}") from None


# --- text with times -------------------------------------------------------------


_NO_PUNCTUATION = str.maketrans("", "", "".join(PUNCTUATION))


def clean(text: str) -> str:
    return text.translate(_NO_PUNCTUATION)


@dataclass(slots=True)
class Utterance:
    """One segment's characters (punctuation removed), each with a time and confidence."""

    seg: Segment
    chars: str
    starts: list[float]
    ends: list[float]
    confs: list[float]

    @classmethod
    def of(cls, seg: Segment) -> Utterance:
        chars: list[str] = []
        starts: list[float] = []
        ends: list[float] = []
        confs: list[float] = []
        if seg.words:
            for w in seg.words:
                for ch in clean(w.w):
                    chars.append(ch)
                    starts.append(w.start)
                    ends.append(w.end)
                    confs.append(w.conf)
        else:
            for ch in clean(seg.text):
                chars.append(ch)
                starts.append(seg.start)
                ends.append(seg.end)
                confs.append(1.0)
        return cls(seg, "".join(chars), starts, ends, confs)

    def evidence(self, i: int = 0, j: int | None = None) -> Evidence:
        """Evidence for characters [i, j) (the whole utterance by default)."""
        if not self.chars:
            return Evidence(self.seg.leg, self.seg.start, self.seg.end, self.seg.text)
        j = len(self.chars) if j is None else j
        return Evidence(self.seg.leg, self.starts[i], self.ends[j - 1], self.chars[i:j])

    def min_conf(self, i: int, j: int) -> float:
        return min(self.confs[i:j]) if j > i else 1.0


def merge_turns(segments: Sequence[Segment], max_gap: float) -> list[Segment]:
    """Join consecutive pieces of one leg into turns: the next piece starts within
    ``max_gap`` seconds and the other leg says nothing in between."""
    segs = sorted(segments, key=lambda s: s.start)
    if max_gap <= 0:
        return segs
    out: list[Segment] = []
    last: dict[str, int] = {}  # leg -> index in out of its open turn
    for s in segs:
        i = last.get(s.leg)
        if i is not None:
            prev = out[i]
            other_between = any(o.leg != s.leg and o.start >= prev.start for o in out[i + 1 :])
            if not other_between and s.start - prev.end <= max_gap:
                out[i] = Segment(
                    prev.leg,
                    prev.start,
                    max(prev.end, s.end),
                    prev.text + s.text,
                    list(prev.words) + list(s.words),
                )
                continue
        out.append(s)
        last[s.leg] = len(out) - 1
    return out


def _pattern(term: str) -> re.Pattern[str]:
    if term.startswith("re:"):
        return re.compile(term[3:])
    return re.compile(re.escape(clean(term)))


@lru_cache(maxsize=1024)
def _patterns(terms: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """A term list compiled once, longest term first (a rule file's lists are few)."""
    return tuple((t, _pattern(t)) for t in sorted(terms, key=len, reverse=True))


def find(utt: Utterance, terms: Sequence[str], min_conf: float = 0.0) -> list[tuple[int, int, str]]:
    """Non-overlapping hits (start, end, term) of any term, longest first."""
    hits: list[tuple[int, int, str]] = []
    if not utt.chars:
        return hits
    taken = [False] * len(utt.chars)
    for term, pattern in _patterns(tuple(terms)):
        for m in pattern.finditer(utt.chars):
            i, j = m.start(), m.end()
            if j <= i or any(taken[i:j]) or utt.min_conf(i, j) < min_conf:
                continue
            hits.append((i, j, term))
            for k in range(i, j):
                taken[k] = True
    return sorted(hits)


# --- the engine ---------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    timeline: Timeline
    facts: CallFacts
    rules: QaRules
    source: str
    needs_action: bool
    complaint: bool
    segments: list[Segment]  # merged into turns
    agent: list[Utterance]
    caller: list[Utterance]
    # Results of the rules checked so far (in RULE_IDS order): a rule anchored
    # "after" another finds that rule's hits here.
    results: dict[str, RuleResult] = field(default_factory=dict)

    def p(self, rule_id: str) -> dict[str, Any]:
        return self.rules.params(rule_id, self.source)

    def anchored(self, params: dict[str, Any], utts: Sequence[Utterance]) -> list[Utterance]:
        """The utterances in the part of the call a rule is anchored to: ``within``
        ``first_s`` (from the start) or ``last_s`` (before the end) seconds, or
        ``after`` the first hit of another rule (one checked before it)."""
        within = params.get("within") or {}
        end = self.timeline.duration or max((s.end for s in self.segments), default=0.0)
        out = list(utts)
        if "first_s" in within:
            out = [u for u in out if u.seg.start < float(within["first_s"])]
        if "last_s" in within:
            out = [u for u in out if u.seg.end > end - float(within["last_s"])]
        if "after" in within:
            earlier = self.results.get(str(within["after"]))
            starts = [e.start for e in earlier.evidence] if earlier else []
            # the utterance of the hit itself counts too (what follows it in there)
            out = [u for u in out if starts and u.seg.end > min(starts)]
        return out

    def find(self, params: dict[str, Any], utt: Utterance, terms: Sequence[str],
             min_conf: float = 0.0) -> list[tuple[int, int, str]]:
        """``find`` less the hits inside one of the rule's ``except`` phrases (a
        polite phrase that contains a listed word)."""
        hits = find(utt, terms, min_conf)
        exceptions = params.get("except") or []
        if not hits or not exceptions:
            return hits
        spared = find(utt, exceptions)
        return [h for h in hits if not any(a <= h[0] and h[1] <= b for a, b, _ in spared)]

    def conf(self, params: dict[str, Any]) -> float:
        if self.source != "asr":
            return 0.0
        return float(params.get("min_conf", self.rules.asr_min_conf))

    def is_backchannel(self, utt: Utterance) -> bool:
        rest = utt.chars
        tokens = sorted(self.rules.backchannels, key=len, reverse=True)
        while rest:
            tok = next((t for t in tokens if rest.startswith(t)), None)
            if tok is None:
                return False
            rest = rest[len(tok) :]
        return True

    def real_agent(self) -> list[Utterance]:
        return [u for u in self.agent if u.chars and not self.is_backchannel(u)]


def result(
    rule_id: str, passed: bool | None, ev: list[Evidence], detail: str, *,
    needs_review: bool = False,
) -> RuleResult:
    return RuleResult(id=rule_id, passed=passed, evidence=ev, detail=detail,
                      needs_review=needs_review)


def coaching(params: dict[str, Any], r: RuleResult) -> str:
    """What to say instead, for a result that fails or waits for review: the
    rule's ``coach`` sentence, and for each piece of evidence with a phrase of the
    rule's ``replace`` table, that phrase's compliant form."""
    if r.passed is not False and not r.needs_review:
        return ""
    table = {clean(k): str(v) for k, v in (params.get("replace") or {}).items()}
    said = {clean(e.text) for e in r.evidence}
    swaps = [f"“{k}” → “{v}”" for k, v in table.items() if any(k in s for s in said)]
    coach = str(params.get("coach") or "")
    return "；".join([*swaps, coach] if coach else swaps)


def weighted_score(verdicts: Iterable[tuple[float, bool | None]]) -> float:
    """100 x weight passed / weight judged; rules not judged (None) count in
    neither; nothing judged scores 100. Automatic and reviewed scores alike."""
    judged = [(w, passed) for w, passed in verdicts if passed is not None]
    total = sum(w for w, _ in judged)
    got = sum(w for w, passed in judged if passed)
    return round(100.0 * got / total, 1) if total > 0 else 100.0
