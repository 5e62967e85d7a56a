"""QA accuracy per rule on the 45 dev calls, in text mode (ground-truth timelines)
and audio mode (recognised speech), scoring throughput, and the time to re-score
stored calls.

``own`` scores the project's own labelled calls (``tests/data/qa/*.yaml``, written
from the rule definitions without the dev calls): how the rules hold on wordings
they were not written from.

A rule is *detected* when its result is ``passed = False``. Per labelled rule:
precision = detected and labelled failed / detected, recall = detected and
labelled failed / labelled failed, over the calls where the rule is labelled
(``qa_fail`` / ``qa_pass``; ``speech_rate`` from ``agent_chars_per_min``). A result
left ``needs_review`` is not a detection; the rate of such results is printed.

Baselines in the same run: in audio mode, the same rules applied as if the
recognised text were exact (``source="text"``: no confidence thresholds, no ASR
overrides); for throughput, the goal (1,000 calls per second per core).

The system gets only what an evaluation may give it (id, duration, ivr_digits,
caller.phone, timeline or audio); labels are used for scoring only. Audio
transcripts come from the cache of ``bench/asr_accuracy.py`` (decoded once).

    .venv/bin/python bench/qa_accuracy.py [--mode own,text,audio,speed,rescore]
        [--rescore-calls 10000] [--details]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from asr_accuracy import rule_label, transcripts  # noqa: E402
from text_accuracy import (  # noqa: E402
    DEV_DIR,
    LABELLED_RULES,
    NOW,
    allowed_input,
    facts_of,
    load_calls,
    to_timeline,
)

from callcenter.core import CallFacts, QaResult, Timeline  # noqa: E402
from callcenter.qa.engine import agent_chars_per_min, load_rules, score  # noqa: E402
from callcenter.tickets.classifier import classify  # noqa: E402

GOAL_CALLS_PER_S = 1000.0


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    review: int = 0
    fn_review: int = 0  # labelled failures the machine left to a person
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def recall_decided(self) -> float | None:
        """Recall over the results the machine decided (those left to a person out)."""
        decided = self.tp + self.fn - self.fn_review
        return self.tp / decided if decided else None

    def add(self, other: Tally) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.tn += other.tn
        self.review += other.review
        self.fn_review += other.fn_review


def tally(results: dict[str, QaResult | None], calls: list[dict[str, Any]]
          ) -> dict[str, Tally]:
    out = {rule: Tally() for rule in LABELLED_RULES}
    for meta in calls:
        result = results[meta["id"]]
        for rule in LABELLED_RULES:
            label = rule_label(meta, rule)
            if label is None:
                continue
            found = next((r for r in result.rules if r.id == rule), None) if result else None
            detected = found is not None and found.passed is False and not found.needs_review
            t = out[rule]
            t.review += bool(found is not None and found.needs_review)
            if label is False and detected:
                t.tp += 1
            elif label is False:
                t.fn += 1
                t.fn_review += bool(found is not None and found.needs_review)
                t.misses.append(f"{meta['id']} missed ({found.detail if found else 'no result'})")
            elif detected:
                t.fp += 1
                t.misses.append(f"{meta['id']} false fail ({found.detail if found else ''})")
            else:
                t.tn += 1
    return out


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.2f}"


def print_table(title: str, tallies: dict[str, Tally], baseline: dict[str, Tally] | None,
                details: bool) -> Tally:
    print(f"\n{title}")
    head = f"{'rule':20} {'prec':>6} {'recall':>6} {'review':>6} {'TP':>3} {'FP':>3} {'FN':>3}"
    print(head + ("   baseline prec/recall" if baseline else ""))
    overall = Tally()
    base_overall = Tally()
    for rule, t in tallies.items():
        overall.add(t)
        line = (f"{rule:20} {_pct(t.precision)} {_pct(t.recall)} {t.review:6d} "
                f"{t.tp:3d} {t.fp:3d} {t.fn:3d}")
        if baseline:
            b = baseline[rule]
            base_overall.add(b)
            line += f"   {_pct(b.precision)} {_pct(b.recall)}"
        print(line)
    judged = overall.tp + overall.fp + overall.fn + overall.tn + overall.review
    line = (f"{'overall':20} {_pct(overall.precision)} {_pct(overall.recall)} "
            f"{overall.review:6d} {overall.tp:3d} {overall.fp:3d} {overall.fn:3d}")
    if baseline:
        line += f"   {_pct(base_overall.precision)} {_pct(base_overall.recall)}"
    print(line)
    print(f"needs_review rate: {overall.review / max(1, judged):.1%} of {judged} labelled "
          f"rule results; recall over the results the machine decided (those left to a "
          f"person out): {_pct(overall.recall_decided).strip()}")
    if details:
        for rule, t in tallies.items():
            for miss in t.misses:
                print(f"  {rule}: {miss}")
    return overall


def text_mode(calls: list[dict[str, Any]], details: bool) -> None:
    results: dict[str, QaResult | None] = {}
    rates = []
    for meta in calls:
        given = allowed_input(meta)
        timeline, facts = to_timeline(given), facts_of(given)
        results[meta["id"]] = score(timeline, facts, source="text")
        measured = agent_chars_per_min(timeline)
        if measured is not None and meta.get("agent_chars_per_min") is not None:
            rates.append(abs(measured - float(meta["agent_chars_per_min"])))
    print_table("TEXT mode (ground-truth timelines)", tally(results, calls), None, details)
    if rates:
        print(f"speech_rate: |measured - agent_chars_per_min| mean {statistics.mean(rates):.1f},"
              f" max {max(rates):.1f} chars/min over {len(rates)} calls (goal: max <= 10)")


def audio_mode(calls: list[dict[str, Any]], details: bool, jobs: int) -> None:
    timelines = transcripts(calls, jobs, refresh=False)
    system: dict[str, QaResult | None] = {}
    plain: dict[str, QaResult | None] = {}
    for meta in calls:
        timeline = timelines[meta["id"]]
        facts = facts_of(allowed_input(meta))
        category = classify(timeline, facts, now=NOW).category
        has_agent = any(s.leg == "agent" for s in timeline.segments)
        system[meta["id"]] = score(timeline, facts, source="asr", category=category) \
            if has_agent else None
        plain[meta["id"]] = score(timeline, facts, source="text", category=category) \
            if has_agent else None
    overall = print_table("AUDIO mode (recognised speech; baseline: the text rules as if "
                          "the recognition were exact)",
                          tally(system, calls), tally(plain, calls), details)
    worst = min((t.precision for t in tally(system, calls).values()
                 if t.precision is not None), default=None)
    print(f"goals: precision >= 0.90 (now {_pct(overall.precision).strip()}), recall >= 0.85 "
          f"(now {_pct(overall.recall).strip()} counting results left to a person as missed, "
          f"{_pct(overall.recall_decided).strip()} over the decided ones), no rule below "
          f"precision 0.80 (lowest {_pct(worst).strip()})")


OWN_DIR = ROOT / "tests" / "data" / "qa"


def own_calls() -> list[dict[str, Any]]:
    """The own labelled calls as dev-call-like records (timeline, labels)."""
    import yaml

    calls = []
    for path in sorted(OWN_DIR.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            calls.append({
                "id": entry["id"], "category": entry["category"],
                "timeline": [{"who": w, "start": a, "end": b, "text": t}
                             for w, a, b, t in entry["turns"]],
                "labels": {"qa_fail": entry.get("qa_fail") or [],
                           "qa_pass": entry.get("qa_pass") or []},
            })
    return calls


def own_mode(details: bool) -> None:
    calls = own_calls()
    if not calls:
        print(f"\nOWN calls: none in {OWN_DIR}")
        return
    results: dict[str, QaResult | None] = {}
    for meta in calls:
        timeline = to_timeline({"timeline": meta["timeline"], "duration_s": max(
            t["end"] for t in meta["timeline"])})
        results[meta["id"]] = score(timeline, CallFacts(call_id=meta["id"]), source="text",
                                    category=meta["category"])
    print_table(f"OWN labelled calls ({len(calls)}, text mode; the category as labelled)",
                tally(results, calls), None, details)


def _timed(work: Callable[[], None], seconds: float = 3.0) -> float:
    """Runs per second of ``work`` over about ``seconds`` of CPU time."""
    runs, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        work()
        runs += 1
    return runs / (time.process_time() - start)


def speed(calls: list[dict[str, Any]]) -> None:
    prepared: list[tuple[Timeline, CallFacts, str]] = []
    for meta in calls:
        given = allowed_input(meta)
        timeline, facts = to_timeline(given), facts_of(given)
        prepared.append((timeline, facts, classify(timeline, facts, now=NOW).category))
    rules = load_rules()

    def score_all() -> None:
        for timeline, facts, category in prepared:
            score(timeline, facts, rules=rules, source="asr", category=category)

    per_s = _timed(score_all) * len(prepared)
    print(f"\nSCORING THROUGHPUT (stored transcripts, one process, CPU time): "
          f"{per_s:,.0f} calls/s per core; goal {GOAL_CALLS_PER_S:,.0f} "
          f"({per_s / GOAL_CALLS_PER_S:.2f}x the goal)")


def rescore_time(calls: list[dict[str, Any]], n: int) -> None:
    """Store ``n`` scored calls (the dev transcripts over and over) in an embedded
    PostgreSQL, then time ``callcenter qa rescore`` with a changed rule file."""
    from rescore_fixture import time_rescore

    seconds, report = asyncio.run(time_rescore(calls, n))
    print(f"\nRE-SCORE {n:,} stored calls with a changed rule file: {seconds:.1f} s "
          f"({n / seconds:,.0f} calls/s; {report['changed']:,} changed)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="own,text,audio,speed,rescore")
    parser.add_argument("--rescore-calls", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=2, help="decoding processes (audio)")
    parser.add_argument("--details", action="store_true", help="print every disagreement")
    args = parser.parse_args()
    if not DEV_DIR.is_dir():
        print(f"no test data at {DEV_DIR}", file=sys.stderr)
        return 2
    calls = load_calls()
    modes = set(args.mode.split(","))
    print(f"{len(calls)} dev calls, rule set {load_rules().version}")
    if "own" in modes:
        own_mode(args.details)
    if "text" in modes:
        text_mode(calls, args.details)
    if "audio" in modes:
        audio_mode(calls, args.details, args.jobs)
    if "speed" in modes:
        speed(calls)
    if "rescore" in modes and args.rescore_calls > 0:
        rescore_time(calls, args.rescore_calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
