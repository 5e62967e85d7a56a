"""Human review of automatic QA results: pure decisions, no I/O.

A reviewer confirms or overturns each rule result; an agent may appeal a rule
their call failed, and a reviewer upholds or rejects the appeal. The machine's
verdicts and people's sit side by side: the final score uses a person's verdict
where there is one, the machine's elsewhere; a rule the machine left for review
deducts nothing until a person decides it. Re-scoring with another rule set
replaces the machine's side only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from callcenter.errors import Conflict, Unprocessable
from callcenter.qa.engine import RULE_IDS, weighted_score

Action = Literal["confirm", "overturn", "pass", "fail", "not_applicable"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A person's ruling on one rule of one call."""

    rule_id: str
    passed: bool | None
    comment: str = ""
    reviewer: str = ""
    at: datetime | None = None
    appeal_id: int | None = None


@dataclass(frozen=True, slots=True)
class RuleLine:
    """One rule of a call: the machine's verdict and, when there is one, a person's."""

    id: str
    weight: float
    automatic: bool | None
    needs_review: bool = False
    verdict: Verdict | None = None

    @property
    def final(self) -> bool | None:
        if self.verdict is not None:
            return self.verdict.passed
        return None if self.needs_review else self.automatic

    @property
    def reviewed(self) -> bool:
        return self.verdict is not None

    @property
    def changed_by_review(self) -> bool:
        return self.verdict is not None and self.verdict.passed != self.automatic


def final_score(lines: Iterable[RuleLine]) -> float:
    return weighted_score((line.weight, line.final) for line in lines)


def verdict_value(line: RuleLine, action: Action, comment: str) -> bool | None:
    """What a reviewer's action means for this rule. ``confirm``/``overturn`` act
    on the machine's verdict; a rule the machine could not decide (needs review or
    not applicable) is ruled directly with ``pass``/``fail``/``not_applicable``."""
    if line.id not in RULE_IDS:
        raise Unprocessable(f"unknown rule {line.id!r}", error="qa.unknown_rule", rule=line.id)
    if action in ("confirm", "overturn"):
        if line.automatic is None:
            raise Unprocessable(
                "the machine did not decide this rule: rule it pass, fail or not_applicable",
                error="qa.nothing_to_confirm", rule=line.id,
            )
        passed: bool | None = line.automatic if action == "confirm" else not line.automatic
    else:
        passed = {"pass": True, "fail": False, "not_applicable": None}[action]
    if passed != line.automatic and not comment.strip():
        # A person who contradicts the machine says why: the reason is what
        # improves the rules, and what the agent reads.
        raise Unprocessable("a verdict against the machine's needs a comment",
                            error="qa.comment_required", rule=line.id)
    return passed


def check_appeal(line: RuleLine, reason: str, *, open_appeal: bool) -> None:
    """An agent appeals a rule their call fails (in its final verdict)."""
    if not reason.strip():
        raise Unprocessable("an appeal needs a reason", error="qa.reason_required", rule=line.id)
    if line.final is not False:
        raise Unprocessable("only a failed rule can be appealed", error="qa.not_failed",
                            rule=line.id)
    if open_appeal:
        raise Conflict("this rule already has an open appeal", error="qa.appeal_open",
                       rule=line.id)


def appeal_verdict(upheld: bool, comment: str) -> bool:
    """The rule's verdict after a decided appeal: upheld, the rule passes."""
    if not comment.strip():
        raise Unprocessable("a decision on an appeal needs a comment",
                            error="qa.comment_required")
    return upheld


# ---- agreement between machine and people ----------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewFact:
    """One person's verdict beside the machine's at the time (latest per rule)."""

    rule_id: str
    rules_version: str
    automatic: bool | None
    automatic_review: bool
    passed: bool | None


@dataclass(slots=True)
class Agreement:
    reviewed: int = 0
    agreed: int = 0
    # Rules the machine left for a person: not counted as agreement either way.
    left_for_review: int = 0
    overturned_to_pass: int = 0
    overturned_to_fail: int = 0

    @property
    def rate(self) -> float | None:
        return round(self.agreed / self.reviewed, 3) if self.reviewed else None

    def as_dict(self) -> dict[str, object]:
        return {"reviewed": self.reviewed, "agreed": self.agreed, "rate": self.rate,
                "left_for_review": self.left_for_review,
                "overturned_to_pass": self.overturned_to_pass,
                "overturned_to_fail": self.overturned_to_fail}


@dataclass(slots=True)
class AgreementReport:
    by_rule: dict[str, Agreement] = field(default_factory=dict)
    by_version: dict[str, dict[str, Agreement]] = field(default_factory=dict)
    overall: Agreement = field(default_factory=Agreement)

    def as_dict(self) -> dict[str, object]:
        return {
            "overall": self.overall.as_dict(),
            "by_rule": {r: a.as_dict() for r, a in sorted(self.by_rule.items())},
            "by_version": {v: {r: a.as_dict() for r, a in sorted(rules.items())}
                           for v, rules in sorted(self.by_version.items())},
        }


def agreement(facts: Iterable[ReviewFact]) -> AgreementReport:
    report = AgreementReport()
    for f in facts:
        for bucket in (report.overall,
                       report.by_rule.setdefault(f.rule_id, Agreement()),
                       report.by_version.setdefault(f.rules_version, {}).setdefault(
                           f.rule_id, Agreement())):
            _count(bucket, f)
    return report


def _count(a: Agreement, f: ReviewFact) -> None:
    if f.automatic_review:
        a.left_for_review += 1
        return
    a.reviewed += 1
    if f.passed == f.automatic:
        a.agreed += 1
    elif f.passed is True:
        a.overturned_to_pass += 1
    elif f.passed is False:
        a.overturned_to_fail += 1


# ---- the review queue ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A scored call nobody has reviewed yet."""

    call_id: str
    agent_id: str | None
    score: float
    needs_review: int
    started_at: datetime


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    low_score: float = 80.0
    sample_per_agent: int = 2  # calls per agent drawn at random, for a fair picture


DEFAULT_POLICY = QueuePolicy()
REASONS = ("needs_review", "low_score", "sample")


def review_queue(candidates: Sequence[Candidate], policy: QueuePolicy = DEFAULT_POLICY,
                 *, salt: str = "") -> list[tuple[Candidate, str]]:
    """Calls in the order a reviewer should take them, each with why it is there:
    the ones the machine could not decide, then low scores (lowest first), then a
    random sample of each agent's other calls, so that every agent is seen, not
    only the ones whose calls go wrong. The sample is a stable hash of the call id
    (and ``salt``, e.g. the week): the same call stays drawn while the queue is
    read again."""
    first = sorted((c for c in candidates if c.needs_review),
                   key=lambda c: (-c.needs_review, c.score, c.started_at))
    low = sorted((c for c in candidates if not c.needs_review and c.score < policy.low_score),
                 key=lambda c: (c.score, c.started_at))
    rest = [c for c in candidates if not c.needs_review and c.score >= policy.low_score]
    by_agent: dict[str, list[Candidate]] = {}
    for c in rest:
        by_agent.setdefault(c.agent_id or "", []).append(c)
    sample: list[Candidate] = []
    for agent in sorted(by_agent):
        drawn = sorted(by_agent[agent], key=lambda c: _draw(c.call_id, salt))
        sample += drawn[: policy.sample_per_agent]
    sample.sort(key=lambda c: c.started_at)
    return ([(c, "needs_review") for c in first] + [(c, "low_score") for c in low]
            + [(c, "sample") for c in sample])


def _draw(call_id: str, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}|{call_id}".encode()).digest()
