"""QA rule engine: every rule on small hand-made calls (pass, fail, not applicable,
evidence times), ASR tolerances, and agreement with the 45 dev calls' labels."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callcenter.core import CallFacts, RuleResult, Segment, Timeline, Word
from callcenter.qa.engine import RULE_IDS, SPEC_RULE_IDS, load_rules, rules_from_dict, score
from callcenter.settings import SHARED_DIR

DEV_DIR = SHARED_DIR / "scenarios" / "dev"
PUNCT = set("，。！？、；：,.!?;:…—“”\"' ")
GREETING = "您好，物业客服中心，我姓周，请问有什么可以帮助您？"
CLOSING = "好的，感谢您的来电，再见。"


def make_timeline(turns: list[tuple[str, float, float, str]], conf: float = 1.0) -> Timeline:
    """(leg, start, end, text) turns to a timeline with per-character word times."""
    segments = []
    for leg, start, end, text in turns:
        chars = [c for c in text if c not in PUNCT]
        step = (end - start) / max(1, len(chars))
        words = [
            Word(c, start + i * step, start + (i + 1) * step, conf) for i, c in enumerate(chars)
        ]
        segments.append(Segment(leg, start, end, text, words))  # type: ignore[arg-type]
    segments.sort(key=lambda s: s.start)
    return Timeline(segments, max((s.end for s in segments), default=0.0))


def good_call(**overrides: str) -> list[tuple[str, float, float, str]]:
    """A well-run repair call (agent ~130 chars/min); override turns by name."""
    lines = {
        "greet": GREETING,
        "report": "你好，我家厨房水龙头坏了，一直滴水。",
        "ask": "好的，请问您家是几栋几单元几号？",
        "addr": "八栋二单元一七零二。",
        "confirm": "跟您确认一下，八栋二单元一七零二，厨房水龙头滴水，师傅下午到，对吗？",
        "yes": "对，谢谢。",
        "close": CLOSING,
    } | overrides
    return [
        ("agent", 0.5, 11.5, lines["greet"]),
        ("caller", 12.0, 16.0, lines["report"]),
        ("agent", 16.5, 23.0, lines["ask"]),
        ("caller", 23.5, 26.0, lines["addr"]),
        ("agent", 26.5, 42.0, lines["confirm"]),
        ("caller", 42.5, 43.5, lines["yes"]),
        ("agent", 44.0, 49.5, lines["close"]),
    ]


def facts(**kw: Any) -> CallFacts:
    return CallFacts(call_id="t", caller_number="13900000000", ivr_digits="1", **kw)


def rule(result_rules: list[RuleResult], rule_id: str) -> RuleResult:
    return next(r for r in result_rules if r.id == rule_id)


def run(turns: list[tuple[str, float, float, str]], **kw: Any) -> dict[str, RuleResult]:
    source = kw.pop("source", "text")
    conf = kw.pop("conf", 1.0)
    category = kw.pop("category", None)
    res = score(make_timeline(turns, conf), facts(**kw), source=source, category=category)
    return {r.id: r for r in res.rules}


def test_rule_file_has_every_rule_with_a_weight() -> None:
    rules = load_rules()
    assert set(rules.rules) == set(RULE_IDS)
    assert all(rules.weight(r) > 0 for r in RULE_IDS)
    with pytest.raises(ValueError):
        rules_from_dict({"rules": {"no_such_rule": {"weight": 1}}})


def test_good_call_passes_everything_that_applies() -> None:
    res = score(make_timeline(good_call()), facts())
    verdicts = {r.id: r.passed for r in res.rules}
    assert res.score == 100.0
    assert verdicts["hold_etiquette"] is None  # no long silence
    assert verdicts["answer_speed"] is None and verdicts["hangup_order"] is None
    assert all(v in (True, None) for v in verdicts.values())


def test_score_is_weighted_share_of_applicable_rules() -> None:
    turns = good_call(close="行，就这样吧。")
    res = score(make_timeline(turns), facts())
    applicable = [r for r in res.rules if r.passed is not None]
    total = sum(r.weight for r in applicable)
    passed = sum(r.weight for r in applicable if r.passed)
    assert res.score == round(100 * passed / total, 1) < 100


def test_greeting() -> None:
    assert run(good_call())["greeting"].passed
    r = run(good_call(greet="喂，您好，物业。"))["greeting"]
    assert r.passed is False and "offer of help" in r.detail
    assert run(good_call(greet="物业服务中心，请讲。"))["greeting"].passed is False


def test_self_identification() -> None:
    ok = run(good_call(greet="您好，物业客服中心，工号幺零二七，请问有什么可以帮您？"))
    assert ok["self_identification"].passed
    ok = run(good_call(greet="您好，物业客服中心，我是三十六号客服，请问有什么可以帮助您？"))
    assert ok["self_identification"].passed
    bad = run(good_call(greet="您好，物业客服中心，请问有什么可以帮助您？"))
    assert bad["self_identification"].passed is False


def test_closing() -> None:
    assert run(good_call())["closing"].passed
    assert run(good_call(close="不客气，再见。"))["closing"].passed
    assert run(good_call(close="行，您等我们通知吧。"))["closing"].passed is False


def test_forbidden_phrase_evidence_spans_the_words() -> None:
    turns = good_call(ask="这个我不清楚，请问您家是几栋几单元几号？")
    r = run(turns)["forbidden_phrase"]
    assert r.passed is False
    (ev,) = r.evidence
    assert ev.text == "不清楚" and ev.leg == "agent"
    # 16.5..23.0 spread over 18 characters: 不清楚 are characters 3..5
    step = 6.5 / 18
    assert ev.start == pytest.approx(16.5 + 3 * step)
    assert ev.end == pytest.approx(16.5 + 6 * step)
    assert run(good_call(greet="喂，" + GREETING))["forbidden_phrase"].passed is False
    assert run(good_call(ask="急什么，你先听我说。"))["forbidden_phrase"].passed is False
    # the caller's words are not the agent's
    assert run(good_call(report="喂，我家水龙头坏了，我也不知道怎么回事。"))[
        "forbidden_phrase"
    ].passed


def test_polite_address() -> None:
    r = run(good_call(ask="那你家是几栋几单元？你们那边停水了吗？"))["polite_address"]
    assert r.passed is False and len(r.evidence) == 2
    # the evidence is the phrase the coaching has a compliant form for
    assert [e.text for e in r.evidence] == ["你家", "你们"]
    assert run(good_call())["polite_address"].passed


def test_filler_words() -> None:
    assert run(good_call(ask="嗯，您家是几栋几单元？"))["filler_words"].passed is False
    assert run(good_call(ask="那您家是几栋几单元？"))["filler_words"].passed is False
    assert run(good_call(ask="请问您家是几栋？我晕。"))["filler_words"].passed is False
    # a lone backchannel is not a filler
    turns = good_call()
    turns.insert(2, ("agent", 15.0, 15.4, "嗯。"))
    assert run(turns)["filler_words"].passed


def test_speech_rate_bands() -> None:
    def rate_call(chars: int, seconds: float) -> list[tuple[str, float, float, str]]:
        return [
            ("agent", 0.5, 0.5 + seconds, "您" * chars),
            ("caller", 1.0 + seconds, 3.0 + seconds, "好的。"),
        ]

    assert run(rate_call(65, 30))["speech_rate"].passed is True  # 130 cpm
    assert run(rate_call(85, 30))["speech_rate"].passed is False  # 170 cpm
    assert run(rate_call(45, 30))["speech_rate"].passed is False  # 90 cpm
    r = run(rate_call(75, 30))["speech_rate"]  # 150 cpm: between pass and fail bands
    assert r.passed is None and "150.0" in r.detail


def test_interruption() -> None:
    turns = good_call()
    turns[2] = ("agent", 14.5, 20.0, "您是哪栋楼的？")  # caller speaks until 16.0
    r = run(turns)["interruption"]
    assert r.passed is False
    assert r.evidence[0].start == 14.5 and r.evidence[0].end == 16.0
    turns[2] = ("agent", 15.5, 20.0, "您是哪栋楼的？")  # overlap 0.5 s < 1.0 s
    assert run(turns)["interruption"].passed
    turns[2] = ("agent", 14.0, 15.0, "好的。")  # a backchannel is not an interruption
    assert run(turns)["interruption"].passed


def test_confirmation_applies_only_when_action_is_needed() -> None:
    turns = good_call(confirm="好的，师傅下午到，请您在家等一下。")
    assert run(turns)["confirmation"].passed is False
    assert run(turns, category="consultation")["confirmation"].passed is None
    assert run(good_call())["confirmation"].passed


def hold_call(before: str, after: str, gap: float = 12.0) -> list[tuple[str, float, float, str]]:
    return [
        ("agent", 0.5, 11.5, GREETING),
        ("caller", 12.0, 16.0, "我家水龙头坏了。"),
        ("agent", 16.5, 20.0, before),
        ("agent", 20.0 + gap, 26.0 + gap, after),
        ("agent", 27.0 + gap, 30.0 + gap, CLOSING),
    ]


def test_hold_etiquette() -> None:
    r = run(hold_call("好的，请您稍等，我查一下。", "让您久等了，师傅下午到。"))["hold_etiquette"]
    assert r.passed is True
    assert {e.text for e in r.evidence} == {"稍等", "久等"}
    r = run(hold_call("好的，我查一下。", "查到了，师傅下午到。"))["hold_etiquette"]
    assert r.passed is False and "not announced" in r.detail
    r = run(hold_call("请稍等。", "查到了，师傅下午到。"))["hold_etiquette"]
    assert r.passed is False and "no apology" in r.detail
    r = run(hold_call("好的，我查一下。", "查到了。", gap=8.0))["hold_etiquette"]
    assert r.passed is None


def test_dead_air() -> None:
    assert run(hold_call("请稍等。", "让您久等了。", gap=12))["dead_air"].passed
    r = run(hold_call("请稍等。", "让您久等了。", gap=20))["dead_air"]
    assert r.passed is False
    assert r.evidence[0].start == 20.0 and r.evidence[0].end == 40.0


def test_call_event_rules() -> None:
    r = run(good_call(), answered_after_s=8.0, hangup_by="caller")
    assert r["answer_speed"].passed and r["hangup_order"].passed
    r = run(good_call(), answered_after_s=21.0, hangup_by="agent")
    assert r["answer_speed"].passed is False and r["hangup_order"].passed is False


def test_polite_vocabulary() -> None:
    assert run(good_call())["polite_vocabulary"].passed
    r = run(good_call(close="行，就这样吧。", yes="对。"))["polite_vocabulary"]
    assert r.passed is False and "谢谢" in r.detail
    # complaints also need an apology
    assert run(good_call(), category="complaint")["polite_vocabulary"].passed is False
    turns = good_call(close="给您添麻烦了，非常抱歉，感谢您的来电，再见。")
    assert run(turns, category="complaint")["polite_vocabulary"].passed


def test_asr_mode_tolerates_recognizer_errors() -> None:
    # one 你 (Vosk often hears 您 as 你) fails a transcript but not recognised speech
    turns = good_call(ask="好的，请问你家是几栋几单元几号？")
    assert run(turns)["polite_address"].passed is False
    # one certain 你: too little to fail on, a person listens
    one = run(turns, source="asr")["polite_address"]
    assert (one.passed, one.needs_review) == (None, True)
    # a habit of 你 still fails on recognised speech
    habit = good_call(
        ask="你家是几栋？你们那边停水了吗？",
        confirm="你说的是八栋二单元一七零二，你等师傅吧，你放心。",
    )
    assert run(habit, source="asr")["polite_address"].passed is False
    # low-confidence words are not evidence
    assert run(habit, source="asr", conf=0.3)["polite_address"].passed is True
    # recognised speech comes in pause-split pieces: they are merged into turns
    pieces = [
        ("agent", 0.5, 1.3, "你好"),
        ("agent", 2.0, 4.0, "物业客服中心文姓唐"),
        ("agent", 4.8, 8.0, "请问有什么可以帮助您"),
        ("caller", 8.5, 12.0, "我家水龙头坏了"),
        ("agent", 12.5, 14.0, "好的谢谢您再见"),
    ]
    r = run(pieces, source="asr")
    assert r["greeting"].passed and r["self_identification"].passed
    assert run(pieces)["greeting"].passed is False  # a transcript's turn is the turn
    # a garbled 再见 still closes when the agent thanked the caller
    turns = good_call(close="好的谢谢您在建")
    assert run(turns, source="asr")["closing"].passed


# --- agreement with the 45 dev calls ------------------------------------------------

LABELLED = [r for r in SPEC_RULE_IDS if r not in ("answer_speed", "hangup_order", "dead_air")]


def _dev_calls() -> list[dict[str, Any]]:
    if not DEV_DIR.is_dir():
        pytest.skip(f"shared test data not found at {DEV_DIR}")
    return [json.loads(p.read_text("utf-8")) for p in sorted(DEV_DIR.glob("d*/meta.json"))]


def _given(meta: dict[str, Any]) -> tuple[Timeline, CallFacts]:
    """Only the inputs an evaluation hands the system: id, duration, IVR, phone, timeline."""
    try:
        from callcenter.dialogue import timeline_from_meta

        allowed = {k: meta[k] for k in ("id", "duration_s", "ivr_digits", "timeline")}
        allowed["caller"] = {"phone": meta["caller"]["phone"]}
        timeline = timeline_from_meta(allowed)
    except ImportError:
        turns = [(t["who"], t["start"], t["end"], t["text"]) for t in meta["timeline"]]
        timeline = make_timeline(turns)
    return timeline, CallFacts(
        call_id=meta["id"], caller_number=meta["caller"]["phone"], ivr_digits=meta["ivr_digits"]
    )


def test_dev_calls_rule_agreement() -> None:
    """Per rule, the verdict agrees with qa_pass/qa_fail on the calls where it is labelled.
    Measured 100 % for every rule when written; floors 0.95 per rule, 0.98 overall."""
    calls = _dev_calls()
    agree = dict.fromkeys(LABELLED, 0)
    total = dict.fromkeys(LABELLED, 0)
    for meta in calls:
        timeline, f = _given(meta)
        got = {r.id: r.passed for r in score(timeline, f).rules}
        for rule_id in LABELLED:
            if rule_id in meta["labels"]["qa_fail"]:
                want = False
            elif rule_id in meta["labels"]["qa_pass"]:
                want = True
            else:
                continue
            total[rule_id] += 1
            agree[rule_id] += got[rule_id] is want
    for rule_id in LABELLED:
        assert agree[rule_id] / total[rule_id] >= 0.95, (
            f"{rule_id}: {agree[rule_id]}/{total[rule_id]}"
        )
    assert sum(agree.values()) / sum(total.values()) >= 0.98


def test_dev_calls_speech_rate_matches_labelled_rate() -> None:
    """The engine's chars/min equals meta.json's agent_chars_per_min (text mode)."""
    for meta in _dev_calls():
        timeline, f = _given(meta)
        detail = rule(score(timeline, f).rules, "speech_rate").detail
        assert float(detail.split()[0]) == pytest.approx(meta["agent_chars_per_min"], abs=0.15)


def _with_confs(turns: list[tuple[str, float, float, str]], confs: dict[str, float]) -> Timeline:
    """A timeline whose characters have confidence 1.0 except those listed."""
    timeline = make_timeline(turns)
    for seg in timeline.segments:
        seg.words = [Word(w.w, w.start, w.end, confs.get(w.w, 1.0)) for w in seg.words]
    return timeline


def _score_asr(timeline: Timeline) -> dict[str, RuleResult]:
    return {r.id: r for r in score(timeline, facts(), source="asr", category="engineering").rules}


def test_asr_self_identification_homophones_and_weak_evidence() -> None:
    # 我姓许 heard as 我信息 / 微信中 / 我性情: still a self-identification
    for opening in (
        "您好不说客服中心我信息请问有什么可以帮助您",
        "您好不说客服中心微信中请问有什么可以帮助您",
        "您好物业客服中心我性情请问有什么可以帮您",
    ):
        r = run(good_call(greet=opening), source="asr")
        assert r["self_identification"].passed is True, opening
    # nothing recognised, but an unsure word may hide the name: not judged, not failed
    hidden = good_call(greet="您好不说客服中心宪政请问有什么可以帮助您")
    r = _score_asr(_with_confs(hidden, {"宪": 0.5, "政": 0.5}))
    assert r["self_identification"].passed is None
    # a low-confidence greeting word cannot hide a name: a clear opening without one fails
    plain = good_call(greet="您好不说客服中心请问有什么可以帮助您")
    r = _score_asr(_with_confs(plain, {"您": 0.5, "不": 0.6, "说": 0.6}))
    assert r["self_identification"].passed is False


def test_asr_greeting_with_mangled_hello() -> None:
    turns = good_call(greet="比如好不说客服中心我姓周请问有什么可以帮助你")
    assert run(turns, source="asr")["greeting"].passed is True
    assert run(turns)["greeting"].passed is False


def test_asr_polite_address_counts_only_near_certain_you() -> None:
    # two 你 the recognizer was fairly (not fully) sure of: not evidence
    turns = good_call(
        ask="好的，请问你家是几栋几单元几号？", confirm="跟您确认一下，八栋二单元一七零二，你放心。"
    )
    assert _score_asr(_with_confs(turns, {"你": 0.9}))["polite_address"].passed is True
    # the same with full confidence is a habit and fails
    assert _score_asr(_with_confs(turns, {}))["polite_address"].passed is False
    # two certain 你 among many 您 (a polite agent) are below the share that fails:
    # a person listens to them
    polite = good_call(
        ask="好的，请问你家是几栋？您别急，您稍等，您家里有人吗？您贵姓？",
        confirm="跟您确认一下，您家八栋二单元，你放心，您等师傅，您电话畅通，谢谢您。",
    )
    r = _score_asr(_with_confs(polite, {}))["polite_address"]
    assert (r.passed, r.needs_review) == (None, True)
