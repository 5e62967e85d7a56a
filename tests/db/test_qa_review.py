"""QA results, people's verdicts, appeals and re-scoring against a real PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from callcenter.core import CallFacts, Segment, Timeline
from callcenter.db.store import PgStore
from callcenter.errors import Conflict, NotFound, Unprocessable
from callcenter.qa import store as qa_store
from callcenter.qa.engine import load_rules, score
from callcenter.qa.rescore import rescore
from callcenter.qa.store import Person, ResultFilter

REVIEWER = Person("qa1", "qa")
AGENT = Person("agent1", "agent")
SINCE = datetime(2000, 1, 1, tzinfo=UTC)

# An agent who greets without the offer of help, says 你, never reads back.
TURNS = [
    ("agent", 0.5, 3.0, "您好，物业客服中心，我姓王。"),
    ("caller", 3.5, 8.0, "你好，我家厨房水管漏水了，三号楼二单元502。"),
    ("agent", 8.5, 12.0, "好的，请你稍等，我们马上派师傅过去。"),
    ("caller", 12.5, 13.5, "好的谢谢。"),
    ("agent", 14.0, 16.0, "感谢您的来电，再见。"),
]


async def _scored_call(db_pool: asyncpg.Pool, call_id: str, agent_id: str = "a1") -> None:
    store = PgStore(db_pool)
    await db_pool.execute(
        "INSERT INTO agents (id, name, endpoint) VALUES ($1, $1, 'PJSIP/' || $1)"
        " ON CONFLICT DO NOTHING", agent_id)
    await store.open_call(call_id, caller_number="13900000000", channel_id="")
    await store.update_call(call_id, agent_id=agent_id)
    await store.finish_call(call_id, stage="conversation", hangup_by="caller")
    segments = [Segment(leg, a, b, text) for leg, a, b, text in TURNS]  # type: ignore[arg-type]
    timeline = Timeline(segments, 16.0)
    qa = score(timeline, CallFacts(call_id=call_id, hangup_by="caller"), source="text",
               category="engineering")
    await store.save_analysis(call_id, segments=segments, ticket=None, qa=qa, qa_source="text")


def _rule(doc: dict, rule_id: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in doc["rules"] if r["id"] == rule_id)


async def test_a_result_records_its_rule_set_and_a_verdict_changes_the_final_score(
    db_pool: asyncpg.Pool,
) -> None:
    await _scored_call(db_pool, "q1")
    doc = await qa_store.call_review(db_pool, "q1")
    assert doc is not None
    assert doc["rules_version"] == load_rules().version
    assert await db_pool.fetchval(
        "SELECT content FROM qa_rule_sets WHERE version = $1", doc["rules_version"]
    ) == load_rules().text
    assert _rule(doc, "polite_address")["passed"] is False
    automatic = doc["score"]
    assert doc["final_score"] == automatic
    after = await qa_store.record_verdict(
        db_pool, "q1", "polite_address", action="overturn",
        comment="你 was said to a colleague", by=REVIEWER)
    assert after["final_score"] > automatic
    doc = await qa_store.call_review(db_pool, "q1")
    assert doc is not None
    line = _rule(doc, "polite_address")
    assert (line["passed"], line["final"]) == (False, True)  # both sides kept
    assert line["human"]["by"] == "qa1" and doc["reviewed_rules"] == 1
    with pytest.raises(Unprocessable):
        await qa_store.record_verdict(db_pool, "q1", "greeting", action="overturn",
                                      comment="", by=REVIEWER)
    with pytest.raises(NotFound):
        await qa_store.record_verdict(db_pool, "nope", "greeting", action="confirm",
                                      comment="", by=REVIEWER)


async def test_appeal_upheld_passes_the_rule_and_a_second_appeal_waits_for_the_first(
    db_pool: asyncpg.Pool,
) -> None:
    await _scored_call(db_pool, "q2")
    appeal = await qa_store.open_appeal(db_pool, "q2", "polite_address",
                                        reason="我说的是您", by=AGENT, agent_id="a1")
    with pytest.raises(Conflict):
        await qa_store.open_appeal(db_pool, "q2", "polite_address", reason="again",
                                   by=AGENT, agent_id="a1")
    with pytest.raises(Unprocessable):  # passed: nothing to appeal
        await qa_store.open_appeal(db_pool, "q2", "closing", reason="x", by=AGENT,
                                   agent_id="a1")
    queue = await qa_store.review_queue(db_pool, since=SINCE)
    assert [a["id"] for a in queue["appeals"]] == [appeal]
    decided = await qa_store.decide_appeal(db_pool, appeal, upheld=True,
                                           comment="听录音是您", by=REVIEWER)
    assert decided["status"] == "upheld"
    with pytest.raises(Conflict):
        await qa_store.decide_appeal(db_pool, appeal, upheld=False, comment="x", by=REVIEWER)
    doc = await qa_store.call_review(db_pool, "q2")
    assert doc is not None
    assert _rule(doc, "polite_address")["final"] is True
    assert doc["appeals"][0]["status"] == "upheld"
    assert doc["reviews"][0]["appeal_id"] == appeal


async def test_rescore_with_a_changed_rule_file_keeps_human_verdicts_and_both_versions(
    db_pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    await _scored_call(db_pool, "q3")
    await qa_store.record_verdict(db_pool, "q3", "greeting", action="overturn",
                                  comment="offer of help said, transcript cut", by=REVIEWER)
    first = await qa_store.call_review(db_pool, "q3")
    assert first is not None
    # The new rule set no longer counts 你 against the agent at all.
    changed = tmp_path / "rules.yaml"
    changed.write_text(re.sub(r'(?m)^version: .*$', 'version: "v2"', load_rules().text)
                       .replace("    min_count: 1\n", "    min_count: 99\n", 1),
                       encoding="utf-8")
    new_rules = load_rules(changed)
    dry = await rescore(db_pool, new_rules, since=SINCE, dry_run=True)
    assert dry.changed == 1 and dry.rule_changes == {"polite_address": 1}
    assert (await qa_store.call_review(db_pool, "q3"))["rules_version"] == first[  # type: ignore[index]
        "rules_version"]
    report = await rescore(db_pool, new_rules, since=SINCE)
    assert report.as_dict()["details"][0]["rules"] == [
        {"rule_id": "polite_address", "before": "fail", "after": "pass"}]
    assert report.human_verdicts_kept == 1
    doc = await qa_store.call_review(db_pool, "q3")
    assert doc is not None
    assert doc["rules_version"] == new_rules.version
    assert [v["rules_version"] for v in doc["earlier_versions"]] == [first["rules_version"]]
    assert _rule(doc, "greeting")["final"] is True  # the person's verdict still rules
    assert _rule(doc, "polite_address")["passed"] is True
    versions = {r["version"] for r in await db_pool.fetch("SELECT version FROM qa_rule_sets")}
    assert versions == {first["rules_version"], new_rules.version}
    # Scoring again with the same rule set changes nothing and keeps one result.
    again = await rescore(db_pool, new_rules, since=SINCE)
    assert (again.changed, again.already_current) == (0, 1)
    assert await db_pool.fetchval("SELECT count(*) FROM qa_results") == 1


async def test_lists_filters_scorecards_and_agreement(db_pool: asyncpg.Pool) -> None:
    await _scored_call(db_pool, "q4", agent_id="a1")
    await _scored_call(db_pool, "q5", agent_id="a2")
    await qa_store.record_verdict(db_pool, "q4", "polite_address", action="confirm",
                                  comment="", by=REVIEWER)
    await qa_store.record_verdict(db_pool, "q4", "greeting", action="overturn",
                                  comment="greeting complete", by=REVIEWER)
    failing = await qa_store.list_results(db_pool, ResultFilter(rule="greeting"))
    assert [r["call_id"] for r in failing] == ["q5"]  # q4's greeting was overturned
    reviewed = await qa_store.list_results(db_pool, ResultFilter(reviewed=True))
    assert [r["call_id"] for r in reviewed] == ["q4"]
    mine = await qa_store.list_results(db_pool, ResultFilter(agent_id="a2"))
    assert [r["call_id"] for r in mine] == ["q5"]
    now = datetime.now(UTC)
    cards = await qa_store.scorecards(db_pool, since=now - timedelta(days=1),
                                      until=now + timedelta(days=1))
    by_agent = {a["agent_id"]: a for a in cards["agents"]}
    assert by_agent["a1"]["reviewed"] == 1 and by_agent["a2"]["reviewed"] == 0
    assert by_agent["a1"]["average"] > by_agent["a2"]["average"]
    top = {v["rule_id"]: v["count"] for v in cards["violations"]}
    assert top["polite_address"] == 2 and top["greeting"] == 1
    agreed = await qa_store.agreement(db_pool)
    assert agreed["by_rule"]["polite_address"]["rate"] == 1.0
    assert agreed["by_rule"]["greeting"]["rate"] == 0.0
    queue = await qa_store.review_queue(db_pool, since=SINCE)
    assert [c["call_id"] for c in queue["calls"]] == ["q5"]  # q4 is reviewed
