"""The IVR main menu as a pure state machine: events in, the next action out.

No I/O here: ``callcenter/ivr/handler.py`` turns actions into AGI commands and
what the caller does into events. The menu itself is data
(``callcenter/ivr/menu.yaml``): which digit and which spoken intent lead to
which queue, the prompts, the timeouts and how many tries a caller gets.

Rules (never drop a caller):
- a menu digit or a spoken menu intent routes to its queue;
- an invalid key, or speech that is no menu choice, plays the ``invalid``
  prompt and the menu again;
- no input replays the menu;
- after ``max_tries`` failed tries (invalid or no input) the caller goes to
  the fallback queue (``general``), as after ``max_prompts`` presentations;
- ``repeat`` and ``back`` (no upper level in the main menu) replay the menu
  without counting as a failed try.
A known VIP caller (elderly, disabled) gets the ``vip`` priority.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from callcenter.constants import QUEUES

MENU_PATH = Path(__file__).with_name("menu.yaml")

INTENTS = ("emergency", "repair", "complaint", "consultation", "agent", "repeat", "back", "none")
NAVIGATION_INTENTS = ("repeat", "back")
DTMF_KEYS = "0123456789*#"
VIP_KINDS_RAISED = ("elderly", "disabled")

Stage = Literal["greeting", "menu", "queue"]


# -- menu data ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MenuChoice:
    digit: str
    intent: str
    queue: str
    priority: int = 0  # a safety choice (P1) is served before everyone else


@dataclass(frozen=True, slots=True)
class Menu:
    choices: tuple[MenuChoice, ...]
    keywords: dict[str, tuple[str, ...]]  # insertion order = precedence
    greeting_prompt: str
    menu_prompt: str
    invalid_prompt: str
    digit_timeout_ms: int = 5000
    max_tries: int = 3
    max_prompts: int = 6
    fallback_queue: str = "general"
    fallback_intent: str = "none"
    priority_normal: int = 0
    priority_vip: int = 1

    def by_digit(self, digit: str) -> MenuChoice | None:
        return next((c for c in self.choices if c.digit == digit), None)

    def by_intent(self, intent: str) -> MenuChoice | None:
        return next((c for c in self.choices if c.intent == intent), None)

    @property
    def escape_digits(self) -> str:
        """Every DTMF key interrupts a prompt, so invalid keys are heard too."""
        return DTMF_KEYS


def menu_from_dict(data: dict[str, Any]) -> Menu:
    """Build and validate a :class:`Menu` from parsed YAML."""
    prompts = data.get("prompts") or {}
    priority = data.get("priority") or {}
    levels = {"normal": 0, **{str(k): int(v) for k, v in priority.items()}}
    choices = tuple(
        MenuChoice(digit=str(c["digit"]), intent=str(c["intent"]), queue=str(c["queue"]),
                   priority=_level(levels, c.get("priority", "normal")))
        for c in data.get("choices") or []
    )
    keywords = {
        str(intent): tuple(str(k) for k in words)
        for intent, words in (data.get("keywords") or {}).items()
    }
    menu = Menu(
        choices=choices,
        keywords=keywords,
        greeting_prompt=str(prompts["greeting"]),
        menu_prompt=str(prompts["menu"]),
        invalid_prompt=str(prompts["invalid"]),
        digit_timeout_ms=int(data.get("digit_timeout_ms", 5000)),
        max_tries=int(data.get("max_tries", 3)),
        max_prompts=int(data.get("max_prompts", 6)),
        fallback_queue=str(data.get("fallback_queue", "general")),
        fallback_intent=str(data.get("fallback_intent", "none")),
        priority_normal=int(priority.get("normal", 0)),
        priority_vip=int(priority.get("vip", 1)),
    )
    _validate(menu)
    return menu


def _level(levels: dict[str, int], name: Any) -> int:
    if str(name) not in levels:
        raise ValueError(f"invalid IVR menu: unknown priority level {name!r}")
    return levels[str(name)]


def _validate(menu: Menu) -> None:
    problems = []
    digits = [c.digit for c in menu.choices]
    if len(set(digits)) != len(digits):
        problems.append("duplicate digits")
    for choice in menu.choices:
        if len(choice.digit) != 1 or choice.digit not in DTMF_KEYS:
            problems.append(f"bad digit {choice.digit!r}")
        if choice.intent not in INTENTS or choice.intent in (*NAVIGATION_INTENTS, "none"):
            problems.append(f"bad intent {choice.intent!r}")
        if choice.queue not in QUEUES:
            problems.append(f"unknown queue {choice.queue!r}")
    if menu.fallback_queue not in QUEUES:
        problems.append(f"unknown fallback queue {menu.fallback_queue!r}")
    if menu.fallback_intent not in INTENTS:
        problems.append(f"unknown fallback intent {menu.fallback_intent!r}")
    for intent in menu.keywords:
        if intent not in INTENTS or intent == "none":
            problems.append(f"keywords for unknown intent {intent!r}")
    if menu.max_tries < 1 or menu.max_prompts < menu.max_tries or menu.digit_timeout_ms <= 0:
        problems.append("max_tries >= 1, max_prompts >= max_tries, digit_timeout_ms > 0")
    if problems:
        raise ValueError("invalid IVR menu: " + "; ".join(problems))


def load_menu(path: Path | str | None = None) -> Menu:
    with open(path or MENU_PATH, encoding="utf-8") as fh:
        return menu_from_dict(yaml.safe_load(fh))


@lru_cache(maxsize=1)
def default_menu() -> Menu:
    return load_menu(MENU_PATH)


# -- events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigitPressed:
    digit: str


@dataclass(frozen=True, slots=True)
class NoInput:
    pass


@dataclass(frozen=True, slots=True)
class IntentRecognised:
    """A spoken choice, already mapped to one of :data:`INTENTS`."""

    intent: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class CallerIdentified:
    """The caller's number was (or was not) found among the residents."""

    known: bool
    vip: str = "none"


