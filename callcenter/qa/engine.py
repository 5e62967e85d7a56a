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

import re
from collections.abc import Callable, Sequence
from typing import Any

from callcenter.core import CallFacts, Evidence, QaResult, RuleResult, Segment, Timeline
from callcenter.qa import conduct
from callcenter.qa.base import (
    PUNCTUATION,
    RULE_IDS,
    RULES_FILE,
    SPEC_RULE_IDS,
    Call,
    QaRules,
    RulesFileError,
    Utterance,
    clean,
    coaching,
    find,
    load_rules,
    merge_turns,
    result,
    rules_from_dict,
    rules_version,
    weighted_score,
)

__all__ = [
    "PUNCTUATION", "RULES_FILE", "RULE_IDS", "SPEC_RULE_IDS", "QaRules", "RulesFileError",
    "agent_chars_per_min", "clean", "find", "load_rules", "merge_turns", "rules_from_dict",
    "rules_version", "score", "weighted_score",
]


def _greeting(c: Call) -> RuleResult:
    p = c.p("greeting")
    real = c.real_agent()
    if not real:
        return result("greeting", None, [], "no agent speech")
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
        return result(
            "greeting", False, ev or [first.evidence()], "missing: " + ", ".join(missing)
        )
    return result("greeting", True, ev, "greets and offers help")


def _self_identification(c: Call) -> RuleResult:
    p = c.p("self_identification")
    real = c.real_agent()[: int(p.get("first_utterances", 2))]
    if not real:
        return result("self_identification", None, [], "no agent speech")
    for u in real:
        hits = find(u, p["patterns"])
        if hits:
            i, j, _ = hits[0]
            return result("self_identification", True, [u.evidence(i, j)], "agent named")
        named = _introduced_name(u, p)
        if named is not None:
            return result("self_identification", True, [named], "agent named")
    unsure = p.get("undecided_below_conf")
    if c.source == "asr" and unsure is not None:
        g = c.p("greeting")
        known = [*p.get("known_words", []), *g.get("hello", []), *g.get("offer_help", [])]
        # The name belongs to the opening: the first utterance, and the next one
        # only when the first has no offer of help yet and the caller has not
        # spoken in between (after that, the agent is answering the caller).
        opening = real[:1] if find(real[0], g.get("offer_help", [])) else [
            u for u in real if u is real[0] or not _caller_spoke_before(c, u)]
        if any(_unsure_chars(u, known, float(unsure)) for u in opening):
            return result(
                "self_identification",
                None,
                [u.evidence() for u in real],
                f"no name or id recognised, but words below confidence {float(unsure):g}"
                " may hide one",
                needs_review=True,
            )
    return result(
        "self_identification",
        False,
        [u.evidence() for u in real],
        "no name or id in the first utterances",
    )


_CLAUSE = re.compile(r"[，。！？、；：,.!?;:\s]+")


def _introduced_name(u: Utterance, p: dict[str, Any]) -> Evidence | None:
    """我是管家小李 / 安保部王勇 / 维修部刘师傅 / 姓詹: a clause of the opening that
    names the agent (the transcript's punctuation marks the clauses)."""
    surnames = str(p.get("surnames") or "")
    if not surnames:
        return None
    for clause in _CLAUSE.split(u.seg.text):
        if _names_agent(clause, p, surnames):
            start = u.chars.find(clean(clause))
            return u.evidence(start, start + len(clean(clause))) if start >= 0 else u.evidence()
    return None


