"""QA review decisions: final scores, verdicts, appeals, agreement, the queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from callcenter.errors import Conflict, Unprocessable
from callcenter.qa.engine import load_rules, rules_from_dict, rules_version
from callcenter.qa.review import (
    Candidate,
    QueuePolicy,
    ReviewFact,
    RuleLine,
    Verdict,
    agreement,
    appeal_verdict,
    check_appeal,
    final_score,
    review_queue,
    verdict_value,
)


def test_final_score_uses_people_where_they_ruled_and_skips_undecided_rules() -> None:
    lines = [
        RuleLine("greeting", 10, False),
        RuleLine("closing", 10, True),
        RuleLine("self_identification", 5, None, needs_review=True),
    ]
    assert final_score(lines) == 50.0  # the rule waiting for a person deducts nothing
    overturned = [RuleLine("greeting", 10, False, verdict=Verdict("greeting", True)),
                  *lines[1:]]
    assert final_score(overturned) == 100.0
    decided = [*lines[:2], RuleLine("self_identification", 5, None, True,
                                    Verdict("self_identification", False))]
    assert final_score(decided) == 40.0


def test_confirm_and_overturn_act_on_the_machines_verdict() -> None:
    line = RuleLine("greeting", 10, False)
    assert verdict_value(line, "confirm", "") is False
    assert verdict_value(line, "overturn", "greeted, the recogniser missed it") is True
    with pytest.raises(Unprocessable) as exc:
        verdict_value(line, "overturn", "  ")
    assert exc.value.error_id == "qa.comment_required"
    undecided = RuleLine("self_identification", 5, None, needs_review=True)
    with pytest.raises(Unprocessable) as exc:
        verdict_value(undecided, "confirm", "")
    assert exc.value.error_id == "qa.nothing_to_confirm"
    assert verdict_value(undecided, "fail", "no name given") is False
    with pytest.raises(Unprocessable):
        verdict_value(RuleLine("no_such_rule", 1, True), "confirm", "")


def test_an_agent_appeals_only_a_failed_rule_once_and_with_a_reason() -> None:
    failed = RuleLine("polite_address", 10, False)
    check_appeal(failed, "I said 您, listen at 12 s", open_appeal=False)
    with pytest.raises(Unprocessable) as exc:
        check_appeal(failed, "", open_appeal=False)
    assert exc.value.error_id == "qa.reason_required"
    with pytest.raises(Conflict):
        check_appeal(failed, "again", open_appeal=True)
    with pytest.raises(Unprocessable) as exc:
        check_appeal(RuleLine("greeting", 10, True), "why", open_appeal=False)
    assert exc.value.error_id == "qa.not_failed"
    # Passed after a reviewer overturned it: nothing left to appeal.
    with pytest.raises(Unprocessable):
        check_appeal(RuleLine("greeting", 10, False, verdict=Verdict("greeting", True)), "x",
                     open_appeal=False)
    assert appeal_verdict(True, "agreed, 您 at 12 s") is True
    with pytest.raises(Unprocessable):
        appeal_verdict(False, "")


def test_agreement_per_rule_and_version_leaves_undecided_rules_apart() -> None:
    facts = [
        ReviewFact("greeting", "v1", False, False, False),
        ReviewFact("greeting", "v1", False, False, True),
        ReviewFact("greeting", "v2", True, False, True),
        ReviewFact("closing", "v2", True, False, False),
        ReviewFact("self_identification", "v2", None, True, False),
    ]
    report = agreement(facts).as_dict()
    assert report["by_rule"]["greeting"] == {  # type: ignore[index]
        "reviewed": 3, "agreed": 2, "rate": 0.667, "left_for_review": 0,
        "overturned_to_pass": 1, "overturned_to_fail": 0}
    assert report["by_version"]["v1"]["greeting"]["rate"] == 0.5  # type: ignore[index]
    assert report["by_version"]["v2"]["greeting"]["rate"] == 1.0  # type: ignore[index]
    overall = report["overall"]
    assert overall["reviewed"] == 4 and overall["left_for_review"] == 1  # type: ignore[index]


def test_queue_puts_undecided_then_low_scores_then_a_sample_of_every_agent() -> None:
    t0 = datetime(2026, 11, 30, 8, tzinfo=UTC)
    calls = [Candidate(f"a{i}", "alice", 95.0, 0, t0 + timedelta(minutes=i)) for i in range(6)]
    calls += [Candidate(f"b{i}", "bob", 90.0, 0, t0 + timedelta(minutes=i)) for i in range(2)]
    calls += [Candidate("low1", "bob", 55.0, 0, t0), Candidate("low2", "alice", 70.0, 0, t0),
              Candidate("unsure", "alice", 90.0, 2, t0)]
    order = review_queue(calls, QueuePolicy(low_score=80, sample_per_agent=2), salt="w48")
    ids = [c.call_id for c, _ in order]
    assert ids[:3] == ["unsure", "low1", "low2"]
    reasons = [why for _, why in order]
    assert reasons[:3] == ["needs_review", "low_score", "low_score"]
    sampled = [c for c, why in order if why == "sample"]
    assert sorted(c.agent_id or "" for c in sampled) == ["alice", "alice", "bob", "bob"]
    # Stable: reading the queue again draws the same calls.
    assert order == review_queue(calls, QueuePolicy(low_score=80, sample_per_agent=2),
                                 salt="w48")


def test_rule_set_versions_follow_content_not_comments(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shipped = load_rules()
    label = yaml.safe_load(shipped.text)["version"]
    assert shipped.version.startswith(f"{label}+") and len(shipped.version) == len(label) + 9
    text = shipped.text
    commented = tmp_path / "commented.yaml"
    commented.write_text("# a new comment\n" + text, encoding="utf-8")
    assert load_rules(commented).version == shipped.version
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace("min_overlap_s: 1.0", "min_overlap_s: 1.5"),
                       encoding="utf-8")
    assert load_rules(changed).version != shipped.version
    assert rules_version({"version": "x", "rules": {}}) == rules_from_dict(
        {"version": "x", "rules": {}}).version