Event = DigitPressed | NoInput | IntentRecognised | CallerIdentified


# -- actions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayAndCollect:
    """Play ``prompts`` in order (a key interrupts), then wait for one key."""

    prompts: tuple[str, ...]
    timeout_ms: int
    escape_digits: str
    max_digits: int = 1
    stage: Stage = "menu"  # "greeting" for the first presentation


@dataclass(frozen=True, slots=True)
class RouteToQueue:
    """Leave the IVR: hand the call to routing for ``queue``."""

    queue: str
    intent: str
    digits: str  # the key that chose the queue, "" when none did
    priority: int
    reason: Literal["choice", "fallback"]


@dataclass(frozen=True, slots=True)
class HangUp:
    """Say goodbye and hang up. The main menu never does this; kept for sub-menus."""

    prompts: tuple[str, ...] = ()


Action = PlayAndCollect | RouteToQueue | HangUp


# -- the machine -------------------------------------------------------------


@dataclass(slots=True)
class MenuEngine:
    """One caller's walk through the menu. Feed events to :meth:`handle`."""

    menu: Menu = field(default_factory=default_menu)
    failed_tries: int = 0
    prompts_played: int = 0
    pressed: list[str] = field(default_factory=list)  # every key, in order
    spoken: list[str] = field(default_factory=list)  # every spoken intent, in order
    known_caller: bool = False
    vip: str = "none"
    choice_priority: int = 0  # the chosen option's own level (safety)
    pending: Action | None = None

    @property
    def finished(self) -> bool:
        return isinstance(self.pending, RouteToQueue | HangUp)

    @property
    def priority(self) -> int:
        """The higher of the caller's (VIP) and the choice's (safety) level."""
        caller = self.menu.priority_vip if self.vip in VIP_KINDS_RAISED else (
            self.menu.priority_normal)
        return max(caller, self.choice_priority)

    def start(self) -> Action:
        """The first action: the greeting (with the menu), collecting one key."""
        if self.pending is None:
            self.prompts_played = 1
            self.pending = self._collect((self.menu.greeting_prompt,), stage="greeting")
        return self.pending

    def handle(self, event: Event) -> Action:
        """Apply ``event``; return the next action (the pending one if nothing changes)."""
        if self.pending is None:
            self.start()
        assert self.pending is not None
        if isinstance(event, CallerIdentified):
            self.known_caller = event.known
            self.vip = event.vip if event.known else "none"
            if isinstance(self.pending, RouteToQueue):
                self.pending = replace(self.pending, priority=self.priority)
            return self.pending
        if self.finished:
            return self.pending
        if isinstance(event, DigitPressed):
            self.pressed.append(event.digit)
            choice = self.menu.by_digit(event.digit)
            if choice is not None:
                self.choice_priority = choice.priority
                return self._route(choice.queue, choice.intent, choice.digit, "choice")
            return self._failed(invalid=True)
        if isinstance(event, IntentRecognised):
            self.spoken.append(event.intent)
            if event.intent in NAVIGATION_INTENTS:
                return self._replay()
            choice = self.menu.by_intent(event.intent)
            if choice is not None:
                self.choice_priority = choice.priority
                return self._route(choice.queue, choice.intent, "", "choice")
            return self._failed(invalid=True)
        if isinstance(event, NoInput):
            return self._failed(invalid=False)
        raise TypeError(f"unknown IVR event {event!r}")

    def _collect(self, prompts: tuple[str, ...], stage: Stage = "menu") -> PlayAndCollect:
        return PlayAndCollect(
            prompts=prompts,
            timeout_ms=self.menu.digit_timeout_ms,
            escape_digits=self.menu.escape_digits,
            stage=stage,
        )

    def _present(self, prompts: tuple[str, ...]) -> Action:
        if self.prompts_played >= self.menu.max_prompts:
            return self._fallback()
        self.prompts_played += 1
        self.pending = self._collect(prompts)
        return self.pending

    def _replay(self) -> Action:
        return self._present((self.menu.menu_prompt,))

    def _failed(self, *, invalid: bool) -> Action:
        self.failed_tries += 1
        if self.failed_tries >= self.menu.max_tries:
            return self._fallback()
        if invalid:
            return self._present((self.menu.invalid_prompt, self.menu.menu_prompt))
        return self._present((self.menu.menu_prompt,))

    def _fallback(self) -> Action:
        return self._route(self.menu.fallback_queue, self.menu.fallback_intent, "", "fallback")

    def _route(
        self, queue: str, intent: str, digits: str, reason: Literal["choice", "fallback"]
    ) -> Action:
        self.pending = RouteToQueue(
            queue=queue, intent=intent, digits=digits, priority=self.priority, reason=reason
        )
        return self.pending