def _names_agent(clause: str, p: dict[str, Any], surnames: str) -> bool:
    if re.fullmatch(f"(我|免贵)?姓[{surnames}]", clause):
        return True
    roles = [str(r) for r in p.get("roles") or []]
    intro = next((str(i) for i in p.get("introduces") or [] if str(i) in clause), None)
    rest = clause[clause.find(intro) + len(intro):] if intro else clause
    if intro is None:
        # Without 我是 a short clause of a job word and a name (安保部王勇), not any
        # clause with 的 in it (请问您的房号是).
        roles = [r for r in roles if r != "的"]
        if len(clause) > int(p.get("max_role_clause", 10)):
            return False
    cut = max((rest.rfind(r) + len(r) for r in roles if r in rest), default=-1)
    if intro is None and cut < 0:
        return False  # neither 我是 nor a role: not an introduction
    name = f"(?:[小老][{surnames}]|[{surnames}][\\u4e00-\\u9fff]{{1,2}})"
    titled = f"[{surnames}]{p.get('titled_name') or '(?!)'}$"  # 刘师傅
    # 我是值班电工老钟 / 我是值班工程师马骏: a job the role list lacks, then the name.
    job_end = "师员长工管任理监队"
    after_job = (f"(?:[小老][{surnames}]|(?<=[{job_end}])[{surnames}]"
                 f"[\\u4e00-\\u9fff]{{1,2}})$")
    return bool(re.fullmatch(name, rest[max(cut, 0):]) or re.search(titled, rest)
                or (intro is not None and re.search(after_job, rest)))


def _caller_spoke_before(c: Call, u: Utterance) -> bool:
    return any(len(x.chars) >= 2 and not c.is_backchannel(x) and x.seg.end <= u.seg.start
               for x in c.caller)


def _unsure_chars(u: Utterance, known: Sequence[str], min_conf: float) -> bool:
    """Whether a character outside the known script words is below ``min_conf``."""
    covered = [False] * len(u.chars)
    for i, j, _ in find(u, known):
        covered[i:j] = [True] * (j - i)
    return any(not cov and conf < min_conf for cov, conf in zip(covered, u.confs, strict=True))


def _closing(c: Call) -> RuleResult:
    """The last utterance closes the call. On recognised speech the one before it
    counts too while the later ones are fragments (a few characters: the
    recogniser's pieces of a mumbled end), never after a real last sentence."""
    p = c.p("closing")
    real = c.real_agent()
    if not real:
        return result("closing", None, [], "no agent speech")
    last = real[-int(p.get("last_utterances", 1)) :]
    fragment = int(p.get("fragment_max_chars", 0))
    for k, u in enumerate(reversed(last)):
        hits = find(u, p["phrases"])
        if hits:
            return result(
                "closing", True, [u.evidence(i, j) for i, j, _ in hits], "courtesy close"
            )
        if fragment and k == 0 and len(u.chars) > fragment:
            break  # a real last sentence without a close
    return result("closing", False, [last[-1].evidence()], "no courtesy close at the end")


def _unsure(c: Call, p: dict[str, Any]) -> float | None:
    """On recognised speech, the confidence down to which a hit the rule does not
    count as sure still sends the rule to a person (``review_conf``)."""
    review = p.get("review_conf")
    return float(review) if c.source == "asr" and review is not None else None


def _forbidden_phrase(c: Call) -> RuleResult:
    p = c.p("forbidden_phrase")
    ev: list[Evidence] = []
    for u in c.agent:
        ev += [u.evidence(i, j) for i, j, _ in find(u, p["phrases"], c.conf(p))]
    ev = _opening_wei(c, p) + ev
    if ev:
        return result("forbidden_phrase", False, ev, "forbidden: " + "、".join(e.text for e in ev))
    review = _unsure(c, p)
    if review is not None:
        unclear = [u.evidence(i, j) for u in c.agent for i, j, _ in find(u, p["phrases"], review)]
        if unclear:
            return result("forbidden_phrase", None, unclear, "heard unclearly: "
                          + "、".join(e.text for e in unclear), needs_review=True)
    return result("forbidden_phrase", True, [], "no forbidden phrase")


