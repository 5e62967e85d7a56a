"""Automatic QA of one call: every rule of ``rules.yaml`` on the agent's words.

Pure: a timeline and call facts in, a ``QaResult`` out. Weights, thresholds and
phrase lists live in ``rules.yaml``; rule ids are the contract of
hotline-standards.md section 4, with the precise definitions of
../shared/scenarios/README.md.

Score = 100 x sum(weight of applicable rules that passed) / sum(weight of
applicable rules). A rule that does not apply (``passed is None``) counts in
neither sum; a call with no applicable rule scores 100.

``source="asr"`` applies each rule's ``asr`` overrides: the recognizer confuses
您/你, garbles 再见 and names, so on recognised speech a rule fails only on
evidence the recognizer is unlikely to invent (words above a confidence
threshold, a habit rather than one word, wider speech-rate bands). This trades
missed violations for fewer false accusations; ``source="text"`` (a ground-truth
transcript) applies the rules exactly.

Evidence times: a phrase hit spans the matching characters, using the
segment's word times when it has words (per-character words give per-character
times, recognised words their word times), the segment's span otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.core import CallFacts, Evidence, QaResult, RuleResult, Segment, Timeline

RULES_FILE = Path(__file__).with_name("rules.yaml")
RULE_IDS = (
    "greeting", "self_identification", "closing", "forbidden_phrase", "polite_address",
    "filler_words", "speech_rate", "interruption", "confirmation", "hold_etiquette",
    "dead_air", "hangup_order", "polite_vocabulary", "answer_speed",
)  # fmt: skip
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
class _Call:
    timeline: Timeline
    facts: CallFacts
    rules: QaRules
    source: str
    needs_action: bool
    complaint: bool
    segments: list[Segment]  # merged into turns
    agent: list[Utterance]
    caller: list[Utterance]

    def p(self, rule_id: str) -> dict[str, Any]:
        return self.rules.params(rule_id, self.source)

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


def _result(
    rule_id: str, passed: bool | None, ev: list[Evidence], detail: str, *,
    needs_review: bool = False,
) -> RuleResult:
    return RuleResult(id=rule_id, passed=passed, evidence=ev, detail=detail,
                      needs_review=needs_review)


def _greeting(c: _Call) -> RuleResult:
    p = c.p("greeting")
    real = c.real_agent()
    if not real:
        return _result("greeting", None, [], "no agent speech")
    first = real[0]
    t0 = c.timeline.segments[0].start if c.timeline.segments else 0.0
    t0 = min(t0, 0.0)
    ev: list[Evidence] = []
    hello = find(first, p["hello"])
    offer = find(first, p["offer_help"])
    late = first.seg.start - t0 > float(p.get("within_s", 10))
    for i, j, _ in hello + offer:
        ev.append(first.evidence(i, j))
    missing = [n for n, h in (("greeting 您好", hello), ("offer of help", offer)) if not h]
    if late:
        missing.append(f"first utterance at {first.seg.start:.1f} s")
    if missing:
        return _result(
            "greeting", False, ev or [first.evidence()], "missing: " + ", ".join(missing)
        )
    return _result("greeting", True, ev, "greets and offers help")


def _self_identification(c: _Call) -> RuleResult:
    p = c.p("self_identification")
    real = c.real_agent()[: int(p.get("first_utterances", 2))]
    if not real:
        return _result("self_identification", None, [], "no agent speech")
    for u in real:
        hits = find(u, p["patterns"])
        if hits:
            i, j, _ = hits[0]
            return _result("self_identification", True, [u.evidence(i, j)], "agent named")
    unsure = p.get("undecided_below_conf")
    if c.source == "asr" and unsure is not None:
        g = c.p("greeting")
        known = [*p.get("known_words", []), *g.get("hello", []), *g.get("offer_help", [])]
        # The name belongs to the opening: the first utterance, and the next one
        # only when the first has no offer of help yet.
        opening = real[:1] if find(real[0], g.get("offer_help", [])) else real
        if any(_unsure_chars(u, known, float(unsure)) for u in opening):
            return _result(
                "self_identification",
                None,
                [u.evidence() for u in real],
                f"no name or id recognised, but words below confidence {float(unsure):g}"
                " may hide one",
                needs_review=True,
            )
    return _result(
        "self_identification",
        False,
        [u.evidence() for u in real],
        "no name or id in the first utterances",
    )


def _unsure_chars(u: Utterance, known: Sequence[str], min_conf: float) -> bool:
    """Whether a character outside the known script words is below ``min_conf``."""
    covered = [False] * len(u.chars)
    for i, j, _ in find(u, known):
        covered[i:j] = [True] * (j - i)
    return any(not cov and conf < min_conf for cov, conf in zip(covered, u.confs, strict=True))


def _closing(c: _Call) -> RuleResult:
    p = c.p("closing")
    real = c.real_agent()
    if not real:
        return _result("closing", None, [], "no agent speech")
    last = real[-int(p.get("last_utterances", 1)) :]
    for u in reversed(last):
        hits = find(u, p["phrases"])
        if hits:
            return _result(
                "closing", True, [u.evidence(i, j) for i, j, _ in hits], "courtesy close"
            )
    return _result("closing", False, [last[-1].evidence()], "no courtesy close at the end")


def _forbidden_phrase(c: _Call) -> RuleResult:
    p = c.p("forbidden_phrase")
    ev: list[Evidence] = []
    for u in c.agent:
        ev += [u.evidence(i, j) for i, j, _ in find(u, p["phrases"], c.conf(p))]
    if ev:
        return _result("forbidden_phrase", False, ev, "forbidden: " + "、".join(e.text for e in ev))
    return _result("forbidden_phrase", True, [], "no forbidden phrase")


def _polite_address(c: _Call) -> RuleResult:
    p = c.p("polite_address")
    word, polite = str(p.get("word", "你")), str(p.get("polite_word", "您"))
    ev: list[Evidence] = []
    n_polite = 0
    for u in c.agent:
        ignore = [str(x) for x in p.get("ignore", [])]
        hits = find(u, [*ignore, word], c.conf(p))
        ev += [u.evidence(i, j) for i, j, t in hits if t == word]
        n_polite += len(find(u, [polite]))
    min_count = int(p.get("min_count", 1))
    ratio = len(ev) / max(1, len(ev) + n_polite)
    if ev and len(ev) >= min_count and ratio >= float(p.get("min_ratio", 0.0)):
        return _result("polite_address", False, ev, f"{len(ev)} x {word} to the caller")
    detail = f"addressed as {polite}" + (f" ({len(ev)} x {word} below threshold)" if ev else "")
    return _result("polite_address", True, ev, detail)


def _filler_words(c: _Call) -> RuleResult:
    p = c.p("filler_words")
    conf = c.conf(p)
    ev: list[Evidence] = []
    for u in c.agent:
        ev += [u.evidence(i, j) for i, j, _ in find(u, p["tics"], conf)]
        if not u.chars or c.is_backchannel(u):
            continue
        opener = next((o for o in p["openers"] if u.chars.startswith(o)), None)
        if opener and len(u.chars) > len(opener) and u.min_conf(0, len(opener)) >= conf:
            ev.append(u.evidence(0, len(opener)))
    if ev:
        return _result("filler_words", False, ev, "filler: " + "、".join(e.text for e in ev))
    return _result("filler_words", True, [], "no filler words")


def _agent_rate(agent: Sequence[Utterance]) -> tuple[float, float] | None:
    """(characters per minute, seconds of talk) over the agent's utterances."""
    spoken = [u for u in agent if u.chars]
    talk = sum(u.seg.duration for u in spoken)
    if talk <= 0:
        return None
    return sum(len(u.chars) for u in spoken) / (talk / 60.0), talk


