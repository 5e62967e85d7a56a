"""Ticket judgements on calls the classifier was not tuned on: the 45 dev calls in
text mode and audio mode, and the validation split of the project's own corpus.

The classifier learns only from ``callcenter/tickets/corpus/`` (written without
the dev calls); the dev calls are a test set. Each section prints category and
urgency accuracy, P1 recall and precision, complaint severity accuracy, the
address (dev calls), confusion tables, and the same figures for a trivial
baseline (category from the IVR key, urgency P3, severity "important") measured
in the same run.

- validation: models trained on the corpus's train split, judged on its
  validation split (held out by situation, so no paraphrase was trained on).
- cv: grouped 5-fold cross-validation over the whole corpus (each situation
  judged by models that never saw it); the thresholds in judgement.yaml were
  chosen on it.
- files: the same with whole corpus files held out (each a batch on its own
  topics, written at its own time): the nearest to unseen callers and topics.
- text: the dev calls' ground-truth timelines (what ``callcenter analyze
  --timeline`` reads), through the production classifier.
- audio: the dev calls' two legs through Vosk (what ``callcenter analyze
  --caller --agent`` reads); transcripts are cached by bench/asr_accuracy.py's
  cache (the first run decodes, about 13 s of CPU per call).
- --unseen FILE...: a new batch in the corpus's format, not yet in the corpus,
  judged by the production models; scored once, honestly, before it joins.
  With --final its urgency labels are the ticket's (after the VIP raise, where
  the corpus's are before it) and each call goes through the whole classifier.

    .venv/bin/python bench/ticket_accuracy.py [--mode validation,cv,files,text,audio] [--jobs 2]
        [--details] [--unseen FILE... [--final]]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from text_accuracy import DEV_DIR, NOW, allowed_input, facts_of, load_calls, to_timeline  # noqa: E402

from callcenter.core import CATEGORIES, COMPLAINT_SEVERITIES, URGENCIES, Ticket, Timeline  # noqa: E402
from callcenter.text import normalise  # noqa: E402
from callcenter.tickets import learned  # noqa: E402
from callcenter.tickets.classifier import classify  # noqa: E402
from callcenter.tickets.corpus import CORPUS_DIR, Example, load_corpus, load_file  # noqa: E402
from callcenter.tickets.judge import judge  # noqa: E402

CV_FOLDS = 5
IVR_CATEGORY = {"1": "engineering", "2": "complaint", "3": "consultation"}
GOALS = {
    "text": {"category": 0.95, "urgency": 0.95, "P1 recall": 1.0, "P1 precision": 0.80,
             "severity": 0.85},
    "audio": {"category": 0.90, "urgency": 0.90, "P1 recall": 0.95},
}


@dataclass(slots=True)
class Case:
    """One judged item: what the system said and what the label says."""

    id: str
    key: str
    got: dict[str, Any]
    want: dict[str, Any]
    needs_confirmation: Sequence[str] = ()
    p1_by: str = ""  # what made a P1: the safety rules, the model, the IVR keys


def p1_source(urgency: str, evidence: dict[str, list[str]], unsure: Sequence[str],
              vip: str = "none") -> str:
    """What decided a P1, from the judgement's first piece of urgency evidence; a
    VIP caller's P2 raised one level is a P1 too."""
    if urgency != "P1":
        return ""
    first = (evidence.get("urgency") or [""])[0]
    if first.startswith("safety"):
        # The rules' P1 that the model finds unlikely is sent to the agent to confirm.
        return "rules, the model disputing" if "urgency" in unsure else "rules"
    if first.startswith("IVR keys"):
        return "IVR keys"
    if vip != "none" and not first.startswith("model P1"):
        return "a VIP's P2 raised"
    return "model" if first.startswith("model") else "other"


def baseline(case: Case) -> dict[str, Any]:
    category = IVR_CATEGORY.get(case.key, "engineering")
    return {
        "category": category,
        "urgency": "P4" if category == "consultation" else "P3",
        "severity": "important" if category == "complaint" else None,
        "address": ("", "", ""),
    }


