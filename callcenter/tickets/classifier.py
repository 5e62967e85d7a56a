"""The ticket of a call: category, urgency, severity, VIP, address, deadline.

Pure: a timeline and the call facts in, a ``Ticket`` out. Term lists and weights
live in ``terms.yaml``, deadlines and escalation in ``sla.yaml``.

How it decides (ids are the contract of hotline-standards.md section 5):

- category: every category sums the weights of its terms found in the caller's
  words (terms only the agent said count ``agent_factor`` of their weight) plus a
  small bonus for the category the IVR key names (a hint: callers press 1 and
  then complain). A call with nothing to fix (no problem term, no complaint) is
  a question: its domain category is kept when its terms outweigh the
  consultation terms (a question about pest control stays ``cleaning``),
  otherwise ``consultation``. A call with a problem is never ``consultation``.
- urgency: P1 safety terms, else P2 basic-living terms, else P3 for a problem or
  complaint, else P4; VIP callers one level up (P4 stays P4).
- complaint severity (complaints only): ``major`` for repeated reports or a month
  unresolved or loss/injury, ``important`` for a service failure or rude staff,
  else ``minor``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.core import CATEGORIES, CallFacts, Segment, Ticket, Timeline
from callcenter.tickets import sla as sla_mod
from callcenter.tickets.address import (
    AddressTerms,
    NameTerms,
    compact,
    extract_address_from_timeline,
    extract_caller_name,
    extract_phone,
)

TERMS_FILE = Path(__file__).with_name("terms.yaml")
PUNCTUATION = set("，。！？、；：,.!?;:…—~～“”\"'()（）【】[] ")


@dataclass(slots=True)
class PriorTicket:
    """An earlier ticket of the same caller (the store filters by phone)."""

    category: str
    description: str = ""
    created_at: datetime | None = None
    phone: str = ""


class TermList:
    """Literal and regex terms with weights; negated hits do not count."""

    def __init__(self, items: dict[str, float] | Sequence[str], negations: Sequence[str]):
        pairs = items.items() if isinstance(items, dict) else ((i, 1.0) for i in items)
        self.terms: list[tuple[str, re.Pattern[str], float]] = []
        for raw, weight in pairs:
            raw = str(raw)
            pattern = raw[3:] if raw.startswith("re:") else re.escape(raw)
            self.terms.append((raw, re.compile(pattern), float(weight)))
        self.negations = sorted(negations, key=len, reverse=True)

    def hits(self, text: str) -> dict[str, float]:
        """Distinct terms found (not negated) in text, with their weights."""
        found: dict[str, float] = {}
        for raw, pattern, weight in self.terms:
            for m in pattern.finditer(text):
                if not self._negated(text, m.start(), m.group(0)):
                    found[raw] = weight
                    break
        return found

    def score(self, text: str) -> float:
        return sum(self.hits(text).values())

    def _negated(self, text: str, start: int, matched: str) -> bool:
        if any(matched.startswith(n) for n in self.negations):
            return False  # the term itself is a negative phrase (没水, 不亮)
        window = text[max(0, start - 3) : start]
        return any(n in window for n in self.negations)


@dataclass(slots=True)
class TicketTerms:
    agent_factor: float
    problem_factor: float
    complaint_min: float
    categories: dict[str, TermList]
    ivr_hint: dict[str, dict[str, float]]
    problem: TermList
    urgency: dict[str, TermList]
    elderly_alone: TermList
    elderly_age: TermList
    disabled: TermList
    not_self: list[str]
    severity: dict[str, TermList]
    repeat: TermList
    prior_window_days: int
    callback_promises: list[str]
    description: dict[str, Any]
    address: AddressTerms
    names: NameTerms
    sla: sla_mod.Sla = field(default_factory=sla_mod.load_sla)


def terms_from_dict(data: dict[str, Any], sla: sla_mod.Sla | None = None) -> TicketTerms:
    neg = [str(n) for n in data.get("negations", [])]
    vip = data["vip"]
    return TicketTerms(
        agent_factor=float(data.get("agent_factor", 0.25)),
        problem_factor=float(data.get("problem_factor", 1.0)),
        complaint_min=float(data.get("complaint_min", 3.0)),
        categories={c: TermList(data["categories"].get(c, {}), neg) for c in CATEGORIES},
        ivr_hint={
            str(k): {str(c): float(w) for c, w in (v or {}).items()}
            for k, v in (data.get("ivr_hint") or {}).items()
        },
        problem=TermList(data["problem_terms"], neg),
        urgency={lvl: TermList(items, neg) for lvl, items in data["urgency"].items()},
        elderly_alone=TermList(vip["elderly_alone"], neg),
        elderly_age=TermList([vip["elderly_age"]], []),
        disabled=TermList(vip["disabled"], neg),
        not_self=[str(x) for x in vip.get("not_self", [])],
        severity={k: TermList(v, neg) for k, v in data["complaint_severity"].items()},
        repeat=TermList(data["repeat"], neg),
        prior_window_days=int(data.get("prior_ticket_window_days", 90)),
        callback_promises=[str(x) for x in data.get("callback_promises", [])],
        description=dict(data["description"]),
        address=AddressTerms(**{k: [str(x) for x in v] for k, v in data["address"].items()}),
        names=NameTerms(**{k: [str(x) for x in v] for k, v in data["names"].items()}),
        sla=sla or sla_mod.load_sla(),
    )


@lru_cache(maxsize=4)
def load_terms(path: Path = TERMS_FILE) -> TicketTerms:
    with open(path, encoding="utf-8") as fh:
        return terms_from_dict(yaml.safe_load(fh))


def _clean(text: str) -> str:
    return compact(text)


@dataclass(slots=True)
class CallReading:
    """What the classifier read from a call before building the ticket."""

    category: str
    scores: dict[str, float]
    has_problem: bool
    caller_text: str
    agent_text: str
    statements: str  # the caller's words minus questions


def _sentences(text: str) -> list[str]:
    return [x for x in re.split(r"(?<=[。！？!?…])", text) if x.strip("。！？!?…")]


def _is_question(sentence: str) -> bool:
    return bool(re.search(r"[吗吧呢么][？?]+$", sentence))


def read_call(
    timeline: Timeline, facts: CallFacts, terms: TicketTerms | None = None
) -> CallReading:
    """Category and the evidence behind it (also used by QA to know whether a call
    needs action and whether it is a complaint)."""
    terms = terms or load_terms()
    caller = _clean(timeline.text_of("caller"))
    agent = _clean(timeline.text_of("agent"))
    # What the caller states (not asks) decides whether something is wrong; the
    # sentences that say so count twice for the category.
    statements = "".join(x for x in _sentences(caller) if not _is_question(x))
    problem_text = "".join(
        x
        for x in _sentences(statements)
        if terms.problem.hits(x) or terms.categories["complaint"].score(x) >= terms.complaint_min
    )
    hint = terms.ivr_hint.get(facts.ivr_digits.strip()[:1], {})
    scores: dict[str, float] = {}
    for cat, tl in terms.categories.items():
        c_hits = tl.hits(caller)
        a_hits = tl.hits(agent)
        s = sum(c_hits.values()) + terms.problem_factor * tl.score(problem_text)
        s += terms.agent_factor * sum(w for t, w in a_hits.items() if t not in c_hits)
        s += hint.get(cat, 0.0)
        scores[cat] = round(s, 3)
    complaint_said = terms.categories["complaint"].score(statements)
    has_problem = bool(problem_text) or complaint_said >= terms.complaint_min
    domain = [c for c in CATEGORIES if c != "consultation"]
    if has_problem:
        category = max(domain, key=lambda c: scores[c])
        if scores[category] <= 0:
            category = "consultation"
    else:
        best = max((c for c in domain if c != "complaint"), key=lambda c: scores[c])
        category = best if scores[best] > scores["consultation"] else "consultation"
    return CallReading(category, scores, has_problem, caller, agent, statements)


def _vip(caller: str, terms: TicketTerms) -> str:
    if terms.disabled.hits(caller):
        return "disabled"
    if terms.elderly_alone.hits(caller) and terms.elderly_age.hits(caller):
        return "elderly"
    return "none"


def _base_urgency(reading: CallReading, terms: TicketTerms) -> str:
    if reading.category == "consultation":
        return "P4"
    text = reading.statements
    if terms.urgency["P1"].hits(text):
        return "P1"
    if terms.urgency["P2"].hits(text):
        return "P2"
    if reading.category == "complaint" or (
        reading.has_problem and reading.category != "consultation"
    ):
        return "P3"
    return "P4"


def _severity(text: str, terms: TicketTerms, repeat: bool) -> str:
    if terms.severity["major"].hits(text):
        return "major"
    if terms.severity["important"].hits(text) or repeat:
        return "important"
    return "minor"


def _repeat(
    text: str,
    category: str,
    facts: CallFacts,
    now: datetime,
    prior: Sequence[PriorTicket],
    terms: TicketTerms,
) -> bool:
    if terms.repeat.hits(text):
        return True
    window = timedelta(days=terms.prior_window_days)
    for p in prior:
        if p.phone and facts.caller_number and p.phone != facts.caller_number:
            continue
        if p.category != category:
            continue
        if p.created_at is not None and _naive(now) - _naive(p.created_at) > window:
            continue
        return True
    return False


def _naive(dt: datetime) -> datetime:
    return dt.replace(tzinfo=None) if dt.tzinfo is None else dt.astimezone().replace(tzinfo=None)


def _problem_statement(
    timeline: Timeline, reading: CallReading, terms: TicketTerms
) -> Segment | None:
    """The caller turn that says most about the problem (first one on ties)."""
    best: tuple[float, Segment] | None = None
    for seg in timeline.by_leg("caller"):
        text = _clean(seg.text)
        s = terms.categories[reading.category].score(text) + terms.problem.score(text)
        if best is None or s > best[0]:
            best = (s, seg)
    return best[1] if best else None


def _description(
    timeline: Timeline,
    reading: CallReading,
    terms: TicketTerms,
    name: str,
    address: tuple[str, str, str],
) -> str:
    d = terms.description
    seg = _problem_statement(timeline, reading, terms)
    what = _clean(seg.text) if seg else ""
    changed = True
    while changed:
        changed = False
        for p in sorted(d["strip_prefixes"], key=len, reverse=True):
            if what.startswith(p):
                what = what[len(p) :].lstrip("，。！？、,.!? ")
                changed = True
    limit = int(d.get("max_chars", 60))
    if len(what) > limit:
        what = what[:limit] + "…"
    b, u, r = address
    where = "".join(
        str(d[k]).format(v) for k, v in (("building", b), ("unit", u), ("room", r)) if v
    ) or str(d["unknown_where"])
    return str(d["template"]).format(who=name or d["unknown_who"], where=where, what=what)


def classify(
    timeline: Timeline,
    facts: CallFacts,
    *,
    now: datetime,
    prior_tickets: Sequence[PriorTicket] = (),
    terms: TicketTerms | None = None,
) -> Ticket:
    """The ticket a call opens (see the module docstring for the rules)."""
    terms = terms or load_terms()
    reading = read_call(timeline, facts, terms)
    caller = reading.caller_text
    category = reading.category
    complaint = category == "complaint"
    vip = _vip(caller, terms)
    urgency = sla_mod.raise_for_vip(_base_urgency(reading, terms), vip, terms.sla)
    repeat = _repeat(caller, category, facts, now, prior_tickets, terms)
    severity = _severity(caller, terms, repeat) if complaint else None
    name = extract_caller_name(timeline, terms.names)
    phone = extract_phone(timeline, facts.caller_number)
    building, unit, room = extract_address_from_timeline(timeline, terms.address)
    description = _description(timeline, reading, terms, name, (building, unit, room))
    incomplete = [
        f
        for f, v in (
            ("caller_name", name),
            ("phone", phone),
            ("building", building),
            ("room", room),
            ("description", description if timeline.by_leg("caller") else ""),
        )
        if not v
    ]
    promised = any(p in reading.agent_text for p in terms.callback_promises)
    return Ticket(
        category=category,
        urgency=urgency,
        description=description,
        complaint_severity=severity,
        repeat_complaint=repeat,
        vip=vip,
        caller_name=name,
        phone=phone,
        building=building,
        unit=unit,
        room=room,
        deadline=sla_mod.deadline(now, urgency, complaint=complaint, sla=terms.sla),
        escalate_to=sla_mod.escalation(
            urgency, severity=severity, repeat_complaint=repeat, sla=terms.sla
        ),
        incomplete=incomplete,
        callback_required=bool(incomplete) or complaint or promised,
    )
