"""Ticket and QA accuracy over the 45 dev calls in text mode, against a trivial baseline.

Reads ../shared/scenarios/dev/*/meta.json and hands the system only what an
evaluation may give it: id, duration_s, ivr_digits, caller.phone and timeline.
Labels are used for scoring only.

    .venv/bin/python bench/text_accuracy.py [--details]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter.core import CallFacts, QaResult, Segment, Ticket, Timeline, Word  # noqa: E402
from callcenter.qa.engine import SPEC_RULE_IDS, score  # noqa: E402
from callcenter.settings import SHARED_DIR  # noqa: E402
from callcenter.tickets.classifier import classify  # noqa: E402

DEV_DIR = SHARED_DIR / "scenarios" / "dev"
NOW = datetime(2025, 6, 1, 10, 0, 0)
PUNCT = set("，。！？、；：,.!?;:…—~～“”\"'()（）【】[] ")
IVR_CATEGORY = {"1": "engineering", "2": "complaint", "3": "consultation"}
LABELLED_RULES = [r for r in SPEC_RULE_IDS if r not in ("answer_speed", "hangup_order", "dead_air")]


def allowed_input(meta: dict[str, Any]) -> dict[str, Any]:
    """The copy of meta.json an evaluation hands the system (no labels)."""
    return {
        "id": meta["id"],
        "duration_s": meta["duration_s"],
        "ivr_digits": meta.get("ivr_digits", ""),
        "caller": {"phone": (meta.get("caller") or {}).get("phone", "")},
        "timeline": meta["timeline"],
    }


def _fallback_timeline(meta: dict[str, Any]) -> Timeline:
    segments = []
    for turn in meta["timeline"]:
        text = turn["text"]
        chars = [c for c in text if c not in PUNCT]
        span = max(0.001, turn["end"] - turn["start"])
        step = span / max(1, len(chars))
        words = [
            Word(c, round(turn["start"] + i * step, 3), round(turn["start"] + (i + 1) * step, 3))
            for i, c in enumerate(chars)
        ]
        segments.append(Segment(turn["who"], turn["start"], turn["end"], text, words))
    segments.sort(key=lambda s: s.start)
    return Timeline(segments, float(meta["duration_s"]))


def to_timeline(meta: dict[str, Any]) -> Timeline:
    try:
        from callcenter.dialogue import timeline_from_meta
    except ImportError:
        return _fallback_timeline(meta)
    return timeline_from_meta(meta)


def facts_of(meta: dict[str, Any]) -> CallFacts:
    return CallFacts(
        call_id=meta["id"],
        caller_number=str(meta["caller"]["phone"]),
        ivr_digits=str(meta["ivr_digits"] or ""),
    )


def load_calls() -> list[dict[str, Any]]:
    return [json.loads(p.read_text("utf-8")) for p in sorted(DEV_DIR.glob("d*/meta.json"))]


def run_system(meta: dict[str, Any]) -> tuple[Ticket, QaResult]:
    given = allowed_input(meta)
    timeline, facts = to_timeline(given), facts_of(given)
    return classify(timeline, facts, now=NOW), score(timeline, facts, source="text")


def label_of_rule(meta: dict[str, Any], rule: str) -> bool | None:
    labels = meta["labels"]
    if rule in labels["qa_fail"]:
        return False
    if rule in labels["qa_pass"]:
        return True
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--details", action="store_true", help="print every disagreement")
    args = parser.parse_args()
    if not DEV_DIR.is_dir():
        print(f"no test data at {DEV_DIR}", file=sys.stderr)
        return 2
    calls = load_calls()
    results = {m["id"]: run_system(m) for m in calls}

    rows: list[tuple[str, float, float, int]] = []
    misses: list[str] = []

    def field(
        name: str,
        got: Callable[[dict[str, Any]], Any],
        want: Callable[[dict[str, Any]], Any],
        base: Callable[[dict[str, Any]], Any],
        only: Callable[[dict[str, Any]], bool] = lambda m: True,
    ) -> None:
        sel = [m for m in calls if only(m)]
        ok = sum(got(m) == want(m) for m in sel)
        ok_base = sum(base(m) == want(m) for m in sel)
        for m in sel:
            if got(m) != want(m):
                misses.append(f"{m['id']} {name}: got {got(m)!r} want {want(m)!r}")
        rows.append((name, ok / len(sel), ok_base / len(sel), len(sel)))

    t = {k: v[0] for k, v in results.items()}
    q = {k: v[1] for k, v in results.items()}
    lab = lambda m: m["labels"]  # noqa: E731
    cal = lambda m: m["caller"]  # noqa: E731
    field(
        "category",
        lambda m: t[m["id"]].category,
        lambda m: lab(m)["category"],
        lambda m: IVR_CATEGORY.get(m["ivr_digits"], "engineering"),
    )
    field("urgency", lambda m: t[m["id"]].urgency, lambda m: lab(m)["urgency"], lambda m: "P3")
    field(
        "complaint_severity",
        lambda m: t[m["id"]].complaint_severity,
        lambda m: lab(m)["complaint_severity"],
        lambda m: None,
    )
    field(
        "repeat_complaint",
        lambda m: t[m["id"]].repeat_complaint,
        lambda m: lab(m)["repeat_complaint"],
        lambda m: False,
    )
    field("vip", lambda m: t[m["id"]].vip, lambda m: cal(m)["vip"], lambda m: "none")

    def attr_of(name: str) -> Callable[[dict[str, Any]], Any]:
        return lambda m: getattr(t[m["id"]], name)

    def caller_field(name: str) -> Callable[[dict[str, Any]], Any]:
        return lambda m: cal(m)[name]

    for f in ("building", "unit", "room"):
        field(f, attr_of(f), caller_field(f), lambda m: "")
    field(
        "address (all three)",
        lambda m: (t[m["id"]].building, t[m["id"]].unit, t[m["id"]].room),
        lambda m: (cal(m)["building"], cal(m)["unit"], cal(m)["room"]),
        lambda m: ("", "", ""),
    )
    field(
        "caller surname (if said)",
        lambda m: t[m["id"]].caller_name[: len(_surname(cal(m)["name"]))],
        lambda m: _surname(cal(m)["name"]),
        lambda m: "",
        only=lambda m: _said(_surname(cal(m)["name"]), m),
    )

    def verdict_of(rule: str) -> Callable[[dict[str, Any]], Any]:
        return lambda m: _verdict(q[m["id"]], rule)

    def label_of(rule: str) -> Callable[[dict[str, Any]], Any]:
        return lambda m: label_of_rule(m, rule)

    def labelled(rule: str) -> Callable[[dict[str, Any]], bool]:
        return lambda m: label_of_rule(m, rule) is not None

    for rule in LABELLED_RULES:
        field(f"qa:{rule}", verdict_of(rule), label_of(rule), lambda m: True, only=labelled(rule))
    all_sel = [(m, r) for m in calls for r in LABELLED_RULES if label_of_rule(m, r) is not None]
    ok = sum(_verdict(q[m["id"]], r) == label_of_rule(m, r) for m, r in all_sel)
    ok_b = sum(label_of_rule(m, r) is True for m, r in all_sel)
    rows.append(("qa: all labelled rules", ok / len(all_sel), ok_b / len(all_sel), len(all_sel)))

    print(f"{'field':28} {'system':>8} {'baseline':>9} {'n':>4}")
    for name, acc, base, n in rows:
        print(f"{name:28} {acc:8.1%} {base:9.1%} {n:4d}")
    print(
        "baseline: category from the IVR key (1/0/none->engineering, 2->complaint,"
        " 3->consultation), urgency P3,"
        " severity None, repeat False, vip none, empty address, every QA rule passed"
    )
    if args.details:
        print()
        print("\n".join(misses))
    return 0


def _surname(name: str) -> str:
    compound = ("欧阳", "司马", "上官", "诸葛", "东方", "慕容", "令狐", "皇甫", "公孙", "夏侯")
    return name[:2] if name[:2] in compound else name[:1]


def _said(surname: str, meta: dict[str, Any]) -> bool:
    """Whether the call says the caller's surname (姓刘, 刘女士...)."""
    text = "".join(x["text"] for x in meta["timeline"])
    return any(
        p in text
        for p in (
            f"姓{surname}",
            f"{surname}先生",
            f"{surname}女士",
            f"{surname}阿姨",
            f"{surname}大爷",
            f"叫{surname}",
        )
    )


def _verdict(result: QaResult, rule: str) -> bool | None:
    return next((r.passed for r in result.rules if r.id == rule), None)


if __name__ == "__main__":
    raise SystemExit(main())