def _acc(cases: Sequence[Case], name: str, pick: Callable[[Case], dict[str, Any]],
         only: Callable[[Case], bool] = lambda c: True) -> tuple[float, int]:
    sel = [c for c in cases if only(c)]
    if not sel:
        return float("nan"), 0
    return sum(pick(c)[name] == c.want[name] for c in sel) / len(sel), len(sel)


def _p1(cases: Sequence[Case], pick: Callable[[Case], dict[str, Any]]) -> tuple[float, float, int]:
    truth = [c for c in cases if c.want["urgency"] == "P1"]
    said = [c for c in cases if pick(c)["urgency"] == "P1"]
    hit = [c for c in said if c.want["urgency"] == "P1"]
    recall = len(hit) / len(truth) if truth else float("nan")
    precision = len(hit) / len(said) if said else float("nan")
    return recall, precision, len(truth)


def _confusion(cases: Sequence[Case], name: str, labels: Sequence[str]) -> str:
    counts = Counter((c.want[name], c.got[name]) for c in cases if c.want[name] is not None)
    used = [x for x in labels if any(x in k for k in counts)]
    width = max(8, *(len(x) + 1 for x in used))
    lines = [f"  {name}: rows = label, columns = system",
             "  " + " " * width + "".join(f"{x[:width - 1]:>{width}}" for x in used)]
    for want in used:
        cells = "".join(f"{counts.get((want, got), 0) or '.':>{width}}" for got in used)
        lines.append(f"  {want:<{width}}{cells}")
    return "\n".join(lines)


def report(title: str, cases: Sequence[Case], goals: dict[str, float], details: bool,
           *, address: bool) -> None:
    print(f"\n== {title}: {len(cases)} items ==")
    print(f"{'figure':24} {'system':>8} {'baseline':>9} {'goal':>6} {'n':>4}")

    def row(name: str, system: float, base: float, n: int) -> None:
        goal = goals.get(name)
        mark = "" if goal is None else ("  ok" if system >= goal else "  BELOW GOAL")
        goal_s = f"{goal:6.0%}" if goal is not None else " " * 6
        print(f"{name:24} {system:8.1%} {base:9.1%} {goal_s} {n:4d}{mark}")

    got: Callable[[Case], dict[str, Any]] = lambda c: c.got  # noqa: E731
    for name in ("category", "urgency"):
        (s, n), (b, _) = _acc(cases, name, got), _acc(cases, name, baseline)
        row(name, s, b, n)
    (sr, sp, n1), (br, bp, _) = _p1(cases, got), _p1(cases, baseline)
    row("P1 recall", sr, br, n1)
    row("P1 precision", sp, bp, n1)
    complaint = lambda c: c.want["severity"] is not None  # noqa: E731
    (s, n), (b, _) = _acc(cases, "severity", got, complaint), _acc(
        cases, "severity", baseline, complaint)
    row("severity", s, b, n)
    if address:
        (s, n), (b, _) = _acc(cases, "address", got), _acc(cases, "address", baseline)
        row("building/unit/room", s, b, n)
    flagged = [c for c in cases if c.needs_confirmation]
    sure = [c for c in cases if not c.needs_confirmation]
    sure_ok = sum(c.got["category"] == c.want["category"] and c.got["urgency"] == c.want["urgency"]
                  for c in sure)
    sources = Counter((c.p1_by, c.want["urgency"] == "P1") for c in cases if c.p1_by)
    if sources:
        print("P1 by source (right/wrong): " + "; ".join(
            f"{by} {sources[by, True]}/{sources[by, False]}"
            for by in dict.fromkeys(b for b, _ in sorted(sources))))
    print(f"needs_confirmation on {len(flagged)}/{len(cases)} items; category and urgency both"
          f" right on {sure_ok}/{len(sure)} of the others")
    print(_confusion(cases, "category", CATEGORIES))
    print(_confusion(cases, "urgency", URGENCIES))
    print(_confusion(cases, "severity", COMPLAINT_SEVERITIES))
    if details:
        for c in cases:
            wrong = [k for k in ("category", "urgency", "severity", "address")
                     if k in c.want and c.got[k] != c.want[k]]
            if wrong:
                print(f"  {c.id}: " + ", ".join(f"{k} {c.got[k]} (label {c.want[k]})"
                                                for k in wrong)
                      + f"  confirm={list(c.needs_confirmation)}")


