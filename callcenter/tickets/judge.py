"""The ticket's judgements from the caller's words: category, base urgency,
complaint severity and details, each with its evidence and a flag when it needs
the agent's confirmation.

Pure. Two sources combine:
- the learned models (``learned.py``: character n-grams, trained on the
  project's own corpus) decide category, urgency and severity and name the
  n-grams behind each decision;
- explainable rules decide what the models must not get wrong: personal-safety
  hazards (``safety.py``) make a call P1 recall first, and the spec's structural
  signs of a major complaint (repeated requests, a month unresolved, injury or
  loss) make it major.
The caller's own structure comes on top: a call with several problems takes the
most urgent one's category (the first told on a tie), and a caller who says the
call is, or is not, a complaint is taken at their word (``judgement.yaml``).
A judgement the sources disagree on, or one the model is unsure of, is listed in
``needs_confirmation``; the agent confirms or corrects it at wrap-up.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import yaml

from callcenter.core import URGENCIES
from callcenter.ivr.menu import default_menu
from callcenter.text import normalise
from callcenter.tickets import learned
from callcenter.tickets.learned import Models, Prediction
from callcenter.tickets.safety import (
    DEFINITE_HAZARDS,
    HAZARD_CATEGORY,
    SafetyReading,
    SafetyRules,
    contexts_around,
    negated,
    read_basic_needs,
    read_safety,
)

JUDGEMENT_FILE = Path(__file__).with_name("judgement.yaml")
# The IVR key sequences of a personal-safety emergency (ivr/menu.yaml: the
# options with priority `safety`, e.g. "11": repair, then emergency).
SAFETY_KEY_PATHS = default_menu().safety_key_paths()
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\n])")
_CLAUSE_END = re.compile(r"[，。！？,.!?；;…\n]")
# What makes a sentence a question (on normalised text: no punctuation left).
_QUESTION = re.compile(
    r"(请问|问一下|问问|想问|咨询|怎么|如何|能不能|可不可以|可以吗|是不是|多少钱|多少|什么时候|"
    r"几点|哪天|哪里|哪个|有没有|要不要|需不需要|吗|呢|么)$|^(请问|问一下|我想问|想问|咨询)"
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The defaults are judgement.yaml's, which sets them all."""

    p1_probability: float = 0.45
    p1_possible: float = 0.15
    p1_disputed: float = 0.05
    danger_context: float = 0.25
    basic_need_p2: float = 0.25
    department_p4: float = 0.5
    agent_weight: float = 0.5
    statement: float = 0.8
    confidence: float = 0.5
    margin: float = 0.15


@dataclass(frozen=True, slots=True)
class JudgementRules:
    thresholds: Thresholds
    major_signs: dict[str, re.Pattern[str]]
    important_signs: dict[str, re.Pattern[str]]
    details: dict[str, re.Pattern[str]]
    all_clear: re.Pattern[str]
    declared_complaint: re.Pattern[str]
    not_declared: re.Pattern[str]
    denied_complaint: re.Pattern[str]
    next_problem: re.Pattern[str]


@lru_cache(maxsize=2)
def load_rules(path: Path = JUDGEMENT_FILE) -> JudgementRules:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return JudgementRules(
        thresholds=Thresholds(**{k: float(v) for k, v in data["thresholds"].items()}),
        major_signs={str(k): re.compile(str(v)) for k, v in data["major_signs"].items()},
        important_signs={str(k): re.compile(str(v))
                         for k, v in data["important_signs"].items()},
        details={str(k): re.compile(str(v)) for k, v in data["complaint_details"].items()},
        all_clear=re.compile(str(data["all_clear"])),
        declared_complaint=re.compile(str(data["declared_complaint"])),
        not_declared=re.compile(str(data["not_declared"])),
        denied_complaint=re.compile(str(data["denied_complaint"])),
        next_problem=re.compile(str(data["next_problem"])),
    )


@dataclass(frozen=True, slots=True)
class Judgement:
    category: str
    urgency: str  # before the VIP raise
    severity: str | None  # complaints only
    needs_confirmation: tuple[str, ...]
    evidence: dict[str, list[str]] = field(default_factory=dict)
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    complaint: dict[str, str] = field(default_factory=dict)


def _unsure(p: Prediction, t: Thresholds) -> bool:
    return p.confidence < t.confidence or p.margin < t.margin


def _model_evidence(p: Prediction) -> list[str]:
    return [f"model {p.label} {p.confidence:.2f}: " + "、".join(p.features)]


