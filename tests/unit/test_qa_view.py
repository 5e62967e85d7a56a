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