def _judged(e: Example, models: learned.Models) -> Case:
    j = judge(e.text, e.key, agent_text="".join(e.agent), statements=e.turns or None,
              models=models)
    return Case(
        e.id, e.key,
        {"category": j.category, "urgency": j.urgency, "severity": j.severity},
        {"category": e.category, "urgency": e.urgency, "severity": e.severity},
        j.needs_confirmation, p1_source(j.urgency, j.evidence, j.needs_confirmation),
    )


def validation_cases() -> list[Case]:
    models = learned.trained("train")
    return [_judged(e, models) for e in load_corpus("validation")]


def _fold(group: str) -> int:
    # Salted apart from the validation split's hash, so the folds cut elsewhere.
    return hashlib.sha256(f"cv{group}".encode()).digest()[0] % CV_FOLDS


def cv_cases() -> list[Case]:
    """Grouped cross-validation over the whole corpus: each fold's situations
    judged by models trained on the other folds (how the thresholds were chosen)."""
    corpus = load_corpus()
    cases = []
    for fold in range(CV_FOLDS):
        models = learned.train([e for e in corpus if _fold(e.group) != fold])
        cases += [_judged(e, models) for e in corpus if _fold(e.group) == fold]
    return cases


def files_cases() -> list[Case]:
    """Cross-validation with whole corpus files held out: each file is a batch on
    its own topics, written at its own time, so this is the nearest the corpus
    comes to calls by other people about other things (harsher than ``cv``)."""
    fold_of = {e.id: index % CV_FOLDS
               for index, path in enumerate(sorted(CORPUS_DIR.glob("*.yaml")))
               for e in load_file(path)}
    corpus = load_corpus()
    cases = []
    for fold in range(CV_FOLDS):
        models = learned.train([e for e in corpus if fold_of[e.id] != fold])
        cases += [_judged(e, models) for e in corpus if fold_of[e.id] == fold]
    return cases


def unseen_cases(path: Path) -> list[Case]:
    """A corpus-format file that is not (yet) in the corpus, judged by the
    production models: how a new batch is scored once, honestly, before it
    joins the corpus and becomes training data."""
    if path.resolve().parent == CORPUS_DIR.resolve():
        raise SystemExit(f"{path.name} is already in the corpus: its figures would not be unseen")
    models = learned.trained("all")
    return [_judged(e, models) for e in load_file(path)]


def call_meta(e: Example) -> dict[str, Any]:
    """A corpus call as the dev calls' meta.json gives a call to the system: the
    turns in order (the agent greets first), about four characters a second."""
    timeline, t = [], 0.0
    for i in range(max(len(e.agent), len(e.turns))):
        for who, turns in (("agent", e.agent), ("caller", e.turns)):
            if i < len(turns):
                length = max(1.0, len(turns[i]) / 4)
                timeline.append({"who": who, "start": t, "end": t + length, "text": turns[i]})
                t += length + 0.5
    return {"id": e.id, "duration_s": t, "ivr_digits": e.key, "caller": {"phone": ""},
            "timeline": timeline}


def unseen_ticket_cases(path: Path) -> list[Case]:
    """``--final``: a batch labelled with the ticket's final urgency (after the VIP
    raise, as the dev calls are), each call through the whole classifier as in
    text mode: the VIP heard in the call and its raise are scored too."""
    if path.resolve().parent == CORPUS_DIR.resolve():
        raise SystemExit(f"{path.name} is already in the corpus: its figures would not be unseen")
    cases = []
    for e in load_file(path):
        meta = call_meta(e)
        ticket = classify(to_timeline(meta), facts_of(meta), now=NOW)
        cases.append(Case(
            e.id, e.key,
            {"category": ticket.category, "urgency": ticket.urgency,
             "severity": ticket.complaint_severity, "vip": ticket.vip},
            {"category": e.category, "urgency": e.urgency, "severity": e.severity,
             "vip": e.vip},
            ticket.needs_confirmation,
            p1_source(ticket.urgency, ticket.evidence, ticket.needs_confirmation, ticket.vip),
        ))
    heard = sum(c.got["vip"] == c.want["vip"] for c in cases)
    print(f"VIP heard right on {heard}/{len(cases)} calls of {path.name}"
          f" ({sum(c.want['vip'] != 'none' for c in cases)} VIP)")
    return cases