def agent_chars_per_min(timeline: Timeline, *, rules: QaRules | None = None,
                        source: str = "text") -> float | None:
    """The agent's speaking rate as ``speech_rate`` measures it."""
    rules = rules or load_rules()
    segs = merge_turns(timeline.segments, rules.turn_merge_gap_s.get(source, 0.0))
    measured = _agent_rate([Utterance.of(s) for s in segs if s.leg == "agent"])
    return None if measured is None else measured[0]


def _speech_rate(c: _Call) -> RuleResult:
    p = c.p("speech_rate")
    agent = [u for u in c.agent if u.chars]
    measured = _agent_rate(agent)
    if measured is None:
        return _result("speech_rate", None, [], "no agent speech")
    cpm, talk = measured
    detail = f"{cpm:.1f} chars/min over {talk:.1f} s of agent speech"
    if cpm < float(p["fail_below"]) or cpm > float(p["fail_above"]):
        worst = max(agent, key=lambda u: abs(len(u.chars) / max(u.seg.duration, 0.1) * 60 - cpm))
        return _result("speech_rate", False, [worst.evidence()], detail)
    if float(p["pass_min"]) <= cpm <= float(p["pass_max"]):
        return _result("speech_rate", True, [], detail)
    return _result("speech_rate", None, [], detail + " (borderline, not judged)")


