"""What the QA call page draws: violating words marked through punctuation, and
the timeline's spans and markers."""

from __future__ import annotations

from callcenter.qa.view import marked_transcript, timeline

TRANSCRIPT = [
    {"leg": "agent", "start": 0.0, "end": 4.0, "text": "好的，请你稍等，你家几楼？"},
    {"leg": "caller", "start": 4.0, "end": 6.0, "text": "你好，三楼。"},
]
RULES = [
    {"id": "polite_address", "final": False, "needs_review": False, "human": None,
     "evidence": [{"leg": "agent", "start": 1.0, "end": 1.2, "text": "你"}]},
    {"id": "greeting", "final": True, "needs_review": False, "human": None,
     "evidence": [{"leg": "agent", "start": 0.0, "end": 1.0, "text": "好的"}]},
    {"id": "self_identification", "final": None, "needs_review": True, "human": None,
     "evidence": [{"leg": "agent", "start": 0.0, "end": 4.0, "text": "请你稍等"}]},
]


def test_only_violations_and_undecided_rules_are_marked_on_their_leg() -> None:
    agent, caller = marked_transcript(TRANSCRIPT, RULES)
    marked = [(p.text, p.rules) for p in agent.pieces if p.rules]
    assert marked == [("请", ["self_identification"]),
                      ("你", ["polite_address", "self_identification"]),
                      ("稍等", ["self_identification"]), ("你", ["polite_address"])]
    assert "".join(p.text for p in agent.pieces) == TRANSCRIPT[0]["text"]
    assert not caller.flagged  # the caller's 你 is not the agent's


def test_a_rule_a_person_ruled_passed_is_not_marked() -> None:
    ruled = [{**RULES[0], "final": True, "human": {"passed": True}}]
    (agent, _) = marked_transcript(TRANSCRIPT, ruled)
    assert not agent.flagged


def test_timeline_places_speech_and_violations_in_percent_of_the_call() -> None:
    spans, markers = timeline(TRANSCRIPT, RULES, duration=8.0)
    assert [(s.leg, s.left, s.width) for s in spans] == [("agent", 0.0, 50.0),
                                                         ("caller", 50.0, 25.0)]
    assert [(m.rule_id, m.left, m.review) for m in markers] == [
        ("polite_address", 12.5, False), ("self_identification", 0.0, True)]


def _details_of_many_calls() -> set[str]:
    """The details the checks write over calls that take most of their branches."""
    from callcenter.core import CallFacts
    from callcenter.qa.engine import score
    from tests.unit.test_qa import good_call, make_timeline
    from tests.unit.test_qa_conduct import SILENT_SCRIPT

    rude = good_call(greet="喂，说话呀", ask="嗯，你等一下，不知道", confirm="那个，好的",
                     close="行了", report="我姓刘，我家漏水了")
    held = [("agent", 0.5, 4.0, "您好，请问有什么可以帮您？"), ("caller", 4.5, 8.0, "灯坏了"),
            ("agent", 8.5, 9.5, "好的"), ("agent", 30.0, 33.0, "您好，师傅马上到。")]
    calls = [good_call(), rude, held, SILENT_SCRIPT, SILENT_SCRIPT[:1], []]
    details: set[str] = set()
    for turns in calls:
        for source, conf in (("text", 1.0), ("asr", 0.55)):
            for kw in ({}, {"hangup_by": "agent", "answered_after_s": 20.0,
                            "caller_speech_dbfs": -48.0, "caller_snr_db": 3.0},
                       {"hangup_by": "caller", "answered_after_s": 3.0}):
                timeline = make_timeline(turns, conf)
                for category in ("engineering", "complaint", "consultation"):
                    result = score(timeline, CallFacts(**kw), source=source, category=category)
                    details |= {r.detail for r in result.rules}
                    # Evidence of call events (not words) is written by the checks too.
                    details |= {e.text for r in result.rules for e in r.evidence
                                if r.id in ("hangup_order", "answer_speed", "dead_air")}
    return details


def test_every_detail_the_checks_write_reads_in_chinese() -> None:
    import re

    from callcenter.qa.view import translate_detail

    details = _details_of_many_calls()
    assert len(details) > 40
    units = {"dBFS", "dB"}
    left = {d: translate_detail(d, "zh-CN") for d in details
            if set(re.findall(r"[A-Za-z]+", translate_detail(d, "zh-CN"))) - units}
    assert not left, left
    assert translate_detail("no hold", "en") == "no hold"
