"""Queues as data: ``queues.yaml`` read and checked once, into frozen dataclasses.

A bad file is refused at start with one line naming the queue and the key, so
a typo never reaches a live call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

QUEUES_FILE = Path(__file__).with_name("queues.yaml")

Strategy = Literal["longest_idle", "round_robin", "fewest_calls", "random", "ring_all"]
STRATEGIES: tuple[Strategy, ...] = (
    "longest_idle", "round_robin", "fewest_calls", "random", "ring_all",
)
# The queue every agent serves and every fallback goes to.
GENERAL_QUEUE = "general"


class QueueConfigError(ValueError):
    """queues.yaml is not valid."""


@dataclass(frozen=True, slots=True)
class Rule:
    """What happens at the maximum wait or with nobody logged in."""

    action: Literal["wait", "callback", "overflow"]
    target: str | None = None  # the queue of an overflow

    @classmethod
    def parse(cls, text: str, where: str) -> Rule:
        action, _, target = str(text).partition(":")
        action = action.strip()
        if action == "overflow" and target.strip():
            return cls("overflow", target.strip())
        if action in ("wait", "callback") and not target:
            return cls(action)  # type: ignore[arg-type]
        raise QueueConfigError(
            f"{where}: expected wait, callback or overflow:<queue>, got {text!r}")


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    skills: dict[str, int] = field(default_factory=dict)
    strategy: Strategy = "longest_idle"
    prefer_level: bool = True
    service_level_s: float = 20.0
    short_abandon_s: float = 5.0
    max_wait_s: float = 300.0
    on_max_wait: Rule = Rule("callback")
    when_no_agents: Rule = Rule("wait")
    announce_every_s: float = 45.0
    wrap_up_s: float | None = None
    moh_class: str | None = "default"


_KEYS = {
    "skills", "strategy", "prefer_level", "service_level_s", "short_abandon_s", "max_wait_s",
    "on_max_wait", "when_no_agents", "announce_every_s", "wrap_up_s", "moh_class",
}


def _number(value: Any, where: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise QueueConfigError(f"{where}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def _skills(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise QueueConfigError(f"{where}: expected a mapping skill -> level, got {value!r}")
    out = {}
    for skill, level in value.items():
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
            raise QueueConfigError(f"{where}.{skill}: level must be 1-9, got {level!r}")
        out[str(skill)] = level
    return out


def _queue(name: str, raw: dict[str, Any]) -> QueueConfig:
    where = f"queues.{name}"
    unknown = set(raw) - _KEYS
    if unknown:
        raise QueueConfigError(f"{where}: unknown keys {sorted(unknown)}")
    strategy = raw.get("strategy", "longest_idle")
    if strategy not in STRATEGIES:
        raise QueueConfigError(
            f"{where}.strategy: one of {', '.join(STRATEGIES)}, got {strategy!r}")
    wrap_up = raw.get("wrap_up_s")
    return QueueConfig(
        name=name,
        skills=_skills(raw.get("skills") or {}, f"{where}.skills"),
        strategy=strategy,
        prefer_level=bool(raw.get("prefer_level", True)),
        service_level_s=_number(raw.get("service_level_s", 20), f"{where}.service_level_s",
                                minimum=1),
        short_abandon_s=_number(raw.get("short_abandon_s", 5), f"{where}.short_abandon_s"),
        max_wait_s=_number(raw.get("max_wait_s", 300), f"{where}.max_wait_s", minimum=1),
        on_max_wait=Rule.parse(raw.get("on_max_wait", "callback"), f"{where}.on_max_wait"),
        when_no_agents=Rule.parse(raw.get("when_no_agents", "wait"), f"{where}.when_no_agents"),
        announce_every_s=_number(raw.get("announce_every_s", 45), f"{where}.announce_every_s"),
        wrap_up_s=None if wrap_up is None else _number(wrap_up, f"{where}.wrap_up_s"),
        moh_class=raw.get("moh_class") or None,
    )


def parse_queues(data: Any) -> dict[str, QueueConfig]:
    """Queues from the parsed YAML document; raises QueueConfigError."""
    if not isinstance(data, dict) or not isinstance(data.get("queues"), dict):
        raise QueueConfigError("queues.yaml: expected a mapping with 'queues'")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise QueueConfigError("defaults: expected a mapping")
    queues = {}
    for name, raw in data["queues"].items():
        if raw is not None and not isinstance(raw, dict):
            raise QueueConfigError(f"queues.{name}: expected a mapping")
        queues[str(name)] = _queue(str(name), {**defaults, **(raw or {})})
    if GENERAL_QUEUE not in queues:
        raise QueueConfigError(f"queues: the '{GENERAL_QUEUE}' queue is required (fallbacks)")
    for queue in queues.values():
        for rule in (queue.on_max_wait, queue.when_no_agents):
            if rule.target is not None and rule.target not in queues:
                raise QueueConfigError(
                    f"queues.{queue.name}: overflow to unknown queue {rule.target!r}")
            if rule.target == queue.name:
                raise QueueConfigError(f"queues.{queue.name}: overflow to itself")
    return queues


def load_queues(path: Path = QUEUES_FILE) -> dict[str, QueueConfig]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QueueConfigError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise QueueConfigError(f"{path}: {_yaml_problem(exc)}") from exc
    return parse_queues(data)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where and what (PyYAML's own message spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{context}"
    return " ".join(str(exc).split())


def parse_skills(items: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Agent skills as stored (``["repair:3", "general"]``) -> {skill: level}; level 1 when
    not given. Bad levels count as 1 rather than locking an agent out of every queue."""
    skills: dict[str, int] = {}
    for item in items:
        name, _, level = str(item).partition(":")
        name = name.strip()
        if not name:
            continue
        try:
            skills[name] = min(9, max(1, int(level))) if level else 1
        except ValueError:
            skills[name] = 1
    return skills
