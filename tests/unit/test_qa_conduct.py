"""The checks beyond the spec's section 4 (qa/conduct.py), the coaching shown
with a violation, and anchors and exceptions of the rule file."""

from __future__ import annotations

from typing import Any

import yaml

from callcenter.core import RuleResult
from callcenter.qa.engine import load_rules, rules_from_dict, score
from tests.unit.test_qa import facts, good_call, make_timeline, run

Turns = list[tuple[str, float, float, str]]


def test_surname_address_once_the_caller_gave_it() -> None:
    named = good_call(addr="八栋二单元一七零二，我姓刘。",
                      confirm="好的刘女士，跟您确认一下，八栋二单元一七零二，师傅下午到，对吗？")
    r = run(named, category="engineering")["surname_address"]
    assert r.passed is True and r.evidence[-1].text == "刘女士"
    never = good_call(addr="八栋二单元一七零二，我姓刘。")
    r = run(never, category="engineering")["surname_address"]
    assert r.passed is False and "刘" in r.detail and "先生" in r.coaching
    assert run(good_call(), category="engineering")["surname_address"].passed is None
    compound = good_call(addr="免贵姓欧阳，八栋。", confirm="欧阳先生，跟您确认一下，对吗？")
    assert run(compound, category="engineering")["surname_address"].passed is True


def test_surname_heard_unclearly_on_recognised_speech_goes_to_a_person() -> None:
    never = good_call(addr="八栋二单元一七零二我姓刘")
    r = run(never, category="engineering", source="asr", conf=0.5)["surname_address"]
    assert (r.passed, r.needs_review) == (None, True)


def test_response_commitment_for_calls_that_need_action() -> None:
    promised = good_call(confirm="跟您确认一下，八栋二单元一七零二，师傅30分钟内到，对吗？")
    assert run(promised, category="engineering")["response_commitment"].passed is True
    vague = good_call(confirm="跟您确认一下，八栋二单元一七零二，厨房水龙头滴水，对吗？")
    r = run(vague, category="engineering")["response_commitment"]
    assert r.passed is False and r.coaching
    assert run(vague, category="consultation")["response_commitment"].passed is None
    # An exception phrase does not count as a promise.
    fine = good_call(confirm="跟您确认一下，八栋二单元，马上就好，对吗？")
    assert run(fine, category="engineering")["response_commitment"].passed is False


def _long_call(agent_s: float, caller_s: float) -> Turns:
    return [("agent", 0.0, agent_s, "您好" * int(agent_s)),
            ("caller", agent_s + 0.5, agent_s + 0.5 + caller_s, "我" * int(caller_s))]


def test_talk_share_and_longest_monologue() -> None:
    lopsided = run(_long_call(80.0, 10.0), category="engineering")
    assert lopsided["talk_share"].passed is False
    assert "89%" in lopsided["talk_share"].detail
    assert lopsided["longest_monologue"].passed is False
    balanced = run(_long_call(40.0, 40.0), category="engineering")
    assert balanced["talk_share"].passed is True
    assert balanced["longest_monologue"].passed is True
    assert run(_long_call(10.0, 5.0))["talk_share"].passed is None  # too short to judge


SILENT_SCRIPT: Turns = [
    ("agent", 0.5, 3.5, "您好！请问有什么能够帮助您？"),
    ("agent", 8.5, 11.5, "您好！请问有什么能够帮助您？"),
    ("agent", 16.5, 22.0, "对不起，您的电话没有声音，请您换一部电话再次打来，好吗？再见！"),
]


def _scored(turns: Turns, end: float, **kw: Any) -> dict[str, RuleResult]:
    timeline = make_timeline(turns)
    timeline.duration = end
    res = score(timeline, facts(**kw), category=kw.pop("category", "consultation"))
    return {r.id: r for r in res.rules}


def test_silent_line_script_greets_twice_says_the_sentence_and_waits() -> None:
    ok = _scored(SILENT_SCRIPT, 27.0, hangup_by="agent")["silent_line_script"]
    assert ok.passed is True
    hasty = _scored(SILENT_SCRIPT, 22.5, hangup_by="agent")["silent_line_script"]
    assert hasty.passed is False and "without waiting" in hasty.detail
    short = _scored(SILENT_SCRIPT[:1], 9.0, hangup_by="agent")["silent_line_script"]
    assert short.passed is False and "greeting said 1" in short.detail
    heard = run(good_call(), category="engineering")["silent_line_script"]
    assert heard.passed is None


