"""Dispatch by specialty: which department a ticket goes to.

Pure: the table is data (``departments.yaml``). The choice, most specific first:
a known sub-type the agent named (``water``, ``public_facilities``...), then
description words for the categories a keyword rule covers, then the category's
own department, then the default (the service centre triages the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.core import CATEGORIES

DEPARTMENTS_FILE = Path(__file__).with_name("departments.yaml")


@dataclass(frozen=True, slots=True)
class KeywordRule:
    """Tickets of ``categories`` whose description holds one of ``words`` go to
    ``department``."""

    department: str
    categories: tuple[str, ...]
    words: tuple[str, ...]

    def matches(self, category: str, text: str) -> bool:
        return category in self.categories and any(word in text for word in self.words)


@dataclass(frozen=True, slots=True)
class Departments:
    names: dict[str, str]  # department id -> zh-CN display name
    by_category: dict[str, str]
    by_subtype: dict[str, str]
    keyword_rules: tuple[KeywordRule, ...]
    default: str

    def name_of(self, department: str) -> str:
        """The display name, or the id itself for a department the table lacks."""
        return self.names.get(department, department)

    def knows(self, department: str) -> bool:
        return department in self.names

    def choose(self, category: str, *, subtype: str | None = None, text: str = "") -> str:
        """The department for a ticket of ``category`` (see the module's docstring)."""
        if subtype and subtype in self.by_subtype:
            return self.by_subtype[subtype]
        for rule in self.keyword_rules:
            if rule.matches(category, text):
                return rule.department
        return self.by_category.get(category, self.default)


def departments_from_dict(data: dict[str, Any]) -> Departments:
    """Build and validate the table from parsed YAML."""
    table = Departments(
        names={str(k): str(v) for k, v in (data.get("departments") or {}).items()},
        by_category={str(k): str(v) for k, v in (data.get("by_category") or {}).items()},
        by_subtype={str(k): str(v) for k, v in (data.get("by_subtype") or {}).items()},
        keyword_rules=tuple(
            KeywordRule(
                department=str(rule["department"]),
                categories=tuple(str(c) for c in rule.get("categories") or ()),
                words=tuple(str(w) for w in rule.get("words") or ()),
            )
            for rule in data.get("keywords") or ()
        ),
        default=str(data.get("default", "service_centre")),
    )
    _validate(table)
    return table


def _validate(table: Departments) -> None:
    problems = []
    targets = [
        ("default", table.default),
        *(("category " + k, v) for k, v in table.by_category.items()),
        *(("sub-type " + k, v) for k, v in table.by_subtype.items()),
        *(("keyword rule", r.department) for r in table.keyword_rules),
    ]
    problems += [f"{where} names unknown department {dept!r}"
                 for where, dept in targets if not table.knows(dept)]
    problems += [f"no department for category {c!r}"
                 for c in CATEGORIES if c not in table.by_category]
    problems += [f"unknown category {c!r}" for c in table.by_category if c not in CATEGORIES]
    for rule in table.keyword_rules:
        problems += [f"keyword rule for unknown category {c!r}"
                     for c in rule.categories if c not in CATEGORIES]
        if not rule.words:
            problems.append(f"keyword rule for {rule.department!r} has no words")
    if problems:
        raise ValueError("invalid departments table: " + "; ".join(problems))


@lru_cache(maxsize=4)
def load_departments(path: Path = DEPARTMENTS_FILE) -> Departments:
    with open(path, encoding="utf-8") as fh:
        return departments_from_dict(yaml.safe_load(fh))


def department_for(
    category: str, *, subtype: str | None = None, text: str = "",
    table: Departments | None = None,
) -> str:
    """The department a ticket goes to by specialty (pure; the default table)."""
    return (table or load_departments()).choose(category, subtype=subtype, text=text)
