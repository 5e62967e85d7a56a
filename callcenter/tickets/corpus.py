"""The labelled corpus of caller descriptions the ticket judgements learn from.

The corpus (``corpus/*.yaml``) was written for this project from the spec's label
definitions, independently of the 45 dev calls, which stay a test set. Each entry
is what one caller says about their problem (or a whole call: every caller and
agent turn), with the labels of hotline-standards.md section 5. Entries
describing the same situation share a ``group``; the validation split is taken
by group (a stable hash), so no paraphrase of a validation situation is ever
trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml

from callcenter.core import CATEGORIES, COMPLAINT_SEVERITIES, URGENCIES, VIP_KINDS

CORPUS_DIR = Path(__file__).with_name("corpus")
KEYS = ("1", "2", "3", "0", "")
COMPLAINT_FIELDS = ("when", "where", "whom", "ask")
# About one group in five is held out for validation.
VALIDATION_BUCKETS = 5

Split = Literal["train", "validation", "all"]


class CorpusError(ValueError):
    """An entry of the corpus breaks the label contract."""


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    group: str
    text: str
    key: str
    category: str
    urgency: str  # before any VIP raise
    vip: str = "none"
    severity: str | None = None
    tags: tuple[str, ...] = ()
    complaint: dict[str, str] = field(default_factory=dict)
    # Whole calls: the caller's turns (``text`` is them joined) and the agent's.
    turns: tuple[str, ...] = ()
    agent: tuple[str, ...] = ()

    @property
    def split(self) -> Literal["train", "validation"]:
        digest = hashlib.sha256(self.group.encode("utf-8")).digest()
        return "validation" if digest[0] % VALIDATION_BUCKETS == 0 else "train"


def _check(entry: dict[str, object], where: str) -> None:
    problems = []
    if entry.get("category") not in CATEGORIES:
        problems.append(f"category {entry.get('category')!r}")
    if entry.get("urgency") not in URGENCIES:
        problems.append(f"urgency {entry.get('urgency')!r}")
    if entry.get("vip", "none") not in VIP_KINDS:
        problems.append(f"vip {entry.get('vip')!r}")
    if str(entry.get("key", "")) not in KEYS:
        problems.append(f"key {entry.get('key')!r}")
    severity = entry.get("severity")
    if entry.get("category") == "complaint" and severity not in COMPLAINT_SEVERITIES:
        problems.append(f"complaint severity {severity!r}")
    if entry.get("category") != "complaint" and severity is not None:
        problems.append("severity on a non-complaint")
    if not (str(entry.get("text") or "").strip() or entry.get("caller")) or not entry.get("group"):
        problems.append("empty text or group")
    if problems:
        raise CorpusError(f"{where}: " + ", ".join(problems))


def _example(entry: dict[str, object], where: str) -> Example:
    _check(entry, where)
    details = entry.get("complaint") or {}
    assert isinstance(details, dict)
    tags = entry.get("tags") or []
    caller, agent = entry.get("caller") or [], entry.get("agent") or []
    assert isinstance(tags, list) and isinstance(caller, list) and isinstance(agent, list)
    turns = tuple(str(t) for t in caller)
    return Example(
        id=str(entry["id"]),
        group=str(entry["group"]),
        text=str(entry.get("text") or "，".join(turns)),
        key=str(entry.get("key", "")),
        category=str(entry["category"]),
        urgency=str(entry["urgency"]),
        vip=str(entry.get("vip", "none")),
        severity=str(entry["severity"]) if entry.get("severity") else None,
        tags=tuple(str(t) for t in tags),
        complaint={str(k): str(v) for k, v in details.items() if k in COMPLAINT_FIELDS and v},
        turns=turns,
        agent=tuple(str(t) for t in agent),
    )


def load_file(path: Path) -> list[Example]:
    with open(path, encoding="utf-8") as fh:
        # The C loader when PyYAML has it: the corpus is a megabyte of YAML.
        data = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or []
    return [_example(e, f"{path.name}:{e.get('id', i)}") for i, e in enumerate(data)]


@lru_cache(maxsize=1)
def _all(folder: Path) -> tuple[Example, ...]:
    examples = [e for path in sorted(folder.glob("*.yaml")) for e in load_file(path)]
    ids = [e.id for e in examples]
    if len(ids) != len(set(ids)):
        raise CorpusError("duplicate ids in the corpus")
    return tuple(examples)


def load_corpus(split: Split = "all", folder: Path = CORPUS_DIR) -> list[Example]:
    """The examples of one split (``all``: both)."""
    return [e for e in _all(folder) if split == "all" or e.split == split]