def _category(
    pred: Prediction, safety: SafetyReading, t: Thresholds
) -> tuple[str, list[str], bool]:
    """(category, evidence, unsure): the model's, which learned the corpus's
    conventions (several problems: the most urgent one's category; a complaint about
    a danger not handled is a complaint). A model category that no hazard found
    supports is asked of the agent, a question included: on the corpus, taking the
    hazard's category for a call the model read as a question mended 2 calls and
    broke 38 (drills, past fires, what-ifs); the urgency stays P1 all the same."""
    evidence = _model_evidence(pred)
    if safety.is_p1 and pred.label == "consultation":
        category = HAZARD_CATEGORY[safety.hazards[0]]
        return pred.label, [*evidence, f"safety {safety.hazards[0]} points to {category}"], True
    hazard_categories = {HAZARD_CATEGORY[h] for h in safety.hazards if h in DEFINITE_HAZARDS}
    if hazard_categories and pred.label not in hazard_categories | {"complaint"}:
        names = "、".join(sorted(hazard_categories))
        return pred.label, [*evidence, f"safety points to {names}"], True
    return pred.label, evidence, _unsure(pred, t)


def _urgency(
    pred: Prediction, safety: SafetyReading, needs: SafetyReading, category: str, t: Thresholds,
    all_clear: str | None = None, context: Callable[[], Prediction | None] | None = None,
) -> tuple[str, list[str], bool]:
    """(urgency, evidence, unsure): recall first for P1; a basic need of the home
    the caller lacks (``needs``) makes a problem P2 where the model finds P2
    plausible too; ``all_clear``: the words of a question's caller that nothing is
    wrong now, which leave the safety rules' P1 to the model; ``context``: gives
    the context model's reading of the words around the rules' dangers, asked for
    only where the model disputes the rules' P1."""
    p1 = pred.probabilities.get("P1", 0.0)
    aside = f"the caller said {all_clear}" if all_clear else None
    if safety.is_p1 and not aside:
        # Recall first: the rules' P1 stands; one the model finds unlikely is asked.
        evidence = ["safety " + "; ".join(safety.evidence())]
        if p1 >= t.p1_disputed:
            return "P1", evidence, False
        disputed = [*evidence, f"model P1 only {p1:.2f}"]
        if category == "consultation":
            # Danger words in what both models read as a question (能不能装防高空抛物
            # 的摄像头): files-CV, 9 such calls, all P4, while every P1 question
            # there had a model P1 above p1_disputed. The agent is asked.
            return "P4", [*disputed, "a question about the danger, not a report"], True
        aside = _told_as_no_danger(context() if context else None, t)
        if not aside:
            return "P1", disputed, True
    # The model alone: a likely P1, or a possible one where a danger was mentioned
    # (negated, hypothetical or without its second sign): the agent confirms.
    danger_named = safety.doubtful or safety.is_p1
    if p1 >= t.p1_probability or (p1 >= t.p1_possible and danger_named):
        # Say why P1 where the model's likeliest urgency is another (P3 0.68, P1 0.24).
        why = f"model P1 {p1:.2f}" + ("" if p1 >= t.p1_probability else ", a danger named")
        return "P1", [why, *_model_evidence(pred), *safety.evidence()], True
    evidence = _model_evidence(pred)
    unsure = _unsure(pred, t) or danger_named
    if danger_named:
        said = f" ({aside})" if safety.is_p1 else ""
        evidence.append(f"safety not counted{said}: " + "; ".join(safety.evidence()))
    if category == "consultation":
        # A question: nothing to fix, whatever the words resemble.
        return "P4", evidence, unsure or pred.label != "P4"
    if needs.is_p1:
        need = "basic need " + "; ".join(needs.evidence())
        if pred.probabilities.get("P2", 0.0) >= t.basic_need_p2:
            return "P2", [need, *evidence], False
        # The model reads the words around it as less (one tap of several, a
        # neighbour's outage): its urgency stands, and the agent is asked.
        evidence, unsure = [*evidence, f"{need} (not counted: model P2 below "
                            f"{t.basic_need_p2:g})"], True
    if pred.label == "P4" and pred.probabilities.get("P4", 0.0) < t.department_p4:
        # A department's service request (nothing wrong) is P4, but a problem read
        # as one would wait twice as long: P4 needs the model's clear reading.
        return "P3", [*evidence, f"model P4 below {t.department_p4:g}"], True
    return pred.label, evidence, unsure