def _interruption(c: _Call) -> RuleResult:
    p = c.p("interruption")
    if not c.caller or not c.agent:
        return _result("interruption", None, [], "one leg silent")
    min_overlap = float(p.get("min_overlap_s", 1.0))
    ev: list[Evidence] = []
    for a in c.real_agent():
        for cu in c.caller:
            s = cu.seg
            if s.start < a.seg.start < s.end:
                overlap = min(a.seg.end, s.end) - a.seg.start
                if overlap >= min_overlap:
                    ev.append(Evidence("agent", a.seg.start, min(a.seg.end, s.end), a.seg.text))
                    break
    if ev:
        return _result("interruption", False, ev, f"agent cut in {len(ev)} time(s)")
    return _result("interruption", True, [], "no interruption")


def _confirmation(c: _Call) -> RuleResult:
    """Details read back pass wherever they are; their absence fails only a call
    that needs action (whether it does is the ticket's judgement, which can be
    wrong: a read-back is never the agent's mistake)."""
    p = c.p("confirmation")
    for u in c.agent:
        hits = find(u, p["phrases"])
        if hits:
            i, j, _ = hits[0]
            return _result("confirmation", True, [u.evidence(i, j)], "details read back")
    if not c.needs_action:
        return _result("confirmation", None, [], "nothing needs action")
    return _result("confirmation", False, [], "key details not read back")


def _silences(c: _Call) -> list[tuple[float, float, Segment]]:
    """Gaps where both legs are silent: (start, end, the segment before the gap)."""
    segs = c.segments
    gaps: list[tuple[float, float, Segment]] = []
    if not segs:
        return gaps
    last_end, last_seg = segs[0].end, segs[0]
    for s in segs[1:]:
        if s.start > last_end:
            gaps.append((last_end, s.start, last_seg))
        if s.end >= last_end:
            last_end, last_seg = s.end, s
    return gaps


def _hold_etiquette(c: _Call) -> RuleResult:
    p = c.p("hold_etiquette")
    conf = 0.0  # words that excuse the agent need no confidence
    holds = [
        g
        for g in _silences(c)
        if g[2].leg == "agent" and g[1] - g[0] >= float(p.get("min_silence_s", 11))
    ]
    if not holds:
        return _result("hold_etiquette", None, [], "no hold")
    by_seg = {id(u.seg): u for u in c.agent}
    ev: list[Evidence] = []
    problems: list[str] = []
    for start, end, seg in holds:
        before = by_seg[id(seg)]
        after = next((u for u in c.agent if u.seg.start >= end), None)
        ask = find(before, p["ask"], conf)
        sorry = find(after, p["apology"], conf) if after else []
        ev += [before.evidence(i, j) for i, j, _ in ask] or [before.evidence()]
        if after is not None:
            ev += [after.evidence(i, j) for i, j, _ in sorry] or [after.evidence()]
        if not ask:
            problems.append(f"silence {end - start:.1f} s at {start:.1f} s not announced")
        if not sorry:
            problems.append(f"no apology after the {end - start:.1f} s hold")
    if problems:
        return _result("hold_etiquette", False, ev, "; ".join(problems))
    return _result("hold_etiquette", True, ev, f"{len(holds)} hold(s) announced and apologised")


def _dead_air(c: _Call) -> RuleResult:
    p = c.p("dead_air")
    if not c.timeline.segments:
        return _result("dead_air", None, [], "no speech")
    limit = float(p.get("max_silence_s", 15))
    ev = [
        Evidence("agent", a, b, f"silence {b - a:.1f} s")
        for a, b, _ in _silences(c)
        if b - a > limit
    ]
    if ev:
        return _result("dead_air", False, ev, f"{len(ev)} silence(s) over {limit:g} s")
    return _result("dead_air", True, [], f"no silence over {limit:g} s")