def test_quiet_and_noisy_lines_from_the_acoustics_or_the_agents_words() -> None:
    call = good_call()
    quiet = run(call, category="engineering", caller_speech_dbfs=-46.0)["quiet_line_script"]
    assert (quiet.passed, quiet.needs_review) == (None, True)
    asked = good_call(ask="对不起！请您大声一点，好吗？您家是几栋几单元？")
    assert run(asked, category="engineering")["quiet_line_script"].passed is True
    rude = good_call(ask="大声点，您家是几栋几单元？")
    assert run(rude, category="engineering")["quiet_line_script"].passed is False
    normal = run(call, category="engineering", caller_speech_dbfs=-20.0, caller_snr_db=45.0)
    assert normal["quiet_line_script"].passed is None
    assert normal["noisy_line_script"].passed is None
    sorry = "对不起，您的电话杂音太大，听不清，请您换一部电话再次打来好吗？再见！"
    noisy: Turns = [("caller", 0.0, 3.0, "喂喂"), ("agent", 3.5, 9.0, sorry)]
    hung_up = _scored(noisy, 15.0, hangup_by="agent", caller_snr_db=4.0)["noisy_line_script"]
    assert hung_up.passed is True
    silent_hangup: Turns = [("caller", 0.0, 3.0, "喂喂"), ("agent", 3.5, 5.0, "杂音太大了")]
    r = _scored(silent_hangup, 9.0, hangup_by="agent")["noisy_line_script"]
    assert r.passed is False


def test_dialect_script() -> None:
    asked = good_call(ask="对不起，请您讲普通话，好吗？谢谢！")
    assert run(asked, category="engineering")["dialect_script"].passed is True
    assert run(good_call(), category="engineering")["dialect_script"].passed is None


def test_coaching_names_the_compliant_phrase_for_each_forbidden_phrase() -> None:
    rude = good_call(ask="不知道，您家是几栋几单元？")
    r = run(rude, category="engineering")["forbidden_phrase"]
    assert r.passed is False
    assert "“不知道” → “这个问题我帮您查询一下，稍后给您回复”" in r.coaching
    assert run(good_call(), category="engineering")["forbidden_phrase"].coaching == ""


def test_a_rule_anchored_to_the_first_seconds_or_after_another_rule() -> None:
    data = yaml.safe_load(load_rules().text)
    data["rules"]["response_commitment"]["within"] = {"first_s": 20}
    early_only = rules_from_dict(data)
    late = good_call(confirm="跟您确认一下，师傅30分钟内到，对吗？")  # said at 26.5 s
    timeline = make_timeline(late)
    r = {x.id: x for x in score(timeline, facts(), rules=early_only,
                                 category="engineering").rules}
    assert r["response_commitment"].passed is False
    data["rules"]["response_commitment"]["within"] = {"after": "confirmation"}
    after = rules_from_dict(data)
    r = {x.id: x for x in score(timeline, facts(), rules=after, category="engineering").rules}
    assert r["response_commitment"].passed is True
    assert after.version != load_rules().version


def test_an_opening_wei_heard_as_a_homophone_is_a_forbidden_phrase() -> None:
    def opening(text: str) -> RuleResult:
        turns = good_call(greet=text)
        return run(turns, category="engineering", source="asr", conf=0.6)["forbidden_phrase"]

    found = opening("为您好物业客服中心我姓周请问有什么可以帮您")
    assert found.passed is False and found.evidence[0].text == "为"
    assert opening("您好物业客服中心为您服务请问有什么可以帮您").passed is True
    assert opening("好的为您好好查一下").passed is True  # not the start of the answer


def test_polite_address_evidence_is_the_phrase_it_coaches() -> None:
    r = run(good_call(ask="好的，你等一下，请问你家是几栋？"), category="engineering")
    r = r["polite_address"]
    assert [e.text for e in r.evidence] == ["你等一下", "你家"]
    assert "“你等一下” → “请您稍等”" in r.coaching and "“你家” → “您家”" in r.coaching


def test_self_identification_by_a_name_after_the_role() -> None:
    assert _self_identified("您好，物业管家中心，我是管家小李，请问有什么可以帮您？") is True
    assert _self_identified("您好，物业，我是老陈，请问有什么可以帮您？") is True
    assert _self_identified("您好，物业，我是工程管家林峰，请问有什么可以帮您？") is True
    assert _self_identified("您好，物业，我是物业客服，请问有什么可以帮您？") is False
    assert _self_identified("您好，物业，我是今天的值班客服，请问有什么可以帮您？") is False


def test_self_identification_by_department_title_or_surname_clause() -> None:
    assert _self_identified("您好，物业，安保部王勇，请问有什么可以帮您？") is True
    assert _self_identified("您好，物业，我是维修部刘师傅，请问有什么可以帮您？") is True
    assert _self_identified("您好，物业，我是客服部主管，姓詹，请问有什么可以帮您？") is True
    # 的 alone does not make a clause an introduction
    assert _self_identified("您好，请问您的房号是？") is False


def test_self_identification_by_a_job_and_a_name() -> None:
    assert _self_identified("您好，物业，我是值班电工老钟，请问有什么可以帮您？") is True
    assert _self_identified("您好，物业，我是值班工程师马骏，请问有什么可以帮您？") is True
    assert _self_identified("您好，物业，我是保安队的卢班长，请问有什么可以帮您？") is True


def _self_identified(greet: str) -> bool | None:
    """The self-identification verdict of a good call opened with ``greet``."""
    return run(good_call(greet=greet), category="engineering")["self_identification"].passed