def _told_as_no_danger(context: Prediction | None, t: Thresholds) -> str | None:
    """Why a disputed P1 of the rules yields to the urgency model: the words around
    every danger read as no danger now (昨天晚上…现在没有了, 上礼拜被狗咬了), by the
    context model; None where it reads one as real or cannot tell."""
    if context is None:
        return None
    real = context.probabilities.get(learned.DANGER_REAL, 1.0)
    if real >= t.danger_context:
        return None
    words = f": {'、'.join(context.features[:3])}" if context.features else ""
    return f"told as no danger now, context {real:.2f}{words}"


_MIN_PART = 6  # characters: shorter parts are a word or two, not a problem told


def problem_parts(flat: str, rules: JudgementRules) -> list[str]:
    """The caller's words cut where they go on to another problem (还有, 另外);
    none when they do not."""
    cuts = [m.start() for m in rules.next_problem.finditer(flat)]
    bounds = [0, *cuts, len(flat)]
    parts = [flat[a:b] for a, b in itertools.pairwise(bounds)]
    return [p for p in parts if len(p) >= _MIN_PART] if cuts else []


def _most_urgent_problem(flat: str, key: str, models: Models,
                         rules: JudgementRules) -> tuple[str, str] | None:
    """(category, part) of a call with several problems of different departments:
    the most urgent part's, the first told on a tie (``next_problem``)."""
    found = []
    for index, part in enumerate(problem_parts(flat, rules)):
        doc = learned.reading(learned.document(part, key))
        cat = models.category.predict(doc)
        if cat.label == "consultation" or cat.confidence < rules.thresholds.statement:
            continue
        urgency = models.urgency.predict(doc).label
        found.append((URGENCIES.index(urgency), index, cat.label, part))
    if len({f[2] for f in found}) < 2:
        return None
    _, _, category, part = min(found)
    return category, part


def _best_but_complaint(pred: Prediction) -> str:
    """The model's likeliest category other than a complaint."""
    others = {k: v for k, v in pred.probabilities.items() if k != "complaint"}
    return max(others, key=lambda k: others[k])


def _declared_complaint(flat: str, rules: JudgementRules) -> str | None:
    """The caller's words that call the call a complaint (我要投诉), unless they take
    it back or only tell of or suppose one (``judgement.yaml``)."""
    said = rules.declared_complaint.search(flat)
    if said is None or rules.not_declared.search(flat):
        return None
    return said.group(0)


def _sign(text: str, signs: dict[str, re.Pattern[str]]) -> str | None:
    """The first of ``signs`` said and not negated (``name: words``)."""
    for name, pattern in signs.items():
        for m in pattern.finditer(text):
            if not negated(text, m.start()):
                return f"{name}: {m.group(0)}"
    return None


def _severity(
    pred: Prediction, text: str, rules: JudgementRules
) -> tuple[str, list[str], bool]:
    sign = _sign(text, rules.major_signs)
    if sign:
        return "major", [f"sign {sign}", *_model_evidence(pred)], False
    sign = _sign(text, rules.important_signs) if pred.label == "minor" else None
    if sign:
        return "important", [f"sign {sign}", *_model_evidence(pred)], False
    return pred.label, _model_evidence(pred), _unsure(pred, rules.thresholds)


def complaint_details(text: str, rules: JudgementRules | None = None) -> dict[str, str]:
    """When, where, whom and what the caller asks for: the first span of each."""
    rules = rules or load_rules()
    flat = normalise(text)
    found = {}
    for name, pattern in rules.details.items():
        if name == "ask":
            continue
        m = pattern.search(flat)
        if m and m.group(0):
            found[name] = m.group(0)
    asks = [c for c in _CLAUSE_END.split(text) if rules.details["ask"].search(normalise(c))]
    if asks:
        found["ask"] = normalise(asks[-1])[:40]
    return found


def sentences(text: str) -> list[str]:
    """The caller's sentences (recognised speech has no punctuation: one per turn)."""
    return [x for x in _SENTENCE_END.split(text) if normalise(x)]


def _is_question(sentence: str) -> bool:
    flat = normalise(sentence)
    return bool(_QUESTION.search(flat)) or sentence.rstrip().endswith(("？", "?"))


def _stated_problem(
    statements: Sequence[str], key: str, models: Models, t: Thresholds
) -> tuple[str, str] | None:
    """A problem stated (not asked about) in a call judged a question: 我想问一下…
    还有，我家窗户关不上了. (category, sentence). Only asked of the agent: taking it
    as the call's category made more mistakes than it mended on the corpus (past,
    planned and fixed problems read as stated ones)."""
    for sentence in statements:
        if _is_question(sentence):
            continue
        cat = models.category.predict(learned.document(sentence, key))
        if cat.label != "consultation" and cat.confidence >= t.statement:
            return cat.label, normalise(sentence)
    return None