def _hangup_order(c: _Call) -> RuleResult:
    by = c.facts.hangup_by
    if by is None:
        return _result("hangup_order", None, [], "hang-up side unknown")
    end = c.timeline.duration
    ev = [Evidence(by, end, end, f"{by} hung up")]
    if by == "agent":
        return _result("hangup_order", False, ev, "agent hung up first")
    return _result("hangup_order", True, ev, "caller hung up first")


def _polite_vocabulary(c: _Call) -> RuleResult:
    p = c.p("polite_vocabulary")
    if not c.agent:
        return _result("polite_vocabulary", None, [], "no agent speech")
    needed = [("请", p["please"]), ("谢谢/感谢", p["thanks"])]
    if c.complaint:
        needed.append(("对不起/抱歉", p["apology"]))
    ev: list[Evidence] = []
    missing: list[str] = []
    for name, terms in needed:
        hit = next(((u, h) for u in c.agent for h in find(u, terms)[:1]), None)
        if hit is None:
            missing.append(name)
        else:
            u, (i, j, _) = hit
            ev.append(u.evidence(i, j))
    if missing:
        return _result("polite_vocabulary", False, ev, "never said: " + ", ".join(missing))
    return _result("polite_vocabulary", True, ev, "courtesy words used")


def _answer_speed(c: _Call) -> RuleResult:
    p = c.p("answer_speed")
    after = c.facts.answered_after_s
    if after is None:
        return _result("answer_speed", None, [], "answer time unknown")
    limit = float(p.get("rings", 3)) * float(p.get("ring_seconds", 5))
    ev = [Evidence("agent", 0.0, 0.0, f"answered after {after:.1f} s")]
    return _result(
        "answer_speed", after <= limit, ev, f"answered after {after:.1f} s (limit {limit:g} s)"
    )


CHECKS: dict[str, Callable[[_Call], RuleResult]] = {
    "greeting": _greeting,
    "self_identification": _self_identification,
    "closing": _closing,
    "forbidden_phrase": _forbidden_phrase,
    "polite_address": _polite_address,
    "filler_words": _filler_words,
    "speech_rate": _speech_rate,
    "interruption": _interruption,
    "confirmation": _confirmation,
    "hold_etiquette": _hold_etiquette,
    "dead_air": _dead_air,
    "hangup_order": _hangup_order,
    "polite_vocabulary": _polite_vocabulary,
    "answer_speed": _answer_speed,
}


def score(
    timeline: Timeline,
    facts: CallFacts,
    *,
    rules: QaRules | None = None,
    source: str = "text",
    category: str | None = None,
) -> QaResult:
    """Every rule of the rule file on one call, and the weighted score out of 100.

    ``category`` (a ticket category) says whether the call needs action
    (``confirmation`` applies) and is a complaint (``polite_vocabulary`` wants an
    apology); left out, the ticket classifier's reading of the call decides.
    """
    rules = rules or load_rules()
    if category is None:
        from callcenter.tickets.classifier import read_call

        category = read_call(timeline, facts).category
    segs = merge_turns(timeline.segments, rules.turn_merge_gap_s.get(source, 0.0))
    call = _Call(
        timeline=timeline,
        facts=facts,
        rules=rules,
        source=source,
        needs_action=category != "consultation",
        complaint=category == "complaint",
        segments=segs,
        agent=[Utterance.of(s) for s in segs if s.leg == "agent"],
        caller=[Utterance.of(s) for s in segs if s.leg == "caller"],
    )
    results: list[RuleResult] = []
    for rule_id in RULE_IDS:
        if rule_id not in rules.rules:
            continue
        r = CHECKS[rule_id](call)
        r.weight = rules.weight(rule_id)
        results.append(r)
    value = weighted_score((r.weight, r.passed) for r in results)
    return QaResult(score=value, rules=results, rules_version=rules.version)


def weighted_score(verdicts: Iterable[tuple[float, bool | None]]) -> float:
    """100 x weight passed / weight judged; rules not judged (None) count in
    neither; nothing judged scores 100. Automatic and reviewed scores alike."""
    judged = [(w, passed) for w, passed in verdicts if passed is not None]
    total = sum(w for w, _ in judged)
    got = sum(w for w, passed in judged if passed)
    return round(100.0 * got / total, 1) if total > 0 else 100.0
