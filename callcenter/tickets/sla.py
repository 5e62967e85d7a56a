"""SLA deadlines and escalation targets, from ``sla.yaml`` (no I/O beyond that file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SLA_FILE = Path(__file__).with_name("sla.yaml")


@dataclass(slots=True, frozen=True)
class Sla:
    deadlines_min: dict[str, int]
    complaint_contact_min: int
    vip_raise: dict[str, str]
    escalation: dict[str, str] = field(default_factory=dict)


def _from_dict(data: dict[str, Any]) -> Sla:
    return Sla(
        deadlines_min={str(k): int(v) for k, v in data["deadlines_min"].items()},
        complaint_contact_min=int(data["complaint_contact_min"]),
        vip_raise={str(k): str(v) for k, v in data["vip_raise"].items()},
        escalation={str(k): str(v) for k, v in (data.get("escalation") or {}).items()},
    )


@lru_cache(maxsize=4)
def load_sla(path: Path = SLA_FILE) -> Sla:
    with open(path, encoding="utf-8") as fh:
        return _from_dict(yaml.safe_load(fh))


def raise_for_vip(urgency: str, vip: str, sla: Sla | None = None) -> str:
    """One level up for an elderly or disabled caller; P4 stays P4."""
    if vip in ("", "none"):
        return urgency
    return (sla or load_sla()).vip_raise.get(urgency, urgency)


def deadline(
    now: datetime, urgency: str, *, complaint: bool = False, sla: Sla | None = None
) -> datetime:
    """When the ticket is due: the urgency clock, or the 12 h complaint-contact clock
    when that comes first."""
    sla = sla or load_sla()
    minutes = sla.deadlines_min[urgency]
    if complaint:
        minutes = min(minutes, sla.complaint_contact_min)
    return now + timedelta(minutes=minutes)


def escalation(
    urgency: str, *, severity: str | None, repeat_complaint: bool, sla: Sla | None = None
) -> str | None:
    """Who the ticket goes up to: management for P1 safety, a supervisor for major
    and repeated complaints, nobody otherwise."""
    rules = (sla or load_sla()).escalation
    if urgency == "P1" and "P1" in rules:
        return rules["P1"]
    if severity == "major" and "major" in rules:
        return rules["major"]
    if repeat_complaint and "repeat_complaint" in rules:
        return rules["repeat_complaint"]
    return None