def details_report() -> None:
    """Complaint details (when/where/whom/ask) on the validation complaints."""
    found = Counter[str]()
    total = Counter[str]()
    for e in load_corpus("validation"):
        if e.category != "complaint":
            continue
        got = judge(e.text, e.key, models=learned.trained("train")).complaint
        for name, want in e.complaint.items():
            total[name] += 1
            g, w = normalise(got.get(name, "")), normalise(want)
            found[name] += bool(g) and (g in w or w in g)
    print("complaint details found (overlapping the label): " + ", ".join(
        f"{k} {found[k]}/{total[k]}" for k in ("when", "where", "whom", "ask")))


def dev_case(meta: dict[str, Any], ticket: Ticket) -> Case:
    labels, caller = meta["labels"], meta["caller"]
    return Case(
        meta["id"], str(meta.get("ivr_digits") or ""),
        {"category": ticket.category, "urgency": ticket.urgency,
         "severity": ticket.complaint_severity,
         "address": (ticket.building, ticket.unit, ticket.room)},
        {"category": labels["category"], "urgency": labels["urgency"],
         "severity": labels["complaint_severity"],
         "address": (caller["building"], caller["unit"], caller["room"])},
        ticket.needs_confirmation,
        p1_source(ticket.urgency, ticket.evidence, ticket.needs_confirmation, ticket.vip),
    )


def dev_cases(calls: list[dict[str, Any]], timelines: dict[str, Timeline]) -> list[Case]:
    return [
        dev_case(m, classify(timelines[m["id"]], facts_of(allowed_input(m)), now=NOW))
        for m in calls
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", help="sections to run, comma-separated (default:"
                        " validation,text,audio; none with --unseen)")
    parser.add_argument("--jobs", type=int, default=2, help="decoding processes (audio)")
    parser.add_argument("--details", action="store_true", help="list every wrong item")
    parser.add_argument("--unseen", type=Path, nargs="+", default=[], metavar="FILE",
                        help="score corpus-format files that are not in the corpus (and nothing"
                             " else unless --mode is given too)")
    parser.add_argument("--final", action="store_true",
                        help="--unseen files' urgency is the ticket's final one (after the VIP"
                             " raise, as the dev calls'): score the whole classifier")
    args = parser.parse_args()
    if args.mode:
        modes = set(args.mode.split(","))
    else:  # a new batch alone is scored on its own
        modes = set() if args.unseen else {"validation", "text", "audio"}
    print("baseline: category from the IVR key (none/0 -> engineering), urgency P3"
          " (P4 for consultation), severity important")
    for path in args.unseen:
        if args.final:
            report(f"unseen file {path.name} (whole classifier, final urgency)",
                   unseen_ticket_cases(path), GOALS["text"], args.details, address=False)
        else:
            report(f"unseen file {path.name} (production models)", unseen_cases(path),
                   GOALS["text"], args.details, address=False)
    if not modes:
        return 0
    if "validation" in modes:
        report("own corpus, validation split (trained on the train split)",
               validation_cases(), GOALS["text"], args.details, address=False)
        details_report()
    if "cv" in modes:
        report(f"own corpus, grouped {CV_FOLDS}-fold cross-validation", cv_cases(),
               GOALS["text"], args.details, address=False)
    if "files" in modes:
        report(f"own corpus, {CV_FOLDS}-fold cross-validation by whole files", files_cases(),
               GOALS["text"], args.details, address=False)
    if modes & {"text", "audio"} and not DEV_DIR.is_dir():
        print(f"no dev calls at {DEV_DIR}", file=sys.stderr)
        return 2
    calls = load_calls()
    if "text" in modes:
        timelines = {m["id"]: to_timeline(allowed_input(m)) for m in calls}
        report("dev calls, text mode (never tuned on)", dev_cases(calls, timelines),
               GOALS["text"], args.details, address=True)
    if "audio" in modes:
        from asr_accuracy import transcripts

        report("dev calls, audio mode (Vosk transcripts)",
               dev_cases(calls, transcripts(calls, args.jobs, refresh=False, numbers=True)),
               GOALS["audio"], args.details, address=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