def _opening_wei(c: Call, p: dict[str, Any]) -> list[Evidence]:
    """An answer that opens with 喂: on recognised speech the lone syllable comes
    out as one of its homophones (为, 位...), and only the position tells it apart
    (the first sound of the call, right before 您好). ``opening`` in the rule file:
    the pattern, and the confidence it needs."""
    opening = p.get("opening")
    real = c.real_agent()
    if not opening or not real:
        return []
    hits = find(real[0], [str(opening["pattern"])], float(opening.get("min_conf", 0.0)))
    return [real[0].evidence(i, j) for i, j, _ in hits if i == 0]


def _polite_address(c: Call) -> RuleResult:
    p = c.p("polite_address")
    word, polite = str(p.get("word", "你")), str(p.get("polite_word", "您"))
    ev: list[Evidence] = []
    n_polite = 0
    for u in c.agent:
        ignore = [str(x) for x in p.get("ignore", [])]
        hits = find(u, [*ignore, word], c.conf(p))
        ev += [u.evidence(i, _phrase_end(u, i, j, p)) for i, j, t in hits if t == word]
        n_polite += len(find(u, [polite]))
    min_count = int(p.get("min_count", 1))
    ratio = len(ev) / max(1, len(ev) + n_polite)
    if ev and len(ev) >= min_count and ratio >= float(p.get("min_ratio", 0.0)):
        return result("polite_address", False, ev, f"{len(ev)} x {word} to the caller")
    detail = f"addressed as {polite}" + (f" ({len(ev)} x {word} below threshold)" if ev else "")
    if ev and p.get("review_below_threshold"):
        # Near-certain 你, too few to fail on: a person listens to them.
        return result("polite_address", None, ev, detail, needs_review=True)
    return result("polite_address", True, ev, detail)


def _phrase_end(u: Utterance, i: int, j: int, p: dict[str, Any]) -> int:
    """The end of the phrase the word at [i, j) begins, when it is one the rule has
    a compliant form for (你等一下 -> 请您稍等): the evidence shows, and the
    coaching replaces, the whole phrase."""
    known = [clean(str(k)) for k in (p.get("replace") or {})]
    longest = max((len(k) for k in known if u.chars.startswith(k, i)), default=0)
    return max(j, i + longest)


def _filler_words(c: Call) -> RuleResult:
    p = c.p("filler_words")
    conf = c.conf(p)
    review = _unsure(c, p)
    ev: list[Evidence] = []
    unclear: list[Evidence] = []
    for u in c.agent:
        ev += [u.evidence(i, j) for i, j, _ in find(u, p["tics"], conf)]
        if not u.chars or c.is_backchannel(u):
            continue
        opener = next((o for o in p["openers"] if u.chars.startswith(o)), None)
        if opener and len(u.chars) > len(opener):
            sure = u.min_conf(0, len(opener))
            if sure >= conf:
                ev.append(u.evidence(0, len(opener)))
            elif review is not None and sure >= review:
                unclear.append(u.evidence(0, len(opener)))
    if ev:
        return result("filler_words", False, ev, "filler: " + "、".join(e.text for e in ev))
    if unclear:
        return result("filler_words", None, unclear, "heard unclearly: "
                      + "、".join(e.text for e in unclear), needs_review=True)
    return result("filler_words", True, [], "no filler words")


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


def _speech_rate(c: Call) -> RuleResult:
    p = c.p("speech_rate")
    agent = [u for u in c.agent if u.chars]
    measured = _agent_rate(agent)
    if measured is None:
        return result("speech_rate", None, [], "no agent speech")
    cpm, talk = measured
    detail = f"{cpm:.1f} chars/min over {talk:.1f} s of agent speech"
    if cpm < float(p["fail_below"]) or cpm > float(p["fail_above"]):
        worst = max(agent, key=lambda u: abs(len(u.chars) / max(u.seg.duration, 0.1) * 60 - cpm))
        return result("speech_rate", False, [worst.evidence()], detail)
    if float(p["pass_min"]) <= cpm <= float(p["pass_max"]):
        return result("speech_rate", True, [], detail)
    return result("speech_rate", None, [], detail + " (borderline, not judged)")