def judge(
    caller_text: str,
    key: str = "",
    *,
    agent_text: str = "",
    statements: Sequence[str] | None = None,
    models: Models | None = None,
    safety_rules: SafetyRules | None = None,
    rules: JudgementRules | None = None,
) -> Judgement:
    """The judgements on what one caller said (all their words in the call);
    ``agent_text``: the agent's words, weighed in for category and urgency;
    ``statements``: the caller's turns, when known (default: the text's sentences)."""
    models = models or learned.trained()
    rules = rules or load_rules()
    t = rules.thresholds
    flat = normalise(caller_text)
    doc = learned.reading(learned.document(caller_text, key))
    safety = read_safety(caller_text, safety_rules)
    cat_pred, urg_pred = models.category.predict(doc), models.urgency.predict(doc)
    agent_doc = learned.reading(learned.agent_document(agent_text))
    if agent_doc.chars:
        cat_pred = learned.blend(cat_pred, models.agent_category.predict(agent_doc),
                                 t.agent_weight)
        urg_pred = learned.blend(urg_pred, models.agent_urgency.predict(agent_doc),
                                 t.agent_weight)
    category, cat_evidence, cat_unsure = _category(cat_pred, safety, t)
    needs = read_basic_needs(caller_text)
    clear = rules.all_clear.search(flat) if category == "consultation" else None
    told = partial(learned.danger_told_now, models, contexts_around(flat, safety))
    urgency, urg_evidence, urg_unsure = _urgency(urg_pred, safety, needs, category, t,
                                                 clear.group(0) if clear else None, told)
    if urgency != "P1" and category != "complaint":
        first = _most_urgent_problem(flat, key, models, rules)
        if first and first[0] != category:
            category, cat_unsure = first[0], True
            cat_evidence = [f"several problems, the most urgent first: {first[1]}", *cat_evidence]
    denied = rules.denied_complaint.search(flat)
    if denied and category == "complaint":
        category = _best_but_complaint(cat_pred)
        cat_evidence = [f"caller says it is no complaint: {denied.group(0)}", *cat_evidence]
        cat_unsure = True
    declared = _declared_complaint(flat, rules)
    if declared and category != "complaint" and urgency != "P1":
        # The caller's own word for the call; the agent confirms it. Not for a danger
        # now: the blind batches file those under the danger's category as often.
        cat_evidence = [f"caller calls it a complaint: {declared}", *cat_evidence]
        category, cat_unsure = "complaint", True
    if category == "consultation":
        turns = [s for turn in (statements or [caller_text]) for s in sentences(turn)]
        stated = _stated_problem(turns, key, models, t)
        if stated:
            note = f"stated problem ({stated[0]}): {stated[1]}"
            cat_evidence, urg_evidence = [*cat_evidence, note], [*urg_evidence, note]
            cat_unsure = urg_unsure = True
    if key.strip() in SAFETY_KEY_PATHS and urgency != "P1":
        # The caller chose the IVR's safety emergency: P1 until a person says otherwise.
        urgency, urg_unsure = "P1", True
        urg_evidence = [f"IVR keys {key.strip()}: safety emergency", *urg_evidence]
    if not flat:
        # Nothing heard from the caller: the IVR key is all there is to go on.
        cat_unsure = urg_unsure = True
        cat_evidence = ["nothing said by the caller: from the IVR key", *cat_evidence]
    evidence = {"category": cat_evidence, "urgency": urg_evidence}
    probabilities = {"category": cat_pred.probabilities, "urgency": urg_pred.probabilities}
    unsure = {"category": cat_unsure, "urgency": urg_unsure}
    severity, details = None, {}
    if category == "complaint":
        sev_pred = models.severity.predict(doc)
        if agent_doc.chars:
            sev_pred = learned.blend(sev_pred, models.agent_severity.predict(agent_doc),
                                     t.agent_weight)
        severity, evidence["severity"], unsure["severity"] = _severity(
            sev_pred, flat, rules
        )
        probabilities["severity"] = sev_pred.probabilities
        details = complaint_details(caller_text, rules)
    return Judgement(
        category=category,
        urgency=urgency,
        severity=severity,
        needs_confirmation=tuple(k for k, v in unsure.items() if v),
        evidence=evidence,
        probabilities=probabilities,
        complaint=details,
    )
