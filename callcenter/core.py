"""Core types of the product: plain dataclasses with no I/O.

Adapters (AGI, ARI, database, web, files) convert to and from these at the edge.
The string values used here (legs, categories, urgency levels, rule ids) are the
contract of ../shared/spec/hotline-standards.md: never rename them.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

LegName = Literal["caller", "agent"]
LEGS: tuple[LegName, ...] = ("caller", "agent")

CATEGORIES = ("engineering", "cleaning", "security", "landscaping", "complaint", "consultation")
URGENCIES = ("P1", "P2", "P3", "P4")
COMPLAINT_SEVERITIES = ("minor", "important", "major")
VIP_KINDS = ("none", "elderly", "disabled")

# Call ids are derived from the caller channel's Asterisk unique id, so the IVR
# and the call distributor name a call alike even when the IVR could not hand
# its id over (a FastAGI failure sends the caller to the fallback queue).
_CALL_ID_NAMESPACE = uuid.UUID("5b0c1d2e-8f3a-4c6b-9d7e-1a2b3c4d5e6f")


def call_id_for_channel(unique_id: str) -> str:
    """The call id of the call whose caller channel has this unique id (32 hex)."""
    return uuid.uuid5(_CALL_ID_NAMESPACE, unique_id).hex


# Where a call ended; stored on the call row so supervisors see how far it got.
CALL_STAGES = ("greeting", "menu", "queue", "ringing", "conversation", "completed", "failed")


@dataclass(slots=True)
class Word:
    """One recognised word with its time in the leg's recording (seconds)."""

    w: str
    start: float
    end: float
    conf: float = 1.0


@dataclass(slots=True)
class Segment:
    """One utterance of one leg: what was said, when, and its words."""

    leg: LegName
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(slots=True)
class Timeline:
    """Both legs of a call merged into one time-ordered list of segments."""

    segments: list[Segment]
    duration: float
    # The second pass's readings (asr/numbers.py), empty for a text timeline: where
    # a number was given, digits and "[unk]"; where an address, number and address
    # words and "[unk]"; where the caller gave their name, 姓/叫... and surnames.
    numbers: list[Segment] = field(default_factory=list)
    addresses: list[Segment] = field(default_factory=list)
    names: list[Segment] = field(default_factory=list)
    # The address read again with the windows shifted (asr/numbers.ADDRESS_SHIFTS_S),
    # one list per shift: where they agree they fill what ``addresses`` left open.
    address_variants: list[list[Segment]] = field(default_factory=list)

    def by_leg(self, leg: LegName) -> list[Segment]:
        return [s for s in self.segments if s.leg == leg]

    def text_of(self, leg: LegName) -> str:
        return "".join(s.text for s in self.by_leg(leg))


@dataclass(slots=True)
class CallFacts:
    """What the call itself gives the analysis besides speech."""

    call_id: str | None = None
    caller_number: str = ""
    ivr_digits: str = ""
    started_at: datetime | None = None
    answered_after_s: float | None = None  # queue entry -> agent answer
    hangup_by: LegName | None = None
    # The caller leg's acoustics, measured from the recording (None in text mode):
    # how loud the caller's speech is, and how far it stands above the line noise.
    caller_speech_dbfs: float | None = None
    caller_snr_db: float | None = None
    # The caller identified by number in the residents directory (name, building,
    # unit, room, vip), or None: fills what the call leaves open, raises a VIP.
    resident: dict[str, str] | None = None
    # The estate's buildings that have names rather than numbers (紫荆苑, 商业街;
    # the residents directory's): an address may name one.
    estate_buildings: tuple[str, ...] = ()


@dataclass(slots=True)
class Evidence:
    """A clickable piece of proof: which leg, when, and what was said."""

    leg: LegName
    start: float
    end: float
    text: str


@dataclass(slots=True)
class RuleResult:
    """One QA rule's verdict. passed=None means the rule does not apply, or (with
    ``needs_review``) that the words it rests on are too unsure to decide: a person
    decides, and until then the rule deducts nothing."""

    id: str
    passed: bool | None
    evidence: list[Evidence] = field(default_factory=list)
    detail: str = ""
    weight: float = 0.0
    needs_review: bool = False
    coaching: str = ""  # what the agent should say instead (failed or in review)


@dataclass(slots=True)
class QaResult:
    score: float
    rules: list[RuleResult]
    rules_version: str = ""  # the rule set it was computed with (qa/engine.py)

    @property
    def needs_review(self) -> int:
        """How many rules wait for a person."""
        return sum(1 for r in self.rules if r.needs_review)

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "rules_version": self.rules_version,
                "needs_review": self.needs_review, "rules": [asdict(r) for r in self.rules]}


@dataclass(slots=True)
class Ticket:
    category: str
    urgency: str
    description: str
    complaint_severity: str | None = None
    repeat_complaint: bool = False
    vip: str = "none"
    caller_name: str = ""
    phone: str = ""
    building: str = ""
    unit: str = ""
    room: str = ""
    channel: str = "phone"
    deadline: datetime | None = None
    escalate_to: str | None = None
    incomplete: list[str] = field(default_factory=list)
    callback_required: bool = False
    # Judgements the agent should confirm at wrap-up (category, urgency, severity).
    needs_confirmation: list[str] = field(default_factory=list)
    # Why each judgement was made: rules, hazards and model n-grams, per field.
    evidence: dict[str, list[str]] = field(default_factory=dict)
    # A complaint's when / where / whom / ask, as the caller said them.
    complaint: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["deadline"] = self.deadline.isoformat() if self.deadline else None
        return data