def _interruption(c: Call) -> RuleResult:
    p = c.p("interruption")
    if not c.caller or not c.agent:
        return result("interruption", None, [], "one leg silent")
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
        return result("interruption", False, ev, f"agent cut in {len(ev)} time(s)")
    return result("interruption", True, [], "no interruption")


def _confirmation(c: Call) -> RuleResult:
    """Details read back pass wherever they are; their absence fails only a call
    that needs action (whether it does is the ticket's judgement, which can be
    wrong: a read-back is never the agent's mistake)."""
    p = c.p("confirmation")
    for u in c.agent:
        hits = find(u, p["phrases"])
        if hits:
            i, j, _ = hits[0]
            return result("confirmation", True, [u.evidence(i, j)], "details read back")
    if not c.needs_action:
        return result("confirmation", None, [], "nothing needs action")
    return result("confirmation", False, [], "key details not read back")


def _silences(c: Call) -> list[tuple[float, float, Segment]]:
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


def _hold_etiquette(c: Call) -> RuleResult:
    p = c.p("hold_etiquette")
    conf = 0.0  # words that excuse the agent need no confidence
    holds = [
        g
        for g in _silences(c)
        if g[2].leg == "agent" and g[1] - g[0] >= float(p.get("min_silence_s", 11))
    ]
    if not holds:
        return result("hold_etiquette", None, [], "no hold")
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
        return result("hold_etiquette", False, ev, "; ".join(problems))
    return result("hold_etiquette", True, ev, f"{len(holds)} hold(s) announced and apologised")


def _dead_air(c: Call) -> RuleResult:
    p = c.p("dead_air")
    if not c.timeline.segments:
        return result("dead_air", None, [], "no speech")
    limit = float(p.get("max_silence_s", 15))
    ev = [
        Evidence("agent", a, b, f"silence {b - a:.1f} s")
        for a, b, _ in _silences(c)
        if b - a > limit
    ]
    if ev:
        return result("dead_air", False, ev, f"{len(ev)} silence(s) over {limit:g} s")
    return result("dead_air", True, [], f"no silence over {limit:g} s")


def _hangup_order(c: Call) -> RuleResult:
    by = c.facts.hangup_by
    if by is None:
        return result("hangup_order", None, [], "hang-up side unknown")
    end = c.timeline.duration
    ev = [Evidence(by, end, end, f"{by} hung up")]
    if by == "agent":
        return result("hangup_order", False, ev, "agent hung up first")
    return result("hangup_order", True, ev, "caller hung up first")


def _polite_vocabulary(c: Call) -> RuleResult:
    p = c.p("polite_vocabulary")
    if not c.agent:
        return result("polite_vocabulary", None, [], "no agent speech")
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
        return result("polite_vocabulary", False, ev, "never said: " + ", ".join(missing))
    return result("polite_vocabulary", True, ev, "courtesy words used")


def _answer_speed(c: Call) -> RuleResult:
    p = c.p("answer_speed")
    after = c.facts.answered_after_s
    if after is None:
        return result("answer_speed", None, [], "answer time unknown")
    limit = float(p.get("rings", 3)) * float(p.get("ring_seconds", 5))
    ev = [Evidence("agent", 0.0, 0.0, f"answered after {after:.1f} s")]
    return result(
        "answer_speed", after <= limit, ev, f"answered after {after:.1f} s (limit {limit:g} s)"
    )


CHECKS: dict[str, Callable[[Call], RuleResult]] = {
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
    **conduct.CHECKS,
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
    call = Call(
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
        r.coaching = coaching(call.p(rule_id), r)
        call.results[rule_id] = r
        results.append(r)
    value = weighted_score((r.weight, r.passed) for r in results)
    return QaResult(score=value, rules=results, rules_version=rules.version)
